//! `vgpu-guest` as a host process (no VM): the static binary attaches a `vgpud` instance
//! through its vfio-user socket (`--vfio-user`) and runs `vgpu-smi`, the workload (polled and
//! with INTx over an eventfd), the hostile requests and the bench there, as a guest would.
//!
//! Oracles: the instance `vgpuctl` defined (GFID, the type's quarter of the sim H200's
//! framebuffer), the workload's own checks of every semaphore and copied byte, the protocol's
//! refusals, and the daemon's status after the process is gone (no objects left, one session
//! more per run).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use guest_tools::driver::Completion;
use guest_tools::report::Record;
use guest_tools::smi::SmiReport;
use guest_tools::workload::WorkloadReport;
use images::static_bins::StaticBins;
use images::vgpud::Vgpud;
use images::Cache;

/// How long vgpud may take to notice that the process closed its socket.
const DEPARTURE: Duration = Duration::from_secs(10);

fn bins() -> StaticBins {
    StaticBins::build(&Cache::from_env().expect("the image cache")).expect("building the binaries")
}

fn guest(bins: &StaticBins, args: &[&str], socket: &Path) -> Output {
    Command::new(&bins.guest)
        .args(args)
        .arg("--vfio-user")
        .arg(socket)
        .output()
        .expect("running vgpu-guest")
}

fn stdout(out: &Output, what: &str, daemon: &Vgpud) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n--- stdout ---\n{text}\n--- stderr ---\n{}\n--- vgpud ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    text
}

/// Waits until the instance is detached; asserts it holds no objects and has seen `sessions`.
fn assert_released(daemon: &Vgpud, sessions: u64, what: &str) {
    let status = daemon
        .status_when(DEPARTURE, |s| s.instances.iter().all(|i| !i.attached))
        .unwrap();
    let i = &status.instances[0];
    assert!(
        !i.attached && i.sessions == sessions && i.objects == 0,
        "after {what}: {i:?}"
    );
}

#[test]
fn a_host_process_drives_an_instance_through_its_socket() {
    let bins = bins();
    let daemon = Vgpud::start(&bins, None).expect("starting vgpud");
    let socket = daemon.new_instance("sim-35c", 9, "solo").unwrap();

    let out = guest(&bins, &["smi", "--json"], &socket);
    let smi: SmiReport = serde_json::from_str(&stdout(&out, "smi", &daemon)).unwrap();
    assert_eq!(smi.vgpu.gfid, 9);
    assert_eq!(
        smi.fb_total_mib,
        143_771 / 4,
        "sim-35c is a quarter of the H200"
    );
    assert_eq!(smi.bus_id, format!("vfio-user:{}", socket.display()));
    assert_released(&daemon, 1, "smi");

    for (run, completion) in [Completion::Poll, Completion::Irq].into_iter().enumerate() {
        let args = [
            "workload",
            "--rounds",
            "40",
            "--json",
            "--completion",
            completion.name(),
        ];
        let out = guest(&bins, &args, &socket);
        let w: WorkloadReport = serde_json::from_str(&stdout(&out, "workload", &daemon)).unwrap();
        assert!(
            w.rounds == 40
                && w.entries > 0
                && w.semaphores_checked == w.entries
                && w.copies_checked > 0,
            "{completion:?}: {w:?}"
        );
        assert_eq!(w.completion, completion);
        if completion == Completion::Irq {
            assert!(w.interrupts > 0, "no escape completed by interrupt: {w:?}");
        }
        assert_released(&daemon, 2 + run as u64, "a workload");
    }

    let out = guest(&bins, &["hostile"], &socket);
    let checks: Vec<_> = stdout(&out, "hostile", &daemon)
        .lines()
        .filter_map(Record::parse_line)
        .map(|r| r.unwrap())
        .filter_map(|r| match r {
            Record::Hostile(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(
        checks.len() >= 5 && checks.iter().all(|c| c.ok),
        "{checks:?}"
    );
    assert_released(&daemon, 4, "hostile");
}

#[test]
fn a_second_process_is_refused_while_one_holds_the_instance_and_bad_sockets_say_why() {
    let bins = bins();
    let daemon = Vgpud::start(&bins, None).expect("starting vgpud");
    let socket = daemon.new_instance("sim-17c", 3, "solo").unwrap();
    let mut first = Command::new(&bins.guest)
        .args(["workload", "--seconds", "20", "--vfio-user"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    daemon
        .status_when(DEPARTURE, |s| s.instances.iter().all(|i| i.attached))
        .unwrap();
    let out = guest(&bins, &["smi"], &socket);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("one client at a time"),
        "a second client: {}: {err}",
        out.status
    );
    // Killed mid-run, the first process leaves nothing behind.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_released(&daemon, 1, "a killed workload");
    let out = guest(&bins, &["smi"], &socket);
    stdout(&out, "smi after the kill", &daemon);

    let missing = daemon.dir().join("no-such.sock");
    let out = guest(&bins, &["smi"], &missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such.sock"),
        "a missing socket: {err}"
    );
}
