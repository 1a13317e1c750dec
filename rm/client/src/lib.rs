//! The RM client library: NVIDIA driver calls with their bare-metal shapes over a pluggable
//! [`Transport`]. The guest's vGPU escape queue is one transport (`guest-tools`), the RM core
//! called in-process is another (`rm_core::testing`); code written against [`RmClient`] does not
//! change between them. It depends on the ABI only, so guest-side and host-side crates can both
//! use it.

pub mod client;
pub mod transport;

pub use client::{MappedMemory, RmApiError, RmClient};
pub use transport::{Buffer, BufferPool, Fd, Mapping, Node, Transport, TransportError};
