//! The USERD layout (`Nvc86fControl`, `clc86f.h`): the per-channel control page a client writes
//! GP_PUT into and the PBDMA writes GP_GET into. Offsets in bytes.

/// Size of one channel's USERD (`sizeof(Nvc86fControl)`).
pub const USERD_SIZE: u64 = 512;
/// Pushbuffer PUT (legacy, unused by GPFIFO channels).
pub const PUT: u64 = 0x40;
/// Pushbuffer GET, low bits (written by the PBDMA).
pub const GET: u64 = 0x44;
/// Reference count written by `SET_REFERENCE`.
pub const REFERENCE: u64 = 0x48;
/// Pushbuffer GET, high bits.
pub const GET_HI: u64 = 0x60;
/// GPFIFO GET index (read-only to the client).
pub const GP_GET: u64 = 0x88;
/// GPFIFO PUT index (written by the client).
pub const GP_PUT: u64 = 0x8C;
