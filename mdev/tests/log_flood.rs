//! A guest cannot flood the host's log: garbage in its queue and a queue it breaks and resets
//! in a loop are counted, and logged at warning level only now and then. (Before, every
//! garbage head made virtio-queue log an error, 2048 lines for 8 notifies, and every broken
//! queue a warning.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use vgpu::protocol::{error, reg};

/// Counts log records at warning level or worse from the `log` crate (which virtio-queue
/// uses) and events from `tracing` (which this project uses).
struct Counter;

static LOUD: AtomicUsize = AtomicUsize::new(0);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            LOUD.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl log::Log for Counter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Warn {
            LOUD.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

#[test]
fn garbage_heads_and_broken_queues_do_not_flood_the_log() {
    log::set_logger(&Counter).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    use tracing_subscriber::layer::SubscriberExt;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter)).unwrap();
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    g.open_ctl();

    // 8 notifies over a full ring of heads outside the descriptor table.
    for round in 0..8 {
        for i in 0..QSIZE {
            g.push_avail(QSIZE + round * QSIZE + i);
        }
        g.notify();
    }
    assert_eq!(g.take_used(), None);
    assert!(g.dev.stats().snapshot().request_errors >= 128);
    assert_eq!(
        LOUD.load(Ordering::SeqCst),
        0,
        "garbage heads logged loudly"
    );

    // 64 times: an impossible avail index breaks the queue, then the driver resets.
    for _ in 0..64 {
        g.set_avail_idx(1000);
        g.notify();
        assert_ne!(g.r32(reg::ERROR_STATUS) & error::QUEUE_BROKEN, 0);
        g.init();
    }
    let loud = LOUD.load(Ordering::SeqCst);
    assert!(
        loud <= 7,
        "{loud} loud lines for 64 broken queues (1, 2, 4, ... 64)"
    );
    assert!(loud >= 1, "the first broken queue is reported");
}
