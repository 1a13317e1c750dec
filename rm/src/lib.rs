//! Host RM core: runs a guest's NVIDIA driver calls (RM escapes) for that guest, in its own
//! namespace (GFID), against a GPU backend.

pub mod abi;
pub mod backend;
pub mod core;
pub mod trace_check;
