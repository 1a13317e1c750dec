//! Connected tenants and their channels.
//!
//! Each connection is one process; several processes may share a tenant name (they are gated
//! together). A name the policy binds to users, groups or a cgroup is only given to processes
//! the binding admits, at connect and again whenever the bindings change. Every change is written to the state file (atomically, by rename) so that a daemon
//! started after a crash knows which channels a dead daemon may have left disabled.

use crate::protocol::{ChannelPair, PeerIdentity};
use scheduler::policy_file::{Policy, TenantBinding};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A connection's id.
pub type ConnId = u64;

#[derive(Debug, Clone)]
struct Conn {
    name: String,
    peer: PeerIdentity,
    channels: BTreeSet<ChannelPair>,
}

impl Conn {
    fn admitted_by(&self, bindings: &HashMap<String, TenantBinding>) -> bool {
        admits(bindings, &self.name, &self.peer)
    }
}

fn admits(bindings: &HashMap<String, TenantBinding>, name: &str, p: &PeerIdentity) -> bool {
    bindings
        .get(name)
        .is_none_or(|b| b.admits(p.cred.uid, &p.groups, p.cgroup.as_deref()))
}

/// A process that claimed a tenant name the policy binds to other users, groups or cgroups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {name} is not open to pid {} (uid {}, groups {:?}, cgroup {:?})",
    peer.cred.pid, peer.cred.uid, peer.groups, peer.cgroup
)]
pub struct NotAdmitted {
    /// The name claimed.
    pub name: String,
    /// Who claimed it.
    pub peer: PeerIdentity,
}

/// Each policy tenant's binding, by name: what [`TenantRegistry::set_bindings`] takes.
pub fn policy_bindings(policy: &Policy) -> HashMap<String, TenantBinding> {
    policy
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.binding.clone()))
        .collect()
}

#[derive(Debug, Default)]
struct Inner {
    next: ConnId,
    conns: HashMap<ConnId, Conn>,
    generation: u64,
    /// Channels of connections that ended, to be enabled once more by the gate.
    released: Vec<ChannelPair>,
    /// Who may claim which tenant name (names absent: anyone).
    bindings: HashMap<String, TenantBinding>,
}

/// The registry, shared between the socket threads and the gating mechanism.
#[derive(Debug, Clone, Default)]
pub struct TenantRegistry {
    inner: Arc<(Mutex<Inner>, Condvar)>,
    state_file: Option<PathBuf>,
    /// The generation last written to the state file. Writes happen under this lock, not the
    /// registry's, so the scheduler never waits for the disk.
    written: Arc<Mutex<u64>>,
}

/// What a change leaves to write to the state file once the registry is unlocked.
#[must_use]
struct Snapshot(Option<(u64, BTreeSet<ChannelPair>)>);

/// A tenant as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantInfo {
    /// Name.
    pub name: String,
    /// Process ids connected under it.
    pub pids: Vec<u32>,
    /// Its channels.
    pub channels: usize,
}

impl TenantRegistry {
    /// An empty registry persisting to `state_file` (if any).
    pub fn new(state_file: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::default(),
            state_file,
            written: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change under the registry's lock; the state file is written by
    /// [`TenantRegistry::persist`] after the lock is released.
    fn changed(&self, inner: &mut Inner) -> Snapshot {
        inner.generation += 1;
        self.inner.1.notify_all();
        Snapshot(self.state_file.as_ref().map(|_| {
            let pairs = inner
                .conns
                .values()
                .flat_map(|c| c.channels.iter().copied())
                .collect();
            (inner.generation, pairs)
        }))
    }

    /// Writes a change's snapshot unless a newer one was written already.
    fn persist(&self, snapshot: Snapshot) {
        let (Some(path), Some((generation, pairs))) = (&self.state_file, snapshot.0) else {
            return;
        };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written >= generation {
            return;
        }
        if let Err(e) = save_pairs(path, &pairs) {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
        *written = generation;
    }

    /// Registers a connection of `peer` under tenant `name`, if the name's binding admits it.
    pub fn connect(&self, name: &str, peer: &PeerIdentity) -> Result<ConnId, NotAdmitted> {
        let mut inner = self.lock();
        if !admits(&inner.bindings, name, peer) {
            return Err(NotAdmitted {
                name: name.to_string(),
                peer: peer.clone(),
            });
        }
        inner.next += 1;
        let id = inner.next;
        inner.conns.insert(
            id,
            Conn {
                name: name.to_string(),
                peer: peer.clone(),
                channels: BTreeSet::new(),
            },
        );
        let snapshot = self.changed(&mut inner);
        drop(inner);
        self.persist(snapshot);
        Ok(id)
    }

    /// Replaces who may claim which tenant name (a policy load or reload). Connections the new
    /// bindings do not admit are ended as if they had closed, their channels released to be
    /// enabled; returns their ids. Their later messages change nothing.
    pub fn set_bindings(&self, bindings: HashMap<String, TenantBinding>) -> Vec<ConnId> {
        let mut inner = self.lock();
        let evicted: Vec<ConnId> = inner
            .conns
            .iter()
            .filter(|(_, c)| !c.admitted_by(&bindings))
            .map(|(&id, _)| id)
            .collect();
        inner.bindings = bindings;
        if evicted.is_empty() {
            return evicted;
        }
        for id in &evicted {
            if let Some(c) = inner.conns.remove(id) {
                tracing::warn!(
                    "tenant {} (pid {}) is no longer admitted by the policy",
                    c.name,
                    c.peer.cred.pid
                );
                inner.released.extend(c.channels);
            }
        }
        let snapshot = self.changed(&mut inner);
        drop(inner);
        self.persist(snapshot);
        evicted
    }

    /// Replaces a connection's channel set (an unchanged set changes nothing).
    pub fn set_channels(&self, id: ConnId, channels: &[ChannelPair]) {
        let mut inner = self.lock();
        let new: BTreeSet<ChannelPair> = channels.iter().copied().collect();
        let Some(c) = inner.conns.get_mut(&id) else {
            return;
        };
        if c.channels == new {
            return;
        }
        c.channels = new;
        let snapshot = self.changed(&mut inner);
        drop(inner);
        self.persist(snapshot);
    }

    /// Removes a connection; returns its channels, which [`TenantRegistry::take_released`] then
    /// hands to the gate to be enabled.
    pub fn disconnect(&self, id: ConnId) -> Vec<ChannelPair> {
        let mut inner = self.lock();
        let gone: Vec<ChannelPair> = inner
            .conns
            .remove(&id)
            .map(|c| c.channels.into_iter().collect())
            .unwrap_or_default();
        inner.released.extend(gone.iter().copied());
        let snapshot = self.changed(&mut inner);
        drop(inner);
        self.persist(snapshot);
        gone
    }

    /// Channels of ended connections not yet enabled again.
    pub fn take_released(&self) -> Vec<ChannelPair> {
        std::mem::take(&mut self.lock().released)
    }

    /// Channels per tenant name (tenants without channels included).
    pub fn by_tenant(&self) -> BTreeMap<String, Vec<ChannelPair>> {
        let inner = self.lock();
        let mut out: BTreeMap<String, Vec<ChannelPair>> = BTreeMap::new();
        for c in inner.conns.values() {
            out.entry(c.name.clone())
                .or_default()
                .extend(c.channels.iter().copied());
        }
        for v in out.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        out
    }

    /// Every channel of every tenant.
    pub fn all_channels(&self) -> Vec<ChannelPair> {
        self.by_tenant().into_values().flatten().collect()
    }

    /// Tenants now connected.
    pub fn tenants(&self) -> Vec<TenantInfo> {
        let inner = self.lock();
        let mut out: BTreeMap<String, TenantInfo> = BTreeMap::new();
        for c in inner.conns.values() {
            let t = out.entry(c.name.clone()).or_insert_with(|| TenantInfo {
                name: c.name.clone(),
                pids: vec![],
                channels: 0,
            });
            t.pids.push(c.peer.cred.pid);
            t.channels += c.channels.len();
        }
        out.into_values().collect()
    }

    /// A counter that moves on every change.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits up to `timeout` for a change after `seen`; returns the generation then.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> u64 {
        let inner = self.lock();
        let (inner, _) = self
            .inner
            .1
            .wait_timeout_while(inner, timeout, |i| i.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        inner.generation
    }
}

/// Writes the channel pairs to `path` (one `client:channel` per line, hex), atomically.
pub fn save_pairs(path: &Path, pairs: &BTreeSet<ChannelPair>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let text: String = pairs
        .iter()
        .map(|(c, h)| format!("{c:x}:{h:x}\n"))
        .collect();
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Reads pairs written by [`save_pairs`]; a missing file is empty, malformed lines are skipped.
pub fn load_pairs(path: &Path) -> Vec<ChannelPair> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (c, h) = l.trim().split_once(':')?;
            Some((
                u32::from_str_radix(c, 16).ok()?,
                u32::from_str_radix(h, 16).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// Found by review: every CHANNELS message rewrote the state file under the registry's
    /// lock, which the scheduler takes every tick. Here the write cannot finish (its temporary
    /// file is a FIFO nobody reads), and the registry must stay usable meanwhile.
    #[test]
    fn a_slow_state_write_does_not_hold_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let tmp = path.with_extension("tmp");
        let c = std::ffi::CString::new(tmp.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reg = TenantRegistry::new(Some(path.clone()));
        let writer = {
            let reg = reg.clone();
            std::thread::spawn(move || {
                let id = reg.connect("a", &crate::protocol::test_peer(1)).unwrap();
                reg.set_channels(id, &[(1, 2)]);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let reg = reg.clone();
            std::thread::spawn(move || tx.send(reg.by_tenant()).unwrap());
        }
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the registry is free while the state file is written");
        // Let the writes through: read the FIFO until the writer is done.
        while !writer.is_finished() {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&tmp)
            {
                let _ = std::io::Read::read_to_end(&mut f, &mut Vec::new());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.join().unwrap();
    }

    #[test]
    fn registry_groups_by_name_and_persists() {
        let dir = std::env::temp_dir().join(format!("vgpud-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state");
        let r = TenantRegistry::new(Some(state.clone()));
        let a1 = r.connect("a", &crate::protocol::test_peer(10)).unwrap();
        let a2 = r.connect("a", &crate::protocol::test_peer(11)).unwrap();
        let b = r.connect("b", &crate::protocol::test_peer(12)).unwrap();
        r.set_channels(a1, &[(1, 10), (1, 11)]);
        r.set_channels(a2, &[(2, 10)]);
        r.set_channels(b, &[(3, 10)]);
        let by = r.by_tenant();
        assert_eq!(by["a"], vec![(1, 10), (1, 11), (2, 10)]);
        assert_eq!(by["b"], vec![(3, 10)]);
        assert_eq!(load_pairs(&state), vec![(1, 10), (1, 11), (2, 10), (3, 10)]);
        let g = r.generation();
        assert_eq!(r.disconnect(a1), vec![(1, 10), (1, 11)]);
        assert_eq!(r.take_released(), vec![(1, 10), (1, 11)]);
        assert!(r.take_released().is_empty());
        assert!(r.wait_change(g, Duration::from_millis(1)) > g);
        assert_eq!(load_pairs(&state), vec![(2, 10), (3, 10)]);
        assert_eq!(
            r.tenants()
                .iter()
                .map(|t| (t.name.as_str(), t.channels))
                .collect::<Vec<_>>(),
            vec![("a", 1), ("b", 1)]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_or_garbled_state_is_tolerated() {
        assert!(load_pairs(Path::new("/nonexistent/vgpud.state")).is_empty());
        let f = std::env::temp_dir().join(format!("vgpud-garbled-{}", std::process::id()));
        std::fs::write(&f, "zz\n1:2\n3\n").unwrap();
        assert_eq!(load_pairs(&f), vec![(1, 2)]);
        std::fs::remove_file(f).unwrap();
    }

    fn peer(pid: u32, uid: u32, cgroup: Option<&str>) -> PeerIdentity {
        PeerIdentity {
            cgroup: cgroup.map(str::to_string),
            ..PeerIdentity::bare(crate::protocol::PeerCredentials { pid, uid, gid: uid })
        }
    }

    #[test]
    fn a_bound_tenant_admits_only_its_users_and_a_rebinding_evicts_the_others() {
        let r = TenantRegistry::new(None);
        let bind = |uids: Vec<u32>, cgroup: Option<&str>| {
            HashMap::from([(
                "a".to_string(),
                TenantBinding {
                    uids,
                    cgroup: cgroup.map(str::to_string),
                    ..Default::default()
                },
            )])
        };
        r.set_bindings(bind(vec![1000], None));
        let e = r.connect("a", &peer(7, 1001, None)).unwrap_err();
        assert_eq!(e.name, "a");
        assert!(e.to_string().contains("uid 1001"), "{e}");
        assert!(r.tenants().is_empty(), "a refused peer leaves nothing");
        let owner = r.connect("a", &peer(8, 1000, Some("/tenants/a"))).unwrap();
        let stray = r.connect("a", &peer(9, 1000, Some("/other"))).unwrap();
        // Names the policy does not bind are open.
        let other = r.connect("b", &peer(10, 1001, None)).unwrap();
        r.set_channels(owner, &[(1, 2)]);
        r.set_channels(stray, &[(3, 4)]);
        r.set_channels(other, &[(5, 6)]);

        // The policy now also binds tenant a to a cgroup: the process outside it is dropped,
        // its channel released to be enabled; later messages of it change nothing.
        assert_eq!(
            r.set_bindings(bind(vec![1000], Some("/tenants/a"))),
            vec![stray]
        );
        assert_eq!(r.take_released(), vec![(3, 4)]);
        r.set_channels(stray, &[(3, 4), (3, 5)]);
        assert_eq!(r.all_channels(), vec![(1, 2), (5, 6)]);
        assert_eq!(r.disconnect(stray), vec![]);
        assert!(r
            .set_bindings(bind(vec![1000], Some("/tenants/a")))
            .is_empty());
    }
}
