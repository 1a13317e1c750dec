//! The policy layer: pure logic, no I/O. It turns a [`Policy`](crate::policy_file::Policy) and
//! what it is told about tenants (attached, busy, time used) into decisions: which tenant runs
//! next and for how long, or what each tenant's time should be over the next balance window.
//! It never touches a backend; the [`scheduler`](crate::scheduler) carries its decisions out.

pub mod credit;
pub mod planner;
pub mod shares;

pub use credit::{Ledger, Slot};
pub use planner::{Decision, Planner, Turn};
pub use shares::{target_shares, Targets};
