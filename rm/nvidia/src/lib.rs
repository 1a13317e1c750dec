//! The `nvidia` backend: RM escapes executed by the host's NVIDIA driver (`/dev/nvidiactl`,
//! `/dev/nvidiaN`; open kernel modules of the 580 branch, checked at start by [`version`]).
//!
//! Parts:
//! * [`forward::Forwarder`], the tenant path: a host process's own ioctls (through
//!   `librmshim.so`), decoded with [`rm_abi`], checked for client ownership, sanitised
//!   ([`sanitize`]), copied with bounds and forwarded, with its channels accounted for gating;
//! * [`host_client::HostClient`], a host service's own client (the gating daemon's), which
//!   disables and enables other clients' channels;
//! * [`driver::NvDriver`], the one seam where bytes reach the kernel, so all of the above is
//!   tested without a GPU (see the trace replay tests in `replay.rs`).
//!
//! Handles: a host-process tenant sees the driver's own handles. Renaming them would break its
//! `/dev/nvidia-uvm` calls, which carry RM client, VA space and channel handles; instead the
//! forwarder refuses any escape naming a client the process did not allocate. Guests of VMs get
//! their own handle namespace from the RM core (`rm_core`).

pub mod backend;
pub mod calls;
pub mod driver;
pub mod forward;
pub mod gpu_info;
pub mod host_client;
pub mod ownership;
pub mod sanitize;
pub mod version;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod replay;

pub use backend::NvidiaBackend;
pub use driver::{NvDriver, SyscallDriver};
pub use forward::{ChannelRef, Forwarder, HostNode};
pub use host_client::{HostClient, HostClientError};
pub use version::{DriverVersion, VersionError};
