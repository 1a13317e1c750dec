//! `rm-trace probe-gr`: asks the real driver what the traces cannot show, because the answer
//! lives behind an embedded pointer the tracer does not follow: the whole `GR_GET_INFO` list
//! (every index up to `NV0080_CTRL_GR_INFO_INDEX_MAX`), and, as a cross-check against the
//! traces, the GPC and TPC masks. The output is the fixture the sim's GR answers are tested
//! against.

use anyhow::{Context, Result};
use rm_abi::ctrl::*;
use rm_nvidia::host_client::SUBDEVICE_HANDLE;
use rm_nvidia::HostClient;
use serde::Serialize;
use zerocopy::IntoBytes;

/// `NV0080_CTRL_GR_INFO_MAX_SIZE`: indices 0..=0x39.
const GR_INFO_MAX_SIZE: u32 = 0x3A;

/// What the driver answered.
#[derive(Serialize)]
pub struct GrProbe {
    /// `major.minor.patch` of the driver asked.
    pub driver: String,
    /// `(index, data)` for every index the driver answered.
    pub gr_info: Vec<(u32, u32)>,
    /// Indices the driver refused, with the status.
    pub gr_info_refused: Vec<(u32, String)>,
    /// `GR_GET_GPC_MASK`.
    pub gpc_mask: u32,
    /// `GR_GET_TPC_MASK` of each GPC in the mask.
    pub tpc_masks: Vec<u32>,
}

/// Runs the probe on GPU `minor`.
pub fn probe_gr(minor: u32) -> Result<GrProbe> {
    let c = HostClient::open(minor).context("opening the driver")?;
    let v = c.version();
    let driver = format!("{}.{}.{}", v.major, v.minor, v.patch);
    let mut gr_info = Vec::new();
    let mut gr_info_refused = Vec::new();
    // One index per call, so that an index the driver refuses does not hide the others.
    for index in 0..GR_INFO_MAX_SIZE {
        let mut entry = [index, 0u32];
        let mut p = Nv2080CtrlGrGetInfoParams {
            grInfoListSize: 1,
            grInfoList: entry.as_mut_ptr() as u64,
            ..Default::default()
        };
        match c.control(
            SUBDEVICE_HANDLE,
            NV2080_CTRL_CMD_GR_GET_INFO,
            p.as_mut_bytes(),
        ) {
            Ok(()) => gr_info.push((index, entry[1])),
            Err(e) => gr_info_refused.push((index, e.to_string())),
        }
    }
    let mut gpc = Nv2080CtrlGrGetGpcMaskParams::default();
    c.control(
        SUBDEVICE_HANDLE,
        NV2080_CTRL_CMD_GR_GET_GPC_MASK,
        gpc.as_mut_bytes(),
    )
    .context("GR_GET_GPC_MASK")?;
    let mut tpc_masks = Vec::new();
    for gpc_id in (0..32).filter(|i| gpc.gpcMask >> i & 1 == 1) {
        let mut t = Nv2080CtrlGrGetTpcMaskParams {
            gpcId: gpc_id,
            ..Default::default()
        };
        c.control(
            SUBDEVICE_HANDLE,
            NV2080_CTRL_CMD_GR_GET_TPC_MASK,
            t.as_mut_bytes(),
        )
        .with_context(|| format!("GR_GET_TPC_MASK of GPC {gpc_id}"))?;
        tpc_masks.push(t.tpcMask);
    }
    Ok(GrProbe {
        driver,
        gr_info,
        gr_info_refused,
        gpc_mask: gpc.gpcMask,
        tpc_masks,
    })
}
