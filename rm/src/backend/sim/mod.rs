//! `sim`: a software model of a Hopper-class FIFO (the embedded default backend).
//!
//! Hardware model, bottom up:
//! * [`memory`], [`vaspace`]: memory objects and GPU VA spaces; every GPU access is bounds
//!   checked and a bad address is a channel fault.
//! * [`runlist`]: runlist entries (TSG headers with timeslice and GFID, channel entries) and
//!   RM's interleave-by-repetition builder.
//! * [`chram`], [`preempt`], [`userd`], [`doorbell`]: channel RAM, the runlist preempt
//!   register, USERD GP_GET/GP_PUT, work-submit tokens.
//! * [`pushbuffer`], [`methods`], [`pbdma`], [`engine`]: GPFIFO/method decoding, the PBDMA that
//!   fetches and executes them, and the compute and copy engines' work.
//! * [`runlist_scheduler`]: the hardware scheduler of one runlist (timeslices, preemption,
//!   accounting); [`fault`]: channel faults and error notifiers.
//! * [`gpu`]: [`SimGpu`], which ties it together with a small RM-style FIFO layer, and
//!   [`driver`], which drives it in real time.
//! * [`backend`]: [`SimBackend`], the RM [`crate::backend::Backend`] trait over a [`SimGpu`].

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
pub mod methods;
pub mod pbdma;
pub mod preempt;
pub mod pushbuffer;
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
