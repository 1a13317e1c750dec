//! Guest userspace for the vGPU project.
//!
//! Today this is the test agent `vgpu-guest`: it runs as PID 1 of the test guest, reports what the
//! guest sees as machine-readable result lines on the console and powers the guest off. The same
//! binary has a `timed-run` mode that the nested harness uses to start a VMM and time its guest.
//! Later the userspace vGPU driver, the RM client library and `vgpu-smi` live here too.

pub mod agent;
pub mod cmdline;
pub mod modules;
pub mod pci;
pub mod report;
pub mod scenario;
pub mod timed_run;
