//! Every policy file under the workspace's `examples/` validates.

use std::path::Path;

use scheduler::policy_file::Policy;

#[test]
fn every_example_policy_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !policy.tenants.is_empty(),
                "{} has no tenants",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected at least 3 example policies, found {checked}"
    );
}
