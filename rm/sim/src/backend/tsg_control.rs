//! Controls on a TSG (`KEPLER_CHANNEL_GROUP_A`, class `0xA06C`): schedule, bind, timeslice,
//! preempt, info and interleave level.

use super::{engine_type_or_gr0, status_of, SimBackend, DEFAULT_WAIT_US};
use crate::runlist::InterleaveLevel;
use rm_abi::ctrl::{self, *};
use rm_abi::{read_struct, write_struct, Handle, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    pub(super) fn ctrl_tsg(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> Result<(), NvStatus> {
        let tsg = self.tsg_ref(gfid, client, object)?;
        let bad = NvStatus::ERR_INVALID_PARAM_STRUCT;
        let mut gpu = self.lock();
        match cmd {
            NVA06C_CTRL_CMD_GPFIFO_SCHEDULE => {
                let p: NvA06cCtrlGpfifoScheduleParams = read_struct(params).ok_or(bad)?;
                gpu.schedule_tsg(tsg, p.bEnable != 0)
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_BIND => {
                let p: NvA06cCtrlBindParams = read_struct(params).ok_or(bad)?;
                match gpu.runlist_for_engine_type(engine_type_or_gr0(p.engineType)) {
                    Some(r) if r == tsg.runlist => Ok(()),
                    _ => Err(NvStatus::ERR_INVALID_ARGUMENT),
                }
            }
            NVA06C_CTRL_CMD_SET_TIMESLICE => {
                let p: NvA06cCtrlTimesliceParams = read_struct(params).ok_or(bad)?;
                gpu.set_tsg_timeslice_us(tsg, p.timesliceUs)
                    .map(|_| ())
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_GET_TIMESLICE => {
                let info = gpu.tsg_info(tsg).map_err(|e| status_of(&e))?;
                write_struct(
                    &NvA06cCtrlTimesliceParams {
                        timesliceUs: info.timeslice_us,
                    },
                    params,
                );
                Ok(())
            }
            NVA06C_CTRL_CMD_PREEMPT => {
                let p: NvA06cCtrlPreemptParams = read_struct(params).ok_or(bad)?;
                if p.bManualTimeout != 0 && p.timeoutUs > ctrl::NVA06C_PREEMPT_MAX_MANUAL_TIMEOUT_US
                {
                    return Err(NvStatus::ERR_INVALID_ARGUMENT);
                }
                if p.bWait == 0 {
                    return gpu.preempt_tsg(tsg).map_err(|e| status_of(&e));
                }
                let us = if p.bManualTimeout != 0 {
                    u64::from(p.timeoutUs)
                } else {
                    DEFAULT_WAIT_US
                };
                gpu.preempt_tsg_and_wait(tsg, us * 1000)
                    .map(|_| ())
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_GET_INFO => {
                write_struct(&NvA06cCtrlGetInfoParams { tsgID: tsg.tsgid }, params);
                Ok(())
            }
            NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL => {
                let p: NvA06cCtrlInterleaveLevelParams = read_struct(params).ok_or(bad)?;
                let level = InterleaveLevel::from_raw(p.tsgInterleaveLevel)
                    .ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
                gpu.set_tsg_interleave(tsg, level)
                    .map_err(|e| status_of(&e))
            }
            // Not in the 580/595 exported method table, so RM answers NOT_SUPPORTED.
            _ => Err(NvStatus::ERR_NOT_SUPPORTED),
        }
    }
}
