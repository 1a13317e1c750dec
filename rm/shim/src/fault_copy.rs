//! A memory copy that answers a fault instead of taking one: the tenant's pointers are its own
//! and may be bad or unmapped by another of its threads mid-call, and the driver answers
//! `EFAULT` there, so the shim must too.
//!
//! The copy is one `rep movsb` at a known address. A SIGSEGV/SIGBUS handler that sees the fault
//! there moves the thread to the copy's error exit, as the kernel's exception tables do for its
//! user copies; every other fault goes to the handler that was installed before (or the default
//! action). `process_vm_readv` does the same check in the kernel but cost +4.4 µs per control on
//! the H200 (one syscall per copy); this costs nothing on the good path.
//!
//! Only x86_64; elsewhere a bad pointer still crashes the process that passed it. A handler that
//! the process installs after the shim's replaces it, and then a bad pointer crashes as before.

use libc::{c_int, c_void, siginfo_t};
use std::sync::{Once, OnceLock};

std::arch::global_asm!(
    ".pushsection .text.rmshim_fault_copy,\"ax\",@progbits",
    ".globl rmshim_fault_copy",
    ".hidden rmshim_fault_copy",
    ".type rmshim_fault_copy,@function",
    "rmshim_fault_copy:",
    "mov rcx, rdx",
    ".globl rmshim_fault_copy_insn",
    ".hidden rmshim_fault_copy_insn",
    "rmshim_fault_copy_insn:",
    "rep movsb",
    "xor eax, eax",
    "ret",
    ".globl rmshim_fault_copy_fixup",
    ".hidden rmshim_fault_copy_fixup",
    "rmshim_fault_copy_fixup:",
    "mov eax, 1",
    "ret",
    ".size rmshim_fault_copy, .-rmshim_fault_copy",
    ".popsection",
);

extern "C" {
    /// Copies `len` bytes from `src` to `dst`; 0, or 1 when it faulted (caught by [`on_fault`]).
    fn rmshim_fault_copy(dst: *mut u8, src: *const u8, len: usize) -> u32;
    static rmshim_fault_copy_insn: u8;
    static rmshim_fault_copy_fixup: u8;
}

/// The SIGSEGV and SIGBUS actions in force before the shim's.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

const SIGNALS: [c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the fault handler (once per process).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: sigaction with valid pointers; the zeroed structs are valid sigactions.
        unsafe {
            let mut previous: [libc::sigaction; 2] = std::mem::zeroed();
            for (sig, prev) in SIGNALS.iter().zip(previous.iter_mut()) {
                libc::sigaction(*sig, std::ptr::null(), prev);
            }
            // Published before the handler can run, so it always finds what to chain to.
            let _ = PREVIOUS.set(previous);
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_fault as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut ours.sa_mask);
            for sig in SIGNALS {
                libc::sigaction(sig, &ours, std::ptr::null_mut());
            }
        }
    });
}

/// Copies `len` bytes from `src` to `dst`; `false` when either range faulted part way (what was
/// copied before the fault stays copied, as with the kernel's user copies).
///
/// # Safety
/// `dst..dst+len` must not overlap memory the caller relies on besides the destination; bad
/// (unmapped or read-only) addresses are fine once [`install`] ran.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: the routine touches only the two ranges; a fault there is caught.
    unsafe { rmshim_fault_copy(dst, src, len) == 0 }
}

extern "C" fn on_fault(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    let rip = &mut uc.uc_mcontext.gregs[libc::REG_RIP as usize];
    if *rip as usize == std::ptr::addr_of!(rmshim_fault_copy_insn) as usize {
        *rip = std::ptr::addr_of!(rmshim_fault_copy_fixup) as i64;
        return;
    }
    chain(sig, info, ctx);
}

/// Hands a fault that is not the copy's to the action in force before the shim's.
fn chain(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let index = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    let previous = PREVIOUS.get().map(|p| p[index]);
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with this signature.
                let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: as above, for a plain handler.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // The default action: restore it; a real fault then happens again on return and
            // ends the process as it would have; a sent signal is raised again.
            // SAFETY: plain signal calls, async-signal-safe.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                if (*info).si_code <= 0 {
                    libc::raise(sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    static CHAINED: AtomicU32 = AtomicU32::new(0);

    extern "C" fn earlier_handler(sig: c_int) {
        CHAINED.store(sig as u32, Ordering::SeqCst);
    }

    #[test]
    fn bad_pointers_fault_into_an_error_and_other_signals_reach_the_earlier_handler() {
        // SAFETY: test-only signal and mapping calls with valid arguments.
        unsafe {
            libc::signal(libc::SIGBUS, earlier_handler as *const () as usize);
            install();
            let page = 4096;
            let map = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
            .cast::<u8>();
            assert_ne!(map.cast::<c_void>(), libc::MAP_FAILED);
            map.add(page - 2).write(7);
            map.add(page - 1).write(8);
            libc::mprotect(map.add(page).cast(), page, libc::PROT_NONE);
            let mut buf = [0u8; 4];
            // Good copies.
            assert!(copy(buf.as_mut_ptr(), map.add(page - 2), 2));
            assert_eq!(buf[..2], [7, 8]);
            // A read running into the protected page, and one wholly inside it.
            assert!(!copy(buf.as_mut_ptr(), map.add(page - 2), 4));
            assert!(!copy(buf.as_mut_ptr(), map.add(page), 1));
            // A write into a read-only page.
            libc::mprotect(map.cast(), page, libc::PROT_READ);
            assert!(!copy(map, buf.as_ptr(), 1));
            // Unmapped memory.
            libc::munmap(map.cast(), 2 * page);
            assert!(!copy(buf.as_mut_ptr(), map, 4));
            // A SIGBUS that is not the copy's goes to the handler that was there before.
            libc::raise(libc::SIGBUS);
            assert_eq!(CHAINED.load(Ordering::SeqCst), libc::SIGBUS as u32);
        }
    }
}
