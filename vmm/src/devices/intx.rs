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
        let level =
            self.device_level.load(Ordering::SeqCst) && !self.disabled.load(Ordering::SeqCst);
        let mut driven = self.driven.lock().unwrap_or_else(|e| e.into_inner());
        if *driven != level {
            *driven = level;
            self.irq.set_level(self.gsi, level);
        }
    }
}
