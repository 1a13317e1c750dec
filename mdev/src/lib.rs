//! vGPU instances on the host and the `vgpud` daemon that enforces their shares.
//!
//! The daemon's tenants are the instances this crate manages: today host processes running
//! `librmshim.so` (a tenant registers over a Unix socket with its name and channel list); later
//! issues add VMs. Modules:
//! * [`protocol`]: the lines a tenant sends;
//! * [`tenants`]: the registry of connected tenants and their channels, persisted so that a
//!   restarted daemon can re-enable what a dead one may have left disabled;
//! * [`gate`]: the scheduler's [`scheduler::mechanism::Mechanism`] on a GSP-era NVIDIA GPU, where
//!   channel enable/disable is the only effective lever: each tenant is one group, gated as a
//!   whole, its run time measured as the time it was enabled (switch time excluded);
//! * [`enforce`]: the daemon's loop, the scheduler over the gate in short ticks with policy
//!   reload (SIGHUP, file change) between them.

pub mod acceptor;
pub mod control;
pub mod daemon;
pub mod enforce;
pub mod gate;
pub mod instance;
pub mod metrics;
pub mod nvidia_host;
pub mod poller;
pub mod profile;
pub mod protocol;
pub mod rm_service;
pub mod sim_host;
pub mod tenants;
pub mod vfio_server;
pub mod vm_scheduler;
