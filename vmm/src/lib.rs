//! `vmm`: the pieces of `vgpu-vmm`, a rust-vmm based VMM that runs one Linux guest per process.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`vm::Vm`]: parse the command line
//! ([`cli::Args`]), build the VM, run it, and turn the way the guest ended ([`exit::GuestExit`])
//! into the process exit status.
//!
//! # Exit statuses
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | the guest powered off (ACPI S5 through the FADT sleep control register) |
//! | 80 | the guest asked for a reboot (i8042 command 0xFE, or the ACPI reset register) |
//! | 81 | triple fault / `KVM_EXIT_SHUTDOWN` (what the guest's `reboot=t` produces) |
//! | 1 | the VMM failed, or the guest died (internal error, failed entry, unknown exit); one line on stderr says why, with the exit reason and RIP where known |
//! | 2 | usage error (bad flag or value) |
//!
//! # Guest platform
//!
//! * RAM from GPA 0, split around the 32-bit PCI hole ([`memory::layout`]).
//! * In-kernel LAPIC/IOAPIC/PIC and PIT; COM1 (0x3f8, IRQ 4 through an irqfd); an i8042 that
//!   emulates the controller command byte and the 0xFE reset; CMOS ports that read 0.
//! * A PCI root bus with type-1 config access (0xCF8/0xCFC) and a host bridge at 00:00.0; more
//!   functions are added through [`pci::PciFunction`] and [`pci::PciBus::add_function`].
//! * ACPI: RSDP/XSDT/FADT (hardware-reduced, sleep control/status and reset registers at I/O
//!   ports 0x600-0x602), DSDT (`_S5_`, `PCI0` host bridge with `_CRS` and a `_PRT` routing every
//!   slot's INTx to GSIs 16-23), MADT (one LAPIC per vCPU, the IOAPIC).
//! * With `--vgpu`: a vGPU instance served by vgpud over vfio-user ([`devices::vfio_user`]), at
//!   the next free slot from 00:01.0: BAR0 accesses forwarded to vgpud, BAR2 a KVM slot over the
//!   window memfd vgpud sends, which follows the BAR, polling or INTx.
//! * With `--disk`: a virtio-blk function per image ([`devices::virtio_blk`]) on the virtio-pci
//!   modern transport ([`devices::virtio_pci`]), INTx, requests served on the notifying vCPU.
//!
//! The guest command line this platform wants: `console=ttyS0 reboot=t panic=-1 quiet`
//! (no `pci=off`, no `acpi=off`). `poweroff -f` in the guest ends the VMM with 0; `reboot -f`
//! ends it with 81 under `reboot=t` (triple fault) and with 80 under `reboot=a` (ACPI reset
//! register) or `reboot=k` (i8042). The ACPI platform is hardware-reduced, so the guest has no
//! legacy PIC and takes COM1's IRQ from the DSDT; the i8042 and the RTC are not enumerated (the
//! guest's i8042 and rtc_cmos drivers do not probe, which keeps boot fast).
//!
//! # Adding devices
//!
//! [`vm::Vm::new`] builds the platform; PCI functions are added with
//! [`pci::PciBus::add_function`] on [`vm::Vm::pci_bus`] before [`vm::Vm::run`] (see the
//! [`pci`] module for the contract); [`vm::Vm::vm_fd`] gives access to irqfds/ioeventfds.
#![deny(missing_docs)]

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod cpu;
pub mod devices;
pub mod events;
pub mod exit;
pub mod memory;
pub mod pci;
pub mod stats;
pub mod vcpu;
pub mod vm;
