//! `librmshim.so`: loaded with `LD_PRELOAD` into an unmodified process, it sends every ioctl on an
//! NVIDIA device file through [`rm_nvidia::Forwarder`] (decode, validate, sanitise,
//! account, forward) and registers the process as a tenant of the `vgpud` gating daemon.
//!
//! Environment:
//! * `VGPU_TENANT`: tenant name (default: the last component of the process's cgroup, else
//!   `pid-<pid>`);
//! * `VGPUD_SOCKET`: the daemon's socket (default `/run/vgpud.sock`); no daemon, no gating;
//! * `RMSHIM_STATS=1`: print a one-line summary of what was forwarded at exit (stderr);
//! * `RMSHIM_NO_REENABLE=1`: test switch: do not re-enable the tenant's own channels when the
//!   daemon goes away (used to prove the daemon's own recovery at restart).
//!
//! Interposed: `ioctl`, `close`, `dup2`, `dup3`, `close_range`, `closefrom`. The fd's kind is
//! found from `/proc/self/fd` on its first ioctl and cached until it is closed or replaced (an fd
//! libc closed internally and reused is looked up again on its first RM ioctl); `mmap` needs no interposing because
//! every call goes to the process's own fds, so a mapping context the driver attaches to an fd is
//! the one the process then `mmap`s, and `close` tells the forwarder the fd's clients are gone.

#[cfg(target_arch = "x86_64")]
mod fault_copy;
mod fds;
mod memory;
pub mod tenant;

use fds::FdTable;
use libc::{c_int, c_ulong, c_void};
use memory::SelfMemory;
use rm_nvidia::{Forwarder, SyscallDriver};
use std::sync::OnceLock;

type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type CloseRangeFn = unsafe extern "C" fn(libc::c_uint, libc::c_uint, c_int) -> c_int;
type CloseFromFn = unsafe extern "C" fn(c_int);

struct Real {
    ioctl: IoctlFn,
    close: CloseFn,
    dup2: Dup2Fn,
    dup3: Dup3Fn,
    /// Absent before glibc 2.34.
    close_range: Option<CloseRangeFn>,
    /// Absent before glibc 2.34.
    closefrom: Option<CloseFromFn>,
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        // SAFETY: the names are NUL-terminated and these libc functions exist in every process;
        // the transmutes give them their C signatures.
        unsafe {
            let sym = |name: &[u8]| libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast());
            Real {
                ioctl: std::mem::transmute::<*mut c_void, IoctlFn>(sym(b"ioctl\0")),
                close: std::mem::transmute::<*mut c_void, CloseFn>(sym(b"close\0")),
                dup2: std::mem::transmute::<*mut c_void, Dup2Fn>(sym(b"dup2\0")),
                dup3: std::mem::transmute::<*mut c_void, Dup3Fn>(sym(b"dup3\0")),
                close_range: std::mem::transmute::<*mut c_void, Option<CloseRangeFn>>(sym(
                    b"close_range\0",
                )),
                closefrom: std::mem::transmute::<*mut c_void, Option<CloseFromFn>>(sym(
                    b"closefrom\0",
                )),
            }
        }
    })
}

static FWD: OnceLock<Forwarder<SyscallDriver>> = OnceLock::new();

/// The process's forwarder, created on the first NVIDIA ioctl (which also starts the tenant link).
fn forwarder() -> &'static Forwarder<SyscallDriver> {
    FWD.get_or_init(|| {
        let fwd = Forwarder::new(SyscallDriver);
        let (tx, rx) = std::sync::mpsc::channel();
        fwd.set_channel_listener(tx);
        tenant::start(rx, || FWD.get());
        if std::env::var_os("RMSHIM_STATS").is_some() {
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(print_stats) };
        }
        fwd
    })
}

extern "C" fn print_stats() {
    let s = forwarder().stats();
    let rm: u64 = s.escapes.iter().map(|(_, n)| n).sum();
    let controls = s
        .escapes
        .iter()
        .find(|(nr, _)| *nr == 0x2A)
        .map_or(0, |(_, n)| *n);
    eprintln!(
        "rmshim: pid {} forwarded {rm} RM/frontend escapes ({controls} RM_CONTROL), {} uvm/other ioctls, refused {}",
        std::process::id(),
        s.uvm,
        s.refused
    );
}

static FDS: FdTable = FdTable::new();

fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = e };
}

/// Interposed `ioctl(2)`.
///
/// # Safety
/// As `ioctl(2)`: `arg` must be valid for the request.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    match FDS.node(fd, request) {
        None => {
            // SAFETY: the caller's own call, unchanged.
            unsafe { (real().ioctl)(fd, request, arg) }
        }
        Some(node) => match forwarder().ioctl(fd, node, request, arg as u64, &mut SelfMemory) {
            Ok(r) => r,
            Err(e) => {
                set_errno(e);
                -1
            }
        },
    }
}

fn forget(fd: c_int) {
    let was_nvidia = FDS.forget(fd);
    if let (true, Some(f)) = (was_nvidia, FWD.get()) {
        f.on_close(fd);
    }
}

/// Interposed `close(2)`.
///
/// # Safety
/// As `close(2)`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    forget(fd);
    // SAFETY: the caller's own call.
    unsafe { (real().close)(fd) }
}

/// Interposed `dup2(2)`: `newfd` is closed first, so its cached kind goes.
///
/// # Safety
/// As `dup2(2)`.
#[no_mangle]
pub unsafe extern "C" fn dup2(oldfd: c_int, newfd: c_int) -> c_int {
    if oldfd != newfd {
        forget(newfd);
    }
    // SAFETY: the caller's own call.
    unsafe { (real().dup2)(oldfd, newfd) }
}

/// Interposed `dup3(2)`.
///
/// # Safety
/// As `dup3(2)`.
#[no_mangle]
pub unsafe extern "C" fn dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    if oldfd != newfd {
        forget(newfd);
    }
    // SAFETY: the caller's own call.
    unsafe { (real().dup3)(oldfd, newfd, flags) }
}

/// `close_range` flag: mark close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: c_int = 1 << 2;

fn forget_range(first: libc::c_uint, last: libc::c_uint) {
    for fd in FDS.forget_range(first, last) {
        if let Some(f) = FWD.get() {
            f.on_close(fd);
        }
    }
}

/// Interposed `close_range(2)`: the NVIDIA fds it closes are forgotten as by `close`.
///
/// # Safety
/// As `close_range(2)`.
#[no_mangle]
pub unsafe extern "C" fn close_range(
    first: libc::c_uint,
    last: libc::c_uint,
    flags: c_int,
) -> c_int {
    let Some(real_close_range) = real().close_range else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    if flags & CLOSE_RANGE_CLOEXEC == 0 && first <= last {
        forget_range(first, last);
    }
    // SAFETY: the caller's own call.
    unsafe { real_close_range(first, last, flags) }
}

/// Interposed `closefrom(3)`.
///
/// # Safety
/// As `closefrom(3)`.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    if let Ok(first) = libc::c_uint::try_from(lowfd) {
        forget_range(first, libc::c_uint::MAX);
    }
    if let Some(real_closefrom) = real().closefrom {
        // SAFETY: the caller's own call.
        unsafe { real_closefrom(lowfd) }
    }
}
