//! The control socket between `vgpuctl` and `vgpud`: one JSON request per line, one JSON
//! response per line. Requests are hostile input like any other: a line is at most
//! [`MAX_LINE`] bytes and must parse as a [`Request`].

use serde::{Deserialize, Serialize};

use crate::instance::StartMode;

/// Longest request line accepted.
pub const MAX_LINE: usize = 4096;

/// What `vgpuctl` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The vGPU types of this GPU and how many more of each fit.
    Types,
    /// Defines an instance (a free GFID and a random UUID when not given).
    Define {
        /// UUID, or none for a fresh one.
        uuid: Option<String>,
        /// vGPU type.
        mdev_type: String,
        /// GFID, or none for the lowest free one.
        gfid: Option<u32>,
        /// Policy tenant.
        tenant: String,
        /// Start mode.
        start: StartMode,
    },
    /// Changes a definition (a running instance may change only its start mode and tenant).
    Modify {
        /// The instance.
        uuid: String,
        /// New type.
        mdev_type: Option<String>,
        /// New GFID.
        gfid: Option<u32>,
        /// New tenant.
        tenant: Option<String>,
        /// New start mode.
        start: Option<StartMode>,
    },
    /// Removes a stopped instance's definition.
    Undefine {
        /// The instance.
        uuid: String,
    },
    /// Starts an instance: its vGPU is created and its vfio-user socket opens.
    Start {
        /// The instance.
        uuid: String,
    },
    /// Stops an instance no VMM is attached to.
    Stop {
        /// The instance.
        uuid: String,
    },
    /// Every definition with its state.
    List,
    /// Per-instance figures, the policy and the poller.
    Status,
}

/// One vGPU type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    /// Name (`mdev_type`).
    pub name: String,
    /// Framebuffer of an instance, bytes.
    pub fb_bytes: u64,
    /// Instances of this type the whole GPU holds.
    pub max_instances: u32,
    /// Instances of this type that still fit next to the running ones.
    pub available_instances: u32,
    /// Channels an instance may hold at once.
    pub channels: usize,
    /// Host memory the backend may hold for an instance's memory contents, bytes (`u64::MAX`:
    /// not bounded per instance).
    pub host_memory_bytes: u64,
}

/// One instance in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// UUID.
    pub uuid: String,
    /// vGPU type.
    pub mdev_type: String,
    /// GFID.
    pub gfid: u32,
    /// Policy tenant.
    pub tenant: String,
    /// Start mode.
    pub start: StartMode,
    /// `defined`, `started` or `attached`.
    pub state: String,
    /// The vfio-user socket while started.
    pub socket: Option<String>,
}

/// One started instance in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// UUID.
    pub uuid: String,
    /// Policy tenant.
    pub tenant: String,
    /// GFID.
    pub gfid: u32,
    /// Whether a VMM is attached.
    pub attached: bool,
    /// VMM sessions served since start.
    pub sessions: u64,
    /// Escape requests answered.
    pub escapes: u64,
    /// Malformed requests.
    pub errors: u64,
    /// Queue notifies (each one a VM exit and a socket message).
    pub notifies: u64,
    /// Doorbells accepted.
    pub doorbells: u64,
    /// Doorbells refused.
    pub doorbells_rejected: u64,
    /// Interrupts raised (INTx asserted).
    pub interrupts: u64,
    /// RM objects the GFID holds.
    pub objects: usize,
    /// The tenant's share under the policy (0..1), if the policy names it.
    pub share_target: Option<f64>,
    /// The share of GPU time the instance got over the last window (0..1).
    pub share_achieved: Option<f64>,
}

/// The poller in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollerStatus {
    /// Whether a poller runs.
    pub enabled: bool,
    /// Requests it served.
    pub served: u64,
    /// Queues polled now.
    pub polled: u64,
    /// Its CPU time, seconds.
    pub cpu_s: f64,
    /// Its CPU use over the daemon's life, percent of one core.
    pub cpu_percent: f64,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The GPU.
    pub gpu: String,
    /// The policy in force, summarised.
    pub policy: Option<String>,
    /// Started instances.
    pub instances: Vec<InstanceStatus>,
    /// The poller.
    pub poller: PollerStatus,
    /// The GPU's clock now (what guests' semaphore timestamps count), so that an operator's
    /// action can be placed on the guests' time line.
    #[serde(default)]
    pub gpu_time_ns: u64,
}

/// What `vgpud` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Done; a one-line message.
    Ok(String),
    /// Refused; a one-line reason. Nothing changed.
    Error(String),
    /// `types`.
    Types(Vec<TypeInfo>),
    /// `list`.
    List(Vec<InstanceInfo>),
    /// `status`.
    Status(Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"op":"start","uuid":"x"}"#).unwrap();
        assert_eq!(r, Request::Start { uuid: "x".into() });
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        let line = serde_json::to_string(&Request::Types).unwrap();
        assert_eq!(line, r#"{"op":"types"}"#);
    }
}
