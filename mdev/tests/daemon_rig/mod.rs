//! vgpud's daemon in-process for host-side tests: a sim GPU on its real-time clock, a fresh
//! config and run directory, and instances defined and started through the control requests
//! `vgpuctl` sends.

#![allow(dead_code)]

use std::path::Path;

use mdev::control::{Request, Response};
use mdev::daemon::Daemon;
use mdev::instance::StartMode;
use mdev::poller::{PollConfig, Poller};
use mdev::sim_host::SimHost;

/// A daemon with its directories under `dir`; its poller runs with `poll` (none: notifications
/// only). 4 MiB windows.
pub fn sim_daemon(dir: &Path, poll: Option<PollConfig>) -> Daemon {
    let poller = Poller::spawn(poll).unwrap();
    let (daemon, skipped) = Daemon::new(
        Box::new(SimHost::real_time().unwrap()),
        &dir.join("conf"),
        &dir.join("run"),
        4 << 20,
        poller,
        poll.is_some(),
    )
    .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    daemon
}

/// Defines a manual `sim-35c` instance.
pub fn define(d: &mut Daemon, uuid: &str, gfid: u32, tenant: &str) {
    define_type(d, "sim-35c", uuid, gfid, tenant);
}

/// Defines a manual instance of type `mdev_type`.
pub fn define_type(d: &mut Daemon, mdev_type: &str, uuid: &str, gfid: u32, tenant: &str) {
    let r = d.handle(Request::Define {
        uuid: Some(uuid.into()),
        mdev_type: mdev_type.into(),
        gfid: Some(gfid),
        tenant: tenant.into(),
        start: StartMode::Manual,
    });
    assert_eq!(r, Response::Ok(uuid.into()));
}

/// Starts a defined instance; its socket.
pub fn start(d: &mut Daemon, uuid: &str) -> String {
    match d.handle(Request::Start { uuid: uuid.into() }) {
        Response::Ok(path) => path,
        other => panic!("start: {other:?}"),
    }
}
