//! GPU backends that execute validated, translated RM calls.

pub mod sim;
