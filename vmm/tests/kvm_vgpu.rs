//! A tiny hand-written guest on a real KVM vCPU moves the vGPU's BAR2 through config space,
//! stores into the window (no exit: the KVM slot of vgpud's window memfd moved with the BAR)
//! and reads BAR0's MAGIC (one MMIO exit, one vfio-user round trip to an in-process vgpud).
//! Skips (with a message) where /dev/kvm is missing.

mod common;

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm::cpu::regs;
use vmm::devices::vfio_user::{attach, VgpuSpec};
use vmm::exit::GuestExit;
use vmm::stats::ExitKind;
use vmm::vm::{ConsoleOutput, Vm};

const CODE: u64 = 0x1000;
const NEW_BAR2: u32 = 0xd000_0000;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `mov eax, imm32; mov dx, port; out dx, eax`
fn out32(code: &mut Vec<u8>, port: u16, v: u32) {
    code.push(0xb8);
    code.extend_from_slice(&v.to_le_bytes());
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&port.to_le_bytes());
    code.push(0xef);
}

#[test]
fn guest_moves_bar2_writes_the_window_without_exits_and_reads_bar0() {
    if kvm_ioctls::Kvm::new().is_err() {
        eprintln!("skipped: /dev/kvm is not available");
        return;
    }
    let mut code = vec![];
    // BAR2 (config offset 0x18) and BAR3 (0x1c) of 00:01.0 -> NEW_BAR2.
    out32(&mut code, 0xcf8, 0x8000_0818);
    out32(&mut code, 0xcfc, NEW_BAR2);
    out32(&mut code, 0xcf8, 0x8000_081c);
    out32(&mut code, 0xcfc, 0);
    code.extend_from_slice(&[0x48, 0xbb]); // mov rbx, NEW_BAR2
    code.extend_from_slice(&u64::from(NEW_BAR2).to_le_bytes());
    code.extend_from_slice(&[0xc7, 0x83, 0x00, 0x01, 0, 0, 0x78, 0x56, 0x34, 0x12]); // mov dword [rbx+0x100], 0x12345678
    code.extend_from_slice(&[0x8b, 0x83, 0x00, 0x01, 0, 0]); // mov eax, [rbx+0x100]
    code.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xee]); // mov dx, 0x3f8; out dx, al
    code.extend_from_slice(&[0x48, 0xbb, 0, 0, 0, 0xc0, 0, 0, 0, 0]); // mov rbx, 0xc000_0000 (BAR0)
    code.extend_from_slice(&[0x8b, 0x03, 0xee]); // mov eax, [rbx]; out dx, al
                                                 // Power off: mov dx, 0x600; mov al, SLP_EN | S5 << 2; out dx, al; hlt
    code.extend_from_slice(&[0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4, 0xeb, 0xfd]);

    let sink = Sink::default();
    let vm = Vm::new(16, 1, ConsoleOutput::Writer(Box::new(sink.clone()))).unwrap();
    let inst = common::instance(7, 1 << 20);
    let spec: VgpuSpec = format!("socket={}", inst.socket).parse().unwrap();
    let attached = attach(vm.pci_bus(), vm.shared_vm_fd(), &spec, 0).unwrap();
    assert_eq!(attached.pci_slot, 1);
    let first = attached.function.lock().unwrap().mapped_at(2).unwrap();
    assert_ne!(first, u64::from(NEW_BAR2));

    let mem = vm.guest_memory();
    mem.write_slice(&code, GuestAddress(CODE)).unwrap();
    let vcpu = &vm.vcpu_fds()[0];
    let sregs = regs::boot_sregs(mem, vcpu.get_sregs().unwrap()).unwrap();
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&regs::boot_regs(CODE)).unwrap();
    let stats = vm.stats();
    let exit = vm.run().unwrap();

    assert_eq!(exit, GuestExit::PowerOff);
    assert_eq!(sink.0.lock().unwrap().clone(), vec![0x78, b'V']);
    let f = attached.function.lock().unwrap();
    assert_eq!(f.mapped_at(2), Some(u64::from(NEW_BAR2)));
    let dev = common::device(&inst);
    let dev = dev.lock().unwrap();
    let mut b = [0u8; 4];
    dev.window().read(0x100, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x1234_5678);
    assert_eq!(
        stats.get(ExitKind::MmioWrite),
        0,
        "window stores do not exit: {}",
        stats.report()
    );
    assert_eq!(stats.get(ExitKind::MmioRead), 1, "{}", stats.report());
    assert_eq!(dev.stats().snapshot().bar0_reads, 1);
    assert_eq!(
        f.counters()
            .bar_reads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
