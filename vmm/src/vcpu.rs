//! The vCPU run loop: one thread per vCPU, dispatching exits to the PIO/MMIO buses.

use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};

use crate::exit::{ExitLatch, GuestExit};
use crate::stats::{ExitKind, ExitStats};

/// `KVM_SYSTEM_EVENT_*` types.
const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;

/// One vCPU and what its exits are dispatched to.
pub struct Vcpu {
    index: usize,
    fd: VcpuFd,
    io: Arc<IoManager>,
    exit: Arc<ExitLatch>,
    stats: Arc<ExitStats>,
}

impl std::fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcpu")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// What to do after one exit.
enum Next {
    Continue,
    Stop(GuestExit),
}

impl Vcpu {
    /// Wraps a configured vCPU.
    pub fn new(
        index: usize,
        fd: VcpuFd,
        io: Arc<IoManager>,
        exit: Arc<ExitLatch>,
        stats: Arc<ExitStats>,
    ) -> Self {
        Vcpu {
            index,
            fd,
            io,
            exit,
            stats,
        }
    }

    /// Runs until the guest ends or another thread asks to stop (through the latch plus a
    /// signal that interrupts `KVM_RUN`). Whatever ends the guest is reported to the latch.
    pub fn run(mut self) {
        while !self.exit.should_stop() {
            if let Next::Stop(reason) = self.run_once() {
                self.exit.report(reason);
                break;
            }
        }
        tracing::debug!(vcpu = self.index, "vcpu thread done");
    }

    fn rip(&self) -> String {
        match self.fd.get_regs() {
            Ok(regs) => format!("{:#x}", regs.rip),
            Err(_) => "unknown".into(),
        }
    }

    fn died(&self, what: String) -> Next {
        Next::Stop(GuestExit::Died {
            reason: format!("vcpu {} {what} at rip {}", self.index, self.rip()),
        })
    }

    fn run_once(&mut self) -> Next {
        let index = self.index;
        let stats = &self.stats;
        let io = &self.io;
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                stats.record(ExitKind::Intr);
                return Next::Continue;
            }
            Err(e) => return self.died(format!("KVM_RUN failed: {e}")),
        };
        match exit {
            VcpuExit::IoIn(port, data) => {
                stats.record(ExitKind::IoIn);
                if io.pio_read(PioAddress(port), data).is_err() {
                    // Nothing decodes the port: the bus floats high.
                    data.fill(0xff);
                }
                Next::Continue
            }
            VcpuExit::IoOut(port, data) => {
                stats.record(ExitKind::IoOut);
                if io.pio_write(PioAddress(port), data).is_err() {
                    tracing::trace!(port, "write to unclaimed port");
                }
                Next::Continue
            }
            VcpuExit::MmioRead(addr, data) => {
                stats.record(ExitKind::MmioRead);
                if io.mmio_read(MmioAddress(addr), data).is_err() {
                    data.fill(0xff);
                }
                Next::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                stats.record(ExitKind::MmioWrite);
                if io.mmio_write(MmioAddress(addr), data).is_err() {
                    tracing::trace!(addr, "write to unclaimed MMIO");
                }
                Next::Continue
            }
            VcpuExit::Intr => {
                stats.record(ExitKind::Intr);
                Next::Continue
            }
            VcpuExit::Shutdown => {
                stats.record(ExitKind::Shutdown);
                Next::Stop(GuestExit::TripleFault { vcpu: index })
            }
            VcpuExit::SystemEvent(kind, _) => {
                stats.record(ExitKind::SystemEvent);
                match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Next::Stop(GuestExit::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => Next::Stop(GuestExit::Reboot {
                        what: "KVM system event",
                    }),
                    other => self.died(format!("got KVM_EXIT_SYSTEM_EVENT type {other}")),
                }
            }
            VcpuExit::Hlt => {
                stats.record(ExitKind::Hlt);
                self.died("halted (KVM_EXIT_HLT) with nothing to wake it".into())
            }
            VcpuExit::InternalError => {
                stats.record(ExitKind::InternalError);
                // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so the kernel filled the
                // `internal` member of the kvm_run union.
                let internal = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal };
                let n = (internal.ndata as usize).min(internal.data.len());
                self.died(format!(
                    "KVM_EXIT_INTERNAL_ERROR suberror {} data {:x?}",
                    internal.suberror,
                    &internal.data[..n]
                ))
            }
            VcpuExit::FailEntry(reason, cpu) => {
                stats.record(ExitKind::FailEntry);
                self.died(format!(
                    "KVM_EXIT_FAIL_ENTRY hardware reason {reason:#x} on host cpu {cpu}"
                ))
            }
            other => {
                stats.record(ExitKind::Other);
                let what = format!("unexpected exit {other:?}");
                self.died(what)
            }
        }
    }
}
