//! The RM client library: NVIDIA driver calls with their bare-metal shapes over a pluggable
//! [`Transport`] (the vGPU's escape queue now; `/dev/nvidiactl` on bare metal could be another
//! implementation, and code written against [`RmClient`] would not change).

pub mod client;
pub mod transport;
pub mod vgpu_transport;

pub use client::{MappedMemory, RmApiError, RmClient};
pub use transport::{Buffer, Fd, Mapping, Node, Transport, TransportError};
pub use vgpu_transport::VgpuTransport;
