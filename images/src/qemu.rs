//! QEMU from Debian's `forky` suite (the host's Debian 12 ships 7.2, which has no vfio-user
//! client), unpacked into the cache without root and without touching the machine's apt state.
//!
//! A private apt configuration under `<cache>/qemu-forky/apt/` names only forky, keeps its lists
//! and caches there and pretends nothing is installed; the dependency closure of
//! `qemu-system-x86` (less [`EXCLUDED`]) is fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` into `<cache>/qemu-forky/root`. [`Qemu::command`] runs the binary through forky's
//! own dynamic loader with the tree's libraries.

use crate::apt::Package;
use crate::{tools, Cache, Error};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the unpack layout changes, so old cache entries are rebuilt.
const LAYOUT: u32 = 1;

/// The Debian suite QEMU comes from.
pub const SUITE: &str = "forky";

/// Debian mirror of the private sources list.
const MIRROR: &str = "http://deb.debian.org/debian";

/// Keyring the suite's `InRelease` is checked against. Debian 12's `debian-archive-keyring`
/// holds the bookworm and trixie archive keys, and the archive signs forky with both (checked
/// 2026-12-03), so no `trusted=yes` is needed.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Packages whose dependency closure is unpacked: QEMU itself, and forky's libc6 so that its
/// own `ld-linux` loads it (`qemu-system-x86` pulls in `qemu-system-data`, `seabios` and
/// `ipxe-qemu`, which hold the firmware and option ROMs).
pub const ROOTS: &[&str] = &["qemu-system-x86", "libc6"];

/// Packages left out of the closure with everything only they pull in: init, account and
/// maintainer-script machinery that nothing runs when the binary runs from an unpacked tree, and
/// glibc's extra iconv charsets (which glibc would look for under the host's `/usr/lib` anyway).
/// Today only `libibverbs1`'s `systemd | systemd-standalone-sysusers | systemd-sysusers` (whose
/// `opensysusers` brings `passwd`, `base-passwd`, PAM and debconf) and libc6's
/// `libc-gconv-modules-extra` are reached; the rest keep such packages out if dependencies
/// move. Without them the closure is 69 packages, about 35 MB.
pub const EXCLUDED: &[&str] = &[
    "adduser",
    "base-passwd",
    "cdebconf",
    "debconf",
    "debconf-2.0",
    "init-system-helpers",
    "libc-gconv-modules-extra",
    "login",
    "opensysusers",
    "passwd",
    "systemd",
    "systemd-standalone-sysusers",
    "systemd-sysusers",
    "systemd-sysv",
];

/// The dynamic loader inside the tree.
const LOADER: &str = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
/// The emulator inside the tree.
const BINARY: &str = "usr/bin/qemu-system-x86_64";
/// Library directories of the tree, in search order (those that exist go on `--library-path`).
const LIB_DIRS: &[&str] = &["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];
/// QEMU's relocation hook: when `<exec dir>/qemu-bundle` exists, QEMU prefixes every
/// configured path (modules, data, firmware) with it. Under the loader, `/proc/self/exe` (and
/// so the exec dir) is the loader's directory; this link points from there back to the tree's
/// root, so QEMU finds its firmware without `-L` and loads its modules from the tree, never the
/// host's `/usr/lib/x86_64-linux-gnu/qemu` (a different build, which it refuses or aborts on).
const BUNDLE: &str = "usr/lib/x86_64-linux-gnu/qemu-bundle";
const BUNDLE_TARGET: &str = "../../..";
/// Firmware a q35 `-kernel` boot reads, checked after unpacking (relative to the tree); an ELF
/// `vmlinux` boots through the PVH option ROM.
const FIRMWARE: &[&str] = &[
    "usr/share/seabios/bios-256k.bin",
    "usr/share/qemu/linuxboot_dma.bin",
    "usr/share/qemu/kvmvapic.bin",
    "usr/share/qemu/pvh.bin",
];

/// `apt-cache depends` options: hard dependencies only.
const DEPENDS_OPTS: &[&str] = &[
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
];

/// A `.deb` of the closure, as `apt-get download --print-uris` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    /// Package name and version.
    pub package: Package,
    /// File name `apt-get download` gives it.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
}

/// QEMU unpacked from forky into the cache.
#[derive(Debug, Clone)]
pub struct Qemu {
    root: PathBuf,
    debs: Vec<Deb>,
    key: String,
}

impl Qemu {
    /// Resolves, downloads and unpacks QEMU into `cache` (skipping finished steps), taking the
    /// cache lock ([`Cache::lock`]). Fetches forky's package lists on first use.
    pub fn ensure(cache: &Cache) -> Result<Qemu, Error> {
        let _lock = cache.lock()?;
        Self::ensure_locked(cache)
    }

    /// As [`Qemu::ensure`], for a caller that holds the cache lock.
    pub fn ensure_locked(cache: &Cache) -> Result<Qemu, Error> {
        let apt = PrivateApt::create(&cache.path("qemu-forky/apt"))?;
        let fresh = !apt.has_lists()?;
        if fresh {
            apt.update()?;
        }
        match Self::build(cache, &apt) {
            // Resolving or downloading failed: lists older than the mirror name packages or
            // versions it no longer has, so refresh them once.
            Err(Error::Apt(e)) if !fresh => {
                crate::progress(&format!("{e}; refreshing the {SUITE} lists and retrying"));
                apt.update()?;
                Self::build(cache, &apt)
            }
            other => other,
        }
    }

    /// Fetches forky's package lists again (the next [`Qemu::ensure`] then picks up newer
    /// versions); takes the cache lock.
    pub fn refresh_lists(cache: &Cache) -> Result<(), Error> {
        let _lock = cache.lock()?;
        PrivateApt::create(&cache.path("qemu-forky/apt"))?.update()
    }

    fn build(cache: &Cache, apt: &PrivateApt) -> Result<Qemu, Error> {
        let names = closure(ROOTS, EXCLUDED, &apt.depends(ROOTS)?)?;
        let debs = apt.resolve(&names)?;
        let key = format!(
            "layout {LAYOUT}; {}",
            debs.iter()
                .map(|d| format!("{}={}", d.package.name, d.package.version))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let dir = cache.path("qemu-forky");
        let root = dir.join("root");
        let qemu = Qemu { root, debs, key };
        let (loader, binary, bundle) = (
            qemu.root.join(LOADER),
            qemu.root.join(BINARY),
            qemu.root.join(BUNDLE),
        );
        cache.step(
            "qemu-forky",
            &qemu.key,
            &[&loader, &binary, &bundle],
            || {
                let files = apt.download(&qemu.debs, &dir.join("debs"))?;
                qemu.unpack(&files)
            },
        )?;
        Ok(qemu)
    }

    fn unpack(&self, debs: &[PathBuf]) -> Result<(), Error> {
        tools::remove_all(&self.root)?;
        tools::mkdir(&self.root)?;
        crate::progress(&format!(
            "unpacking {} packages into {}",
            debs.len(),
            self.root.display()
        ));
        for deb in debs {
            tools::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&self.root))?;
        }
        let bundle = self.root.join(BUNDLE);
        std::os::unix::fs::symlink(BUNDLE_TARGET, &bundle).map_err(|e| Error::io(&bundle, e))?;
        for rel in [LOADER, BINARY].iter().chain(FIRMWARE) {
            let path = self.root.join(rel);
            if !path.exists() {
                return Err(Error::Tool(format!(
                    "{} is missing after unpacking the {SUITE} packages",
                    path.display()
                )));
            }
        }
        // Any library the loader would take from the host means a package is missing.
        let out = tools::run(
            Command::new(self.root.join(LOADER))
                .arg("--library-path")
                .arg(self.library_path())
                .arg("--list")
                .arg(self.root.join(BINARY)),
        )?;
        let outside = libraries_outside(&String::from_utf8_lossy(&out.stdout), &self.root);
        if !outside.is_empty() {
            return Err(Error::Tool(format!(
                "{BINARY} needs libraries outside {} (a package is missing): {}",
                self.root.display(),
                outside.join(", ")
            )));
        }
        Ok(())
    }

    /// The unpacked tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The packages unpacked, in name order.
    pub fn debs(&self) -> &[Deb] {
        &self.debs
    }

    /// Cache key (the layout and the `name=version` list), for images built from this QEMU.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `--library-path` value: the tree's library directories that exist.
    fn library_path(&self) -> String {
        LIB_DIRS
            .iter()
            .map(|d| self.root.join(d))
            .filter(|d| d.is_dir())
            .map(|d| d.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// What QEMU needs to run inside another root (the nested harness) from the ordinary paths:
    /// `(file in the tree, path relative to the new root)` for the emulator, every shared library
    /// the loader resolves for it, the loader itself (also as `/lib64/ld-linux-x86-64.so.2`, so
    /// the binary runs directly) and the q35 firmware. In the new root QEMU's configured paths
    /// (`/usr/share/qemu`) hold the firmware, so it needs no bundle link and no `-L`.
    pub fn runtime_files(&self) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
        let mut list = Command::new(self.root.join(LOADER));
        list.arg("--library-path")
            .arg(self.library_path())
            .arg("--list")
            .arg(self.root.join(BINARY));
        let out = tools::run(&mut list)?;
        let mut files = vec![
            (self.root.join(BINARY), PathBuf::from(BINARY)),
            (self.root.join(LOADER), PathBuf::from(LOADER)),
            (
                self.root.join(LOADER),
                PathBuf::from("lib64/ld-linux-x86-64.so.2"),
            ),
        ];
        for lib in crate::tools::ldd_paths(&String::from_utf8_lossy(&out.stdout)) {
            let rel = lib
                .strip_prefix(&self.root)
                .map_err(|_| {
                    Error::Tool(format!(
                        "QEMU's loader resolved {} outside its tree",
                        lib.display()
                    ))
                })?
                .to_path_buf();
            files.push((lib, rel));
        }
        for fw in FIRMWARE {
            files.push((self.root.join(fw), PathBuf::from(fw)));
            // QEMU looks for every firmware file in its data directory.
            let name = Path::new(fw)
                .file_name()
                .expect("firmware paths name files");
            files.push((self.root.join(fw), Path::new("usr/share/qemu").join(name)));
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// `ROOT/<ld-linux> --library-path ROOT/usr/lib/x86_64-linux-gnu
    /// ROOT/usr/bin/qemu-system-x86_64`: add QEMU's own arguments. No `-L` is needed (the `qemu-bundle` link relocates QEMU's data
    /// and firmware paths into the tree); `QEMU_MODULE_DIR` is cleared so modules come from
    /// the tree too.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.root.join(LOADER));
        cmd.arg("--library-path")
            .arg(self.library_path())
            .arg(self.root.join(BINARY))
            .env_remove("QEMU_MODULE_DIR");
        cmd
    }

    /// The first line of `qemu-system-x86_64 --version`, e.g.
    /// `QEMU emulator version 11.1.2 (Debian 1:11.1.2+ds-3)`.
    pub fn version(&self) -> Result<String, Error> {
        let out = tools::run(self.command().arg("--version"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::Tool(format!("{BINARY} --version printed nothing")))
    }
}

/// apt with a configuration of its own: forky only, lists and caches in `dir`, nothing
/// installed, and none of the machine's `/etc/apt` (its sources, preferences and `apt.conf.d`
/// hooks such as the AppStream refresh after `apt-get update`). The configuration goes through
/// `APT_CONFIG` rather than `-o` options, because apt reads `apt.conf.d` before it parses its
/// command line, so `-o Dir::Etc::Parts=...` would come too late.
#[derive(Debug)]
struct PrivateApt {
    conf: PathBuf,
    lists: PathBuf,
}

impl PrivateApt {
    /// Writes the configuration and sources list into `dir` and creates its directories.
    fn create(dir: &Path) -> Result<Self, Error> {
        let empty = dir.join("empty");
        let lists = dir.join("lists");
        for d in [
            &empty,
            &lists.join("partial"),
            &dir.join("cache/archives/partial"),
        ] {
            tools::mkdir(d)?;
        }
        for d in [&dir.join("state"), &dir.join("log")] {
            tools::mkdir(d)?;
        }
        let sources = dir.join("sources.list");
        write_if_changed(
            &sources,
            &format!("deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n"),
        )?;
        let conf = dir.join("apt.conf");
        write_if_changed(&conf, &apt_conf(dir)?)?;
        Ok(Self { conf, lists })
    }

    /// An apt tool under the private configuration.
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.conf).env("LC_ALL", "C");
        cmd
    }

    /// Whether `apt-get update` has fetched a Packages index.
    fn has_lists(&self) -> Result<bool, Error> {
        let entries = std::fs::read_dir(&self.lists).map_err(|e| Error::io(&self.lists, e))?;
        Ok(entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("_Packages")))
    }

    /// `apt-get update` of the private lists.
    fn update(&self) -> Result<(), Error> {
        crate::progress(&format!("apt-get update ({SUITE} lists, private)"));
        tools::run(self.cmd("apt-get").args(["update", "-q"]))?;
        if !self.has_lists()? {
            return Err(Error::Apt(format!(
                "apt-get update fetched no {SUITE} Packages index into {}",
                self.lists.display()
            )));
        }
        Ok(())
    }

    /// `apt-cache depends --recurse` (hard dependencies) of `pkgs`.
    fn depends(&self, pkgs: &[&str]) -> Result<String, Error> {
        let out = tools::run(
            self.cmd("apt-cache")
                .args(["depends", "--recurse"])
                .args(DEPENDS_OPTS)
                .args(pkgs),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Candidate versions, file names and sizes of `names` (`apt-get download --print-uris`).
    fn resolve(&self, names: &BTreeSet<String>) -> Result<Vec<Deb>, Error> {
        let out = tools::run(
            self.cmd("apt-get")
                .args(["download", "--print-uris", "-q"])
                .args(names),
        )?;
        let debs = parse_print_uris(&String::from_utf8_lossy(&out.stdout))?;
        let got: BTreeSet<&str> = debs.iter().map(|d| d.package.name.as_str()).collect();
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !got.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Apt(format!(
                "apt-get download --print-uris gave no .deb for {}",
                missing.join(", ")
            )));
        }
        Ok(debs)
    }

    /// Downloads the `.deb`s not yet in `dir` and removes other files there (old versions);
    /// returns the paths of all of them, in `debs` order. `apt-get download` writes into a
    /// scratch directory that is moved in only after it succeeded, so an interrupted download
    /// leaves no truncated `.deb` behind.
    fn download(&self, debs: &[Deb], dir: &Path) -> Result<Vec<PathBuf>, Error> {
        tools::mkdir(dir)?;
        let incoming = dir.join("incoming");
        tools::remove_all(&incoming)?;
        let wanted: BTreeSet<&str> = debs.iter().map(|d| d.file_name.as_str()).collect();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.filter_map(Result::ok) {
            if !wanted.contains(entry.file_name().to_string_lossy().as_ref()) {
                tools::remove_all(&entry.path())?;
            }
        }
        let missing: Vec<&Deb> = debs
            .iter()
            .filter(|d| !dir.join(&d.file_name).exists())
            .collect();
        if !missing.is_empty() {
            let bytes: u64 = missing.iter().map(|d| d.size).sum();
            crate::progress(&format!(
                "downloading {} {SUITE} packages ({:.1} MB)",
                missing.len(),
                bytes as f64 / 1e6
            ));
            tools::mkdir(&incoming)?;
            tools::run(
                self.cmd("apt-get")
                    .args(["download", "-q"])
                    .args(
                        missing
                            .iter()
                            .map(|d| format!("{}={}", d.package.name, d.package.version)),
                    )
                    .current_dir(&incoming),
            )
            .map_err(|e| Error::Apt(e.to_string()))?;
            for d in &missing {
                let (from, to) = (incoming.join(&d.file_name), dir.join(&d.file_name));
                std::fs::rename(&from, &to).map_err(|e| {
                    Error::Apt(format!(
                        "apt-get download did not produce {}: {e}",
                        from.display()
                    ))
                })?;
            }
            tools::remove_all(&incoming)?;
        }
        Ok(debs.iter().map(|d| dir.join(&d.file_name)).collect())
    }
}

/// Writes `text` to `path` unless it already holds it (apt rebuilds its binary cache when its
/// sources list is newer than the cache, which would cost every run most of a second).
fn write_if_changed(path: &Path, text: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    tools::write_atomic(path, text.as_bytes())
}

/// The private apt configuration for the directory `dir`.
fn apt_conf(dir: &Path) -> Result<String, Error> {
    let d = dir
        .to_str()
        .filter(|s| !s.contains('"'))
        .ok_or_else(|| Error::Apt(format!("unusable apt directory {}", dir.display())))?;
    Ok(format!(
        r#"// Written by vgpu-image: apt for QEMU from Debian {SUITE}, isolated from the machine's apt.
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "{d}/empty";
Dir::Etc::SourceList "{d}/sources.list";
Dir::Etc::SourceParts "{d}/empty";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "{d}/empty";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "{d}/empty";
Dir::State "{d}/state";
Dir::State::Lists "{d}/lists";
Dir::State::status "/dev/null";
Dir::Cache "{d}/cache";
Dir::Cache::srcpkgcache "";
Dir::Log "{d}/log";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
Acquire::Languages "none";
Acquire::GzipIndexes "true";
// The mirror these machines reach serves a frozen snapshot whose InRelease is past its
// Valid-Until (the machine's own apt.conf.d allows the same); the signature is still checked.
Acquire::Check-Valid-Until "false";
"#
    ))
}

/// One alternative of a dependency: a package, or a virtual package with its providers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alternative {
    name: String,
    providers: Vec<String>,
    is_virtual: bool,
}

/// A package's hard dependencies as `apt-cache depends` prints them: one group of
/// alternatives per dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Depends {
    package: String,
    groups: Vec<Vec<Alternative>>,
}

/// Parses `apt-cache depends` output. A package starts an unindented line; `  Depends: x`
/// (or `PreDepends:`) is a dependency, ` |Depends: x` an alternative continued on the next
/// line, `<x>` a virtual package, and deeper-indented lines under an entry its providers.
/// Other relations (with `--no-*` there are none) are ignored.
fn parse_depends(text: &str) -> Vec<Depends> {
    let mut out: Vec<Depends> = Vec::new();
    let mut open: Vec<Alternative> = Vec::new();
    // Whether provider lines attach to the last alternative (false after an ignored relation).
    let mut in_dep = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            flush(&mut out, &mut open);
            out.push(Depends {
                package: strip_arch(line.trim()).to_string(),
                groups: Vec::new(),
            });
            in_dep = false;
            continue;
        }
        if line.starts_with("    ") {
            if in_dep {
                let provider = strip_arch(line.trim()).to_string();
                let last = match open.last_mut() {
                    Some(alt) => Some(alt),
                    None => out
                        .last_mut()
                        .and_then(|d| d.groups.last_mut())
                        .and_then(|g| g.last_mut()),
                };
                if let Some(alt) = last {
                    alt.providers.push(provider);
                }
            }
            continue;
        }
        let trimmed = line.trim_start();
        let (continued, rel) = match trimmed.strip_prefix('|') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let Some((kind, target)) = rel.split_once(':') else {
            in_dep = false;
            continue;
        };
        if kind != "Depends" && kind != "PreDepends" {
            in_dep = false;
            continue;
        }
        let target = target.trim();
        let is_virtual = target.starts_with('<') && target.ends_with('>');
        let name = strip_arch(target.trim_start_matches('<').trim_end_matches('>')).to_string();
        open.push(Alternative {
            name,
            providers: Vec::new(),
            is_virtual,
        });
        in_dep = true;
        if !continued {
            if let Some(d) = out.last_mut() {
                d.groups.push(std::mem::take(&mut open));
            } else {
                open.clear();
            }
        }
    }
    flush(&mut out, &mut open);
    out
}

/// Closes an unterminated alternative group (output cut after a `|` line).
fn flush(out: &mut [Depends], open: &mut Vec<Alternative>) {
    if !open.is_empty() {
        if let Some(d) = out.last_mut() {
            d.groups.push(std::mem::take(open));
        }
        open.clear();
    }
}

/// `name:amd64` / `name:any` -> `name`.
fn strip_arch(name: &str) -> &str {
    name.split_once(':').map_or(name, |(n, _)| n)
}

/// The package that satisfies `group`, or `None` when it is already satisfied by a chosen
/// package or every way to satisfy it is excluded: the first non-excluded real package, or the
/// first non-excluded provider of a virtual one.
fn choose(group: &[Alternative], excluded: &[&str], chosen: &BTreeSet<String>) -> Option<String> {
    let satisfied = group.iter().any(|alt| {
        (!alt.is_virtual && chosen.contains(&alt.name))
            || alt.providers.iter().any(|p| chosen.contains(p))
    });
    if satisfied {
        return None;
    }
    let allowed = |n: &String| !excluded.contains(&n.as_str());
    group.iter().find_map(|alt| {
        if alt.is_virtual {
            if !allowed(&alt.name) {
                return None;
            }
            alt.providers.iter().find(|p| allowed(p)).cloned()
        } else {
            allowed(&alt.name).then(|| alt.name.clone())
        }
    })
}

/// The dependency closure of `roots` without `excluded` (and without what only they pull in),
/// breadth first over `text`, the `apt-cache depends --recurse` output for the roots (which
/// lists every package reachable through any alternative or provider, so every one chosen).
fn closure(roots: &[&str], excluded: &[&str], text: &str) -> Result<BTreeSet<String>, Error> {
    let entries = parse_depends(text);
    let mut chosen: BTreeSet<String> = roots.iter().map(|r| r.to_string()).collect();
    let mut todo: std::collections::VecDeque<String> = chosen.iter().cloned().collect();
    while let Some(pkg) = todo.pop_front() {
        let entry = entries.iter().find(|d| d.package == pkg).ok_or_else(|| {
            Error::Apt(format!(
                "apt-cache depends does not list {pkg} (are the {SUITE} lists fetched?)"
            ))
        })?;
        for group in &entry.groups {
            if let Some(dep) = choose(group, excluded, &chosen) {
                chosen.insert(dep.clone());
                todo.push_back(dep);
            }
        }
    }
    Ok(chosen)
}

/// Parses `apt-get download --print-uris` lines: `'URI' name_version_arch.deb size hash`.
fn parse_print_uris(text: &str) -> Result<Vec<Deb>, Error> {
    let mut debs = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('\'')) {
        let bad = || Error::Apt(format!("unexpected apt-get --print-uris line: {line}"));
        let mut fields = line.split_whitespace().skip(1);
        let file_name = fields.next().ok_or_else(bad)?;
        let size = fields
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let stem = file_name.strip_suffix(".deb").ok_or_else(bad)?;
        let mut parts = stem.split('_');
        let (Some(name), Some(version), Some(_arch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        debs.push(Deb {
            package: Package {
                name: name.to_string(),
                version: version.replace("%3a", ":"),
            },
            file_name: file_name.to_string(),
            size,
        });
    }
    debs.sort_by(|a, b| a.package.name.cmp(&b.package.name));
    Ok(debs)
}

/// Libraries in `ld.so --list` output that resolve outside `root` or are not found.
fn libraries_outside(text: &str, root: &Path) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once("=>")?;
            let path = rest.trim().split(" (").next()?.trim();
            (!Path::new(path).starts_with(root)).then(|| format!("{} => {path}", name.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPENDS: &str = "\
qemu-system-x86
  Depends: libc6
  Depends: libaio1t64
  Depends: ipxe-qemu
    ipxe-qemu-amd64
  Conflicts: <qemu-kvm>
  Recommends: qemu-utils
libibverbs1
 |Depends: systemd
 |Depends: systemd-standalone-sysusers
  Depends: <systemd-sysusers>
    opensysusers
    systemd-standalone-sysusers
    systemd
  Depends: libc6
  PreDepends: libnl-3-200:amd64
libc6
  Depends: libgcc-s1
  Depends: libc-gconv-modules-extra
";

    fn alt(name: &str, providers: &[&str], is_virtual: bool) -> Alternative {
        Alternative {
            name: name.into(),
            providers: providers.iter().map(|p| p.to_string()).collect(),
            is_virtual,
        }
    }

    #[test]
    fn parses_groups_alternatives_and_providers() {
        let d = parse_depends(DEPENDS);
        assert_eq!(
            d.iter().map(|d| d.package.as_str()).collect::<Vec<_>>(),
            ["qemu-system-x86", "libibverbs1", "libc6"]
        );
        assert_eq!(
            d[0].groups,
            vec![
                vec![alt("libc6", &[], false)],
                vec![alt("libaio1t64", &[], false)],
                vec![alt("ipxe-qemu", &["ipxe-qemu-amd64"], false)],
            ]
        );
        assert_eq!(
            d[1].groups,
            vec![
                vec![
                    alt("systemd", &[], false),
                    alt("systemd-standalone-sysusers", &[], false),
                    alt(
                        "systemd-sysusers",
                        &["opensysusers", "systemd-standalone-sysusers", "systemd"],
                        true
                    ),
                ],
                vec![alt("libc6", &[], false)],
                vec![alt("libnl-3-200", &[], false)],
            ]
        );
    }

    #[test]
    fn choice_skips_excluded_and_satisfied_groups() {
        let none = BTreeSet::new();
        let sysusers = [
            alt("systemd", &[], false),
            alt("systemd-sysusers", &["opensysusers", "systemd"], true),
        ];
        assert_eq!(choose(&sysusers, EXCLUDED, &none), None);
        assert_eq!(
            choose(&sysusers, &["systemd"], &none).as_deref(),
            Some("opensysusers")
        );
        assert_eq!(choose(&sysusers, &[], &none).as_deref(), Some("systemd"));
        let have: BTreeSet<String> = ["opensysusers".to_string()].into();
        assert_eq!(choose(&sysusers, &[], &have), None);
        let virt_only = [alt("debconf-2.0", &["debconf"], true)];
        assert_eq!(choose(&virt_only, &["debconf-2.0"], &none), None);
        assert_eq!(choose(&[alt("<none>", &[], true)], &[], &none), None);
    }

    #[test]
    fn closure_leaves_out_excluded_packages_and_what_only_they_need() {
        let text = format!("{DEPENDS}libgcc-s1\n  Depends: libc6\nipxe-qemu\nlibaio1t64\n");
        let names = closure(&["qemu-system-x86"], EXCLUDED, &text).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "ipxe-qemu",
                "libaio1t64",
                "libc6",
                "libgcc-s1",
                "qemu-system-x86"
            ]
        );
        // libnl-3-200 has no entry: a package the output does not list is an error.
        let err = closure(&["libibverbs1"], EXCLUDED, &text).unwrap_err();
        assert!(err.to_string().contains("libnl-3-200"), "{err}");
        let text = format!("{text}libnl-3-200\nsystemd\nlibc-gconv-modules-extra\n");
        let names = closure(&["libibverbs1"], EXCLUDED, &text).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["libc6", "libgcc-s1", "libibverbs1", "libnl-3-200"]
        );
        let names = closure(&["libibverbs1"], &["systemd-standalone-sysusers"], &text).unwrap();
        assert!(names.contains("systemd"), "{names:?}");
    }

    #[test]
    fn print_uris_give_names_versions_and_sizes() {
        let text = "\
'http://deb.debian.org/debian/pool/main/q/qemu/qemu-system-x86_1%3a11.1.2%2bds-3_amd64.deb' qemu-system-x86_1%3a11.1.2+ds-3_amd64.deb 10769532 SHA256:ab
'http://deb.debian.org/debian/pool/main/a/alsa-lib/libasound2-data_1.2.16.1-2_all.deb' libasound2-data_1.2.16.1-2_all.deb 19432 SHA256:79
";
        let debs = parse_print_uris(text).unwrap();
        assert_eq!(debs.len(), 2);
        assert_eq!(debs[0].package.name, "libasound2-data");
        assert_eq!(debs[0].size, 19432);
        assert_eq!(debs[1].package.version, "1:11.1.2+ds-3");
        assert_eq!(
            debs[1].file_name,
            "qemu-system-x86_1%3a11.1.2+ds-3_amd64.deb"
        );
        assert!(parse_print_uris("'u' not-a-deb 12 SHA256:x\n").is_err());
        assert!(parse_print_uris("'u' a_1_amd64.deb size SHA256:x\n").is_err());
    }

    #[test]
    fn libraries_from_the_host_are_reported() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /q/root/usr/lib/x86_64-linux-gnu/libz.so.1 (0x00007f00)\n\
                    \tlibfoo.so.2 => /lib/x86_64-linux-gnu/libfoo.so.2 (0x00007f01)\n\
                    \tlibbar.so.3 => not found\n";
        assert_eq!(
            libraries_outside(text, Path::new("/q/root")),
            [
                "libfoo.so.2 => /lib/x86_64-linux-gnu/libfoo.so.2",
                "libbar.so.3 => not found"
            ]
        );
    }

    #[test]
    fn apt_conf_points_into_the_directory() {
        let conf = apt_conf(Path::new("/c/qemu-forky/apt")).unwrap();
        assert!(conf.contains(r#"Dir::State::Lists "/c/qemu-forky/apt/lists";"#));
        assert!(conf.contains(r#"Dir::State::status "/dev/null";"#));
        assert!(conf.contains(r#"Dir::Etc::Parts "/c/qemu-forky/apt/empty";"#));
        assert!(apt_conf(Path::new("/a\"b")).is_err());
    }
}
