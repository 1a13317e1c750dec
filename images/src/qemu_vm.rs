//! Test guests under QEMU 11.1 (TCG, no nesting) with vGPUs attached through QEMU's own
//! vfio-user client: a second VMM, which this project did not write, for vgpud's instances.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guest_tools::report::Record;

use crate::guest::GUEST_CMDLINE;
use crate::static_bins::StaticBins;
use crate::{Cache, Error, Qemu, TestGuest};

/// Guest RAM of each VM, MiB.
const MEMORY_MIB: u32 = 256;

#[derive(Debug)]
/// What VMs under QEMU need: the static binaries (vgpud, vgpuctl), the test guest, QEMU.
pub struct Kit {
    /// vgpud and vgpuctl.
    pub bins: StaticBins,
    /// The guest booted in each VM.
    pub guest: TestGuest,
    /// QEMU 11.1 unpacked from Debian's packages.
    pub qemu: Qemu,
}

impl Kit {
    /// Builds (or finds in `cache`) everything.
    pub fn ensure(cache: &Cache) -> Result<Kit, Error> {
        let _lock = cache.lock()?;
        let bins = StaticBins::build(cache)?;
        let guest = TestGuest::ensure_in(cache, &bins)?;
        let qemu = Qemu::ensure_locked(cache)?;
        Ok(Kit { bins, guest, qemu })
    }
}

/// The console and exit of a VM.
#[derive(Debug)]
pub struct VmOutcome {
    /// Serial console and QEMU's stderr, in order.
    pub console: Vec<String>,
    /// The guest's result lines.
    pub records: Vec<Record>,
    /// QEMU's exit, unless it was killed at the timeout.
    pub exit: Option<ExitStatus>,
}

impl VmOutcome {
    /// The last `n` console lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let from = self.console.len().saturating_sub(n);
        self.console[from..].join("\n")
    }
}

#[derive(Debug)]
/// A running VM; killed on drop.
pub struct QemuVm {
    child: Child,
    console: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl QemuVm {
    /// Boots the test guest with `append` added to its command line and one
    /// `vfio-user-pci` device per socket.
    pub fn boot(kit: &Kit, append: &str, sockets: &[&Path]) -> Result<QemuVm, Error> {
        let mut cmd = kit.qemu.command();
        // vfio-user's client passes guest RAM to the server as fds, so RAM must be a shared
        // memfd (vgpud maps none of it: the vGPU works only in its own window).
        cmd.args(["-M", "q35,memory-backend=mem", "-object"])
            .arg(format!(
                "memory-backend-memfd,id=mem,size={MEMORY_MIB}M,share=on"
            ))
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
            .args(["-m", &MEMORY_MIB.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&kit.guest.vmlinux)
            .arg("-initrd")
            .arg(&kit.guest.initrd)
            .arg("-append")
            .arg(format!("{GUEST_CMDLINE} {append}"));
        for socket in sockets {
            // QEMU's `socket` is a SocketAddress object: only the JSON form can say it.
            cmd.arg("-device").arg(format!(
                r#"{{"driver":"vfio-user-pci","socket":{{"type":"unix","path":"{}"}}}}"#,
                socket.display()
            ));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(kit.qemu.root(), e))?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let console = console.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lock(&console).push(line.trim_end_matches('\r').to_string());
                }
            }));
        }
        Ok(QemuVm {
            child,
            console,
            readers,
        })
    }

    /// The result lines so far.
    pub fn records(&self) -> Vec<Record> {
        parse(&lock(&self.console))
    }

    /// Waits until the guest printed a record `wanted` picks, for at most `timeout`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        wanted: impl Fn(&Record) -> Option<T>,
    ) -> Option<T> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(t) = self.records().iter().find_map(&wanted) {
                return Some(t);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills QEMU with SIGKILL, as `kill -9` does (the guest gets no chance to close anything),
    /// and reaps it; the outcome's exit is the kill's.
    pub fn kill(mut self) -> VmOutcome {
        let _ = self.child.kill();
        self.finish(Duration::from_secs(5))
    }

    /// Waits for QEMU to exit (the guest powers off after its scenario), killing it (SIGKILL)
    /// after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> VmOutcome {
        let start = Instant::now();
        let exit = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break None,
            }
        };
        if exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // QEMU is gone, so its pipes are closed: the readers have read everything.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let console = lock(&self.console).clone();
        VmOutcome {
            records: parse(&console),
            console,
            exit,
        }
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock(console: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    console.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse(lines: &[String]) -> Vec<Record> {
    lines
        .iter()
        .filter_map(|l| Record::parse_line(l)?.ok())
        .collect()
}
