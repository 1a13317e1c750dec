//! Two `vgpu-vmm` guests in the nested harness share one vgpud: each streams compute work on
//! its own instance (tenants prod and batch) and counts what it completed per 100 ms of GPU
//! time from its own semaphores' timestamps. Under 3:1 the work splits 75/25, and once the
//! harness rewrites the policy file to 1:1 while both run, 50/50 from one second later, each
//! within 2 points. The oracle is the policy's arithmetic and the guests' own timestamps. The
//! same holds with prod under QEMU 11.1 (its `vfio-user-pci`, KVM inside the harness) beside
//! batch under `vgpu-vmm`: two VMMs, one GPU, one policy.

use guest_tools::report::Record;
use guest_tools::workload::{paired_work, StreamReport};
use images::{Harness, HarnessRun, HarnessVariant};
use std::time::Duration;
use tests::failure_report;

const SEC: u64 = 1_000_000_000;
/// `vgpu-vmm`'s exit status when its guest triple-faults (its kernel crashed; `vgpu-vmm --help`).
const TRIPLE_FAULT: i32 = 81;
/// Harness boots tried before an emulator flake counts as a failure.
const MAX_ATTEMPTS: u32 = 6;

fn shares(prod: &StreamReport, batch: &StreamReport, from: u64, to: u64) -> Vec<f64> {
    paired_work(prod, batch, from, to, SEC)
        .into_iter()
        .map(|(_, a, b)| a as f64 / (a + b).max(1) as f64)
        .collect()
}

/// Two `vgpu-vmm` guests in one two-vCPU harness share one vgpud. Not in CI: on 2026-12-04 a
/// clean-clone CI run saw all six boots flake under nested TCG (an L1 reset three times, an L2
/// death in early boot, an L2 triple fault), and an earlier run three of three; the same split
/// and reload run in CI without nesting in `tests/tests/qemu_vfio_user.rs` (two QEMU TCG VMs on
/// one vgpud). Run it with `cargo nextest run -p tests --test nested_share --run-ignored all`.
#[test]
#[ignore = "nested TCG flake: the two-vCPU harness crashes in most boots on a loaded host; run by hand"]
fn two_nested_vms_split_the_gpu_by_policy_and_follow_a_reload() {
    split_and_reload(HarnessVariant::Vmm, "vgpu-vmm");
}

/// A QEMU guest (KVM in the harness) and a `vgpu-vmm` guest share one vgpud. Not in CI: with
/// the harness's CPUs contended, QEMU's nested guest died in early boot (no console output,
/// QEMU exiting 0) in all three attempts of one run of three, and a slow second boot left too
/// little overlap in another; the `vgpu-vmm` pair passed every one of those runs. Run it with
/// `cargo nextest run -p tests --test nested_share --run-ignored all`.
#[test]
#[ignore = "nested TCG flake: QEMU's L2 guest dies in early boot under load; run by hand"]
fn a_qemu_vm_and_a_vgpu_vmm_vm_split_the_gpu_by_policy_and_follow_a_reload() {
    split_and_reload(HarnessVariant::WithVfioUserQemu, "qemu");
}

/// The harness's share scenario with prod under `prod_vmm` and batch under `vgpu-vmm`.
fn split_and_reload(variant: HarnessVariant, prod_vmm: &str) {
    let harness = Harness::ensure(variant).expect("building the guest images");
    let mut run = HarnessRun::new("share")
        .param("prod_vmm", prod_vmm)
        .param("timeout", "150")
        .param("switch_after", "4")
        // Long enough that the streams overlap for seconds after the reload even though a
        // QEMU guest boots about ten seconds later than its `vgpu-vmm` neighbour.
        .param("guest_append", "vgpu.scenario=share vgpu.stream_seconds=26");
    // One harness vCPU per guest: two nested guests on one vCPU starve each other.
    run.cpus = 2;
    // A good boot takes 40-60 s on an idle two-core host; a hung one is cut off well before
    // six of them could outlast CI's patience.
    run.timeout = Duration::from_secs(240);
    // The two-vCPU harness under TCG now and then crashes: a nested guest's (L2) kernel
    // double- or triple-faults (in its entry code in early boot, once right after its stream),
    // or the harness kernel (L1) itself resets without a word (no end record, QEMU exits 0),
    // or it stops making progress (a CI run saw one boot spin a host core for 480 s, no end
    // record, and the next boot pass).
    // Those are emulator flakes, not share results: such a run is retried and says so. On an
    // idle two-core host about two attempts in five flake (each dies within 20 s); a CI run once
    // saw three in a row, so up to six attempts are made.
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let outcome = run.run(&harness).expect("booting the harness");
        let records = outcome.harness_records();
        let guest_died_early = records.iter().any(|r| {
            matches!(r, Record::HarnessEnd { error: Some(e), .. }
                if e == "a guest ended before both streams started")
        });
        let harness_reset = !records
            .iter()
            .any(|r| matches!(r, Record::HarnessEnd { .. }))
            && outcome.runs().iter().all(|r| r.records.is_empty());
        let guest_crashed = outcome.runs().iter().any(|r| {
            r.timing
                .as_ref()
                .is_some_and(|t| t.exit_code == Some(TRIPLE_FAULT))
        });
        let harness_hung = outcome.timed_out
            && !records
                .iter()
                .any(|r| matches!(r, Record::HarnessEnd { .. }));
        let flake = if harness_reset {
            "the harness kernel reset before the streams started"
        } else if harness_hung {
            "the harness hung (no end record before the timeout)"
        } else if guest_died_early {
            "a guest died before the streams started"
        } else if guest_crashed {
            "a guest kernel triple-faulted"
        } else {
            break outcome;
        };
        if attempts == MAX_ATTEMPTS {
            break outcome;
        }
        eprintln!(
            "attempt {attempts}: {flake}; the console:\n{}",
            outcome.console_tail(30)
        );
    };
    let runs = outcome.runs();
    let find = |label: &str| runs.iter().find(|r| r.label == label);
    let check = |ok: bool, what: &str| {
        assert!(
            ok,
            "{}",
            failure_report(what, &outcome, find("batch").or(find("prod")))
        );
    };
    check(
        outcome.harness_ok(),
        "the harness did not finish its scenario",
    );
    let mut streams = Vec::new();
    let mut started = Vec::new();
    for label in ["prod", "batch"] {
        let run = find(label);
        check(run.is_some(), &format!("no output from the {label} guest"));
        let run = run.expect("checked");
        let records = &run.records;
        check(
            records
                .iter()
                .any(|r| matches!(r, Record::ScenarioEnd { ok: true, .. }))
                && run.timing.as_ref().is_some_and(|t| t.exit_code == Some(0)),
            &format!(
                "the {label} guest did not end its scenario cleanly: {:?}",
                run.timing
            ),
        );
        let stream = records.iter().find_map(|r| match r {
            Record::Stream(s) => Some(s.clone()),
            _ => None,
        });
        let start = records.iter().find_map(|r| match r {
            Record::StreamStart { gpu_ns } => Some(*gpu_ns),
            _ => None,
        });
        check(
            stream.is_some() && start.is_some(),
            &format!("the {label} guest reported no stream"),
        );
        streams.push(stream.expect("checked"));
        started.push(start.expect("checked"));
    }
    let status = |label: &str| {
        outcome
            .vgpud_status(label)
            .unwrap_or_else(|| panic!("no vgpud status {label}"))
    };
    let (written, reloaded) = (
        status("written").gpu_time_ns,
        status("reloaded").gpu_time_ns,
    );
    let (prod, batch) = (&streams[0], &streams[1]);
    let both = started.iter().copied().max().unwrap_or_default();
    let end = prod.last_gpu_ns.min(batch.last_gpu_ns);
    let before = shares(prod, batch, both + SEC / 5, written);
    let after = shares(prod, batch, reloaded + SEC, end);
    eprintln!("prod ({prod_vmm}) in the nested harness: 3:1 {before:.3?}, after the reload to 1:1 {after:.3?}");
    check(
        before.len() >= 2 && after.len() >= 2,
        &format!("too few whole seconds side by side: {before:?} {after:?}"),
    );
    for s in &before {
        check((s - 0.75).abs() <= 0.02, &format!("3:1 gave {before:?}"));
    }
    for s in &after {
        check((s - 0.5).abs() <= 0.02, &format!("1:1 gave {after:?}"));
    }
    let last = status("share");
    check(
        last.instances.len() == 2
            && last
                .instances
                .iter()
                .all(|i| i.objects == 0 && i.errors == 0),
        &format!("instances after both VMs: {:?}", last.instances),
    );
}
