//! Runs tiny hand-written 64-bit guests in a real KVM vCPU and checks that their port I/O,
//! MMIO, power-off, reset and triple fault reach our buses and end the run with the right
//! [`GuestExit`]. Skips (with a message) where /dev/kvm is missing.

use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm::cpu::regs;
use vmm::exit::GuestExit;
use vmm::pci::{BarKind, BarSpec, PciConfig, PciFunction, PciHeader};
use vmm::stats::ExitKind;
use vmm::vm::{ConsoleOutput, Vm};

const CODE: u64 = 0x1000;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn kvm_available() -> bool {
    if kvm_ioctls::Kvm::new().is_ok() {
        return true;
    }
    eprintln!("skipped: /dev/kvm is not available");
    false
}

/// Runs `code` in 64-bit mode on one vCPU; returns the exit, the console bytes and the VM's
/// exit counts.
fn run_blob(code: &[u8]) -> (GuestExit, Vec<u8>, Arc<vmm::stats::ExitStats>) {
    run_blob_with(code, |_| {})
}

/// Like [`run_blob`], letting `setup` add devices to the VM first.
fn run_blob_with(
    code: &[u8],
    setup: impl FnOnce(&Vm),
) -> (GuestExit, Vec<u8>, Arc<vmm::stats::ExitStats>) {
    let sink = Sink::default();
    let vm = Vm::new(16, 1, ConsoleOutput::Writer(Box::new(sink.clone()))).unwrap();
    setup(&vm);
    let mem = vm.guest_memory();
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    let vcpu = &vm.vcpu_fds()[0];
    let sregs = regs::boot_sregs(mem, vcpu.get_sregs().unwrap()).unwrap();
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&regs::boot_regs(CODE)).unwrap();
    let stats = vm.stats();
    let exit = vm.run().unwrap();
    let out = sink.0.lock().unwrap().clone();
    (exit, out, stats)
}

/// `mov dx, 0x600; mov al, SLP_EN | S5 << 2; out dx, al; hlt`
const POWER_OFF: &[u8] = &[0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4, 0xeb, 0xfd];

#[test]
fn serial_pci_mmio_and_power_off() {
    if !kvm_available() {
        return;
    }
    let mut code = vec![
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'K', 0xee, // mov al, 'K'; out dx, al
        0xb8, 0x00, 0x00, 0x00, 0x80, // mov eax, 0x8000_0000 (00:00.0, reg 0)
        0x66, 0xba, 0xf8, 0x0c, 0xef, // mov dx, 0xcf8; out dx, eax
        0x66, 0xba, 0xfc, 0x0c, 0xed, // mov dx, 0xcfc; in eax, dx
        0x66, 0xba, 0xf8, 0x03, 0xee, // mov dx, 0x3f8; out dx, al  (vendor low byte)
        0xc1, 0xe8, 0x10, 0xee, // shr eax, 16; out dx, al       (device low byte)
        0x48, 0xbb, 0x00, 0x00, 0x00, 0xd0, 0, 0, 0, 0, // mov rbx, 0xd000_0000
        0x8b, 0x03, 0xee, // mov eax, [rbx]; out dx, al  (unrouted PCI window: 0xff)
        0xb0, b'\n', 0xee, // mov al, '\n'; out dx, al
    ];
    code.extend_from_slice(POWER_OFF);
    let (exit, out, stats) = run_blob(&code);
    assert_eq!(exit, GuestExit::PowerOff);
    assert_eq!(exit.status(), 0);
    assert_eq!(out, vec![b'K', 0x36, 0x08, 0xff, b'\n']);
    assert!(stats.get(ExitKind::IoOut) >= 7, "{}", stats.report());
    assert!(stats.get(ExitKind::IoIn) >= 1);
    assert_eq!(stats.get(ExitKind::MmioRead), 1);
}

#[test]
fn i8042_reset_is_a_reboot() {
    if !kvm_available() {
        return;
    }
    // mov al, 0xfe; out 0x64, al; hlt
    let (exit, _, _) = run_blob(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]);
    assert_eq!(exit, GuestExit::Reboot { what: "i8042" });
    assert_eq!(exit.status(), 80);
}

#[test]
fn acpi_reset_register_is_a_reboot() {
    if !kvm_available() {
        return;
    }
    // mov dx, 0x602; mov al, 1; out dx, al; hlt
    let (exit, _, _) = run_blob(&[0x66, 0xba, 0x02, 0x06, 0xb0, 0x01, 0xee, 0xf4, 0xeb, 0xfd]);
    assert_eq!(exit.status(), 80);
}

#[test]
fn triple_fault_is_a_shutdown() {
    if !kvm_available() {
        return;
    }
    // The boot IDT has no usable 64-bit gate, so `ud2` escalates #UD -> #GP -> #DF -> shutdown.
    let (exit, _, stats) = run_blob(&[0x0f, 0x0b]);
    assert_eq!(exit, GuestExit::TripleFault { vcpu: 0 });
    assert_eq!(exit.status(), 81);
    assert_eq!(stats.get(ExitKind::Shutdown), 1);
}

/// BAR writes seen by [`Probe`]: (BAR, offset, bytes).
type WriteLog = Arc<Mutex<Vec<(u8, u64, Vec<u8>)>>>;

/// A PCI function whose BAR 0 reads as its offset and records writes.
struct Probe {
    config: PciConfig,
    writes: WriteLog,
}

impl PciFunction for Probe {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: u8, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (offset as u8).wrapping_add(i as u8).wrapping_add(b'a');
        }
    }
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        self.writes
            .lock()
            .unwrap()
            .push((bar, offset, data.to_vec()));
    }
}

#[test]
fn pci_bar_mmio_reaches_the_function() {
    if !kvm_available() {
        return;
    }
    let writes = WriteLog::default();
    let mut code = vec![
        0x48, 0xbb, 0x00, 0x00, 0x00, 0xc0, 0, 0, 0, 0, // mov rbx, 0xc000_0000 (first BAR)
        0x8b, 0x43, 0x02, // mov eax, [rbx + 2]
        0x66, 0xba, 0xf8, 0x03, 0xee, // mov dx, 0x3f8; out dx, al
        0xc7, 0x43, 0x08, 0x78, 0x56, 0x34, 0x12, // mov dword [rbx + 8], 0x1234_5678
    ];
    code.extend_from_slice(POWER_OFF);
    let probe_writes = writes.clone();
    let (exit, out, stats) = run_blob_with(&code, move |vm| {
        let mut config = PciConfig::new(&PciHeader {
            vendor_id: 0x1234,
            device_id: 0x5678,
            class_code: 0xff,
            ..Default::default()
        });
        config
            .add_bar(BarSpec {
                index: 0,
                size: 0x1000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        let probe = Probe {
            config,
            writes: probe_writes,
        };
        assert_eq!(
            vm.pci_bus()
                .add_function(Arc::new(Mutex::new(probe)))
                .unwrap(),
            1
        );
    });
    assert_eq!(exit, GuestExit::PowerOff);
    assert_eq!(out, vec![b'c']);
    assert_eq!(
        writes.lock().unwrap().as_slice(),
        &[(0, 8, vec![0x78, 0x56, 0x34, 0x12])]
    );
    assert_eq!(stats.get(ExitKind::MmioRead), 1);
    assert_eq!(stats.get(ExitKind::MmioWrite), 1);
}

#[test]
fn executing_mmio_is_a_guest_death_with_rip() {
    if !kvm_available() {
        return;
    }
    // mov rax, 0xd000_0000; jmp rax: instruction fetch from an unbacked PCI window address,
    // which KVM cannot emulate.
    let (exit, _, _) = run_blob(&[0x48, 0xb8, 0, 0, 0, 0xd0, 0, 0, 0, 0, 0xff, 0xe0]);
    eprintln!("{exit}");
    assert_eq!(exit.status(), 1);
    let GuestExit::Died { reason } = exit else {
        unreachable!()
    };
    assert!(reason.contains("vcpu 0"), "{reason}");
    assert!(reason.contains("rip 0x"), "{reason}");
}
