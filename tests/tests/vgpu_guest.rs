//! One nested boot of a guest with a vGPU (sim backend): `vgpu-smi`, the workload, hostile
//! requests, the guest-side bench, and a workload killed with SIGKILL followed by a device reset.
//! Asserts the guest's result lines and the VMM's `--stats` (RM objects left for the GFID: 0).

use guest_tools::report::Record;
use images::{Harness, HarnessRun, HarnessVariant};
use std::time::Duration;
use tests::failure_report;

/// The value of `stats: vgpu0 NAME N` in the VMM's stderr.
fn vgpu_stat(stderr: &[String], name: &str) -> Option<u64> {
    let prefix = format!("stats: vgpu0 {name} ");
    stderr
        .iter()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

#[test]
fn a_guest_drives_the_vgpu_survives_garbage_and_leaves_nothing_behind() {
    let harness = Harness::ensure(HarnessVariant::Vmm).expect("building the guest images");
    let mut run = HarnessRun::new("boot")
        .param("vmm", "vgpu-vmm")
        .param("timeout", "400")
        .guest_scenario("vgpu");
    run.timeout = Duration::from_secs(480);
    let outcome = run.run(&harness).expect("booting the harness");
    let runs = outcome.runs();
    let guest = runs.iter().find(|r| r.label == "guest");
    let check = |ok: bool, what: &str| {
        assert!(ok, "{}", failure_report(what, &outcome, guest));
    };
    check(
        outcome.harness_ok(),
        "the harness did not finish its scenario",
    );
    let guest = guest.expect("checked: the harness relayed the guest");
    let records = &guest.records;
    check(
        matches!(records.last(), Some(Record::ScenarioEnd { ok: true, scenario, .. }) if scenario == "vgpu"),
        "the vgpu scenario did not end successfully",
    );

    let smis: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Smi(s) => Some(s),
            _ => None,
        })
        .collect();
    check(smis.len() == 2, "expected two vgpu-smi reports");
    let smi = smis[0];
    check(
        smi.product_name.contains("H200") && smi.uuid.starts_with("GPU-"),
        "vgpu-smi: GPU name or UUID missing",
    );
    check(smi.vgpu.gfid == 1, "vgpu-smi: GFID is not 1");
    check(
        smi.fb_total_mib > 0 && smi.fb_used_mib == 0,
        "vgpu-smi: framebuffer figures wrong",
    );
    check(
        smi.engines.iter().any(|e| e.starts_with("GR0")),
        "vgpu-smi: no GR0 engine",
    );
    check(
        smis[1].channel_groups.len() == 2
            && smis[1].channel_groups[0].timeslice_us > 0
            && smis[1].channel_groups[0].interleave == "HIGH",
        "vgpu-smi: the workload's channel groups are missing or wrong",
    );

    let workload = records.iter().find_map(|r| match r {
        Record::Workload(w) => Some(w),
        _ => None,
    });
    check(
        workload.is_some_and(|w| {
            w.rounds == 200 && w.semaphores_checked == 200 * 8 * 2 && w.entries_per_sec > 0.0
        }),
        "the workload did not check 200 rounds of semaphores",
    );

    let hostile: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Hostile(c) => Some(c),
            _ => None,
        })
        .collect();
    check(hostile.len() >= 11, "hostile checks missing");
    for c in &hostile {
        check(c.ok, &format!("hostile: {}: {}", c.name, c.detail));
    }

    let bench = records.iter().find_map(|r| match r {
        Record::Bench(b) => Some(b),
        _ => None,
    });
    check(
        bench.is_some_and(|b| b.escape.n == 1000 && b.doorbell_to_semaphore.n == 200),
        "no guest bench",
    );

    let kill = records.iter().find_map(|r| match r {
        Record::KillCleanup(k) => Some(k),
        _ => None,
    });
    check(
        kill.is_some_and(|k| {
            k.signal == Some(9) && k.fb_used_kib_after_kill > 0 && k.fb_used_kib_after_reset == 0
        }),
        "kill -9 then reset: the workload's memory was not left and then freed",
    );
    check(
        vgpu_stat(&guest.stderr, "rm_objects") == Some(0),
        "the VMM's --stats does not report 0 RM objects for the GFID",
    );
    check(
        vgpu_stat(&guest.stderr, "doorbells_rejected").is_some_and(|n| n >= 2),
        "the VMM did not count the rejected doorbells",
    );
    if let Some(b) = bench {
        let requests = vgpu_stat(&guest.stderr, "requests").unwrap_or(0);
        let mmio: u64 = ["mmio_read", "mmio_write"]
            .iter()
            .filter_map(|k| {
                let p = format!("stats: exit {k} ");
                guest
                    .stderr
                    .iter()
                    .find_map(|l| l.strip_prefix(&p)?.trim().parse::<u64>().ok())
            })
            .sum();
        eprintln!(
            "guest bench: escape p50 {:.1} us p99 {:.1} us; doorbell->semaphore p50 {:.1} us p99 {:.1} us; \
             {requests} requests, {mmio} MMIO exits in the boot ({:.2} per request)",
            b.escape.p50_us,
            b.escape.p99_us,
            b.doorbell_to_semaphore.p50_us,
            b.doorbell_to_semaphore.p99_us,
            mmio as f64 / requests.max(1) as f64
        );
    }
}
