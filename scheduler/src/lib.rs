//! Per-tenant GPU time-slice scheduling for vGPUs.
//!
//! Split as GVT-g splits `sched_policy.c` from `scheduler.c`:
//! * [`policy_file`] reads and validates the operator's TOML policy;
//! * [`policy`] is pure logic: target shares, credit accounting, "who runs next, for how long";
//! * [`mechanism`] is the trait over a backend's runlists and its levers, with implementations
//!   for the sim backend and a fake for tests;
//! * [`scheduler`] drives a mechanism with a policy, choosing its method from the mechanism's
//!   capabilities;
//! * [`log`] and [`timeline`] record and draw what ran;
//! * [`reload`] watches the policy file (SIGHUP, content change) for hot reload.
//!
//! Around them, for simulation and measurement: [`testbed`] (a GPU that hosts synthetic
//! tenants: the sim backend or the fake), [`gpus`] (the models the CLI offers), [`experiment`]
//! (runs a policy on a testbed), [`analysis`] (shares, errors, reload effect) and [`bench`](mod@bench).

pub mod analysis;
pub mod bench;
pub mod experiment;
pub mod gpus;
pub mod log;
pub mod mechanism;
pub mod policy;
pub mod policy_file;
pub mod reload;
pub mod scheduler;
pub mod testbed;
pub mod timeline;
pub mod units;
