//! `rm-trace check` on the shared traces: every record decodes, every class and control the
//! traces use is in the tables.

use std::path::PathBuf;
use std::process::Command;

fn traces() -> Option<Vec<PathBuf>> {
    let files = rm_core::testing::traces::all_traces();
    (!files.is_empty()).then_some(files)
}

#[test]
fn shared_traces_decode_completely() {
    let Some(files) = traces() else {
        return;
    };
    let mut report = rm_trace::Report::default();
    for f in &files {
        report.check_file(f).unwrap();
    }
    assert!(report.failures.is_empty(), "{}", report.render());
    assert!(
        report.decoded() > 1000,
        "the four traces hold about 1484 records"
    );
    assert!(
        report.classes.values().all(|(name, _)| name.is_some()),
        "unknown class in {}",
        report.render()
    );
    assert!(
        report.controls.values().all(|(info, _)| info.is_some()),
        "unknown control in {}",
        report.render()
    );
}

#[test]
fn cli_exits_zero_on_traces_and_nonzero_on_bad_input() {
    let bin = env!("CARGO_BIN_EXE_rm-trace");
    if let Some(files) = traces() {
        let out = Command::new(bin)
            .arg("check")
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("failed: 0"), "{text}");
        assert!(text.contains("NVA06C_CTRL_CMD_SET_TIMESLICE"), "{text}");
    } else {
        eprintln!("skipping the trace half: no shared traces");
    }
    let dir = std::env::temp_dir().join(format!("rm-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"op\":\"ioctl\",\"dev\":\"nvidiactl\",\"req\":\"0xc00946d6\",\"nr\":214,\"size\":9}\n",
    )
    .unwrap();
    let out = Command::new(bin).arg("check").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed: 1"));
    let out = Command::new(bin)
        .arg("check")
        .arg(dir.join("missing.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
