//! vGPU instance definitions, in mdevctl's shape: a UUID, a type (`mdev_type`), a start mode
//! (`auto` instances come up with the daemon, `manual` ones on `vgpuctl start`) and attributes.
//! Ours are `gfid` (the instance's RM namespace, 1..=63) and `tenant` (the policy tenant whose
//! share the instance draws from).
//!
//! Each definition is one JSON file `<config dir>/<parent>/<uuid>`, as mdevctl keeps them under
//! `/etc/mdevctl.d/<parent>/<uuid>`:
//!
//! ```json
//! {"mdev_type": "sim-35c", "start": "auto", "attrs": [{"gfid": "1"}, {"tenant": "prod"}]}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// The parent device name definitions are kept under (one GPU per daemon today).
pub const PARENT: &str = "vgpu-sim-0";

/// Longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 64;

/// Largest definition file read (a definition is a few hundred bytes).
const MAX_DEFINITION_BYTES: u64 = 16 << 10;

/// When an instance starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// With the daemon.
    Auto,
    /// Only on `vgpuctl start`.
    Manual,
}

impl fmt::Display for StartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartMode::Auto => "auto",
            StartMode::Manual => "manual",
        })
    }
}

/// One instance definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The instance's UUID.
    pub uuid: Uuid,
    /// Its vGPU type (`mdev::profile` names).
    pub mdev_type: String,
    /// When it starts.
    pub start: StartMode,
    /// Its GFID, 1..=63, unique among definitions.
    pub gfid: u32,
    /// The policy tenant it belongs to.
    pub tenant: String,
}

/// A definition the daemon refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DefinitionError {
    /// Not a UUID.
    #[error("{0:?} is not a UUID")]
    BadUuid(String),
    /// The UUID is defined already.
    #[error("instance {0} is already defined")]
    DuplicateUuid(Uuid),
    /// No such instance.
    #[error("no instance {0} is defined")]
    NoSuchInstance(Uuid),
    /// The GFID is outside 1..=63.
    #[error("GFID {0} is outside 1..=63")]
    BadGfid(u32),
    /// Another instance has this GFID.
    #[error("GFID {gfid} is already used by instance {by}")]
    GfidClash {
        /// The GFID.
        gfid: u32,
        /// The instance holding it.
        by: Uuid,
    },
    /// No GFID is left.
    #[error("all 63 GFIDs are in use")]
    NoGfidLeft,
    /// Tenant names are 1..=64 characters of `[A-Za-z0-9_.-]`.
    #[error("tenant name {0:?} must be 1-64 characters of A-Z a-z 0-9 _ . -")]
    BadTenant(String),
    /// The type is unknown.
    #[error(transparent)]
    UnknownType(#[from] crate::profile::UnknownProfile),
    /// An attribute this daemon does not know.
    #[error("unknown attribute {0:?} (known: gfid, tenant)")]
    UnknownAttribute(String),
    /// The file is not a definition.
    #[error("{path}: {why}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading or writing the config directory failed.
    #[error("{0}")]
    Io(String),
}

/// The file format (mdevctl's).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefinitionFile {
    mdev_type: String,
    start: StartMode,
    #[serde(default)]
    attrs: Vec<BTreeMap<String, String>>,
}

/// Checks a tenant name.
pub fn check_tenant(name: &str) -> Result<(), DefinitionError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DefinitionError::BadTenant(name.to_string()))
    }
}

/// Parses a UUID the way mdevctl accepts them.
pub fn parse_uuid(s: &str) -> Result<Uuid, DefinitionError> {
    Uuid::from_str(s).map_err(|_| DefinitionError::BadUuid(s.to_string()))
}

impl Definition {
    /// The file contents.
    pub fn to_json(&self) -> String {
        let file = DefinitionFile {
            mdev_type: self.mdev_type.clone(),
            start: self.start,
            attrs: vec![
                BTreeMap::from([("gfid".to_string(), self.gfid.to_string())]),
                BTreeMap::from([("tenant".to_string(), self.tenant.clone())]),
            ],
        };
        serde_json::to_string_pretty(&file).expect("a definition serialises")
    }

    /// Parses the contents of the file for `uuid`; types and GFID range are checked, clashes
    /// with other definitions are not (that is [`Definitions`]' job).
    pub fn from_json(uuid: Uuid, text: &str, path: &str) -> Result<Self, DefinitionError> {
        let bad = |why: String| DefinitionError::BadFile {
            path: path.to_string(),
            why,
        };
        let file: DefinitionFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut gfid = None;
        let mut tenant = None;
        for (k, v) in file.attrs.iter().flatten() {
            match k.as_str() {
                "gfid" => {
                    gfid = Some(
                        v.parse::<u32>()
                            .map_err(|_| bad(format!("gfid {v:?} is not a number")))?,
                    )
                }
                "tenant" => tenant = Some(v.clone()),
                other => return Err(DefinitionError::UnknownAttribute(other.to_string())),
            }
        }
        let def = Definition {
            uuid,
            mdev_type: file.mdev_type,
            start: file.start,
            gfid: gfid.ok_or_else(|| bad("no gfid attribute".into()))?,
            tenant: tenant.ok_or_else(|| bad("no tenant attribute".into()))?,
        };
        def.check()?;
        Ok(def)
    }

    /// Checks the fields on their own.
    pub fn check(&self) -> Result<(), DefinitionError> {
        if !(1..=63).contains(&self.gfid) {
            return Err(DefinitionError::BadGfid(self.gfid));
        }
        check_tenant(&self.tenant)?;
        if !crate::profile::names().contains(&self.mdev_type.as_str()) {
            return Err(crate::profile::UnknownProfile(self.mdev_type.clone()).into());
        }
        Ok(())
    }
}

/// Every definition, kept in memory and in the config directory.
#[derive(Debug)]
pub struct Definitions {
    dir: PathBuf,
    defs: BTreeMap<Uuid, Definition>,
}

impl Definitions {
    /// Loads `<config_dir>/<PARENT>/*`, creating the directory. A file that does not parse, or
    /// whose GFID another file already took, is skipped and reported in the second value.
    pub fn load(config_dir: &Path) -> Result<(Self, Vec<DefinitionError>), DefinitionError> {
        let dir = config_dir.join(PARENT);
        std::fs::create_dir_all(&dir)
            .map_err(|e| DefinitionError::Io(format!("creating {}: {e}", dir.display())))?;
        let mut out = Self {
            dir: dir.clone(),
            defs: BTreeMap::new(),
        };
        let mut skipped = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| DefinitionError::Io(format!("reading {}: {e}", dir.display())))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let shown = path.display().to_string();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Ok(uuid) = Uuid::from_str(name) else {
                skipped.push(DefinitionError::BadFile {
                    path: shown,
                    why: "the file name is not a UUID".into(),
                });
                continue;
            };
            let text = match read_bounded(&path) {
                Ok(t) => t,
                Err(why) => {
                    skipped.push(DefinitionError::BadFile { path: shown, why });
                    continue;
                }
            };
            match Definition::from_json(uuid, &text, &shown).and_then(|d| {
                out.check_clash(&d)?;
                Ok(d)
            }) {
                Ok(d) => {
                    out.defs.insert(uuid, d);
                }
                Err(e) => skipped.push(e),
            }
        }
        Ok((out, skipped))
    }

    /// All definitions, by UUID.
    pub fn iter(&self) -> impl Iterator<Item = &Definition> {
        self.defs.values()
    }

    /// The definition of `uuid`.
    pub fn get(&self, uuid: &Uuid) -> Option<&Definition> {
        self.defs.get(uuid)
    }

    /// The lowest GFID no definition uses.
    pub fn free_gfid(&self) -> Result<u32, DefinitionError> {
        (1..=63)
            .find(|g| self.defs.values().all(|d| d.gfid != *g))
            .ok_or(DefinitionError::NoGfidLeft)
    }

    fn check_clash(&self, def: &Definition) -> Result<(), DefinitionError> {
        if let Some(other) = self
            .defs
            .values()
            .find(|d| d.gfid == def.gfid && d.uuid != def.uuid)
        {
            return Err(DefinitionError::GfidClash {
                gfid: def.gfid,
                by: other.uuid,
            });
        }
        Ok(())
    }

    /// Adds a new definition and writes its file.
    pub fn define(&mut self, def: Definition) -> Result<(), DefinitionError> {
        def.check()?;
        if self.defs.contains_key(&def.uuid) {
            return Err(DefinitionError::DuplicateUuid(def.uuid));
        }
        self.check_clash(&def)?;
        self.write(&def)?;
        self.defs.insert(def.uuid, def);
        Ok(())
    }

    /// Replaces a definition (same UUID) and rewrites its file.
    pub fn modify(&mut self, def: Definition) -> Result<(), DefinitionError> {
        def.check()?;
        if !self.defs.contains_key(&def.uuid) {
            return Err(DefinitionError::NoSuchInstance(def.uuid));
        }
        self.check_clash(&def)?;
        self.write(&def)?;
        self.defs.insert(def.uuid, def);
        Ok(())
    }

    /// Removes a definition and its file.
    pub fn undefine(&mut self, uuid: &Uuid) -> Result<Definition, DefinitionError> {
        if !self.defs.contains_key(uuid) {
            return Err(DefinitionError::NoSuchInstance(*uuid));
        }
        let path = self.dir.join(uuid.to_string());
        std::fs::remove_file(&path)
            .map_err(|e| DefinitionError::Io(format!("removing {}: {e}", path.display())))?;
        Ok(self.defs.remove(uuid).expect("checked above"))
    }

    /// Writes the file through a temporary name, so a crash leaves the old file or the new one.
    fn write(&self, def: &Definition) -> Result<(), DefinitionError> {
        let path = self.dir.join(def.uuid.to_string());
        let tmp = self.dir.join(format!(".{}.tmp", def.uuid));
        std::fs::write(&tmp, def.to_json() + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| DefinitionError::Io(format!("writing {}: {e}", path.display())))
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(MAX_DEFINITION_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_DEFINITION_BYTES {
        return Err(format!("larger than {MAX_DEFINITION_BYTES} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(uuid: &str, gfid: u32, tenant: &str) -> Definition {
        Definition {
            uuid: parse_uuid(uuid).unwrap(),
            mdev_type: "sim-35c".into(),
            start: StartMode::Manual,
            gfid,
            tenant: tenant.into(),
        }
    }

    const A: &str = "0b2f3a1e-8b8c-4c6e-9a40-0d3c6f6a0001";
    const B: &str = "0b2f3a1e-8b8c-4c6e-9a40-0d3c6f6a0002";

    #[test]
    fn files_use_mdevctls_schema_and_round_trip() {
        let d = def(A, 3, "prod");
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(v["mdev_type"], "sim-35c");
        assert_eq!(v["start"], "manual");
        assert_eq!(v["attrs"][0]["gfid"], "3");
        assert_eq!(v["attrs"][1]["tenant"], "prod");
        assert_eq!(Definition::from_json(d.uuid, &d.to_json(), "f").unwrap(), d);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut defs, skipped) = Definitions::load(dir.path()).unwrap();
        assert!(skipped.is_empty());
        defs.define(def(A, 1, "prod")).unwrap();
        assert_eq!(
            defs.define(def(A, 2, "prod")),
            Err(DefinitionError::DuplicateUuid(parse_uuid(A).unwrap()))
        );
        assert!(matches!(
            defs.define(def(B, 1, "batch")),
            Err(DefinitionError::GfidClash { gfid: 1, .. })
        ));
        assert_eq!(
            defs.define(def(B, 64, "batch")),
            Err(DefinitionError::BadGfid(64))
        );
        assert!(matches!(
            defs.define(def(B, 2, "no spaces")),
            Err(DefinitionError::BadTenant(_))
        ));
        let mut unknown = def(B, 2, "batch");
        unknown.mdev_type = "sim-1c".into();
        assert!(matches!(
            defs.define(unknown),
            Err(DefinitionError::UnknownType(_))
        ));
        assert_eq!(defs.iter().count(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join(PARENT)).unwrap().count(),
            1
        );
        assert_eq!(defs.free_gfid(), Ok(2));
    }

    #[test]
    fn definitions_persist_and_broken_files_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut defs, _) = Definitions::load(dir.path()).unwrap();
            defs.define(def(A, 5, "prod")).unwrap();
        }
        let parent = dir.path().join(PARENT);
        std::fs::write(parent.join(B), "{\"mdev_type\": 7}").unwrap();
        std::fs::write(parent.join("not-a-uuid"), "{}").unwrap();
        let (defs, skipped) = Definitions::load(dir.path()).unwrap();
        assert_eq!(defs.iter().map(|d| d.gfid).collect::<Vec<_>>(), vec![5]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped
            .iter()
            .all(|e| e.to_string().contains(&parent.display().to_string())));
    }

    #[test]
    fn modify_and_undefine_need_an_existing_instance() {
        let dir = tempfile::tempdir().unwrap();
        let (mut defs, _) = Definitions::load(dir.path()).unwrap();
        let b = parse_uuid(B).unwrap();
        assert_eq!(defs.undefine(&b), Err(DefinitionError::NoSuchInstance(b)));
        assert_eq!(
            defs.modify(def(B, 2, "x")),
            Err(DefinitionError::NoSuchInstance(b))
        );
        defs.define(def(B, 2, "x")).unwrap();
        let mut m = def(B, 2, "y");
        m.start = StartMode::Auto;
        defs.modify(m.clone()).unwrap();
        assert_eq!(defs.get(&b), Some(&m));
        defs.undefine(&b).unwrap();
        assert_eq!(defs.iter().count(), 0);
    }
}
