//! Fuzz targets for every decoder a guest or a tenant feeds: RM escape frames and their params
//! ([`escape`]), escape-virtqueue chains ([`virtqueue`]), BAR0 accesses ([`bar0`]), vfio-user
//! messages ([`vfio_user`]), the vgpud tenant protocol ([`tenant`]) and policy files
//! ([`policy`]).
//!
//! Each target is a `fn(&[u8])` that must not panic on any input. It decodes the bytes into
//! what a hostile guest, VMM or tenant could send, feeds them to the code under test, and then
//! asserts what that code promises beyond not crashing: answers are errors (`NV_ERR_*`,
//! `-errno`) rather than panics, the same guest is still served afterwards, a neighbour is
//! untouched, and a torn-down instance leaves nothing behind. A failed assertion is a finding.
//!
//! The same functions run two ways: as ordinary tests (`cargo test -p fuzz-targets`), each over
//! its seed corpus ([`corpus`]) and a fixed number of deterministic mutations ([`mutate`]); and
//! as libFuzzer targets of the excluded `tests/fuzz/cargo-fuzz` crate for long coverage-guided
//! runs (`scripts/fuzz.sh`).

pub mod bar0;
pub mod corpus;
pub mod escape;
pub mod guest;
pub mod input;
pub mod mutate;
pub mod policy;
pub mod tenant;
pub mod vfio_user;
pub mod virtqueue;

/// A fuzz target: decodes and runs one input, panicking only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target by name, as `scripts/fuzz.sh` and the bounded pass know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("escape", escape::run),
    ("virtqueue", virtqueue::run),
    ("bar0", bar0::run),
    ("vfio_user", vfio_user::run),
    ("tenant", tenant::run),
    ("policy", policy::run),
];
