//! Two VMs on one vgpud, one of them hostile: while the victim streams GPU work, the attacker
//! runs every hostile request of `guest_tools::hostile` again and again and rings the doorbell
//! with the victim's own work-submit tokens. Every doorbell of the attacker is refused, the
//! attacker's requests all get the errors the protocol promises, and the victim's work rate
//! (from its own semaphores' GPU timestamps) stays within 5 % of what it was before the attack.

mod daemon_rig;
mod vfio_client;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use daemon_rig::{define, sim_daemon, start};
use guest_tools::rmapi::VgpuTransport;
use guest_tools::workload::{GpuContext, MemoryMode, StreamConfig, TsgSettings};
use mdev::control::{InstanceStatus, Request, Response};
use mdev::daemon::Daemon;
use mdev::poller::PollConfig;

const VICTIM: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0201";
const ATTACKER: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0202";
const SEC: u64 = 1_000_000_000;
/// Victim's stream length and when (after its first completion) the attack starts.
const STREAM_SECONDS: f64 = 6.0;
const ATTACK_AFTER: Duration = Duration::from_millis(2500);

fn instance(d: &mut Daemon, uuid: &str) -> InstanceStatus {
    match d.handle(Request::Status) {
        Response::Status(s) => s.instances.into_iter().find(|i| i.uuid == uuid).unwrap(),
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn a_hostile_vm_neither_reaches_nor_slows_its_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = sim_daemon(dir.path(), Some(PollConfig::default()));
    define(&mut daemon, VICTIM, 1, "prod");
    define(&mut daemon, ATTACKER, 2, "batch");
    let pv = start(&mut daemon, VICTIM);
    let pa = start(&mut daemon, ATTACKER);

    let (tokens_tx, tokens_rx) = mpsc::channel();
    let (first_tx, first_rx) = mpsc::channel();
    let victim = std::thread::spawn(move || {
        let (driver, _window) = vfio_client::attach(&pv);
        let t = VgpuTransport::new(driver);
        let ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Window).unwrap();
        tokens_tx.send(ctx.objects().token).unwrap();
        let cfg = StreamConfig {
            duration: Duration::from_secs_f64(STREAM_SECONDS),
            depth: guest_tools::workload::MAX_STREAM_DEPTH,
            items: 50,
            bucket: Duration::from_millis(100),
            refill_every: Duration::from_millis(2),
        };
        let ring = |tok: u32| t.driver().doorbell(tok);
        ctx.stream(cfg, &ring, &mut |ns| {
            let _ = first_tx.send(ns);
        })
        .unwrap()
    });
    let tokens = tokens_rx.recv().unwrap();
    let first = first_rx.recv().unwrap();
    std::thread::sleep(ATTACK_AFTER);

    let gpu = daemon.host().sim_gpu().expect("the sim GPU");
    let attack_from = gpu.lock().unwrap().now_ns();
    let done = AtomicBool::new(false);
    let (rounds, failures) = std::thread::scope(|s| {
        let attacker = s.spawn(|| {
            let (driver, _window) = vfio_client::attach(&pa);
            let t = VgpuTransport::new(driver);
            let (mut rounds, mut failures) = (0u32, Vec::new());
            while !done.load(Ordering::Relaxed) {
                for c in guest_tools::hostile::run(&t).unwrap() {
                    if !c.ok {
                        failures.push(format!("{}: {}", c.name, c.detail));
                    }
                }
                for _ in 0..200 {
                    for &tok in &tokens {
                        t.driver().doorbell(tok);
                    }
                }
                rounds += 1;
            }
            // Doorbells still in the mailbox are rung at the poller's next pass: wait for them
            // before leaving (a departing VMM's device resets, dropping what it holds).
            let rung = u64::from(rounds) * 200 * tokens.len() as u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while t.driver().counters().doorbells_rejected < rung
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            (rounds, failures)
        });
        let report = victim.join().unwrap();
        done.store(true, Ordering::Relaxed);
        let (rounds, failures) = attacker.join().unwrap();
        // Work per whole second of GPU time, before the attack and under it.
        let per_second = |from: u64, to: u64| -> Vec<f64> {
            (0..)
                .map(|k| from + k * SEC)
                .take_while(|s| s + SEC <= to)
                .map(|s| report.work_between(s, s + SEC) as f64 / SEC as f64)
                .collect()
        };
        let before = per_second(first + SEC / 5, attack_from);
        let under = per_second(attack_from + SEC / 10, report.last_gpu_ns);
        eprintln!("victim's GPU work per second: before {before:.3?}, under attack {under:.3?}");
        assert!(!before.is_empty() && !under.is_empty(), "{report:?}");
        let base = before.iter().sum::<f64>() / before.len() as f64;
        for r in &under {
            assert!(
                (r - base).abs() <= 0.05 * base,
                "victim's rate {under:?} against {base:.3} before the attack"
            );
        }
        (rounds, failures)
    });
    assert!(
        failures.is_empty(),
        "hostile requests answered wrongly: {failures:?}"
    );
    assert!(rounds >= 1);
    let (v, a) = (
        instance(&mut daemon, VICTIM),
        instance(&mut daemon, ATTACKER),
    );
    eprintln!("{rounds} attack rounds; victim {v:?}; attacker {a:?}");
    // Every doorbell the attacker rang with the victim's tokens was refused, none reached the
    // victim's counters, and the victim's objects were freed only by its own stream's end.
    assert!(
        a.doorbells_rejected >= u64::from(rounds) * 200 * tokens.len() as u64,
        "{a:?}"
    );
    assert_eq!(v.doorbells_rejected, 0, "{v:?}");
    assert_eq!(v.errors, 0, "{v:?}");
}
