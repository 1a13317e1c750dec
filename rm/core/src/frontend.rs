//! Frontend escapes (`nv.c` and the OS layer of `rm_ioctl`): card info, fd registration, OS
//! events, version check, GPU attach, sys params, NUMA info, open completion.

use super::dispatch::{with_struct, Caller};
use super::errno::Errno;
use super::fd::{Node, OsEvent};
use super::Rm;
use crate::backend::Backend;
use core::mem::size_of;
use rm_abi::frontend::*;
use rm_abi::{write_struct, NvStatus, NV_VERSION_STRING};

/// Most OS events one fd may hold.
const MAX_OS_EVENTS_PER_FD: usize = 1024;

/// `NV_ESC_CARD_INFO`: `size / 72` entries; the first describes this vGPU, the rest are zero.
pub(super) fn card_info<B: Backend>(rm: &Rm<B>, c: Caller, buf: &mut [u8]) -> Result<(), Errno> {
    let cfg = &rm.vgpus[&c.gfid].config;
    buf.fill(0);
    let entry = NvIoctlCardInfo {
        valid: 1,
        pci_info: NvPciInfo {
            domain: 0,
            bus: cfg.pci_bus,
            slot: cfg.pci_slot,
            function: 0,
            vendor_id: rm.gpu.pci_vendor_id,
            device_id: rm.gpu.pci_device_id,
            ..Default::default()
        },
        gpu_id: cfg.gpu_id,
        fb_size: cfg.fb_quota,
        minor_number: 0,
        ..Default::default()
    };
    write_struct(&entry, buf);
    Ok(())
}

/// `NV_ESC_REGISTER_FD`: once per fd; `ctl_fd` must be another open ctl fd of this guest that is
/// not itself registered. Failures are RM errors, which the ioctl reports as `-EINVAL`.
pub(super) fn register_fd<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let vgpu = rm.vgpus.get_mut(&c.gfid).ok_or(Errno::BadFd)?;
    let p: NvIoctlRegisterFd = rm_abi::read_struct(buf).ok_or(Errno::Inval)?;
    let ctl = p.ctl_fd;
    let target_ok = ctl != c.fd
        && vgpu
            .fds
            .get(ctl)
            .is_some_and(|t| t.node == Node::Ctl && t.registered_ctl.is_none());
    let me = vgpu.fds.get_mut(c.fd).ok_or(Errno::BadFd)?;
    if me.registered_ctl.is_some() || !target_ok {
        return Err(Errno::Inval);
    }
    me.registered_ctl = Some(ctl);
    Ok(())
}

/// `NV_ESC_ALLOC_OS_EVENT`: records an event on this fd; RM status in `Status`.
pub(super) fn alloc_os_event<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let vgpu = rm.vgpus.get_mut(&c.gfid).ok_or(Errno::BadFd)?;
    let client_ok = vgpu.client_for(c.fd, read_u32(buf, 0)).is_some();
    let fd_state = vgpu.fds.get_mut(c.fd).ok_or(Errno::BadFd)?;
    with_struct(buf, |p: &mut NvIoctlAllocOsEvent| {
        let ev = OsEvent {
            client: p.hClient,
            device: p.hDevice,
            fd: p.fd,
        };
        p.Status = if !client_ok {
            NvStatus::ERR_INVALID_CLIENT
        } else if fd_state.os_events.contains(&ev) {
            NvStatus::ERR_INVALID_ARGUMENT
        } else if fd_state.os_events.len() >= MAX_OS_EVENTS_PER_FD {
            NvStatus::ERR_INSUFFICIENT_RESOURCES
        } else {
            fd_state.os_events.push(ev);
            NvStatus::OK
        }
        .0;
    })
}

/// `NV_ESC_FREE_OS_EVENT`.
pub(super) fn free_os_event<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let vgpu = rm.vgpus.get_mut(&c.gfid).ok_or(Errno::BadFd)?;
    let fd_state = vgpu.fds.get_mut(c.fd).ok_or(Errno::BadFd)?;
    with_struct(buf, |p: &mut NvIoctlFreeOsEvent| {
        let before = fd_state.os_events.len();
        fd_state
            .os_events
            .retain(|e| !(e.client == p.hClient && e.fd == p.fd));
        p.Status = if fd_state.os_events.len() < before {
            NvStatus::OK
        } else {
            NvStatus::ERR_INVALID_EVENT
        }
        .0;
    })
}

/// `NV_ESC_STATUS_CODE`: the adapter status of the GPU at domain/bus/slot; `-EINVAL` for a
/// location that is not this vGPU.
pub(super) fn status_code<B: Backend>(rm: &Rm<B>, c: Caller, buf: &mut [u8]) -> Result<(), Errno> {
    let cfg = &rm.vgpus[&c.gfid].config;
    let p: NvIoctlStatusCode = rm_abi::read_struct(buf).ok_or(Errno::Inval)?;
    if p.domain != 0 || p.bus != cfg.pci_bus || p.slot != cfg.pci_slot {
        return Err(Errno::Inval);
    }
    with_struct(buf, |p: &mut NvIoctlStatusCode| p.status = NvStatus::OK.0)
}

/// `NV_ESC_CHECK_VERSION_STR` (`RmPerformVersionCheck`): QUERY copies the version out; STRICT
/// compares the whole string, RELAXED up to the first `.`; a mismatch copies the driver's
/// version out and fails with `-EINVAL`.
pub(super) fn check_version(buf: &mut [u8]) -> Result<(), Errno> {
    let mut result = Ok(());
    with_struct(buf, |p: &mut NvIoctlRmApiVersion| {
        p.reply = NV_RM_API_VERSION_REPLY_RECOGNIZED;
        let mine = version_bytes();
        if p.cmd == NV_RM_API_VERSION_CMD_QUERY {
            p.versionString = mine;
            return;
        }
        let relaxed = p.cmd == NV_RM_API_VERSION_CMD_RELAXED;
        for (&theirs, &ours) in p.versionString.iter().zip(mine.iter()) {
            if theirs != ours {
                break;
            }
            if (relaxed && theirs == b'.') || theirs == 0 {
                return;
            }
        }
        p.versionString = mine;
        result = Err(Errno::Inval);
    })?;
    result
}

fn version_bytes() -> [u8; 64] {
    let mut v = [0u8; 64];
    v[..NV_VERSION_STRING.len()].copy_from_slice(NV_VERSION_STRING.as_bytes());
    v
}

/// `NV_ESC_ATTACH_GPUS_TO_FD`: once per fd; every nonzero id must be this vGPU's.
pub(super) fn attach_gpus<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let vgpu = rm.vgpus.get_mut(&c.gfid).ok_or(Errno::BadFd)?;
    let gpu_id = vgpu.config.gpu_id;
    let ids: Vec<u32> = buf
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let st = vgpu.fds.get_mut(c.fd).ok_or(Errno::BadFd)?;
    if st.attached_gpus.is_some() || ids.iter().any(|&id| id != 0 && id != gpu_id) {
        return Err(Errno::Inval);
    }
    st.attached_gpus = Some(ids);
    Ok(())
}

/// `NV_ESC_QUERY_DEVICE_INTR`: no interrupt is ever pending on a vGPU's BAR0 mirror.
pub(super) fn query_device_intr(buf: &mut [u8]) -> Result<(), Errno> {
    write_struct(
        &NvIoctlQueryDeviceIntr {
            intrStatus: 0,
            status: NvStatus::OK.0,
        },
        buf,
    );
    Ok(())
}

/// `NV_ESC_SYS_PARAMS`: user space tells the driver the memory block size; set once per vGPU,
/// a different value later is `-EBUSY`.
pub(super) fn sys_params<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let vgpu = rm.vgpus.get_mut(&c.gfid).ok_or(Errno::BadFd)?;
    let p: NvIoctlSysParams = rm_abi::read_struct(buf).ok_or(Errno::Inval)?;
    if vgpu.memblock_size == 0 {
        vgpu.memblock_size = p.memblock_size;
        Ok(())
    } else if vgpu.memblock_size == p.memblock_size {
        Ok(())
    } else {
        Err(Errno::Busy)
    }
}

/// `NV_ESC_NUMA_INFO`: a vGPU's memory is never onlined as a NUMA node.
pub(super) fn numa_info<B: Backend>(rm: &Rm<B>, c: Caller, buf: &mut [u8]) -> Result<(), Errno> {
    let info = NvIoctlNumaInfo {
        nid: -1,
        status: 0,
        memblock_size: rm.vgpus[&c.gfid].memblock_size,
        ..Default::default()
    };
    write_struct(&info, buf);
    Ok(())
}

/// `NV_ESC_WAIT_OPEN_COMPLETE`: opens complete synchronously here.
pub(super) fn wait_open_complete(buf: &mut [u8]) -> Result<(), Errno> {
    debug_assert_eq!(buf.len(), size_of::<NvIoctlWaitOpenComplete>());
    write_struct(
        &NvIoctlWaitOpenComplete {
            rc: 0,
            adapterStatus: NvStatus::OK.0,
        },
        buf,
    );
    Ok(())
}

fn read_u32(buf: &[u8], off: usize) -> u32 {
    buf.get(off..off + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
