//! Guest userspace for the vGPU project.
//!
//! * [`driver`]: the userspace vGPU driver (sysfs discovery, BAR mapping, escape virtqueue in the
//!   host-visible window, doorbell, completion by polling or by INTx through `uio_pci_generic`);
//! * [`rmapi`]: the RM client library with the bare-metal call shapes over a [`rmapi::Transport`];
//! * [`smi`]: `vgpu-smi`, the device report;
//! * [`workload`]: GPU work through TSGs, channels and the doorbell, with every semaphore checked;
//! * [`hostile`]: a guest that sends the device garbage and checks it is refused;
//! * the test agent (`agent`, `scenario`, `report`), which runs as PID 1 of the test guest and
//!   reports machine-readable result lines, and `timed_run`, the harness's VMM runner.

pub mod agent;
pub mod cli;
pub mod cmdline;
pub mod driver;
pub mod hostile;
pub mod modules;
pub mod pci;
pub mod report;
pub mod rmapi;
pub mod scenario;
pub mod session;
pub mod smi;
pub mod timed_run;
pub mod workload;
