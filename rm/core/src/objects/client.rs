//! `NV01_ROOT_CLIENT`: a client and the tree of objects it owns.

use super::{Object, ObjectKind};
use crate::fd::FdId;
use rm_abi::{class, Handle};
use std::collections::{BTreeMap, BTreeSet};

/// First handle RM hands out when the caller asks it to pick (`RS_UNIQUE_HANDLE_BASE`).
pub const RS_UNIQUE_HANDLE_BASE: Handle = 0xcaf0_0000;
/// Most objects one client may hold, so a guest cannot grow host memory without bound.
pub const MAX_OBJECTS_PER_CLIENT: usize = 1 << 16;

/// A client: its host handle, the guest fd it was allocated on and its objects.
#[derive(Debug, Clone)]
pub struct Client {
    /// The guest's handle for this client.
    pub guest: Handle,
    /// The host handle the backend knows it by.
    pub host: Handle,
    /// The guest fd whose close frees this client.
    pub fd: FdId,
    objects: BTreeMap<Handle, Object>,
    /// How many of `objects` are channels.
    channels: usize,
    next_handle: Handle,
}

impl Client {
    /// A new client; its own object is inserted under `guest`.
    pub fn new(guest: Handle, host: Handle, fd: FdId) -> Self {
        let mut objects = BTreeMap::new();
        objects.insert(
            guest,
            Object {
                class: class::NV01_ROOT_CLIENT,
                parent: 0,
                children: BTreeSet::new(),
                dependants: BTreeSet::new(),
                depends_on: Vec::new(),
                cpu_mappings: Vec::new(),
                kind: ObjectKind::Client,
            },
        );
        Self {
            guest,
            host,
            fd,
            objects,
            channels: 0,
            next_handle: RS_UNIQUE_HANDLE_BASE,
        }
    }

    /// The host handle for an object handle of this client: the client handle maps to the host
    /// client handle; object handles are per client and pass unchanged.
    pub fn to_host(&self, h: Handle) -> Handle {
        if h == self.guest {
            self.host
        } else {
            h
        }
    }

    /// The object `h`.
    pub fn get(&self, h: Handle) -> Option<&Object> {
        self.objects.get(&h)
    }

    /// The object `h`, mutable.
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Object> {
        self.objects.get_mut(&h)
    }

    /// Number of objects including the client itself.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the client holds no object (never: it always holds itself).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// How many channels the client holds.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Whether another object fits under `MAX_OBJECTS_PER_CLIENT`.
    pub fn has_room(&self) -> bool {
        self.objects.len() < MAX_OBJECTS_PER_CLIENT
    }

    /// Picks an unused handle, as RM does when `hObjectNew == 0`.
    pub fn pick_handle(&mut self) -> Handle {
        while self.objects.contains_key(&self.next_handle) || self.next_handle == 0 {
            self.next_handle = self.next_handle.wrapping_add(1);
        }
        let h = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        h
    }

    /// Inserts a validated object and links it to its parent and the objects it names.
    pub fn insert(&mut self, h: Handle, obj: Object) {
        let parent = obj.parent;
        let deps = obj.depends_on.clone();
        let channel = matches!(obj.kind, ObjectKind::Channel(_));
        if self.objects.insert(h, obj).is_none() && channel {
            self.channels += 1;
        }
        if let Some(p) = self.objects.get_mut(&parent) {
            p.children.insert(h);
        }
        for d in deps {
            if let Some(o) = self.objects.get_mut(&d) {
                o.dependants.insert(h);
            }
        }
    }

    /// The order in which to free `h` and everything that goes with it: children and
    /// dependants first, `h` last. Each handle appears once.
    pub fn free_order(&self, h: Handle) -> Vec<Handle> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.collect(h, &mut seen, &mut order);
        order
    }

    fn collect(&self, h: Handle, seen: &mut BTreeSet<Handle>, order: &mut Vec<Handle>) {
        // Iterative post-order so a deep tree cannot overflow the stack.
        let mut stack = vec![(h, false)];
        while let Some((cur, expanded)) = stack.pop() {
            if expanded {
                if seen.insert(cur) {
                    order.push(cur);
                }
                continue;
            }
            if seen.contains(&cur) {
                continue;
            }
            let Some(obj) = self.objects.get(&cur) else {
                continue;
            };
            stack.push((cur, true));
            for &c in obj.children.iter().chain(obj.dependants.iter()) {
                if !seen.contains(&c) {
                    stack.push((c, false));
                }
            }
        }
    }

    /// Removes `h` (already freed in the backend) and unlinks it from parent and dependencies.
    pub fn remove(&mut self, h: Handle) -> Option<Object> {
        let obj = self.objects.remove(&h)?;
        if matches!(obj.kind, ObjectKind::Channel(_)) {
            self.channels -= 1;
        }
        if let Some(p) = self.objects.get_mut(&obj.parent) {
            p.children.remove(&h);
        }
        for d in &obj.depends_on {
            if let Some(o) = self.objects.get_mut(d) {
                o.dependants.remove(&h);
            }
        }
        Some(obj)
    }

    /// The device `h` lives under (`h` itself when it is a device).
    pub fn device_of(&self, mut h: Handle) -> Option<Handle> {
        for _ in 0..16 {
            let obj = self.objects.get(&h)?;
            match obj.kind {
                ObjectKind::Device => return Some(h),
                ObjectKind::Client => return None,
                _ => h = obj.parent,
            }
        }
        None
    }

    /// Every object, by handle.
    pub fn objects(&self) -> impl Iterator<Item = (&Handle, &Object)> {
        self.objects.iter()
    }
}
