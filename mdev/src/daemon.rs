//! The daemon's state: the GPU (RM core over the sim backend), the instance definitions, the
//! started instances with their vfio-user servers, and the poller; and the control requests
//! that change them. Every refused request leaves everything as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use uuid::Uuid;
use vgpu::VgpuDevice;

use crate::control::{
    InstanceInfo, InstanceStatus, PollerStatus, Request, Response, Status, TypeInfo,
};
use crate::instance::{parse_uuid, Definition, DefinitionError, Definitions, StartMode};
use crate::poller::Poller;
use crate::profile::{self, Profile};
use crate::sim_host::GpuHost;
use crate::vfio_server::{lock, InstanceServer};
use crate::vm_scheduler::VmScheduler;

/// The PCI slot the RM core reports to guests (the VMM picks the real one; guests only print it).
const GUEST_PCI_SLOT: u8 = 1;

/// A started instance.
#[derive(Debug)]
pub struct Running {
    /// Its device (shared with its server and the poller).
    pub device: Arc<Mutex<VgpuDevice>>,
    /// Its server.
    pub server: InstanceServer,
    /// Its type.
    pub profile: Profile,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    /// First, so it drops first: its thread waits on the clock the host's thread moves.
    scheduler: Option<VmScheduler>,
    host: Box<dyn GpuHost>,
    defs: Definitions,
    running: BTreeMap<Uuid, Running>,
    run_dir: PathBuf,
    window_size: u64,
    poller: Poller,
    poller_enabled: bool,
    started: Instant,
}

impl Daemon {
    /// A daemon over `host`, with definitions from `config_dir` and sockets in `run_dir`.
    /// Definitions that do not load are reported (second value) and left out.
    pub fn new(
        host: Box<dyn GpuHost>,
        config_dir: &Path,
        run_dir: &Path,
        window_size: u64,
        poller: Poller,
        poller_enabled: bool,
    ) -> Result<(Self, Vec<DefinitionError>), DefinitionError> {
        std::fs::create_dir_all(run_dir)
            .map_err(|e| DefinitionError::Io(format!("creating {}: {e}", run_dir.display())))?;
        let (defs, skipped) = Definitions::load(config_dir)?;
        Ok((
            Self {
                host,
                defs,
                running: BTreeMap::new(),
                run_dir: run_dir.to_path_buf(),
                window_size,
                poller,
                poller_enabled,
                started: Instant::now(),
                scheduler: None,
            },
            skipped,
        ))
    }

    /// The GPU host (for the scheduler).
    pub fn host(&self) -> &dyn GpuHost {
        self.host.as_ref()
    }

    /// Started instances.
    pub fn running(&self) -> &BTreeMap<Uuid, Running> {
        &self.running
    }

    /// Definitions.
    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// Hands the started instances' channel groups to `scheduler` from now on.
    pub fn set_scheduler(&mut self, scheduler: VmScheduler) {
        self.scheduler = Some(scheduler);
        self.rebind();
    }

    /// The scheduler, if a policy runs.
    pub fn scheduler(&self) -> Option<&VmScheduler> {
        self.scheduler.as_ref()
    }

    /// Tells the scheduler which instances run and which tenant each names.
    fn rebind(&self) {
        let Some(s) = &self.scheduler else { return };
        let bound = self
            .running
            .keys()
            .filter_map(|u| self.defs.get(u))
            .map(|d| scheduler::scheduler::BoundInstance {
                uuid: d.uuid.to_string(),
                gfid: d.gfid,
                tenant: d.tenant.clone(),
            })
            .collect();
        s.set_instances(bound);
    }

    /// Starts every `start: auto` instance; returns one line per failure.
    pub fn start_auto(&mut self) -> Vec<String> {
        let auto: Vec<Uuid> = self
            .defs
            .iter()
            .filter(|d| d.start == StartMode::Auto)
            .map(|d| d.uuid)
            .collect();
        let failed = auto
            .into_iter()
            .filter_map(|u| self.start(&u).err().map(|e| format!("instance {u}: {e}")))
            .collect();
        self.rebind();
        failed
    }

    /// Answers one control request.
    pub fn handle(&mut self, req: Request) -> Response {
        let r = match req {
            Request::Types => return Response::Types(self.types()),
            Request::List => return Response::List(self.list()),
            Request::Status => return Response::Status(self.status()),
            Request::Define {
                uuid,
                mdev_type,
                gfid,
                tenant,
                start,
            } => self.define(uuid, mdev_type, gfid, tenant, start),
            Request::Modify {
                uuid,
                mdev_type,
                gfid,
                tenant,
                start,
            } => self.modify(&uuid, mdev_type, gfid, tenant, start),
            Request::Undefine { uuid } => self.undefine(&uuid),
            Request::Start { uuid } => parse_uuid(&uuid)
                .map_err(|e| e.to_string())
                .and_then(|u| self.start(&u)),
            Request::Stop { uuid } => self.stop(&uuid),
        };
        if r.is_ok() {
            self.rebind();
        }
        match r {
            Ok(msg) => Response::Ok(msg),
            Err(e) => Response::Error(e),
        }
    }

    fn profile(&self, name: &str) -> Result<Profile, String> {
        profile::resolve(name, &self.host.gpu_info()).map_err(|e| e.to_string())
    }

    /// Framebuffer the running instances hold.
    fn fb_used(&self) -> u64 {
        self.running.values().map(|r| r.profile.fb_quota).sum()
    }

    fn types(&self) -> Vec<TypeInfo> {
        let gpu = self.host.gpu_info();
        let free = gpu.fb_bytes.saturating_sub(self.fb_used());
        profile::names()
            .into_iter()
            .filter_map(|n| profile::resolve(n, &gpu).ok())
            .map(|p| TypeInfo {
                name: p.name.to_string(),
                fb_bytes: p.fb_quota,
                max_instances: p.max_instances,
                available_instances: (free / p.fb_quota.max(1)).min(u64::from(p.max_instances))
                    as u32,
                channels: p.max_channels,
                host_memory_bytes: p.host_memory_quota,
            })
            .collect()
    }

    fn define(
        &mut self,
        uuid: Option<String>,
        mdev_type: String,
        gfid: Option<u32>,
        tenant: String,
        start: StartMode,
    ) -> Result<String, String> {
        let uuid = match uuid {
            Some(u) => parse_uuid(&u).map_err(|e| e.to_string())?,
            None => Uuid::new_v4(),
        };
        let gfid = match gfid {
            Some(g) => g,
            None => self.defs.free_gfid().map_err(|e| e.to_string())?,
        };
        let def = Definition {
            uuid,
            mdev_type,
            start,
            gfid,
            tenant,
        };
        self.defs.define(def).map_err(|e| e.to_string())?;
        Ok(uuid.to_string())
    }

    fn modify(
        &mut self,
        uuid: &str,
        mdev_type: Option<String>,
        gfid: Option<u32>,
        tenant: Option<String>,
        start: Option<StartMode>,
    ) -> Result<String, String> {
        let uuid = parse_uuid(uuid).map_err(|e| e.to_string())?;
        let mut def = self
            .defs
            .get(&uuid)
            .cloned()
            .ok_or_else(|| DefinitionError::NoSuchInstance(uuid).to_string())?;
        if self.running.contains_key(&uuid) && (mdev_type.is_some() || gfid.is_some()) {
            return Err(format!(
                "instance {uuid} is started: stop it to change its type or GFID"
            ));
        }
        if let Some(t) = mdev_type {
            def.mdev_type = t;
        }
        if let Some(g) = gfid {
            def.gfid = g;
        }
        if let Some(t) = tenant {
            def.tenant = t;
        }
        if let Some(s) = start {
            def.start = s;
        }
        self.defs.modify(def).map_err(|e| e.to_string())?;
        Ok(format!("instance {uuid} modified"))
    }

    fn undefine(&mut self, uuid: &str) -> Result<String, String> {
        let uuid = parse_uuid(uuid).map_err(|e| e.to_string())?;
        if self.running.contains_key(&uuid) {
            return Err(format!("instance {uuid} is started: stop it first"));
        }
        self.defs.undefine(&uuid).map_err(|e| e.to_string())?;
        Ok(format!("instance {uuid} undefined"))
    }

    /// The socket of instance `uuid`.
    pub fn socket_path(&self, uuid: &Uuid) -> PathBuf {
        self.run_dir.join(format!("{uuid}.sock"))
    }

    /// Starts instance `uuid`.
    pub fn start(&mut self, uuid: &Uuid) -> Result<String, String> {
        let def = self
            .defs
            .get(uuid)
            .cloned()
            .ok_or_else(|| DefinitionError::NoSuchInstance(*uuid).to_string())?;
        if self.running.contains_key(uuid) {
            return Err(format!("instance {uuid} is already started"));
        }
        let profile = self.profile(&def.mdev_type)?;
        let gpu = self.host.gpu_info();
        if self.fb_used() + profile.fb_quota > gpu.fb_bytes {
            return Err(format!(
                "no capacity left for a {} instance: {} MiB of {} MiB are in use",
                profile.name,
                self.fb_used() >> 20,
                gpu.fb_bytes >> 20
            ));
        }
        let device = self
            .host
            .attach(&profile, def.gfid, self.window_size, GUEST_PCI_SLOT)
            .map_err(|e| format!("creating the vGPU: {e}"))?;
        let device = Arc::new(Mutex::new(device));
        let path = self.socket_path(uuid);
        let server = InstanceServer::start(
            &uuid.to_string()[..8],
            &path,
            device.clone(),
            self.poller.clone(),
        )
        .map_err(|e| e.to_string())?;
        self.poller.register(&device);
        self.running.insert(
            *uuid,
            Running {
                device,
                server,
                profile,
            },
        );
        tracing::info!(%uuid, gfid = def.gfid, tenant = %def.tenant, "instance started");
        Ok(path.display().to_string())
    }

    fn stop(&mut self, uuid: &str) -> Result<String, String> {
        let uuid = parse_uuid(uuid).map_err(|e| e.to_string())?;
        let Some(r) = self.running.get_mut(&uuid) else {
            return Err(format!("instance {uuid} is not started"));
        };
        if !r.server.stop() {
            return Err(format!(
                "instance {uuid} is attached to a VM: shut the VM down first"
            ));
        }
        // Dropping the last `Arc` of the device destroys its vGPU in the RM core.
        self.running.remove(&uuid);
        Ok(format!("instance {uuid} stopped"))
    }

    /// Stops every instance (daemon exit); attached ones are left to the process's exit.
    pub fn stop_all(&mut self) {
        let uuids: Vec<Uuid> = self.running.keys().copied().collect();
        for u in uuids {
            let _ = self.stop(&u.to_string());
        }
    }

    fn list(&self) -> Vec<InstanceInfo> {
        self.defs
            .iter()
            .map(|d| {
                let running = self.running.get(&d.uuid);
                InstanceInfo {
                    uuid: d.uuid.to_string(),
                    mdev_type: d.mdev_type.clone(),
                    gfid: d.gfid,
                    tenant: d.tenant.clone(),
                    start: d.start,
                    state: match running {
                        None => "defined",
                        Some(r) if r.server.state().attached() => "attached",
                        Some(_) => "started",
                    }
                    .to_string(),
                    socket: running.map(|r| r.server.path().display().to_string()),
                }
            })
            .collect()
    }

    fn status(&self) -> Status {
        let view = self.scheduler.as_ref().map(|s| s.view());
        let instances = self
            .running
            .iter()
            .map(|(uuid, r)| {
                let def = self.defs.get(uuid);
                let share = def.and_then(|d| view.as_ref()?.share_of(&d.tenant));
                let gfid = lock(&r.device).gfid();
                let s = lock(&r.device).stats().snapshot();
                InstanceStatus {
                    uuid: uuid.to_string(),
                    tenant: def.map(|d| d.tenant.clone()).unwrap_or_default(),
                    gfid,
                    attached: r.server.state().attached(),
                    sessions: r
                        .server
                        .state()
                        .sessions
                        .load(std::sync::atomic::Ordering::Relaxed),
                    escapes: s.requests,
                    errors: s.request_errors,
                    notifies: s.queue_notifies,
                    doorbells: s.doorbells,
                    doorbells_rejected: s.doorbells_rejected,
                    interrupts: s.interrupts,
                    objects: self.host.object_count(gfid),
                    share_target: share.map(|s| s.0),
                    share_achieved: share.map(|s| s.1),
                }
            })
            .collect();
        let ps = self.poller.stats();
        let cpu_s = ps.cpu_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
        Status {
            gpu: self.host.gpu_info().name,
            policy: view
                .as_ref()
                .map(|v| format!("{} (by {})", v.policy, v.method)),
            instances,
            poller: PollerStatus {
                enabled: self.poller_enabled,
                served: ps.served.load(std::sync::atomic::Ordering::Relaxed),
                polled: ps.polled.load(std::sync::atomic::Ordering::Relaxed),
                cpu_s,
                cpu_percent: 100.0 * cpu_s / self.started.elapsed().as_secs_f64().max(1e-9),
            },
            gpu_time_ns: self.host.gpu_time_ns(),
        }
    }
}
