//! The RM client library (`rm-client`: NVIDIA driver calls with their bare-metal shapes over a
//! pluggable [`Transport`]) and the guest's transport, the vGPU's escape queue
//! ([`VgpuTransport`]); `/dev/nvidiactl` on bare metal could be another implementation, and code
//! written against [`RmClient`] would not change.

pub mod vgpu_transport;

pub use rm_client::{client, transport};
pub use rm_client::{
    Buffer, Fd, MappedMemory, Mapping, Node, RmApiError, RmClient, Transport, TransportError,
};
pub use vgpu_transport::VgpuTransport;
