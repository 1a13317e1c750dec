//! The NVIDIA RM escape ABI of the 580 driver branch, as plain `#[repr(C)]` types.
//!
//! Every struct here has the exact size and field offsets the 580 headers give on x86_64 (LP64);
//! `const` assertions next to each type fail the build if a layout drifts. Guest bytes are read
//! into these types with [`read_struct`] (no `unsafe`, any alignment) and written back with
//! [`write_struct`]. Fields that hold guest user addresses are `u64` ("NvP64"); fields that hold RM
//! handles are [`Handle`].

// Every ABI struct derives `Debug`; zerocopy's `KnownLayout` derive adds helper types that do not.
#![allow(missing_debug_implementations)]

pub mod alloc_params;
pub mod class;
pub mod ctrl;
pub mod escape;
pub mod frontend;
pub mod ioctl;
pub mod methods;
pub mod nvos;
pub mod pushbuffer;
pub mod status;
pub mod userd;

pub use status::NvStatus;

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An RM object handle (`NvHandle`).
pub type Handle = u32;

/// The driver version string the 580.159.04 driver reports (`NV_VERSION_STRING`), as seen in the
/// shared traces.
pub const NV_VERSION_STRING: &str = "580.159.04";

/// Reads a `T` from the start of `bytes`; `None` when `bytes` is shorter than `T`.
pub fn read_struct<T: FromBytes>(bytes: &[u8]) -> Option<T> {
    T::read_from_prefix(bytes).ok().map(|(v, _)| v)
}

/// Writes `value` over the start of `bytes`; `false` when `bytes` is shorter than `T`.
pub fn write_struct<T: IntoBytes + Immutable>(value: &T, bytes: &mut [u8]) -> bool {
    value.write_to_prefix(bytes).is_ok()
}

/// Asserts at compile time that a type has the given size and field offsets.
#[macro_export]
macro_rules! assert_layout {
    ($t:ty, $size:expr $(, $field:ident @ $off:expr)* $(,)?) => {
        const _: () = assert!(::core::mem::size_of::<$t>() == $size);
        $(const _: () = assert!(::core::mem::offset_of!($t, $field) == $off);)*
    };
}
