//! vgpud's instances over vfio-user, with the guest-tools driver and RM client on the far side
//! of a `vfio_user::Client` (the crate's own client, a peer we did not write): config space,
//! trapped BAR0, the window mapped from the fd the server passes, polling, one VMM per socket,
//! and the device reset that frees a departed VMM's objects.

mod daemon_rig;
mod vfio_client;

use std::time::{Duration, Instant};

use daemon_rig::{define, sim_daemon, start};
use guest_tools::driver::protocol::{error, mailbox};
use guest_tools::rmapi::{RmClient, VgpuTransport};
use guest_tools::workload::{GpuContext, MemoryMode, TsgSettings};
use mdev::control::{Request, Response};
use mdev::daemon::Daemon;
use mdev::instance::StartMode;
use mdev::poller::PollConfig;
use rm_abi::alloc_params::Nv0080AllocParameters;
use rm_abi::class;
use rm_abi::ctrl::{Nv2080CtrlGpuGetNameStringParams, NV2080_CTRL_CMD_GPU_GET_NAME_STRING};
use vfio_client::attach;

const A: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0001";
const B: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0002";

struct Rig {
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn rig(poll: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    // A long quiet period: a poller starved by a loaded machine must not fall back to
    // notifications in the middle of what a test measures.
    let config = PollConfig {
        quiet: Duration::from_secs(10),
        ..PollConfig::default()
    };
    let mut daemon = sim_daemon(dir.path(), poll.then_some(config));
    for (uuid, gfid, tenant) in [(A, 1, "prod"), (B, 2, "batch")] {
        define(&mut daemon, uuid, gfid, tenant);
    }
    Rig { daemon, _dir: dir }
}

fn status(d: &mut Daemon) -> mdev::control::Status {
    match d.handle(Request::Status) {
        Response::Status(s) => s,
        other => panic!("status: {other:?}"),
    }
}

fn objects(d: &mut Daemon, gfid: u32) -> usize {
    status(d)
        .instances
        .iter()
        .find(|i| i.gfid == gfid)
        .map_or(0, |i| i.objects)
}

fn name_query(c: &mut RmClient<'_>) -> String {
    let client = c.alloc_root().unwrap();
    let device = c
        .alloc(
            client,
            client,
            class::NV01_DEVICE_0,
            &mut Nv0080AllocParameters::default(),
        )
        .unwrap();
    let sub = c
        .alloc(client, device, class::NV20_SUBDEVICE_0, &mut [0u8; 4])
        .unwrap();
    let mut name = Nv2080CtrlGpuGetNameStringParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_GPU_GET_NAME_STRING, &mut name)
        .unwrap();
    let end = name.gpuNameString.iter().position(|&b| b == 0).unwrap_or(0);
    String::from_utf8_lossy(&name.gpuNameString[..end]).into_owned()
}

#[test]
fn a_vmm_attaches_runs_escapes_and_its_departure_frees_everything() {
    let mut r = rig(true);
    let path = start(&mut r.daemon, A);
    let (driver, window) = attach(&path);
    assert_eq!(driver.info().gfid, 1);
    let t = VgpuTransport::new(driver);
    let mut c = RmClient::open(&t).unwrap();
    assert!(name_query(&mut c).ends_with("sim-35c"));
    assert_eq!(objects(&mut r.daemon, 1), 3);

    // The window is shared: what the daemon's device wrote (the used ring) the mapping shows,
    // and once the poller polls the queue, escapes need (almost) no notify.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut r.daemon).poller.polled == 0 {
        assert!(Instant::now() < deadline, "the poller never took the queue");
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..50 {
        name_query(&mut c);
    }
    let s = status(&mut r.daemon);
    let i = &s.instances[0];
    assert!(i.attached);
    assert!(i.escapes > 200, "{i:?}");
    assert!(
        i.notifies * 4 < i.escapes,
        "polled queue still notified: {i:?}"
    );
    assert!(s.poller.served > 0);

    // One VMM per socket.
    let second = std::os::unix::net::UnixStream::connect(&path);
    assert!(second.is_err(), "a second VMM could connect");
    match r.daemon.handle(Request::Stop { uuid: A.into() }) {
        Response::Error(e) => assert!(e.contains("attached"), "{e}"),
        other => panic!("stop of an attached instance: {other:?}"),
    }

    // The VMM goes away without closing anything: the device resets and frees its objects.
    drop(c);
    drop(t);
    drop(window);
    let deadline = Instant::now() + Duration::from_secs(1);
    while objects(&mut r.daemon, 1) != 0 || status(&mut r.daemon).instances[0].attached {
        assert!(Instant::now() < deadline, "objects left after the VMM left");
        std::thread::sleep(Duration::from_millis(10));
    }

    // The instance takes the next VMM, and once stopped it takes none.
    let (driver, _w) = attach(&path);
    let t = VgpuTransport::new(driver);
    let mut c = RmClient::open(&t).unwrap();
    name_query(&mut c);
    drop(c);
    drop(t);
    let deadline = Instant::now() + Duration::from_secs(1);
    while status(&mut r.daemon).instances[0].attached {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        r.daemon.handle(Request::Stop { uuid: A.into() }),
        Response::Ok(format!("instance {A} stopped"))
    );
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
}

#[test]
fn two_instances_keep_their_namespaces_apart() {
    let mut r = rig(false);
    let pa = start(&mut r.daemon, A);
    let pb = start(&mut r.daemon, B);
    let (da, _wa) = attach(&pa);
    let (db, _wb) = attach(&pb);
    assert_eq!((da.info().gfid, db.info().gfid), (1, 2));
    let ta = VgpuTransport::new(da);
    let tb = VgpuTransport::new(db);
    let mut ca = RmClient::open(&ta).unwrap();
    let mut cb = RmClient::open(&tb).unwrap();
    name_query(&mut ca);
    assert_eq!(
        (objects(&mut r.daemon, 1), objects(&mut r.daemon, 2)),
        (3, 0)
    );
    name_query(&mut cb);
    name_query(&mut cb);
    assert_eq!(
        (objects(&mut r.daemon, 1), objects(&mut r.daemon, 2)),
        (3, 6)
    );
    // Without a poller every escape is notified.
    let s = status(&mut r.daemon);
    assert!(s.instances.iter().all(|i| i.notifies >= i.escapes), "{s:?}");
}

#[test]
fn bad_requests_get_one_line_errors_and_change_nothing() {
    let mut r = rig(false);
    let before = r.daemon.handle(Request::List);
    let bad = [
        Request::Start {
            uuid: "not-a-uuid".into(),
        },
        Request::Start {
            uuid: "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e00ff".into(),
        },
        Request::Define {
            uuid: Some(A.into()),
            mdev_type: "sim-35c".into(),
            gfid: Some(9),
            tenant: "prod".into(),
            start: StartMode::Manual,
        },
        Request::Define {
            uuid: None,
            mdev_type: "sim-35c".into(),
            gfid: Some(2),
            tenant: "prod".into(),
            start: StartMode::Manual,
        },
        Request::Define {
            uuid: None,
            mdev_type: "sim-3000c".into(),
            gfid: None,
            tenant: "prod".into(),
            start: StartMode::Manual,
        },
        Request::Undefine {
            uuid: "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e00ff".into(),
        },
    ];
    for req in bad {
        match r.daemon.handle(req.clone()) {
            Response::Error(e) => assert!(!e.contains('\n'), "{req:?}: {e}"),
            other => panic!("{req:?} was accepted: {other:?}"),
        }
    }
    assert_eq!(r.daemon.handle(Request::List), before);

    // Capacity: the whole-GPU type does not fit next to a started quarter.
    start(&mut r.daemon, A);
    r.daemon.handle(Request::Modify {
        uuid: B.into(),
        mdev_type: Some("sim-141c".into()),
        gfid: None,
        tenant: None,
        start: None,
    });
    match r.daemon.handle(Request::Start { uuid: B.into() }) {
        Response::Error(e) => assert!(e.contains("no capacity"), "{e}"),
        other => panic!("over capacity: {other:?}"),
    }
    match r.daemon.handle(Request::Types) {
        Response::Types(t) => {
            let full = t.iter().find(|t| t.name == "sim-141c").unwrap();
            let quarter = t.iter().find(|t| t.name == "sim-35c").unwrap();
            assert_eq!(
                (full.available_instances, quarter.available_instances),
                (0, 3)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// BAR0 writes the device of the instance `uuid` has seen (each one a socket message here, an
/// exit in a VM).
fn bar0_writes(d: &Daemon, uuid: &str) -> u64 {
    let r = d
        .running()
        .iter()
        .find(|(u, _)| u.to_string() == uuid)
        .map(|(_, r)| r)
        .expect("a started instance");
    r.device.lock().unwrap().stats().snapshot().bar0_writes
}

#[test]
fn a_polled_guest_rings_its_doorbells_through_the_mailbox_without_an_exit() {
    let mut r = rig(true);
    let path = start(&mut r.daemon, A);
    let (driver, _window) = attach(&path);
    let t = VgpuTransport::new(driver);
    let mut ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Window).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut r.daemon).poller.polled == 0 {
        assert!(Instant::now() < deadline, "the poller never took the queue");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ring = |tok: u32| t.driver().doorbell(tok);
    // One round may still find the mailbox flag clear (the poller sets it as it takes the
    // queue); after that every doorbell goes through the window.
    ctx.round(1, 0, &ring).unwrap();
    let (writes, before) = (bar0_writes(&r.daemon, A), t.driver().counters());
    for _ in 0..50 {
        ctx.round(1, 0, &ring).unwrap();
    }
    let after = t.driver().counters();
    assert_eq!(
        bar0_writes(&r.daemon, A),
        writes,
        "doorbells or notifies still wrote BAR0"
    );
    // Two doorbells a round, every one checked and accepted by the device.
    assert_eq!(after.doorbells - before.doorbells, 100, "{after:?}");
    assert_eq!(after.doorbells_rejected, before.doorbells_rejected);

    // A token of no channel of this vGPU, posted in the mailbox, is refused as a register
    // write would be.
    let rejected = after.doorbells_rejected;
    t.driver().doorbell(0x00ff_0fff);
    let deadline = Instant::now() + Duration::from_secs(1);
    while t.driver().counters().doorbells_rejected == rejected {
        assert!(
            Instant::now() < deadline,
            "the posted bad token was never refused"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(t.driver().last_rejected_token(), 0x00ff_0fff);
    assert_eq!(bar0_writes(&r.daemon, A), writes);

    // A hostile HEAD far ahead of the ring: an overrun, reported, nothing rung, and the mailbox
    // goes on working.
    let at = guest_tools::driver::queue::layout::MAILBOX;
    let (accepted, rejected) = {
        let c = t.driver().counters();
        (c.doorbells, c.doorbells_rejected)
    };
    {
        let d = t.driver();
        let head = d.window().load32(at + mailbox::HEAD).unwrap();
        d.window()
            .store32(at + mailbox::HEAD, head.wrapping_add(100_000))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while t.driver().error_status() & error::MAILBOX == 0 {
        assert!(Instant::now() < deadline, "the overrun was never reported");
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = t.driver().counters();
    assert_eq!((c.doorbells, c.doorbells_rejected), (accepted, rejected));
    t.driver().clear_errors(u32::MAX);
    ctx.round(1, 0, &ring).unwrap();
    assert_eq!(t.driver().counters().doorbells, accepted + 2);
    ctx.destroy().unwrap();
}
