//! Controls on a channel (`HOPPER_CHANNEL_GPFIFO_A`, classes `0xA06F` and `0xC36F`): the work
//! submit token and the channel's schedule (enable).

use super::{status_of, SimBackend};
use rm_abi::ctrl::*;
use rm_abi::{read_struct, write_struct, Handle, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    pub(super) fn ctrl_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> Result<(), NvStatus> {
        let ch = self.channel_ref(gfid, client, object)?;
        let mut gpu = self.lock();
        match cmd {
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN => {
                let token = gpu.work_submit_token(ch).map_err(|e| status_of(&e))?;
                write_struct(
                    &NvC36fCtrlGpfifoGetWorkSubmitTokenParams {
                        workSubmitToken: token.0,
                    },
                    params,
                );
                Ok(())
            }
            NVA06F_CTRL_CMD_GPFIFO_SCHEDULE => {
                let p: NvA06cCtrlGpfifoScheduleParams =
                    read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
                let tsg = gpu.channel_tsg(ch).map_err(|e| status_of(&e))?;
                if p.bEnable != 0 && !gpu.tsg_info(tsg).map_err(|e| status_of(&e))?.scheduled {
                    gpu.schedule_tsg(tsg, true).map_err(|e| status_of(&e))?;
                }
                gpu.set_channel_enabled(ch, p.bEnable != 0)
                    .map_err(|e| status_of(&e))
            }
            _ => Err(NvStatus::ERR_NOT_SUPPORTED),
        }
    }
}
