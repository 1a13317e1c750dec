//! Found by the `vfio_user` fuzz target: a `VERSION` message whose size is below its fixed part
//! (here 16, the bare header, though major and minor follow) makes `vfio_user` 0.1.7's server
//! subtract past zero and panic (on the overflow in a debug build, on the allocation of the
//! wrapped size in a release one). vgpud contains the panic to the session: the instance is
//! reset and serves the next VMM (the crate's code is upstream's; see docs/fuzzing.md).

#[test]
fn a_short_version_message_leaves_the_instance_serving() {
    let short = fuzz_targets::vfio_user::message(1, 1, 0, Some(16), &[0, 0, 1, 0]);
    fuzz_targets::vfio_user::session(short, 1);
}
