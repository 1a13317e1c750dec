//! `nvidia_ioctl` -> `rm_ioctl` -> `RmIoctl`: the ioctl frame ([`IoctlFrame`]: request decoding,
//! XFER unwrapping, copy in/out), size and device-node checks, and the escape switch.

use super::errno::Errno;
use super::fd::{FdId, Node};
use super::guest_memory::GuestMemory;
use super::ioctl_frame::IoctlFrame;
use super::{alloc, controls, free, frontend, mapping, Rm};
use crate::backend::{Backend, Gfid};
use rm_abi::escape::{Escape, NodeRule};
use rm_abi::{nvos, read_struct, write_struct, NvStatus};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The call's origin, as `RmIoctl` sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller {
    /// vGPU.
    pub gfid: Gfid,
    /// The fd the ioctl came in on.
    pub fd: FdId,
    /// Its device node.
    pub node: Node,
}

/// `nvidia_ioctl`: the fd's node, then the escape in its [`IoctlFrame`] (decode, unwrap XFER,
/// copy in, dispatch, copy out unless `-EFAULT`).
pub(super) fn nvidia_ioctl<B: Backend>(
    rm: &mut Rm<B>,
    gfid: Gfid,
    fd: FdId,
    request: u32,
    arg: u64,
    mem: &mut dyn GuestMemory,
) -> Result<(), Errno> {
    let node = rm
        .vgpus
        .get(&gfid)
        .and_then(|v| v.fds.get(fd))
        .ok_or(Errno::BadFd)?
        .node;
    let frame = IoctlFrame::locate(request, arg, mem)?;
    let caller = Caller { gfid, fd, node };
    frame.run(mem, core::convert::identity, |buf, mem| {
        escape(rm, caller, frame.nr, buf, mem)
    })
}

/// The escape switch: frontend escapes here, RM escapes to `RmIoctl`'s handlers. Unknown
/// numbers (including a nested XFER) fail with `-EINVAL`, as in the driver.
fn escape<B: Backend>(
    rm: &mut Rm<B>,
    caller: Caller,
    nr: u32,
    buf: &mut [u8],
    mem: &mut dyn GuestMemory,
) -> Result<(), Errno> {
    let esc = u8::try_from(nr)
        .ok()
        .and_then(Escape::from_nr)
        .ok_or(Errno::Inval)?;
    if esc == Escape::IOCTL_XFER_CMD {
        return Err(Errno::Inval);
    }
    if !esc.arg_size().accepts(buf.len() as u32) {
        return Err(Errno::Inval);
    }
    let node_ok = match (esc.node_rule(), caller.node) {
        (NodeRule::Either, _)
        | (NodeRule::CtlOnly, Node::Ctl)
        | (NodeRule::DeviceOnly, Node::Device(_)) => true,
        // RM_ALLOC of an event class is allowed on the device node too.
        (NodeRule::CtlOnly, Node::Device(_)) => {
            esc == Escape::RM_ALLOC && alloc::is_event_alloc(buf)
        }
        (NodeRule::DeviceOnly, Node::Ctl) => false,
    };
    if !node_ok {
        return Err(Errno::Inval);
    }
    match esc {
        Escape::CARD_INFO => frontend::card_info(rm, caller, buf),
        Escape::REGISTER_FD => frontend::register_fd(rm, caller, buf),
        Escape::ALLOC_OS_EVENT => frontend::alloc_os_event(rm, caller, buf),
        Escape::FREE_OS_EVENT => frontend::free_os_event(rm, caller, buf),
        Escape::STATUS_CODE => frontend::status_code(rm, caller, buf),
        Escape::CHECK_VERSION_STR => frontend::check_version(buf),
        Escape::ATTACH_GPUS_TO_FD => frontend::attach_gpus(rm, caller, buf),
        Escape::QUERY_DEVICE_INTR => frontend::query_device_intr(buf),
        Escape::SYS_PARAMS => frontend::sys_params(rm, caller, buf),
        Escape::NUMA_INFO => frontend::numa_info(rm, caller, buf),
        Escape::SET_NUMA_STATUS => Err(Errno::Acces),
        // dma-buf export would hand the guest a host fd; its 580 layout is also not pinned here.
        Escape::EXPORT_TO_DMABUF_FD => Err(Errno::Inval),
        Escape::WAIT_OPEN_COMPLETE => frontend::wait_open_complete(buf),
        Escape::IOCTL_XFER_CMD => Err(Errno::Inval),
        Escape::RM_ALLOC if buf.len() == core::mem::size_of::<nvos::Nvos64Parameters>() => {
            with_struct(buf, |p: &mut nvos::Nvos64Parameters| {
                let mut args = alloc::AllocArgs::from_nvos64(p);
                p.status = if p.flags & nvos::NVOS64_FLAGS_FINN_SERIALIZED != 0 {
                    NvStatus::ERR_NOT_SUPPORTED.0
                } else {
                    alloc::rm_alloc(rm, caller, &mut args, mem).0
                };
                p.hObjectNew = args.h_new;
                p.hClass = args.class;
            })
        }
        Escape::RM_ALLOC => with_struct(buf, |p: &mut nvos::Nvos21Parameters| {
            let mut args = alloc::AllocArgs::from_nvos21(p);
            p.status = alloc::rm_alloc(rm, caller, &mut args, mem).0;
            p.hObjectNew = args.h_new;
            p.hClass = args.class;
        }),
        Escape::RM_ALLOC_OBJECT => with_struct(buf, |p: &mut nvos::Nvos05Parameters| {
            let mut args = alloc::AllocArgs {
                h_root: p.hRoot,
                h_parent: p.hObjectParent,
                h_new: p.hObjectNew,
                class: p.hClass,
                p_alloc_parms: 0,
            };
            p.status = alloc::rm_alloc(rm, caller, &mut args, mem).0;
            p.hObjectNew = args.h_new;
            p.hClass = args.class;
        }),
        Escape::RM_FREE => with_struct(buf, |p: &mut nvos::Nvos00Parameters| {
            p.status = free::rm_free(rm, caller, p).0;
        }),
        Escape::RM_CONTROL => with_struct(buf, |p: &mut nvos::Nvos54Parameters| {
            p.status = controls::rm_control(rm, caller, p, mem).0;
        }),
        Escape::RM_MAP_MEMORY => with_struct(buf, |p: &mut nvos::Nvos33ParametersWithFd| {
            p.params.flags = (p.params.flags & !nvos::NVOS33_FLAGS_CACHING_TYPE_MASK)
                | nvos::NVOS33_FLAGS_CACHING_TYPE_DEFAULT;
            p.params.status = mapping::map_memory(rm, caller, &mut p.params, p.fd).0;
        }),
        Escape::RM_UNMAP_MEMORY => with_struct(buf, |p: &mut nvos::Nvos34Parameters| {
            p.status = mapping::unmap_memory(rm, caller, p).0;
        }),
        Escape::RM_MAP_MEMORY_DMA => with_struct(buf, |p: &mut nvos::Nvos46Parameters| {
            p.status = mapping::map_memory_dma(rm, caller, p).0;
        }),
        Escape::RM_UNMAP_MEMORY_DMA => with_struct(buf, |p: &mut nvos::Nvos47Parameters| {
            p.status = mapping::unmap_memory_dma(rm, caller, p).0;
        }),
        Escape::RM_IDLE_CHANNELS => with_struct(buf, |p: &mut nvos::Nvos30Parameters| {
            p.status = controls::idle_channels(rm, caller, p, mem).0;
        }),
        Escape::RM_UPDATE_DEVICE_MAPPING_INFO => {
            with_struct(buf, |p: &mut nvos::Nvos56Parameters| {
                p.status = mapping::update_device_mapping_info(rm, caller, p).0;
            })
        }
        Escape::RM_ALLOC_MEMORY => with_struct(buf, |p: &mut nvos::Nvos02ParametersWithFd| {
            p.params.status = alloc::rm_alloc_memory(rm, caller, &mut p.params, mem).0;
        }),
        // Not offered to guests: VID_HEAP_CONTROL (the heap is the quota-checked memory
        // classes), DUP/SHARE (cross-client object sharing), context DMAs (pre-Fermi model).
        Escape::RM_VID_HEAP_CONTROL => with_struct(buf, |p: &mut nvos::Nvos32Parameters| {
            p.status = NvStatus::ERR_NOT_SUPPORTED.0;
        }),
        Escape::RM_DUP_OBJECT => with_struct(buf, |p: &mut nvos::Nvos55Parameters| {
            p.status = NvStatus::ERR_NOT_SUPPORTED.0;
        }),
        Escape::RM_SHARE => with_struct(buf, |p: &mut nvos::Nvos57Parameters| {
            p.status = NvStatus::ERR_NOT_SUPPORTED.0;
        }),
        Escape::RM_ALLOC_CONTEXT_DMA2 => with_struct(buf, |p: &mut nvos::Nvos39Parameters| {
            p.status = NvStatus::ERR_NOT_SUPPORTED.0;
        }),
        Escape::RM_BIND_CONTEXT_DMA => with_struct(buf, |p: &mut nvos::Nvos49Parameters| {
            p.status = NvStatus::ERR_NOT_SUPPORTED.0;
        }),
    }
}

/// Runs `f` on the struct in `buf` and writes it back (the size was checked by the caller).
pub(super) fn with_struct<T: FromBytes + IntoBytes + Immutable>(
    buf: &mut [u8],
    f: impl FnOnce(&mut T),
) -> Result<(), Errno> {
    let mut v: T = read_struct(buf).ok_or(Errno::Inval)?;
    f(&mut v);
    write_struct(&v, buf);
    Ok(())
}
