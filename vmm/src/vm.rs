//! The VM: KVM objects, guest memory, the platform devices, and the run loop.
//!
//! [`Vm::new`] builds the platform (RAM, in-kernel irqchip and PIT, buses and devices, PCI root
//! bus, ACPI tables) and configures the vCPUs' CPUID, MSRs and LAPIC. [`Vm::load_linux`] loads a
//! kernel and puts the boot vCPU at its 64-bit entry. [`Vm::run`] starts one thread per vCPU,
//! runs the event loop until the guest ends, stops every vCPU and returns how it ended.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::load_cmdline;
use vm_device::bus::{MmioAddress, MmioRange, PioAddress, PioRange};
use vm_device::device_manager::{IoManager, MmioManager, PioManager};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::acpi::{self, AcpiConfig, AcpiError};
use crate::boot::e820::e820_map;
use crate::boot::zero_page::ZeroPageConfig;
use crate::boot::{self, BootError, KernelFormat};
use crate::cpu::{cpuid, msr, regs, CpuError};
use crate::devices::cmos::{CMOS_PORT, CMOS_PORTS_LEN};
use crate::devices::i8042::{I8042_COMMAND_PORT, I8042_DATA_PORT};
use crate::devices::serial::{COM1_IRQ, COM1_PORT, COM1_PORTS_LEN};
use crate::devices::shutdown::{PM_PORT, PM_PORTS_LEN};
use crate::devices::{AcpiPmPorts, Cmos, SerialDevice, I8042};
use crate::events::{ConsoleInput, ExitWatcher};
use crate::exit::{ExitLatch, GuestExit};
use crate::memory::{self, layout, MemoryError, RamRange};
use crate::pci::{self, HostBridge, PciBus, PciError};
use crate::stats::ExitStats;
use crate::vcpu::Vcpu;

/// Most vCPUs supported (APIC ids are 8 bits, and the MADT uses one LAPIC entry per vCPU).
pub const MAX_VCPUS: u8 = 64;
/// How long stopping vCPUs may take before the VMM gives up on joining them.
const VCPU_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the serial console's output goes.
pub enum ConsoleOutput {
    /// The VMM's stdout.
    Stdout,
    /// A file (created or truncated).
    File(PathBuf),
    /// Any writer (tests).
    Writer(Box<dyn Write + Send>),
}

impl std::fmt::Debug for ConsoleOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsoleOutput::Stdout => write!(f, "Stdout"),
            ConsoleOutput::File(p) => write!(f, "File({})", p.display()),
            ConsoleOutput::Writer(_) => write!(f, "Writer"),
        }
    }
}

/// Errors from building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A KVM ioctl failed.
    #[error("{what} failed")]
    Kvm {
        /// The operation.
        what: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The vCPU count is out of range.
    #[error("{wanted} vCPUs requested, this host/VMM supports 1..={max}")]
    VcpuCount {
        /// Requested.
        wanted: u8,
        /// Supported.
        max: usize,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Kernel, initrd or command line.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// vCPU setup.
    #[error("cannot set up vcpu {vcpu}")]
    Cpu {
        /// The vCPU.
        vcpu: usize,
        /// What failed.
        #[source]
        source: CpuError,
    },
    /// ACPI tables.
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    /// PCI bus.
    #[error("PCI bus setup failed")]
    Pci(#[from] PciError),
    /// Device registration on a bus.
    #[error("cannot register {what} on its bus")]
    Bus {
        /// The device.
        what: &'static str,
        /// The bus error.
        #[source]
        source: vm_device::bus::Error,
    },
    /// The console log file.
    #[error("cannot open console log {path}")]
    ConsoleLog {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Host resources (eventfds, threads, signal handler, epoll).
    #[error("{what} failed")]
    Host {
        /// The operation.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The event loop failed.
    #[error("event loop: {0}")]
    EventLoop(event_manager::Error),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

fn host_err(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Host { what, source }
}

/// A built, not yet running, VM.
pub struct Vm {
    _kvm: Kvm,
    vm_fd: Arc<VmFd>,
    mem: GuestMemoryMmap,
    ram: Vec<RamRange>,
    vcpus: Vec<VcpuFd>,
    io: Arc<IoManager>,
    pci: Arc<PciBus>,
    serial: Arc<Mutex<SerialDevice>>,
    exit: Arc<ExitLatch>,
    stats: Arc<ExitStats>,
    rsdp_addr: u64,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("ram", &self.ram)
            .field("vcpus", &self.vcpus.len())
            .finish_non_exhaustive()
    }
}

/// True on a PVM host (`kvm_pvm` loaded), whose instruction emulator lacks CMPXCHG16B.
fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

impl Vm {
    /// Builds the platform with `memory_mib` MiB of RAM and `vcpus` vCPUs.
    pub fn new(memory_mib: u64, vcpus: u8, console: ConsoleOutput) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
        let max = kvm.get_max_vcpus().min(usize::from(MAX_VCPUS));
        if vcpus == 0 || usize::from(vcpus) > max {
            return Err(VmError::VcpuCount { wanted: vcpus, max });
        }
        let vm_fd = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);

        let ram = memory::ram_ranges(memory_mib)?;
        let mem = memory::create_guest_memory(&ram)?;
        register_ram(&vm_fd, &mem)?;
        vm_fd
            .set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm_fd
            .create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm_fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

        let exit = Arc::new(ExitLatch::new().map_err(host_err("exit eventfd"))?);
        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(host_err("serial eventfd"))?;
        vm_fd
            .register_irqfd(&serial_irq, COM1_IRQ)
            .map_err(kvm_err("KVM_IRQFD"))?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(
            serial_irq,
            console_writer(console)?,
        )));

        let window32 = layout::MMIO_HOLE_START..layout::PCI_MMIO32_END;
        let mmio64_start = memory::pci_mmio64_start(&ram);
        let window64 = mmio64_start..mmio64_start + layout::PCI_MMIO64_SIZE;
        let pci = Arc::new(PciBus::new(window32.clone(), window64.clone()));
        pci.add_function(Arc::new(Mutex::new(HostBridge::new())))?;

        let mut io = IoManager::new();
        register_platform_devices(&mut io, &serial, &exit)?;
        register_pci(&mut io, &pci)?;

        let tables = acpi::build(&AcpiConfig {
            vcpus,
            pci_mmio32: window32,
            pci_mmio64: window64,
        })?;
        tables.write(&mem)?;

        let vcpu_fds = create_vcpus(&kvm, &vm_fd, vcpus)?;
        Ok(Vm {
            _kvm: kvm,
            vm_fd,
            mem,
            ram,
            vcpus: vcpu_fds,
            io: Arc::new(io),
            pci,
            serial,
            exit,
            stats: Arc::new(ExitStats::default()),
            rsdp_addr: tables.rsdp_addr(),
        })
    }

    /// The PCI root bus: add functions here before [`Vm::run`].
    pub fn pci_bus(&self) -> &Arc<PciBus> {
        &self.pci
    }

    /// Guest memory.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The vCPU file descriptors (index = APIC id), for callers that set up state themselves.
    pub fn vcpu_fds(&self) -> &[VcpuFd] {
        &self.vcpus
    }

    /// The exit counters (shared with the vCPU threads).
    pub fn stats(&self) -> Arc<ExitStats> {
        self.stats.clone()
    }

    /// The KVM VM file descriptor (for devices that need irqfds or ioeventfds).
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm_fd
    }

    /// The KVM VM file descriptor, shared: for devices that add memory slots or raise IRQ
    /// lines from their own code (the VM lives until the last holder drops it; no vCPU runs
    /// after [`Vm::run`] returns).
    pub fn shared_vm_fd(&self) -> Arc<VmFd> {
        self.vm_fd.clone()
    }

    /// Loads a Linux kernel (ELF vmlinux or bzImage), an optional initrd and the command line,
    /// writes the zero page, and puts vCPU 0 at the 64-bit entry point.
    pub fn load_linux(
        &mut self,
        kernel: &Path,
        initrd: Option<&Path>,
        cmdline: &str,
    ) -> Result<(), VmError> {
        let loaded = boot::load_kernel(&self.mem, kernel)?;
        tracing::info!(format = ?loaded.format, entry = loaded.entry, "kernel loaded");
        let low_ram_end = self.ram[0].end();
        let initrd_limit = match (loaded.format, loaded.setup_header) {
            (KernelFormat::BzImage, Some(hdr)) if hdr.version >= 0x203 => {
                u64::from(hdr.initrd_addr_max)
            }
            (KernelFormat::BzImage, _) => 0x37ff_ffff,
            (KernelFormat::Elf, _) => u64::from(u32::MAX),
        };
        let initrd = initrd
            .map(|p| boot::load_initrd(&self.mem, p, low_ram_end, initrd_limit))
            .transpose()?;

        let mut cl = Cmdline::new(layout::CMDLINE_MAX_SIZE).map_err(BootError::Cmdline)?;
        cl.insert_str(cmdline).map_err(BootError::Cmdline)?;
        load_cmdline(&self.mem, GuestAddress(layout::CMDLINE_START), &cl)
            .map_err(BootError::Load)?;

        let e820 = e820_map(&self.ram);
        let params = boot::build_zero_page(&ZeroPageConfig {
            kernel: &loaded,
            cmdline_addr: layout::CMDLINE_START,
            cmdline_len: cmdline.len() as u32,
            initrd,
            e820: &e820,
            rsdp_addr: self.rsdp_addr,
        })?;
        self.mem
            .write_obj(params, GuestAddress(layout::ZERO_PAGE_START))
            .map_err(BootError::GuestMemory)?;

        regs::setup_boot_vcpu(&self.vcpus[0], &self.mem, loaded.entry)
            .map_err(|source| VmError::Cpu { vcpu: 0, source })
    }

    /// Runs the guest until it powers off, resets, faults or dies, then stops all vCPUs.
    pub fn run(mut self) -> Result<GuestExit, VmError> {
        register_signal_handler(SIGRTMIN(), kick_handler).map_err(|e| VmError::Host {
            what: "register vCPU kick signal",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;

        let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(self.vcpus.len());
        for (index, fd) in self.vcpus.drain(..).enumerate() {
            let vcpu = Vcpu::new(
                index,
                fd,
                self.io.clone(),
                self.exit.clone(),
                self.stats.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || vcpu.run())
                .map_err(host_err("spawn vCPU thread"))?;
            handles.push(handle);
        }

        let result = self.event_loop(&handles);
        self.exit.report(GuestExit::Died {
            reason: "VMM stopped the guest".into(),
        });
        let stopped = stop_vcpus(handles);
        self.serial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush_output();
        result?;
        if !stopped {
            tracing::warn!("some vCPU threads did not stop within {VCPU_STOP_TIMEOUT:?}");
        }
        Ok(self.exit.reason().unwrap_or(GuestExit::Died {
            reason: "no exit recorded".into(),
        }))
    }

    fn event_loop(&self, handles: &[JoinHandle<()>]) -> Result<(), VmError> {
        let mut events: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().map_err(VmError::EventLoop)?;
        events.add_subscriber(Arc::new(Mutex::new(ExitWatcher::new(self.exit.clone()))));
        events.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(self.serial.clone()))));
        while !self.exit.should_stop() {
            events.run_with_timeout(100).map_err(VmError::EventLoop)?;
            if handles.iter().any(|h| h.is_finished()) && !self.exit.should_stop() {
                self.exit.report(GuestExit::Died {
                    reason: "a vCPU thread ended without reporting why".into(),
                });
            }
        }
        Ok(())
    }
}

/// Gives every RAM region to KVM as one memory slot.
fn register_ram(vm_fd: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live anonymous mapping of `memory_size` bytes owned by
        // `mem`, which the Vm keeps while its vCPUs run; devices may keep `vm_fd` open longer,
        // but nothing runs the guest after `Vm::run` returns.
        unsafe { vm_fd.set_user_memory_region(region_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Opens where the serial console writes.
fn console_writer(console: ConsoleOutput) -> Result<Box<dyn Write + Send>, VmError> {
    Ok(match console {
        ConsoleOutput::Stdout => Box::new(std::io::stdout()),
        ConsoleOutput::File(path) => {
            Box::new(File::create(&path).map_err(|source| VmError::ConsoleLog {
                path: path.display().to_string(),
                source,
            })?)
        }
        ConsoleOutput::Writer(w) => w,
    })
}

fn bus_err(what: &'static str) -> impl Fn(vm_device::bus::Error) -> VmError {
    move |source| VmError::Bus { what, source }
}

fn pio_range(base: u16, len: u16, what: &'static str) -> Result<PioRange, VmError> {
    PioRange::new(PioAddress(base), len).map_err(bus_err(what))
}

/// COM1, the i8042, CMOS and the ACPI power-management ports.
fn register_platform_devices(
    io: &mut IoManager,
    serial: &Arc<Mutex<SerialDevice>>,
    exit: &Arc<ExitLatch>,
) -> Result<(), VmError> {
    io.register_pio(
        pio_range(COM1_PORT, COM1_PORTS_LEN, "serial")?,
        serial.clone(),
    )
    .map_err(bus_err("serial"))?;
    let i8042 = Arc::new(Mutex::new(I8042::new(exit.clone())));
    for port in [I8042_DATA_PORT, I8042_COMMAND_PORT] {
        io.register_pio(PioRange::unit(PioAddress(port)), i8042.clone())
            .map_err(bus_err("i8042"))?;
    }
    io.register_pio(
        pio_range(CMOS_PORT, CMOS_PORTS_LEN, "cmos")?,
        Arc::new(Cmos),
    )
    .map_err(bus_err("cmos"))?;
    io.register_pio(
        pio_range(PM_PORT, PM_PORTS_LEN, "ACPI PM")?,
        Arc::new(AcpiPmPorts::new(exit.clone())),
    )
    .map_err(bus_err("ACPI PM"))
}

/// The PCI config ports, and the PCI memory windows routed to the bus's BARs.
fn register_pci(io: &mut IoManager, pci: &Arc<PciBus>) -> Result<(), VmError> {
    io.register_pio(
        pio_range(
            pci::CONFIG_ADDRESS_PORT,
            pci::CONFIG_PORTS_LEN,
            "PCI config",
        )?,
        pci.clone(),
    )
    .map_err(bus_err("PCI config"))?;
    for window in [pci.window32(), pci.window64()] {
        let range = MmioRange::new(MmioAddress(window.start), window.end - window.start)
            .map_err(bus_err("PCI window"))?;
        io.register_mmio(range, Arc::new(pci.mmio_window()))
            .map_err(bus_err("PCI window"))?;
    }
    Ok(())
}

/// Creates the vCPUs with normalised CPUID, boot MSRs, FPU and LAPIC LINT setup.
fn create_vcpus(kvm: &Kvm, vm_fd: &VmFd, vcpus: u8) -> Result<Vec<VcpuFd>, VmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let clear_cx16 = host_is_pvm();
    let hide_xsave = cpuid::host_is_tcg();
    tracing::debug!(clear_cx16, hide_xsave, "CPUID host quirks");
    let mut fds = Vec::with_capacity(usize::from(vcpus));
    for id in 0..vcpus {
        let fd = vm_fd
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let cpu_err = |source| VmError::Cpu {
            vcpu: usize::from(id),
            source,
        };
        let mut cpuid = supported.clone();
        cpuid::normalize(
            cpuid.as_mut_slice(),
            cpuid::CpuidConfig {
                vcpu_id: id,
                vcpu_count: vcpus,
                clear_cx16,
                hide_xsave,
            },
        );
        fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        msr::setup_msrs(&fd).map_err(cpu_err)?;
        regs::setup_fpu(&fd).map_err(cpu_err)?;
        regs::setup_lint(&fd).map_err(cpu_err)?;
        fds.push(fd);
    }
    Ok(fds)
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Interrupts every vCPU still in `KVM_RUN` (repeating the signal, since one may arrive just
/// before a thread enters the kernel) and joins the threads. Returns false on timeout.
fn stop_vcpus(handles: Vec<JoinHandle<()>>) -> bool {
    let deadline = Instant::now() + VCPU_STOP_TIMEOUT;
    while handles.iter().any(|h| !h.is_finished()) {
        if Instant::now() > deadline {
            return false;
        }
        for h in handles.iter().filter(|h| !h.is_finished()) {
            let _ = h.kill(SIGRTMIN());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a vCPU thread panicked");
        }
    }
    true
}
