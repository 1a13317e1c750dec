//! A GPU the scheduler can be exercised on with synthetic tenants: a [`Mechanism`] that can also
//! be given work and report how much work each GFID has completed (the throughput measure).

use std::time::Duration;

use crate::mechanism::fake::FakeGpu;
use crate::mechanism::load::LoadPattern;
use crate::mechanism::{GroupRef, Mechanism, MechanismError};

/// A mechanism that hosts synthetic tenants.
pub trait Testbed: Mechanism {
    /// Gives `gfid` a channel group on the compute runlist running `load`.
    fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError>;

    /// Useful engine time completed so far by `gfid`'s synthetic work (what throughput counts).
    fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError>;

    /// One line describing the GPU model (for reports).
    fn describe(&self) -> String;
}

impl Testbed for FakeGpu {
    fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError> {
        Ok(self.add_group(0, gfid, load))
    }

    fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError> {
        let mut total = Duration::ZERO;
        for info in self.groups()? {
            if info.gfid == gfid {
                total += self.run_time(info.group)?;
            }
        }
        Ok(total)
    }

    fn describe(&self) -> String {
        let c = self.capabilities();
        format!(
            "fake GPU (timeslice lever {}, gating {})",
            if c.timeslice { "effective" } else { "inert" },
            if c.channel_gate { "effective" } else { "inert" }
        )
    }
}

/// Synthetic tenants on the rm crate's sim GPU: each gets a TSG with one compute channel whose
/// GPFIFO is fed with the sim's compute-work method, as a client would.
pub mod sim {
    use std::time::Duration;

    use rm_abi::methods::{compute, host, HOPPER_COMPUTE_A};
    use rm_abi::pushbuffer::{inc_header, GpEntry};
    use rm_sim::memory::{Aperture, MemoryId};
    use rm_sim::userd::{self, Userd};
    use rm_sim::{ChannelConfig, ChannelRef, SimConfig, SimGpu, TsgRef};

    use super::Testbed;
    use crate::mechanism::load::LoadPattern;
    use crate::mechanism::sim::SimMechanism;
    use crate::mechanism::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
    use crate::policy_file::Priority;

    const VA: u64 = 0x1_0000_0000;
    const GPFIFO_OFF: u64 = 0x1000;
    const GPFIFO_ENTRIES: u32 = 512;
    const BUSY_SEG_OFF: u64 = 0x4000;
    const PB_OFF: u64 = 0x10000;
    const MEM_SIZE: u64 = 0x100000;
    /// One compute item of an always-busy tenant.
    const BUSY_ITEM_NS: u64 = 100_000;
    /// Items per GPFIFO entry of an always-busy tenant (10 ms of work per entry).
    const BUSY_ITEMS: u64 = 100;

    #[derive(Debug)]
    struct Client {
        gfid: u32,
        tsg: TsgRef,
        ch: ChannelRef,
        mem: MemoryId,
        load: LoadPattern,
        submitted_ns: u64,
        next_arrival: Option<Duration>,
        pb_next: u64,
    }

    /// The sim GPU with synthetic tenants; implements [`Mechanism`] (by [`SimMechanism`]) and
    /// [`Testbed`].
    #[derive(Debug)]
    pub struct SimTestbed {
        mech: SimMechanism,
        clients: Vec<Client>,
    }

    fn work_words(ns: u64) -> [u32; 4] {
        [
            inc_header(0, compute::SIM_WORK_NS_LO, 3),
            ns as u32,
            (ns >> 32) as u32,
            0,
        ]
    }

    fn sim_err(e: rm_sim::SimError) -> MechanismError {
        MechanismError::Backend(e.to_string())
    }

    impl Default for SimTestbed {
        fn default() -> Self {
            Self::new(SimConfig::default())
        }
    }

    impl SimTestbed {
        /// A sim GPU built from `config` (the clock should be virtual).
        pub fn new(config: SimConfig) -> Self {
            Self {
                mech: SimMechanism::new(SimGpu::new(config)),
                clients: Vec::new(),
            }
        }

        fn gpu(&mut self) -> &mut SimGpu {
            self.mech.gpu_mut()
        }

        fn write_words(&mut self, c: usize, off: u64, words: &[u32]) -> Result<(), MechanismError> {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mem = self.clients[c].mem;
            self.gpu()
                .memory_mut()
                .write(mem, off, &bytes)
                .map_err(|e| MechanismError::Backend(e.to_string()))
        }

        /// Appends a GPFIFO entry for a segment already in memory and rings the doorbell.
        fn submit(&mut self, c: usize, off: u64, len_words: u32) -> Result<(), MechanismError> {
            let (mem, ch) = (self.clients[c].mem, self.clients[c].ch);
            let gpu = self.gpu();
            let put = gpu
                .memory()
                .read_u32(mem, userd::GP_PUT)
                .map_err(|e| MechanismError::Backend(e.to_string()))?;
            let entry = GpEntry::encode(VA + off, len_words);
            let mm = gpu.memory_mut();
            mm.write_u64(mem, GPFIFO_OFF + u64::from(put) * 8, entry)
                .and_then(|_| mm.write_u32(mem, userd::GP_PUT, (put + 1) % GPFIFO_ENTRIES))
                .map_err(|e| MechanismError::Backend(e.to_string()))?;
            let token = gpu.work_submit_token(ch).map_err(sim_err)?;
            gpu.doorbell(token).map_err(sim_err)
        }

        /// Writes a one-off segment in the client's pushbuffer ring and submits it.
        fn submit_words(&mut self, c: usize, words: &[u32]) -> Result<(), MechanismError> {
            let off = self.clients[c].pb_next;
            let len = words.len() as u64 * 4;
            let next = (off + len + 0xFF) & !0xFF;
            self.clients[c].pb_next = if next + 0x100 > MEM_SIZE {
                PB_OFF
            } else {
                next
            };
            self.write_words(c, off, words)?;
            self.submit(c, off, words.len() as u32)
        }

        fn pending_entries(&mut self, c: usize) -> u32 {
            let mem = self.clients[c].mem;
            let pool = self.gpu().memory();
            let get = pool.read_u32(mem, userd::GP_GET).unwrap_or(0);
            let put = pool.read_u32(mem, userd::GP_PUT).unwrap_or(0);
            (put + GPFIFO_ENTRIES - get) % GPFIFO_ENTRIES
        }

        fn completed_ns(&self, c: usize) -> u64 {
            self.mech
                .gpu()
                .tsg_stats(self.clients[c].tsg)
                .map(|s| s.compute_work_ns)
                .unwrap_or(0)
        }

        /// Submits arrivals due by now and tops always-busy tenants up for `horizon`.
        fn feed(&mut self, horizon: Duration) -> Result<(), MechanismError> {
            let now = self.mech.now();
            for c in 0..self.clients.len() {
                match self.clients[c].load {
                    LoadPattern::Busy => {
                        let entry_ns = BUSY_ITEM_NS * BUSY_ITEMS;
                        let want = (horizon.as_nanos() as u64 / entry_ns + 2)
                            .min(u64::from(GPFIFO_ENTRIES) - 8)
                            as u32;
                        let have = self.pending_entries(c);
                        for _ in have..want {
                            self.submit(c, BUSY_SEG_OFF, (BUSY_ITEMS * 4) as u32)?;
                            self.clients[c].submitted_ns += entry_ns;
                        }
                    }
                    LoadPattern::Bursty { work, .. } => {
                        while let Some(t) = self.clients[c].next_arrival.filter(|t| *t <= now) {
                            let words = work_words(work.as_nanos() as u64);
                            self.submit_words(c, &words)?;
                            self.clients[c].submitted_ns += work.as_nanos() as u64;
                            self.clients[c].next_arrival =
                                self.clients[c].load.next_arrival_after(t);
                        }
                    }
                    LoadPattern::Idle => {}
                }
            }
            Ok(())
        }

        fn client_of(&self, group: GroupRef) -> Option<usize> {
            self.clients
                .iter()
                .position(|c| c.tsg.runlist == group.runlist && c.tsg.tsgid == group.tsg)
        }

        fn pending_ns(&self, c: usize) -> u64 {
            self.clients[c]
                .submitted_ns
                .saturating_sub(self.completed_ns(c))
        }
    }

    impl Mechanism for SimTestbed {
        fn capabilities(&self) -> Capabilities {
            self.mech.capabilities()
        }
        fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError> {
            self.mech.groups()
        }
        fn set_timeslice(
            &mut self,
            group: GroupRef,
            slice: Duration,
        ) -> Result<Duration, MechanismError> {
            self.mech.set_timeslice(group, slice)
        }
        fn set_interleave(
            &mut self,
            group: GroupRef,
            priority: Priority,
        ) -> Result<(), MechanismError> {
            self.mech.set_interleave(group, priority)
        }
        fn set_enabled(
            &mut self,
            groups: &[GroupRef],
            enabled: bool,
        ) -> Result<(), MechanismError> {
            self.mech.set_enabled(groups, enabled)
        }
        fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError> {
            self.mech.preempt(groups)
        }
        /// The testbed knows what it submitted: a tenant is busy while submitted compute work
        /// exceeds completed work (GP_GET alone cannot tell a half-done last entry).
        fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
            match self.client_of(group) {
                Some(c) => Ok(self.pending_ns(c) > 0),
                None => self.mech.busy(group),
            }
        }
        fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
            self.mech.run_time(group)
        }
        fn now(&self) -> Duration {
            self.mech.now()
        }
        fn run_until(
            &mut self,
            deadline: Duration,
            watch: &[GroupRef],
        ) -> Result<Duration, MechanismError> {
            let watched: Vec<usize> = watch.iter().filter_map(|&g| self.client_of(g)).collect();
            loop {
                let now = self.mech.now();
                if now >= deadline {
                    break;
                }
                self.feed(deadline - now)?;
                let mut step_end = deadline;
                if let Some(a) = self.clients.iter().filter_map(|c| c.next_arrival).min() {
                    step_end = step_end.min(a.max(now + Duration::from_nanos(1)));
                }
                if !watched.is_empty() {
                    // A watched tenant cannot run dry before its pending work has had time to run.
                    let pending = watched
                        .iter()
                        .map(|&c| self.pending_ns(c))
                        .max()
                        .unwrap_or(0);
                    if pending == 0 {
                        break;
                    }
                    step_end = step_end.min(now + Duration::from_nanos(pending.max(10_000)));
                }
                self.gpu().run_until(step_end.as_nanos() as u64);
            }
            Ok(self.mech.now())
        }
    }

    impl Testbed for SimTestbed {
        fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError> {
            let gpu = self.gpu();
            let tsg = gpu.create_tsg(0, gfid).map_err(sim_err)?;
            let mem = gpu
                .alloc_memory(gfid, Aperture::Vidmem, MEM_SIZE)
                .map_err(sim_err)?;
            let vas = gpu.create_vaspace();
            gpu.map(vas, VA, mem, 0, MEM_SIZE).map_err(sim_err)?;
            let ch = gpu
                .create_channel(
                    tsg,
                    ChannelConfig {
                        vaspace: vas,
                        gpfifo_va: VA + GPFIFO_OFF,
                        gpfifo_entries: GPFIFO_ENTRIES,
                        userd: Userd {
                            memory: mem,
                            offset: 0,
                        },
                        error_notifier: None,
                    },
                )
                .map_err(sim_err)?;
            gpu.schedule_tsg(tsg, true).map_err(sim_err)?;
            self.clients.push(Client {
                gfid,
                tsg,
                ch,
                mem,
                load,
                submitted_ns: 0,
                next_arrival: matches!(load, LoadPattern::Bursty { .. }).then_some(Duration::ZERO),
                pb_next: PB_OFF,
            });
            let c = self.clients.len() - 1;
            let busy: Vec<u32> = (0..BUSY_ITEMS)
                .flat_map(|_| work_words(BUSY_ITEM_NS))
                .collect();
            self.write_words(c, BUSY_SEG_OFF, &busy)?;
            self.submit_words(c, &[inc_header(0, host::SET_OBJECT, 1), HOPPER_COMPUTE_A])?;
            Ok(GroupRef {
                runlist: tsg.runlist,
                tsg: tsg.tsgid,
            })
        }

        fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError> {
            let ns: u64 = (0..self.clients.len())
                .filter(|&c| self.clients[c].gfid == gfid)
                .map(|c| self.completed_ns(c))
                .sum();
            Ok(Duration::from_nanos(ns))
        }

        fn describe(&self) -> String {
            let t = self.mech.gpu().timing();
            format!(
                "sim GPU (rm sim backend, virtual clock, ctxsw {} ns, compute preemptible every {} ns)",
                t.ctxsw_ns, t.compute_preempt_granularity_ns
            )
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const MS: Duration = Duration::from_millis(1);

        #[test]
        fn busy_tenants_share_by_programmed_timeslices() {
            let mut tb = SimTestbed::default();
            let a = tb.add_load(1, LoadPattern::Busy).unwrap();
            let b = tb.add_load(2, LoadPattern::Busy).unwrap();
            tb.set_timeslice(a, 3 * MS).unwrap();
            tb.set_timeslice(b, MS).unwrap();
            tb.run_until(400 * MS, &[]).unwrap();
            let (ra, rb) = (tb.run_time(a).unwrap(), tb.run_time(b).unwrap());
            let share = ra.as_secs_f64() / (ra + rb).as_secs_f64();
            assert!((share - 0.75).abs() < 0.02, "share {share}");
            assert!(tb.work_done(1).unwrap() > 250 * MS);
        }

        #[test]
        fn gating_stops_a_tenant_and_bursty_work_runs_dry() {
            let mut tb = SimTestbed::default();
            let a = tb.add_load(1, LoadPattern::Busy).unwrap();
            let b = tb
                .add_load(
                    2,
                    LoadPattern::Bursty {
                        period: 50 * MS,
                        work: 5 * MS,
                    },
                )
                .unwrap();
            tb.set_enabled(&[a], false).unwrap();
            tb.preempt(&[a]).unwrap();
            let t = tb.run_until(40 * MS, &[b]).unwrap();
            assert!(t >= 5 * MS && t < 7 * MS, "bursty tenant ran dry at {t:?}");
            assert!(!tb.busy(b).unwrap());
            assert!(
                tb.busy(a).unwrap(),
                "a disabled tenant still has work pending"
            );
            let before = tb.run_time(a).unwrap();
            tb.run_until(45 * MS, &[]).unwrap();
            assert_eq!(
                tb.run_time(a).unwrap(),
                before,
                "disabled tenant made no progress"
            );
            tb.run_until(60 * MS, &[]).unwrap();
            assert_eq!(
                tb.work_done(2).unwrap(),
                10 * MS,
                "second batch arrived at 50 ms"
            );
        }
    }
}
