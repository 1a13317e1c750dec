//! One nested boot of a guest with a vGPU (sim backend, INTx wired): the boot itself (agent's
//! first line, PCI functions, modules, clean power-off), then `vgpu-smi`, the workload,
//! hostile requests, the guest-side bench, a workload killed with SIGKILL followed by a device
//! reset, all with polled completion; then the bench and a workload again with interrupt
//! completion through `uio_pci_generic`. The vGPU is an instance of vgpud inside the harness,
//! attached over vfio-user. Asserts the guest's result lines and vgpud's status after the VM
//! (RM objects left for the GFID: 0).

use guest_tools::driver::Completion;
use guest_tools::report::Record;
use images::{Harness, HarnessRun, HarnessVariant};
use std::time::Duration;
use tests::failure_report;

/// PCI base class 0x06 (bridge), subclass 0x00 (host bridge).
const HOST_BRIDGE_CLASS: u32 = 0x0600;
/// Class code of the vGPU: processing accelerator (0x12), subclass 0, prog-if 0.
const VGPU_CLASS: u32 = 0x12_0000;

#[test]
fn a_guest_drives_the_vgpu_survives_garbage_and_leaves_nothing_behind() {
    let harness = Harness::ensure(HarnessVariant::Vmm).expect("building the guest images");
    let mut run = HarnessRun::new("boot")
        .param("vmm", "vgpu-vmm")
        .param("timeout", "400")
        .param("monitor", "30")
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

    // The boot: the same checks as a guest without a vGPU would get.
    let timing = guest.timing.as_ref();
    check(
        timing
            .is_some_and(|t| !t.timed_out && t.exit_code == Some(0) && t.first_result_us.is_some()),
        &format!("vgpu-vmm did not run the guest to a clean power-off: {timing:?}"),
    );
    check(
        matches!(records.first(), Some(Record::Agent { boottime_ns, scenario, .. })
            if *boottime_ns > 0 && scenario == "vgpu"),
        "the agent's first line (boot time, scenario) is missing",
    );
    let functions: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::PciFunction(f) => Some(f),
            _ => None,
        })
        .collect();
    check(
        functions
            .iter()
            .any(|f| f.bdf == "0000:00:00.0" && f.class >> 8 == HOST_BRIDGE_CLASS),
        "no host bridge (class 0x0600xx) at 0000:00:00.0",
    );
    check(
        functions.iter().any(|f| {
            f.bdf == "0000:00:01.0"
                && (f.vendor, f.device) == (0x10de, 0x7f61)
                && f.class == VGPU_CLASS
                && f.bars.len() >= 2
        }),
        "the vGPU (10de:7f61, class 0x120000, BAR0 and BAR2) is not at 0000:00:01.0",
    );
    for module in guest_tools::scenario::PROBE_MODULES {
        check(
            records
                .iter()
                .any(|r| matches!(r, Record::Module { name, loaded: true, .. } if name == module)),
            &format!("module {module} was not loaded"),
        );
    }
    check(
        guest
            .stderr
            .iter()
            .any(|l| l.starts_with("stats: exit total ")),
        "vgpu-vmm --stats printed no exit total",
    );
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

    let workloads: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Workload(w) => Some(w),
            _ => None,
        })
        .collect();
    check(
        workloads.len() == 2,
        "expected a polled and an irq workload",
    );
    let (workload, irq_workload) = (workloads[0], workloads[1]);
    check(
        workload.completion == Completion::Poll
            && workload.interrupts == 0
            && workload.rounds == 200
            && workload.semaphores_checked == 200 * 8 * 2
            && workload.entries_per_sec > 0.0,
        "the workload did not check 200 rounds of semaphores",
    );
    check(
        irq_workload.completion == Completion::Irq
            && irq_workload.interrupts > 0
            && irq_workload.rounds == 50
            && irq_workload.semaphores_checked == 50 * 8 * 2,
        "the irq workload did not complete its escapes by interrupt and check 50 rounds",
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

    let benches: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Bench(b) => Some(b),
            _ => None,
        })
        .collect();
    check(benches.len() == 2, "expected a polled and an irq bench");
    let (bench, irq_bench) = (benches[0], benches[1]);
    check(
        bench.completion == Completion::Poll
            && bench.interrupts == 0
            && bench.uio_events.is_none()
            && bench.escape.n == 1000
            && bench.doorbell_to_semaphore.n == 200,
        "no polled guest bench",
    );
    // Every escape of the irq bench (300 controls plus the objects' set-up) waited for its
    // own interrupt, and the guest kernel's uio handler counted them.
    check(
        irq_bench.completion == Completion::Irq
            && irq_bench.escape.n == 300
            && irq_bench.interrupts >= 300
            && irq_bench.interrupts == irq_bench.requests
            && irq_bench.missed_interrupts == 0
            && irq_bench
                .uio_events
                .is_some_and(|n| n >= irq_bench.interrupts),
        &format!(
            "irq bench: interrupts {} for {} requests ({} found without one), uio events {:?}",
            irq_bench.interrupts,
            irq_bench.requests,
            irq_bench.missed_interrupts,
            irq_bench.uio_events
        ),
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
    let status = outcome.vgpud_status("guest");
    let instance = status.as_ref().and_then(|s| s.instances.first());
    check(
        instance.is_some(),
        "vgpud reported no instance after the VM",
    );
    let instance = instance.expect("checked");
    check(
        instance.objects == 0 && instance.gfid == 1 && !instance.attached,
        &format!("vgpud still holds objects of the departed VM: {instance:?}"),
    );
    check(
        instance.doorbells_rejected >= 2,
        "vgpud did not count the rejected doorbells",
    );
    check(
        instance.interrupts >= irq_bench.interrupts,
        "vgpud raised fewer INTx interrupts than the guest's irq bench waited for",
    );
    {
        let b = bench;
        let requests = instance.escapes;
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
        eprintln!(
            "guest bench, irq completion: escape p50 {:.1} us p99 {:.1} us; {} interrupts for {} requests \
             (uio events {:?})",
            irq_bench.escape.p50_us,
            irq_bench.escape.p99_us,
            irq_bench.interrupts,
            irq_bench.requests,
            irq_bench.uio_events
        );
    }
}
