//! An in-process vgpud (the daemon's own `Daemon`, sim GPU on the virtual clock) with one
//! started instance, for tests of the VMM's vfio-user device.

#![allow(dead_code)]

use mdev::control::{Request, Response};
use mdev::daemon::Daemon;
use mdev::instance::StartMode;
use mdev::poller::Poller;
use mdev::sim_host::SimHost;

/// A daemon with one started instance.
pub struct Instance {
    /// The daemon.
    pub daemon: Daemon,
    /// The instance's socket.
    pub socket: String,
    _dir: tempfile::TempDir,
}

/// The instance's UUID.
pub const UUID: &str = "3c1e2b0a-1111-4c8b-9b1e-1b0f7c9e0007";

/// Starts a daemon and instance `gfid` with a `window`-byte window.
pub fn instance(gfid: u32, window: u64) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, _) = Daemon::new(
        Box::new(SimHost::virtual_clock()),
        &dir.path().join("conf"),
        &dir.path().join("run"),
        window,
        Poller::spawn(None).unwrap(),
        false,
    )
    .unwrap();
    let r = daemon.handle(Request::Define {
        uuid: Some(UUID.into()),
        mdev_type: "sim-17c".into(),
        gfid: Some(gfid),
        tenant: "t".into(),
        start: StartMode::Manual,
    });
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    let socket = match daemon.handle(Request::Start { uuid: UUID.into() }) {
        Response::Ok(p) => p,
        other => panic!("{other:?}"),
    };
    Instance {
        daemon,
        socket,
        _dir: dir,
    }
}

/// The instance's device (the daemon's side).
pub fn device(i: &Instance) -> std::sync::Arc<std::sync::Mutex<vgpu::VgpuDevice>> {
    i.daemon.running().values().next().unwrap().device.clone()
}
