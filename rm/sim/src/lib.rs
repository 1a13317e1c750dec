//! `sim`: a software model of a Hopper-class FIFO (the embedded default backend).
//!
//! Hardware model, bottom up:
//! * [`memory`], [`vaspace`]: memory objects and GPU VA spaces; every GPU access is bounds
//!   checked and a bad address is a channel fault.
//! * [`runlist`]: runlist entries (TSG headers with timeslice and GFID, channel entries) and
//!   RM's interleave-by-repetition builder.
//! * [`chram`], [`preempt`], [`userd`], [`doorbell`]: channel RAM, the runlist preempt
//!   register, USERD GP_GET/GP_PUT, work-submit tokens.
//! * [`pbdma`], [`engine`]: the PBDMA that
//!   fetches and executes them (methods and formats in `rm_abi`), and the engines.
//! * [`runlist_scheduler`]: the hardware scheduler of one runlist (timeslices, preemption,
//!   accounting); [`fault`]: channel faults and error notifiers.
//! * [`gpu`]: [`SimGpu`], which ties it together with a small RM-style FIFO layer, and
//!   [`driver`], which drives it in real time.
//! * [`backend`]: [`SimBackend`], the RM [`rm_core::backend::Backend`] trait over a [`SimGpu`].
//!
//! # Driving it (for schedulers and tests)
//!
//! Everything goes through [`SimGpu`] (shared as `Arc<Mutex<SimGpu>>` by
//! [`SimBackend::gpu`]):
//! * Time: [`SimGpu::advance`] / [`SimGpu::run_until`] on the virtual clock;
//!   [`SimGpu::sync_to_real_time`] or a [`driver::RealTimeDriver`] on the real-time clock.
//! * What exists: [`SimGpu::tsgs`] lists every TSG with its GFID, timeslice, interleave level,
//!   channels, residency and [`TsgStats`] (engine time, work done, switches, timeslice
//!   expirations, preemptions and their latency, context-switch time, faults);
//!   [`SimGpu::runlist_stats`] gives per-runlist busy/idle/ctxsw time;
//!   [`SimBackend::tsg_of`] maps an RM TSG handle to its [`TsgRef`].
//! * Levers (all effective on the sim): [`SimGpu::program_tsg_timeslice_us`] (written into the
//!   runlist header), [`SimGpu::program_tsg_interleave`] (repetition in the runlist),
//!   [`SimGpu::gate_tsg`] / [`SimGpu::chram_write`] (channel RAM; takes effect at the next TSG
//!   switch), [`SimGpu::preempt_tsg`] / [`SimGpu::preempt_write`] with
//!   [`SimGpu::preempt_pending`] or [`SimGpu::preempt_tsg_and_wait`], [`SimGpu::schedule_tsg`]
//!   (on/off the runlist), and raw [`SimGpu::submit_runlist`]. The TSG's owner (the RM core,
//!   for a guest) has its own setters ([`SimGpu::set_tsg_timeslice_us`],
//!   [`SimGpu::set_tsg_interleave`], [`SimGpu::set_channel_enabled`]); once a host scheduler
//!   governs the GPU ([`SimGpu::set_governed`]) those never override the host's levers.
//! * Cost model: [`Timing`] (method cost, context-switch cost, compute preemption granularity,
//!   copy bandwidth, lock-step window, per-call host work budget).
//!
//! Work is submitted as on hardware: pushbuffer segments and GPFIFO entries in memory mapped
//! into the channel's VA space, GP_PUT in USERD, then a doorbell with the channel's
//! work-submit token. Compute work is the sim-defined method
//! [`rm_abi::methods::compute::SIM_WORK_NS_LO`]/`_HI` + [`rm_abi::methods::compute::SIM_LAUNCH_WORK`].

pub mod backend;
pub mod channel;
pub mod chram;
pub mod clock;
pub mod doorbell;
pub mod driver;
pub mod engine;
pub mod fault;
pub mod gpu;
#[cfg(test)]
mod gpu_tests;
pub mod memory;
pub mod pbdma;
pub mod preempt;
pub mod runlist;
pub mod runlist_scheduler;
pub mod timing;
pub mod tsg;
pub mod userd;
pub mod vaspace;

pub use backend::SimBackend;
pub use channel::{ChannelConfig, ChannelRef, ChannelStats};
pub use clock::ClockMode;
pub use gpu::{SimConfig, SimError, SimGpu, TsgInfo};
pub use runlist::{InterleaveLevel, Timeslice};
pub use runlist_scheduler::RunlistStats;
pub use timing::Timing;
pub use tsg::{TsgRef, TsgStats};
