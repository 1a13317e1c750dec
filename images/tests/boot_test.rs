//! `vgpu-image boot-test` end to end: small ext4 root images built without root
//! (`mkfs.ext4 -d`) booted in the nested harness under `vgpu-vmm`'s virtio-blk disk. One that
//! boots to its marker passes; one without an init fails with the kernel's panic, one that hangs
//! fails at the timeout, and one whose root cannot be mounted fails at the emergency shell,
//! each with its one-line reason, exit status 1 and a JUnit failure of its kind; a Debian 12
//! minbase image boots systemd on its own kernel to a login prompt. Bad arguments exit 2
//! without booting anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MARKER: &str = "BOOT-TEST-MARKER ok";

/// An ext4 image of `root_files` (path in the image, contents, mode), with busybox as
/// /bin/busybox and /bin/sh, built by `mkfs.ext4 -d` (no root needed).
fn ext4_image(dir: &Path, name: &str, root_files: &[(&str, &[u8], u32)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join(format!("{name}.root"));
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    for (path, data, mode) in root_files {
        let p = root.join(path);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let img = dir.join(format!("{name}.img"));
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("24M")
        .output()
        .expect("mkfs.ext4 from e2fsprogs (bash .ci/setup installs it)");
    assert!(
        out.status.success(),
        "mkfs.ext4 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static (bash .ci/setup installs it)")
}

/// A deterministic 3 MB file and its MD5 as `md5sum` prints it.
fn data_file() -> (Vec<u8>, String) {
    let mut x: u32 = 0x1234_5678;
    let data: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let out = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&data)?;
            c.wait_with_output()
        })
        .unwrap();
    let md5 = String::from_utf8(out.stdout).unwrap();
    (data, md5.split_whitespace().next().unwrap().to_string())
}

/// Runs `vgpu-image boot-test` with `args`, artifacts and JUnit report in `dir`.
fn boot_test(dir: &Path, args: &[&str]) -> (Output, String) {
    let junit = dir.join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-image"))
        .arg("boot-test")
        .args(args)
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    (out, report)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn explain(out: &Output, dir: &Path) -> String {
    let console = std::fs::read_to_string(dir.join("artifacts/console.log")).unwrap_or_default();
    let tail: Vec<&str> = console.lines().rev().take(30).collect();
    format!(
        "status {:?}\nstdout: {}\nstderr:\n{}\nconsole (last 30 lines, newest first):\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr),
        tail.join("\n")
    )
}

fn init_script(body: &str) -> Vec<u8> {
    format!("#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\n{body}\n")
        .into_bytes()
}

#[test]
fn an_image_that_boots_to_its_marker_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, md5) = data_file();
    // The init reads a 3 MB file through the disk and writes one (kept in memory).
    let init = init_script(&format!(
        "echo \"boot-test image: init running\"\n\
         md5sum /data.bin | sed 's/^/data md5 /'\n\
         echo written >/written && sync && cat /written\n\
         echo \"{MARKER}\"\npoweroff -f"
    ));
    let img = ext4_image(
        dir.path(),
        "good",
        &[("sbin/init", &init, 0o755), ("data.bin", &data, 0o644)],
    );
    let before = std::fs::read(&img).unwrap();
    let expect_md5 = format!("^data md5 {md5} ");
    let (out, junit) = boot_test(
        dir.path(),
        &[
            "--disk",
            img.to_str().unwrap(),
            "--expect",
            "init running",
            "--expect",
            &expect_md5,
            "--expect",
            "^written$",
            "--expect",
            MARKER,
            "--timeout",
            "120",
        ],
    );
    let why = explain(&out, dir.path());
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(
        stdout(&out),
        format!("PASS: matched 4 patterns in order (last: \"{MARKER}\")"),
        "{why}"
    );
    assert!(
        junit.contains("failures=\"0\"") && !junit.contains("<failure"),
        "{junit}"
    );
    assert!(junit.contains("name=\"good.img\""), "{junit}");
    let console = std::fs::read_to_string(dir.path().join("artifacts/console.log")).unwrap();
    assert!(console.contains("virtio_blk virtio0: [vda]"), "{why}");
    assert!(console.contains(MARKER));
    assert!(dir.path().join("artifacts/harness.log").exists());
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the image was written"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for step in ["harness up", "the guest is printing", "matched pattern 4/4"] {
        assert!(
            stderr.contains(step),
            "no progress line {step:?}:\n{stderr}"
        );
    }
}

#[test]
fn an_image_with_its_own_kernel_passes() {
    // The Debian cloud kernel as the bzImage a user would pass from /boot, with the stock
    // initramfs as the user's initrd: the --kernel/--initrd path and the bzImage loader.
    let cache = images::Cache::from_env().unwrap();
    let stock = {
        let _lock = cache.lock().unwrap();
        images::stock_boot::StockBoot::ensure_in(&cache).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    // The root is mounted read-only (`ro` below), so busybox cannot install its links.
    let init = format!("#!/bin/busybox sh\necho \"{MARKER}\"\n/bin/busybox poweroff -f\n");
    let img = ext4_image(
        dir.path(),
        "own-kernel",
        &[("sbin/init", init.as_bytes(), 0o755)],
    );
    let (out, junit) = boot_test(
        dir.path(),
        &[
            "--disk",
            img.to_str().unwrap(),
            "--kernel",
            stock.kernel.vmlinuz.to_str().unwrap(),
            "--initrd",
            stock.initrd.to_str().unwrap(),
            "--cmdline",
            "console=ttyS0 reboot=t panic=-1 root=/dev/vda ro",
            "--name",
            "own kernel",
            "--timeout",
            "120",
        ],
    );
    let why = explain(&out, dir.path());
    // No --expect: a clean power-off passes.
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(stdout(&out), "PASS: the guest powered off cleanly", "{why}");
    assert!(junit.contains("name=\"own kernel\""), "{junit}");
}

/// `--vgpu TYPE`: vgpud runs in the harness and the guest gets an instance of that type; the
/// image's own `vgpu-smi` (the static `vgpu-guest`) reports the type's name and framebuffer,
/// which only the instance vgpud made can tell it (the oracle is the type table's arithmetic:
/// the GPU's framebuffer over 8 for `sim-17c`, not the default `sim-35c`).
#[test]
fn an_image_with_a_vgpu_attached_sees_its_type() {
    let cache = images::Cache::from_env().unwrap();
    let bins = {
        let _lock = cache.lock().unwrap();
        images::static_bins::StaticBins::build(&cache).unwrap()
    };
    let smi = std::fs::read(&bins.guest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let init = init_script(&format!(
        "mount -t sysfs sysfs /sys\n\
         /bin/vgpu-smi || echo \"vgpu-smi failed: $?\"\n\
         echo \"{MARKER}\"\npoweroff -f"
    ));
    let img = ext4_image(
        dir.path(),
        "vgpu",
        &[("sbin/init", &init, 0o755), ("bin/vgpu-smi", &smi, 0o755)],
    );
    let gpu = rm_sim::SimBackend::new(rm_sim::SimConfig::default());
    let ty = mdev::profile::resolve("sim-17c", &rm_core::backend::Backend::gpu_info(&gpu)).unwrap();
    let total = format!("Total +: {} MiB", ty.fb_quota >> 20);
    let (out, _) = boot_test(
        dir.path(),
        &[
            "--disk",
            img.to_str().unwrap(),
            "--vgpu",
            "sim-17c",
            "--expect",
            "Product Name +: NVIDIA H200 \\(sim\\) sim-17c",
            "--expect",
            &total,
            "--expect",
            MARKER,
            "--timeout",
            "120",
        ],
    );
    let why = explain(&out, dir.path());
    assert_eq!(out.status.code(), Some(0), "{why}");
    // An unknown type is refused before anything boots.
    let (out, _) = boot_test(
        dir.path(),
        &["--disk", img.to_str().unwrap(), "--vgpu", "sim-99c"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown vGPU type") && err.contains("sim-35c"),
        "{err}"
    );
}

/// Boots `img` expecting the marker, and checks the failure's kind and reason.
fn fails(dir: &Path, img: &Path, timeout: &str, kind: &str, reason_starts: &str) {
    let (out, junit) = boot_test(
        dir,
        &[
            "--disk",
            img.to_str().unwrap(),
            "--expect",
            MARKER,
            "--timeout",
            timeout,
        ],
    );
    let why = explain(&out, dir);
    assert_eq!(out.status.code(), Some(1), "{why}");
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{why}");
    assert!(
        line.starts_with(&format!("FAIL ({kind}): {reason_starts}")),
        "{why}"
    );
    assert!(
        junit.contains(&format!("<failure type=\"{kind}\"")) && junit.contains("failures=\"1\""),
        "{junit}"
    );
}

#[test]
fn an_image_without_init_fails_with_a_kernel_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = ext4_image(dir.path(), "no-init", &[]);
    fails(
        dir.path(),
        &img,
        "120",
        "kernel-panic",
        "Kernel panic - not syncing: Attempted to kill init!",
    );
}

#[test]
fn a_hung_guest_fails_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let init = init_script("echo \"hanging forever\"\nwhile :; do sleep 3600; done");
    let img = ext4_image(dir.path(), "hung", &[("sbin/init", &init, 0o755)]);
    fails(
        dir.path(),
        &img,
        "25",
        "timeout",
        &format!(
            "no boot within 25 s: /{MARKER}/ not seen (0 of 1 patterns matched; last guest \
             line: \"hanging forever\")"
        ),
    );
}

#[test]
fn an_unmountable_root_fails_at_the_emergency_shell() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("zeros.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    fails(
        dir.path(),
        &img,
        "120",
        "emergency-shell",
        "ALERT! cannot mount /dev/vda (ext4, rw). Dropping to a shell!",
    );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, [0u8; 100]).unwrap();
    let tiny = tiny.to_str().unwrap();
    let ok = dir.path().join("ok.img");
    std::fs::write(&ok, [0u8; 1024]).unwrap();
    let ok = ok.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--disk", "/nonexistent.img"],
            "/nonexistent.img: No such file",
        ),
        (vec!["--disk", tiny], "holds 100 bytes"),
        (
            vec!["--disk", "/dev/null"],
            "neither a regular file nor a block device",
        ),
        (
            vec!["--disk", ok, "--expect", "(unclosed"],
            "invalid value '(unclosed'",
        ),
        (vec!["--disk", ok, "--initrd", ok], "--kernel"),
        (vec!["--disk", ok, "--timeout", "0"], "invalid value '0'"),
        (
            vec!["--disk", ok, "--kernel", "/nonexistent"],
            "/nonexistent: No such file",
        ),
        (
            vec!["--disk", ok, "--kernel-from-image", "--kernel", ok],
            "cannot be used with",
        ),
        (
            vec!["--disk", ok, "--kernel-from-image"],
            "no /boot/vmlinuz-* in",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vgpu-image"))
            .arg("boot-test")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_debian_12_image_boots_systemd_to_a_login_prompt() {
    // Debian 12 minbase with systemd, booted on the kernel and initramfs-tools' initramfs in
    // its own /boot (which finds /dev/vda through virtio_pci and virtio_blk as modules).
    let cache = images::Cache::from_env().unwrap();
    let debian = {
        let _lock = cache.lock().unwrap();
        images::debian_image::DebianImage::ensure_in(&cache).expect("building the Debian image")
    };
    let dir = tempfile::tempdir().unwrap();
    let login = format!("^{} login:", images::debian_image::HOSTNAME);
    let (out, junit) = boot_test(
        dir.path(),
        &[
            "--disk",
            debian.image.to_str().unwrap(),
            "--kernel-from-image",
            "--expect",
            "Reached target.*Multi-User System",
            "--expect",
            &login,
            "--timeout",
            "300",
        ],
    );
    let why = explain(&out, dir.path());
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert!(
        stdout(&out).starts_with("PASS: matched 2 patterns"),
        "{why}"
    );
    assert!(junit.contains("failures=\"0\""), "{junit}");
    let console = std::fs::read_to_string(dir.path().join("artifacts/console.log")).unwrap();
    assert!(console.contains("Debian GNU/Linux 12"), "{why}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let release = debian.kernel_package.trim_start_matches("linux-image-");
    assert!(
        stderr.contains(&format!(
            "booting the image's own /boot/vmlinuz-{release} with initrd.img-{release}"
        )),
        "{why}"
    );
}
