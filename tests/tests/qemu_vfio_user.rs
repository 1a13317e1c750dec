//! QEMU 11.1's own vfio-user client (`-device vfio-user-pci`) attached to vgpud's instances on
//! this host: a VMM this project did not write drives the vGPU (`vgpu-smi` and the workload
//! in the guest), an instance serves the next VM after the first powers off, and two VMs
//! share one GPU by the policy file, 3:1 and then 1:1 after a reload while both run, and a VM
//! killed with SIGKILL has all its objects freed within a second while the other runs on. The
//! whole `vgpu` scenario (hostile requests, a killed client, escapes completed by INTx through
//! QEMU's vfio-user interrupt path) runs in a QEMU guest as it does under `vgpu-vmm`.
//!
//! The shares' oracle is the policy's arithmetic and the guests' own semaphore timestamps:
//! each guest counts the work it completed per 100 ms of GPU time.

use std::time::{Duration, Instant};

use guest_tools::driver::Completion;
use guest_tools::report::Record;
use guest_tools::workload::{paired_work, StreamReport};
use images::qemu_vm::{Kit, QemuVm, VmOutcome};
use images::vgpud::Vgpud;
use images::Cache;
use mdev::control::{InstanceStatus, Status};

const SEC: u64 = 1_000_000_000;
/// A VM's whole run, boot to power-off (about 6 s alone under TCG).
const VM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long vgpud may take to notice that a VM is gone.
const DEPARTURE: Duration = Duration::from_secs(10);

fn kit() -> Kit {
    Kit::ensure(&Cache::from_env().expect("the image cache")).expect("building the images")
}

fn policy(prod: u32, batch: u32) -> String {
    format!(
        "policy = \"weighted\"\n[[tenant]]\nname = \"prod\"\nweight = {prod}\n\
         [[tenant]]\nname = \"batch\"\nweight = {batch}\n"
    )
}

/// Asserts that the VM ran its scenario to a clean power-off.
fn assert_clean(vm: &VmOutcome, daemon: &Vgpud, what: &str) {
    let ended = vm
        .records
        .iter()
        .any(|r| matches!(r, Record::ScenarioEnd { ok: true, .. }));
    assert!(
        ended && vm.exit.is_some_and(|e| e.success()),
        "{what}: no clean scenario end (exit {:?})\n--- console ---\n{}\n--- vgpud ---\n{}",
        vm.exit,
        vm.tail(40),
        daemon.log()
    );
}

#[test]
fn qemu_drives_a_vgpud_instance_and_the_instance_serves_the_next_vm() {
    let kit = kit();
    let daemon = Vgpud::start(&kit.bins, None).expect("starting vgpud");
    let socket = daemon.new_instance("sim-35c", 7, "solo").unwrap();
    for round in 1..=2u64 {
        let vm = QemuVm::boot(&kit, "vgpu.scenario=demo", &[&socket])
            .unwrap()
            .finish(VM_TIMEOUT);
        assert_clean(&vm, &daemon, &format!("VM {round}"));
        let smi = vm.records.iter().find_map(|r| match r {
            Record::Smi(s) => Some(s),
            _ => None,
        });
        let smi = smi.unwrap_or_else(|| panic!("no vgpu-smi record\n{}", vm.tail(40)));
        // The guest read its GFID and framebuffer through RM controls: those of the instance
        // vgpuctl defined (a quarter of the sim H200's 143771 MiB).
        assert_eq!(smi.vgpu.gfid, 7);
        assert_eq!(smi.fb_total_mib, 143_771 / 4);
        let workload = vm.records.iter().find_map(|r| match r {
            Record::Workload(w) => Some(w),
            _ => None,
        });
        let w = workload.unwrap_or_else(|| panic!("no workload record\n{}", vm.tail(40)));
        assert!(
            w.entries > 0 && w.semaphores_checked == w.entries && w.copies_checked > 0,
            "{w:?}"
        );
        let status = daemon
            .status_when(DEPARTURE, |s| s.instances.iter().all(|i| !i.attached))
            .unwrap();
        let i = &status.instances[0];
        assert!(
            !i.attached && i.sessions == round && i.objects == 0 && i.errors == 0,
            "after VM {round}: {i:?}"
        );
    }
}

/// Prod's share of the work both VMs completed in each whole second of GPU time in
/// `[from, to)`.
fn shares(prod: &StreamReport, batch: &StreamReport, from: u64, to: u64) -> Vec<f64> {
    paired_work(prod, batch, from, to, SEC)
        .into_iter()
        .map(|(_, wa, wb)| wa as f64 / (wa + wb).max(1) as f64)
        .collect()
}

#[test]
fn two_qemu_vms_split_the_gpu_by_policy_and_follow_a_reload() {
    let kit = kit();
    let daemon = Vgpud::start(&kit.bins, Some(&policy(3, 1))).expect("starting vgpud");
    let sockets = [
        daemon.new_instance("sim-35c", 1, "prod").unwrap(),
        daemon.new_instance("sim-35c", 2, "batch").unwrap(),
    ];
    // Long enough that both streams overlap by several seconds after the reload even when a
    // loaded host boots one VM seconds after the other.
    let append = "vgpu.scenario=share vgpu.stream_seconds=12";
    let vms: Vec<QemuVm> = sockets
        .iter()
        .map(|s| QemuVm::boot(&kit, append, &[s]).unwrap())
        .collect();
    let mut started = Vec::new();
    for vm in &vms {
        let at = vm.wait_for(VM_TIMEOUT, |r| match r {
            Record::StreamStart { gpu_ns } => Some(*gpu_ns),
            _ => None,
        });
        started.push(at.unwrap_or_else(|| panic!("a stream did not start\n{}", daemon.log())));
    }
    let both = started.iter().copied().max().unwrap_or_default();
    std::thread::sleep(Duration::from_secs(3));
    let written = daemon.status().unwrap().gpu_time_ns;
    daemon.set_policy(&policy(1, 1)).unwrap();
    let reloaded = daemon.status().unwrap().gpu_time_ns;

    let outcomes: Vec<VmOutcome> = vms.into_iter().map(|vm| vm.finish(VM_TIMEOUT)).collect();
    let mut streams = Vec::new();
    for (vm, name) in outcomes.iter().zip(["prod", "batch"]) {
        assert_clean(vm, &daemon, name);
        let stream = vm.records.iter().find_map(|r| match r {
            Record::Stream(s) => Some(s.clone()),
            _ => None,
        });
        streams.push(stream.unwrap_or_else(|| panic!("{name}: no stream record")));
    }
    let (prod, batch) = (&streams[0], &streams[1]);
    let end = prod.last_gpu_ns.min(batch.last_gpu_ns);
    let before = shares(prod, batch, both + SEC / 5, written);
    let after = shares(prod, batch, reloaded + SEC, end);
    eprintln!("prod's share: 3:1 {before:.3?}, after the reload to 1:1 {after:.3?}");
    assert!(
        before.len() >= 2 && after.len() >= 2,
        "{before:?} {after:?}"
    );
    for s in &before {
        assert!((s - 0.75).abs() <= 0.03, "3:1 gave {before:?}");
    }
    for s in &after {
        assert!((s - 0.5).abs() <= 0.03, "1:1 gave {after:?}");
    }
    let status = daemon
        .status_when(DEPARTURE, |s| s.instances.iter().all(|i| !i.attached))
        .unwrap();
    assert!(status.policy.is_some_and(|p| p.contains("prod weight 1")));
    for i in &status.instances {
        assert!(!i.attached && i.objects == 0, "{i:?}");
    }
}

/// The instance of tenant `name` (status lists instances by UUID, which is random).
fn of<'s>(status: &'s Status, name: &str) -> &'s InstanceStatus {
    status
        .instances
        .iter()
        .find(|i| i.tenant == name)
        .unwrap_or_else(|| panic!("no instance of tenant {name}: {status:?}"))
}

#[test]
fn a_vm_killed_mid_stream_is_freed_within_a_second_and_its_neighbour_runs_on() {
    let kit = kit();
    let daemon = Vgpud::start(&kit.bins, Some(&policy(1, 1))).expect("starting vgpud");
    let sockets = [
        daemon.new_instance("sim-35c", 1, "prod").unwrap(),
        daemon.new_instance("sim-35c", 2, "batch").unwrap(),
    ];
    let prod = QemuVm::boot(
        &kit,
        "vgpu.scenario=share vgpu.stream_seconds=20",
        &[&sockets[0]],
    )
    .unwrap();
    let batch = QemuVm::boot(
        &kit,
        "vgpu.scenario=share vgpu.stream_seconds=60",
        &[&sockets[1]],
    )
    .unwrap();
    for vm in [&prod, &batch] {
        let started = vm.wait_for(VM_TIMEOUT, |r| match r {
            Record::StreamStart { gpu_ns } => Some(*gpu_ns),
            _ => None,
        });
        assert!(
            started.is_some(),
            "a stream did not start\n{}",
            daemon.log()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let held = of(&daemon.status().unwrap(), "batch").objects;
    assert!(held > 0, "batch holds no objects mid-stream");
    let killed_at = daemon.status().unwrap().gpu_time_ns;
    let t0 = Instant::now();
    let killed = batch.kill();
    assert!(killed.exit.is_some_and(|e| !e.success()));
    let status = daemon
        .status_when(DEPARTURE, |s| {
            let b = of(s, "batch");
            !b.attached && b.objects == 0
        })
        .unwrap();
    let freed_in = t0.elapsed();
    let b = of(&status, "batch");
    eprintln!("batch held {held} objects; freed in {freed_in:?}: {b:?}");
    assert!(!b.attached && b.objects == 0, "{b:?}");
    assert!(
        freed_in <= Duration::from_secs(1),
        "freed after {freed_in:?}"
    );

    // The neighbour finishes its stream, every semaphore checked, and runs after the kill.
    let outcome = prod.finish(VM_TIMEOUT);
    assert_clean(&outcome, &daemon, "prod");
    let stream = outcome.records.iter().find_map(|r| match r {
        Record::Stream(s) => Some(s.clone()),
        _ => None,
    });
    let stream = stream.expect("prod: no stream record");
    assert!(
        stream.last_gpu_ns > killed_at + 2 * SEC,
        "prod stopped at the kill: {stream:?}"
    );
    let last = daemon
        .status_when(DEPARTURE, |s| !of(s, "prod").attached)
        .unwrap();
    let p = of(&last, "prod");
    assert!(p.objects == 0 && p.errors == 0, "{p:?}");
}

#[test]
fn a_qemu_guest_runs_the_vgpu_scenario_with_interrupt_completion() {
    let kit = kit();
    let daemon = Vgpud::start(&kit.bins, None).expect("starting vgpud");
    let socket = daemon.new_instance("sim-35c", 3, "solo").unwrap();
    let vm = QemuVm::boot(&kit, "vgpu.scenario=vgpu", &[&socket])
        .unwrap()
        .finish(VM_TIMEOUT * 2);
    assert_clean(&vm, &daemon, "the vgpu scenario");
    let hostile: Vec<_> = vm
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Hostile(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(hostile.len() >= 11, "hostile checks missing");
    for c in hostile {
        assert!(c.ok, "hostile: {}: {}", c.name, c.detail);
    }
    assert!(
        vm.records
            .iter()
            .any(|r| matches!(r, Record::KillCleanup(_))),
        "no kill-cleanup record"
    );
    let irq = vm.records.iter().find_map(|r| match r {
        Record::Bench(b) if b.completion == Completion::Irq => Some(b),
        _ => None,
    });
    let irq = irq.unwrap_or_else(|| panic!("no irq bench\n{}", vm.tail(40)));
    eprintln!(
        "irq bench under QEMU: escape p50 {:.0} µs, p99 {:.0} µs; {} interrupts for {} requests, uio {:?}",
        irq.escape.p50_us, irq.escape.p99_us, irq.interrupts, irq.requests, irq.uio_events
    );
    // Every escape waited for its own interrupt: vgpud raised it on the INTx eventfd QEMU gave
    // it, QEMU injected it, the guest kernel's uio handler counted it.
    assert!(
        irq.escape.n == 300
            && irq.interrupts == irq.requests
            && irq.missed_interrupts == 0
            && irq.uio_events.is_some_and(|n| n >= irq.interrupts),
        "{irq:?}"
    );
    let irq_workload = vm.records.iter().find_map(|r| match r {
        Record::Workload(w) if w.completion == Completion::Irq => Some(w),
        _ => None,
    });
    let w = irq_workload.expect("no irq workload");
    assert!(
        w.interrupts > 0 && w.semaphores_checked == 50 * 8 * 2,
        "{w:?}"
    );
}
