//! The `vgpu-vmm` binary's command line: help, one-line usage errors and their statuses.

use std::process::Command;

fn vmm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-vmm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_exits_zero_and_lists_the_exit_statuses() {
    let (code, stdout, _) = vmm(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--console-log"));
    assert!(stdout.contains("81  triple fault"));
    assert!(stdout.contains("--vgpu") && stdout.contains("socket=PATH"));
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    for args in [
        &["--bogus"][..],
        &["--kernel", "/nonexistent/vmlinux"],
        &["--kernel", "/"],
        &["--kernel", "/proc/self/exe", "--vcpus", "65"],
        &["--kernel", "/proc/self/exe", "--memory", "lots"],
        &["--kernel", "/proc/self/exe", "--vgpu", "type=sim-35c"],
        &["--kernel", "/proc/self/exe", "--vgpu", "intr=intx"],
        &["--kernel", "/proc/self/exe", "--vgpu", "socket=/s,intr=msi"],
        &["--kernel", "/proc/self/exe", "--vgpu", "socket="],
        &[],
    ] {
        let (code, stdout, stderr) = vmm(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("vgpu-vmm: error:"), "{stderr}");
    }
}

#[test]
fn a_socket_nobody_serves_fails_with_one_line_and_status_1() {
    let (code, _, stderr) = vmm(&[
        "--kernel",
        "/proc/self/exe",
        "--vgpu",
        "socket=/nonexistent/vgpu.sock",
    ]);
    if stderr.contains("/dev/kvm") {
        eprintln!("skipped: /dev/kvm is not available");
        return;
    }
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/vgpu.sock"), "{stderr}");
}

#[test]
fn a_file_that_is_no_kernel_fails_with_status_1() {
    let junk = std::env::temp_dir().join(format!("vgpu-vmm-not-a-kernel-{}", std::process::id()));
    std::fs::write(&junk, b"not a kernel").unwrap();
    let (code, _, stderr) = vmm(&["--kernel", junk.to_str().unwrap(), "--memory", "32"]);
    std::fs::remove_file(&junk).unwrap();
    if stderr.contains("/dev/kvm") {
        eprintln!("skipped: /dev/kvm is not available");
        return;
    }
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("neither an ELF vmlinux nor a bzImage"),
        "{stderr}"
    );
}
