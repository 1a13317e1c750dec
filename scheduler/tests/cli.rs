//! The `vgpu-sched` command as an operator uses it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vgpu_sched(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgpu-sched"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("vgpu-sched runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgpu-sched-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn check_accepts_examples_and_rejects_bad_files_in_one_line() {
    let ok = vgpu_sched(&[
        "check",
        "examples/weighted-3-1.toml",
        "examples/fixed-share.toml",
    ]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok: policy weighted"));
    let alias = vgpu_sched(&["--check", "examples/equal-share.toml"]);
    assert!(alias.status.success());

    let bad = scratch("bad.toml");
    std::fs::write(&bad, "policy = \"weighted\"\ntimeslice = \"3 jiffies\"\n").unwrap();
    let out = vgpu_sched(&["check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("bad.toml:2:") && text.contains("unknown unit"),
        "{text}"
    );
}

#[test]
fn simulate_writes_log_and_timeline_that_log_can_render() {
    let svg = scratch("t.svg");
    let log = scratch("t.jsonl");
    let out = vgpu_sched(&[
        "simulate",
        "examples/weighted-3-1.toml",
        "--tenants",
        "busy,busy",
        "--for",
        "2s",
        "--svg",
        svg.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stderr is a pipe here: progress comes as plain lines, without carriage returns.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\r'), "{err:?}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        ["simulated 1s of 2s", "simulated 2s of 2s"],
        "{err:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let prod = text
        .lines()
        .find(|l| l.starts_with("prod"))
        .expect("prod row");
    assert!(prod.contains("75.00%"), "{text}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    let svg2 = scratch("t2.svg");
    let out = vgpu_sched(&[
        "log",
        log.to_str().unwrap(),
        "--svg",
        svg2.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("prod 75."));
    assert!(std::fs::read_to_string(&svg2)
        .unwrap()
        .contains("runlist 0"));
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let out = vgpu_sched(&[
        "simulate",
        "examples/weighted-3-1.toml",
        "--tenants",
        "lazy",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown load `lazy`"), "{err}");
    for (args, message) in [
        (
            &["simulate", "examples/weighted-3-1.toml", "--for", "0s"][..],
            "--for must be longer than 0",
        ),
        (
            &[
                "simulate",
                "examples/weighted-3-1.toml",
                "--svg-span",
                "0ms",
            ][..],
            "--svg-span must be longer than 0",
        ),
        (
            &["log", "/dev/null", "--from", "2s", "--to", "1s"][..],
            "--from must be before --to",
        ),
    ] {
        let out = vgpu_sched(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(message), "{err}");
    }
    let help = vgpu_sched(&["simulate", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--tenants",
        "--for",
        "--svg",
        "--log",
        "--gpu",
        "--method",
        "--reload-at",
        "--realtime",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}
