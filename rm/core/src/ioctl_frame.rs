//! The frame `nvidia_ioctl` (`nv.c`) puts around every NVIDIA escape: decode the request
//! (`_IOC_NR` is the escape, `_IOC_SIZE` the argument size; the `'F'` type and the direction bits
//! are not checked), unwrap `NV_ESC_IOCTL_XFER_CMD`, copy the argument in, run the escape, and
//! copy the argument back out unless the escape failed with `-EFAULT`.
//!
//! The RM core ([`crate::Rm::ioctl`]) and the host forwarder (`rm-nvidia`) both run their escapes
//! in this frame. It has two steps, [`IoctlFrame::locate`] and [`IoctlFrame::run`], so that a
//! caller can refuse an unwrapped command before anything is copied in (the forwarder does this
//! for commands it cannot count or forward).

use crate::errno::Errno;
use crate::guest_memory::GuestMemory;
use core::mem::size_of;
use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlXfer;
use rm_abi::ioctl::{IoctlRequest, NV_ABSOLUTE_MAX_IOCTL_SIZE};
use rm_abi::read_struct;

/// Where an ioctl's argument is: the escape and its argument's size and address, with
/// `NV_ESC_IOCTL_XFER_CMD` unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoctlFrame {
    /// The escape number: `_IOC_NR(request)`, or the XFER struct's `cmd`. It is not narrowed to
    /// a byte here: a `cmd` above 255, like a nested XFER, is for the escape switch to refuse.
    pub nr: u32,
    /// The argument's size: `_IOC_SIZE(request)`, or the XFER struct's `size`.
    pub size: u32,
    /// The argument's address: the ioctl's `arg`, or the XFER struct's `ptr`.
    pub addr: u64,
    /// Whether the request was `NV_ESC_IOCTL_XFER_CMD` (so `nr`, `size` and `addr` come from the
    /// `nv_ioctl_xfer_t` at the ioctl's `arg`).
    pub xfer: bool,
}

impl IoctlFrame {
    /// Decodes `request` with argument address `arg`; for `NV_ESC_IOCTL_XFER_CMD` reads the
    /// `nv_ioctl_xfer_t` at `arg` from `mem`. Fails with `EINVAL` when an XFER request's size is
    /// not that struct's or the size it carries is over `NV_ABSOLUTE_MAX_IOCTL_SIZE`, and with
    /// `EFAULT` when the struct cannot be read.
    pub fn locate(request: u32, arg: u64, mem: &dyn GuestMemory) -> Result<Self, Errno> {
        let req = IoctlRequest::decode(request);
        if req.nr != Escape::IOCTL_XFER_CMD as u8 {
            return Ok(Self {
                nr: u32::from(req.nr),
                size: req.size,
                addr: arg,
                xfer: false,
            });
        }
        if req.size as usize != size_of::<NvIoctlXfer>() {
            return Err(Errno::Inval);
        }
        let mut raw = [0u8; size_of::<NvIoctlXfer>()];
        mem.read(arg, &mut raw).map_err(|_| Errno::Fault)?;
        let x: NvIoctlXfer = read_struct(&raw).ok_or(Errno::Inval)?;
        if x.size > NV_ABSOLUTE_MAX_IOCTL_SIZE {
            return Err(Errno::Inval);
        }
        Ok(Self {
            nr: x.cmd,
            size: x.size,
            addr: x.ptr,
            xfer: true,
        })
    }

    /// Copies the argument in from `mem`, runs `escape` on the copy (with `mem`, for the
    /// buffers the argument points to), and copies it back out unless `escape` failed with
    /// `EFAULT`. The frame's own failures (copy in or out) are `EFAULT`, given to the caller as
    /// `errno(Errno::Fault)` in its own error type.
    pub fn run<T, E: PartialEq>(
        &self,
        mem: &mut dyn GuestMemory,
        errno: impl Fn(Errno) -> E,
        escape: impl FnOnce(&mut [u8], &mut dyn GuestMemory) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut buf = vec![0u8; self.size as usize];
        mem.read(self.addr, &mut buf)
            .map_err(|_| errno(Errno::Fault))?;
        let result = escape(&mut buf, mem);
        if result.as_ref().err() != Some(&errno(Errno::Fault)) {
            mem.write(self.addr, &buf)
                .map_err(|_| errno(Errno::Fault))?;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! Expected values are the reference's (`nv-rm-abi.md` section 1): request numbers
    //! `0xC0000000 | size << 16 | 0x46 << 8 | nr`, `nv_ioctl_xfer_t` as `{ u32 cmd; u32 size;
    //! u64 ptr @8 }` (16 bytes), the 16384-byte XFER limit, errno numbers from Linux.
    use super::*;
    use crate::{GuestMemoryFault, VecGuestMemory};

    const BASE: u64 = 0x1_0000;
    const XFER_AT: u64 = BASE + 0x100;
    const BIG: u64 = BASE + 0x1000;
    /// `NV_ESC_IOCTL_XFER_CMD` with its 16-byte struct.
    const XFER_REQUEST: u32 = 0xC010_46D3;

    fn memory() -> VecGuestMemory {
        VecGuestMemory::new(BASE, 0x8000)
    }

    /// Memory that can be read but not written.
    struct ReadOnly(VecGuestMemory);

    impl GuestMemory for ReadOnly {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
            self.0.read(addr, buf)
        }

        fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
            Err(GuestMemoryFault {
                addr,
                len: data.len(),
            })
        }
    }

    /// An `nv_ioctl_xfer_t` at [`XFER_AT`], laid out by hand.
    fn put_xfer(mem: &mut VecGuestMemory, cmd: u32, size: u32, ptr: u64) {
        let mut raw = [0u8; 16];
        raw[0..4].copy_from_slice(&cmd.to_le_bytes());
        raw[4..8].copy_from_slice(&size.to_le_bytes());
        raw[8..16].copy_from_slice(&ptr.to_le_bytes());
        mem.write(XFER_AT, &raw).unwrap();
    }

    #[test]
    fn direct_requests_name_escape_and_size_whatever_type_and_direction() {
        let mem = memory();
        // NV_ESC_RM_CONTROL with NVOS54 (32 bytes), and NV_ESC_NUMA_INFO (215, 560 bytes).
        for (request, nr, size) in [
            (0xC020_462A_u32, 0x2A, 32),
            (0xC230_46D7, 215, 560),
            // The driver reads only _IOC_NR and _IOC_SIZE: no direction bits, another type.
            (0x0020_002A, 0x2A, 32),
            (0x4020_412A, 0x2A, 32),
        ] {
            assert_eq!(
                IoctlFrame::locate(request, BASE, &mem),
                Ok(IoctlFrame {
                    nr,
                    size,
                    addr: BASE,
                    xfer: false
                }),
                "request {request:#x}"
            );
        }
    }

    #[test]
    fn xfer_is_unwrapped_up_to_its_limit() {
        let mut mem = memory();
        put_xfer(&mut mem, 0x2A, 16384, BIG);
        assert_eq!(
            IoctlFrame::locate(XFER_REQUEST, XFER_AT, &mem),
            Ok(IoctlFrame {
                nr: 0x2A,
                size: 16384,
                addr: BIG,
                xfer: true
            })
        );
        // The command is carried as the struct has it, even above a byte or a nested XFER.
        put_xfer(&mut mem, 0x1_002A, 32, BIG);
        assert_eq!(
            IoctlFrame::locate(XFER_REQUEST, XFER_AT, &mem).map(|f| f.nr),
            Ok(0x1_002A)
        );
        put_xfer(&mut mem, 211, 16, BIG);
        assert_eq!(
            IoctlFrame::locate(XFER_REQUEST, XFER_AT, &mem).map(|f| (f.nr, f.xfer)),
            Ok((211, true))
        );
    }

    #[test]
    fn bad_xfer_requests_are_einval_or_efault() {
        let mut mem = memory();
        put_xfer(&mut mem, 0x2A, 16385, BIG);
        assert_eq!(
            IoctlFrame::locate(XFER_REQUEST, XFER_AT, &mem),
            Err(Errno::Inval)
        );
        put_xfer(&mut mem, 0x2A, 32, BIG);
        // _IOWR('F', 211, 24) and _IOWR('F', 211, 8): the outer size must be 16.
        for request in [0xC018_46D3, 0xC008_46D3] {
            assert_eq!(
                IoctlFrame::locate(request, XFER_AT, &mem),
                Err(Errno::Inval)
            );
        }
        // The struct itself is unreadable: the last 8 bytes of memory hold only half of it.
        assert_eq!(
            IoctlFrame::locate(XFER_REQUEST, BASE + 0x8000 - 8, &mem),
            Err(Errno::Fault)
        );
        assert_eq!(Errno::Fault.code(), 14);
        assert_eq!(Errno::Inval.code(), 22);
    }

    #[test]
    fn argument_is_copied_in_and_out_unless_efault() {
        let mut mem = memory();
        put_xfer(&mut mem, 0x2A, 32, BIG);
        mem.write(BIG, &[7; 32]).unwrap();
        let frame = IoctlFrame::locate(XFER_REQUEST, XFER_AT, &mem).unwrap();
        // Success and any errno but EFAULT copy out; the XFER struct itself is left alone.
        for result in [Ok(5), Err(Errno::Inval)] {
            mem.write(BIG, &[7; 32]).unwrap();
            let r = frame.run(
                &mut mem,
                |e| e,
                |buf, _| {
                    assert_eq!(buf, &[7; 32][..]);
                    buf.fill(9);
                    result
                },
            );
            assert_eq!(r, result);
            let mut out = [0u8; 32];
            mem.read(BIG, &mut out).unwrap();
            assert_eq!(out, [9; 32]);
        }
        let mut raw = [0u8; 16];
        mem.read(XFER_AT, &mut raw).unwrap();
        assert_eq!(&raw[0..8], &[0x2A, 0, 0, 0, 32, 0, 0, 0]);
        // EFAULT from the escape: nothing is copied out.
        mem.write(BIG, &[7; 32]).unwrap();
        let r: Result<(), _> = frame.run(
            &mut mem,
            |e| e,
            |buf, _| {
                buf.fill(9);
                Err(Errno::Fault)
            },
        );
        assert_eq!(r, Err(Errno::Fault));
        let mut out = [0u8; 32];
        mem.read(BIG, &mut out).unwrap();
        assert_eq!(out, [7; 32]);
    }

    #[test]
    fn unreachable_arguments_fault_in_the_callers_errno() {
        let mut mem = memory();
        // _IOWR('F', 0x2A, 32) at the last 16 bytes: the copy-in faults, the escape never runs.
        let frame = IoctlFrame::locate(0xC020_462A, BASE + 0x8000 - 16, &mem).unwrap();
        let r: Result<(), i32> = frame.run(&mut mem, Errno::code, |_, _| panic!("ran"));
        assert_eq!(r, Err(14));
        // A readable but unwritable argument: the escape runs, the copy-out faults.
        let frame = IoctlFrame::locate(0xC020_462A, BASE, &mem).unwrap();
        let mut ran = false;
        let r: Result<(), i32> = frame.run(&mut ReadOnly(mem), Errno::code, |_, _| {
            ran = true;
            Ok(())
        });
        assert!(ran);
        assert_eq!(r, Err(14));
    }
}
