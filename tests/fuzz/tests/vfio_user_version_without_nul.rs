//! Found by the `vfio_user` fuzz target: a `VERSION` message whose capability string is not
//! NUL-terminated makes `vfio_user` 0.1.7's server `unwrap` an error and panic. vgpud contains
//! the panic to the session: the instance is reset and serves the next VMM (upstream's code;
//! see docs/fuzzing.md).

#[test]
fn a_version_string_without_nul_leaves_the_instance_serving() {
    let body = [&[0u8, 0, 1, 0][..], br#"{"capabilities":{}}"#].concat();
    let bad = fuzz_targets::vfio_user::message(1, 1, 0, None, &body);
    fuzz_targets::vfio_user::session(bad, 1);
}
