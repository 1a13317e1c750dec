//! The test agent: init of the test guest. It reports, runs its scenario and powers off.

use crate::report::Record;
use crate::scenario::Scenario;
use std::ffi::CString;

/// How the agent runs.
#[derive(Debug, Clone, Copy)]
pub struct AgentMode {
    /// Running as PID 1: mount the pseudo filesystems and power the machine off at the end.
    pub as_init: bool,
}

/// Runs the agent: first line, scenario, end line. As init it then powers off and never returns;
/// otherwise it returns whether the scenario succeeded.
pub fn run(mode: AgentMode) -> bool {
    let boottime_ns = boottime_ns();
    if mode.as_init {
        mount_pseudo_filesystems();
    }
    let cmdline = crate::cmdline::read_proc();
    let scenario = Scenario::from_cmdline(&cmdline);
    Record::Agent {
        version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: crate::cmdline::param(&cmdline, crate::scenario::SCENARIO_PARAM)
            .unwrap_or_else(|| Scenario::Probe.name().to_string()),
        boottime_ns,
    }
    .emit();
    let (name, result) = match scenario {
        Ok(s) => (s.name().to_string(), s.run()),
        Err(e) => ("unknown".to_string(), Err(e)),
    };
    let ok = result.is_ok();
    Record::ScenarioEnd {
        scenario: name,
        ok,
        error: result.err().map(|e| e.to_string()),
    }
    .emit();
    if mode.as_init {
        power_off();
    }
    ok
}

/// CLOCK_BOOTTIME in nanoseconds: time since the guest kernel started, suspend included.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Mounts proc, sysfs and devtmpfs; failures are reported on the console, not fatal.
fn mount_pseudo_filesystems() {
    for (fstype, target) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        let _ = std::fs::create_dir_all(target);
        let src = CString::new(fstype).expect("no NUL");
        let dst = CString::new(target).expect("no NUL");
        // SAFETY: all pointers are valid NUL-terminated strings; data is null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EBUSY) {
                eprintln!("vgpu-guest: mount {fstype} on {target}: {err}");
            }
        }
    }
}

/// Lets the console send what it holds, syncs and powers the machine off; never returns.
fn power_off() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: plain syscalls without pointers. tcdrain waits until the console's UART has sent
    // every byte written so far: a VMM whose serial port costs an exit per byte (QEMU in a
    // nested guest) would otherwise lose the tail of a long result line at power-off.
    unsafe {
        libc::tcdrain(libc::STDOUT_FILENO);
        libc::tcdrain(libc::STDERR_FILENO);
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    eprintln!(
        "vgpu-guest: power off failed: {}",
        std::io::Error::last_os_error()
    );
    loop {
        // SAFETY: pause has no arguments; init must not exit.
        unsafe { libc::pause() };
    }
}
