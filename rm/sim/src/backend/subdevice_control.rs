//! Controls on a subdevice (class `0x2080`): `NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS`, the one
//! the sim runs.

use super::{status_of, SimBackend, DEFAULT_WAIT_US};
use crate::userd;
use rm_abi::ctrl::*;
use rm_abi::{read_struct, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    pub(super) fn ctrl_disable_channels(
        &mut self,
        gfid: Gfid,
        params: &mut [u8],
    ) -> Result<(), NvStatus> {
        let p: Nv2080CtrlFifoDisableChannelsParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        let n = p.numChannels as usize;
        if n > NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        if p.pRunlistPreemptEvent != 0 {
            return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
        }
        let chans = (0..n)
            .map(|i| self.channel_ref(gfid, p.hClientList[i], p.hChannelList[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut gpu = self.lock();
        let mut tsgs = Vec::new();
        for &c in &chans {
            gpu.set_channel_enabled(c, p.bDisable == 0)
                .map_err(|e| status_of(&e))?;
            if p.bDisable != 0 && p.bRewindGpPut != 0 {
                // Drop queued entries: GP_PUT back to GP_GET.
                let u = gpu.channel_config(c).map_err(|e| status_of(&e))?.userd;
                let get = u
                    .read(gpu.memory(), userd::GP_GET)
                    .map_err(|_| NvStatus::ERR_INVALID_STATE)?;
                u.write(gpu.memory_mut(), userd::GP_PUT, get)
                    .map_err(|_| NvStatus::ERR_INVALID_STATE)?;
            }
            let t = gpu.channel_tsg(c).map_err(|e| status_of(&e))?;
            if !tsgs.contains(&t) {
                tsgs.push(t);
            }
        }
        if p.bDisable != 0 && p.bOnlyDisableScheduling == 0 {
            // Disabling takes effect at the next switch: preempt what is loaded now, all within
            // one call's host work budget.
            let limit = gpu.call_work_limit();
            for t in tsgs {
                if gpu.resident_tsg(t.runlist).ok().flatten() == Some(t) {
                    gpu.preempt_tsg_and_wait_within(t, DEFAULT_WAIT_US * 1000, limit)
                        .map_err(|e| status_of(&e))?;
                }
            }
        }
        Ok(())
    }
}
