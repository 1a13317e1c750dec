//! Channel work: the doorbell that hands a channel's new GPFIFO entries to the GPU, and the
//! waits for channels to go idle.

use super::{st, status_of, SimBackend, DEFAULT_WAIT_US};
use crate::channel::ChannelRef;
use crate::clock::ClockMode;
use crate::driver::MAX_CATCH_UP_NS;
use crate::gpu::SimGpu;
use rm_abi::{Handle, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    /// [`rm_core::backend::Backend::doorbell`]: rings `token` if it names a channel of a client
    /// of `gfid`.
    pub(super) fn ring_doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus {
        let t = crate::doorbell::WorkSubmitToken(token);
        let ch = ChannelRef {
            runlist: t.runlist(),
            chid: t.chid(),
        };
        let owned = self
            .channel_clients
            .get(&ch)
            .is_some_and(|c| self.owners.get(c) == Some(&gfid));
        if !owned {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        st(self.lock().doorbell(t))
    }

    /// Waits for all of `channels` within one timeout and one call's host work budget, so a
    /// guest's long timeout or long channel list cannot hold the host. On the real-time clock
    /// it does not wait: `NV_ERR_BUSY_RETRY` while they are busy (see `Backend::idle_channels`).
    pub(super) fn wait_idle(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channels: &[Handle],
        timeout_us: u32,
    ) -> NvStatus {
        let chans = match channels
            .iter()
            .map(|&h| self.channel_ref(gfid, client, h))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => c,
            Err(s) => return s,
        };
        let timeout_ns = if timeout_us == 0 {
            DEFAULT_WAIT_US
        } else {
            u64::from(timeout_us)
        } * 1000;
        let all_idle = |g: &SimGpu| {
            chans
                .iter()
                .try_fold(true, |all, &c| Ok(all && g.channel_idle(c)?))
        };
        let mut gpu = self.lock();
        let (idle, busy) = if gpu.clock_mode() == ClockMode::RealTime {
            // GPU time follows the host's: bring it up to now (bounded as the driver thread's
            // tick is) and answer at once. Simulating ahead to the deadline would move every
            // tenant's clock past real time, under the lock; the core makes the call again.
            gpu.sync_to_real_time(MAX_CATCH_UP_NS);
            (all_idle(&gpu), NvStatus::ERR_BUSY_RETRY)
        } else {
            let step = gpu.timing().sync_quantum_ns;
            let limit = gpu.call_work_limit();
            (
                gpu.wait_until(timeout_ns, step, limit, all_idle),
                NvStatus::ERR_TIMEOUT,
            )
        };
        match idle {
            Ok(true) => NvStatus::OK,
            Ok(false) => busy,
            Err(e) => status_of(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::engine::NV2080_ENGINE_TYPE_GR0;
    use crate::gpu::{SimConfig, SimGpu};
    use crate::userd;
    use crate::SimBackend;
    use rm_abi::ctrl::*;
    use rm_abi::methods::host;
    use rm_abi::pushbuffer::{inc_header, GpEntry};
    use rm_abi::NvStatus;
    use rm_core::backend::Backend;
    use std::sync::{Arc, Mutex};
    use zerocopy::IntoBytes;

    /// Found by `tests/fuzz_sim.rs`: an idle with a guest-chosen timeout of hours on a channel
    /// that never idles stepped the clock 10 µs at a time for all of it (hours of host CPU).
    /// Now the wait ends at one call's host work budget, with `NV_ERR_TIMEOUT`.
    #[test]
    fn waits_are_bounded_by_the_host_work_budget() {
        let mut b = SimBackend::new(SimConfig {
            timing: crate::timing::Timing {
                work_budget_per_call: 10_000,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let va = base(&mut b, 1, C1);
        ok(tsg(&mut b, 1, C1, TSG, NV2080_ENGINE_TYPE_GR0));
        ok(channel(&mut b, 1, C1, TSG, CH, va, 0).0);
        ok(schedule(&mut b, 1, C1, TSG, true));
        // An acquire of a value the semaphore never takes: the channel never idles.
        let sem = va + 0x20000;
        let words = [
            inc_header(0, host::SEM_ADDR_LO, 4),
            sem as u32,
            (sem >> 32) as u32,
            1,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::ACQUIRE,
        ];
        ok(b.write_memory(1, C1, MEM, 0x10000, words.as_bytes()));
        let entry = GpEntry::encode(va + 0x10000, words.len() as u32);
        ok(b.write_memory(1, C1, MEM, 0x1000, &entry.to_le_bytes()));
        ok(b.write_memory(1, C1, MEM, userd::GP_PUT, &1u32.to_le_bytes()));
        let (_, tok) = ctrl(
            &mut b,
            1,
            C1,
            CH,
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
        );
        ok(b.doorbell(1, tok.workSubmitToken));
        let gpu = b.gpu();
        let work = |g: &Arc<Mutex<SimGpu>>| g.lock().unwrap().host_work_units();
        let w0 = work(&gpu);
        assert_eq!(b.idle_channel(1, C1, CH, u32::MAX), NvStatus::ERR_TIMEOUT);
        let spent = work(&gpu) - w0;
        let runlists = gpu.lock().unwrap().runlist_count() as u64;
        assert!(
            spent <= 10_000 * (runlists + 1),
            "idle spent {spent} units of host work"
        );
        // The same for a long channel list in one call.
        let w0 = work(&gpu);
        assert_eq!(
            b.idle_channels(1, C1, &[CH; 64], u32::MAX),
            NvStatus::ERR_TIMEOUT
        );
        assert!(work(&gpu) - w0 <= 10_000 * (runlists + 1));
        // A preempt wait is bounded the same way, and a wait that can finish still does.
        ok(schedule(&mut b, 1, C1, TSG, false));
        ok(b.write_memory(1, C1, MEM, 0x20000, &1u32.to_le_bytes()));
        ok(schedule(&mut b, 1, C1, TSG, true));
        ok(b.idle_channel(1, C1, CH, u32::MAX));
    }
}
