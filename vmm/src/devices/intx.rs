//! Level-triggered INTx for PCI functions: the device's line, Command.INTx_Disable, and the GSI
//! the DSDT's `_PRT` routes the slot to ([`crate::acpi::pci_intx_gsi`]), driven through
//! `KVM_IRQ_LINE`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

/// Drives a GSI of the guest's IOAPIC (a trait so interrupt routing is testable without KVM).
pub trait IrqLevel: Send + Sync {
    /// Sets the input `gsi` to `level`.
    fn set_level(&self, gsi: u32, level: bool);
}

/// [`IrqLevel`] through `KVM_IRQ_LINE`.
#[derive(Debug)]
pub struct KvmIrq(pub Arc<VmFd>);

impl IrqLevel for KvmIrq {
    fn set_level(&self, gsi: u32, level: bool) {
        if let Err(e) = self.0.set_irq_line(gsi, level) {
            tracing::warn!(gsi, level, "KVM_IRQ_LINE failed: {e}");
        }
    }
}

/// A function's INTx state: the device's line, masked by Command.INTx_Disable, driving its
/// GSI whenever the two change.
pub struct Intx {
    irq: Box<dyn IrqLevel>,
    gsi: u32,
    device_level: AtomicBool,
    disabled: AtomicBool,
    driven: Mutex<bool>,
}

impl std::fmt::Debug for Intx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intx")
            .field("gsi", &self.gsi)
            .field("device_level", &self.device_level)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl Intx {
    /// GSI `gsi` through `irq`, deasserted and not disabled.
    pub fn new(irq: Box<dyn IrqLevel>, gsi: u32) -> Self {
        Self {
            irq,
            gsi,
            device_level: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            driven: Mutex::new(false),
        }
    }

    /// The device's line.
    pub fn device_level(&self) -> bool {
        self.device_level.load(Ordering::SeqCst)
    }

    /// The device drove its line to `level`.
    pub fn set_device_level(&self, level: bool) {
        self.device_level.store(level, Ordering::SeqCst);
        self.update();
    }

    /// The guest set or cleared Command.INTx_Disable.
    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::SeqCst);
        self.update();
    }

    fn update(&self) {
        // The level is read under the lock: computed before it, a vCPU clearing INTx_Disable
        // and the device raising its line at once could each drive a stale level, the last
        // one low, and the interrupt would be lost.
        let mut driven = self.driven.lock().unwrap_or_else(|e| e.into_inner());
        let level =
            self.device_level.load(Ordering::SeqCst) && !self.disabled.load(Ordering::SeqCst);
        if *driven != level {
            *driven = level;
            self.irq.set_level(self.gsi, level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Records the level last driven.
    struct Last(Arc<AtomicU32>);

    impl IrqLevel for Last {
        fn set_level(&self, _gsi: u32, level: bool) {
            // A syscall, as KVM_IRQ_LINE is: the other thread runs into the lock meanwhile.
            std::thread::yield_now();
            self.0.store(u32::from(level), Ordering::SeqCst);
        }
    }

    #[test]
    fn the_driven_level_follows_line_and_disable_from_two_threads() {
        for _ in 0..300 {
            let last = Arc::new(AtomicU32::new(0));
            let intx = Arc::new(Intx::new(Box::new(Last(last.clone())), 11));
            intx.set_disabled(true);
            let (a, b) = (intx.clone(), intx.clone());
            // A vCPU unmasking while the device raises its line: both end enabled and high.
            let t1 = std::thread::spawn(move || {
                for i in 0..100 {
                    a.set_disabled(i % 2 == 0);
                }
            });
            let t2 = std::thread::spawn(move || {
                for i in 0..101 {
                    b.set_device_level(i % 2 == 0);
                }
            });
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(last.load(Ordering::SeqCst), 1, "the interrupt was lost");
        }
    }
}
