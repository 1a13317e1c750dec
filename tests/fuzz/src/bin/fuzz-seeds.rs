//! Writes a target's seed corpus into a directory, one file per seed, for libFuzzer:
//! `fuzz-seeds TARGET DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, dir] = args.as_slice() else {
        eprintln!("usage: fuzz-seeds TARGET DIR (targets: {})", names());
        return ExitCode::from(2);
    };
    if !fuzz_targets::TARGETS.iter().any(|(n, _)| n == target) {
        eprintln!("unknown target {target} (targets: {})", names());
        return ExitCode::from(2);
    }
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let seeds = fuzz_targets::corpus::seeds(target);
    for (i, s) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i:04}"));
        if let Err(e) = std::fs::write(&path, s) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    ExitCode::SUCCESS
}

fn names() -> String {
    let names: Vec<&str> = fuzz_targets::TARGETS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}
