//! Boots the test guest under `vgpu-vmm` inside the nested-KVM harness and checks what its agent
//! reports. Builds the images first (downloads Debian's kernels on a cold cache).

use guest_tools::report::Record;
use images::{Harness, HarnessRun, HarnessVariant};
use std::time::Duration;
use tests::failure_report;

/// PCI base class 0x06 (bridge), subclass 0x00 (host bridge).
const HOST_BRIDGE_CLASS: u32 = 0x0600;

#[test]
fn test_guest_boots_under_vgpu_vmm_and_enumerates_pci() {
    let harness = Harness::ensure(HarnessVariant::Vmm).expect("building the guest images");
    let mut run = HarnessRun::new("boot")
        .param("vmm", "vgpu-vmm")
        .param("timeout", "150");
    run.timeout = Duration::from_secs(240);
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

    let timing = guest.timing.as_ref();
    check(timing.is_some(), "no timed_run record for the guest");
    let timing = timing.expect("checked");
    check(!timing.timed_out, "vgpu-vmm did not finish in time");
    check(
        timing.exit_code == Some(0),
        &format!(
            "vgpu-vmm exit status {:?}, want 0 (guest powered off)",
            timing.exit_code
        ),
    );

    let records = &guest.records;
    check(
        matches!(records.first(), Some(Record::Agent { boottime_ns, scenario, .. })
            if *boottime_ns > 0 && scenario == "probe"),
        "the agent's first line (boot time, scenario) is missing",
    );
    check(
        timing.first_result_us.is_some(),
        "timed-run saw no result line from the guest",
    );
    let host_bridge = records.iter().any(|r| {
        matches!(r, Record::PciFunction(f)
            if f.bdf == "0000:00:00.0" && f.class >> 8 == HOST_BRIDGE_CLASS)
    });
    check(
        host_bridge,
        "no host bridge (class 0x0600xx) at 0000:00:00.0",
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
        matches!(records.last(), Some(Record::ScenarioEnd { ok: true, .. })),
        "the probe scenario did not end successfully",
    );
    check(
        guest
            .stderr
            .iter()
            .any(|l| l.starts_with("stats: exit total ")),
        "vgpu-vmm --stats printed no exit total",
    );
}
