//! Whole-GPU behaviour: clients submitting real GPFIFO/pushbuffer streams through channels,
//! on the virtual clock.

use super::chram;
use super::doorbell::WorkSubmitToken;
use super::fault::{
    ErrorNotifier, FaultKind, ROBUST_CHANNEL_GR_EXCEPTION, ROBUST_CHANNEL_PBDMA_ERROR,
};
use super::memory::{Aperture, MemoryId};
use super::preempt::{self, PreemptRequest};
use super::runlist::decode_runlist;
use super::userd::{self, Userd};
use super::vaspace::VaSpaceId;
use super::*;
use rm_abi::methods::{compute, copy, host, HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A};
use rm_abi::pushbuffer::{inc_header, GpEntry};

const VA: u64 = 0x1_0000_0000;
const GPFIFO_OFF: u64 = 0x1000;
const GPFIFO_ENTRIES: u32 = 512;
const NOTIFIER_OFF: u64 = 0x3000;
const PB_OFF: u64 = 0x10000;
const DATA_OFF: u64 = 0x200000;
const MEM_SIZE: u64 = 0x400000;

/// A client with one channel in its own TSG: USERD, GPFIFO ring, pushbuffer and data in one
/// video-memory object mapped at `VA`.
struct Client {
    mem: MemoryId,
    vas: VaSpaceId,
    tsg: TsgRef,
    ch: ChannelRef,
    pb_next: u64,
}

fn gpu_with(timing: Timing) -> SimGpu {
    SimGpu::new(SimConfig {
        timing,
        ..SimConfig::default()
    })
}

/// Timing with context switches and preemption points that keep arithmetic simple.
fn simple_timing() -> Timing {
    Timing {
        ctxsw_ns: 0,
        compute_preempt_granularity_ns: 1,
        ..Timing::default()
    }
}

impl Client {
    fn new(gpu: &mut SimGpu, runlist: u32, gfid: u32) -> Self {
        let tsg = gpu.create_tsg(runlist, gfid).unwrap();
        Self::in_tsg(gpu, tsg)
    }

    fn in_tsg(gpu: &mut SimGpu, tsg: TsgRef) -> Self {
        let mem = gpu.alloc_memory(0, Aperture::Vidmem, MEM_SIZE).unwrap();
        let vas = gpu.create_vaspace();
        gpu.map(vas, VA, mem, 0, MEM_SIZE).unwrap();
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
                    error_notifier: Some(ErrorNotifier {
                        memory: mem,
                        offset: NOTIFIER_OFF,
                    }),
                },
            )
            .unwrap();
        gpu.schedule_tsg(tsg, true).unwrap();
        let class = if runlist_is_gr(tsg.runlist) {
            HOPPER_COMPUTE_A
        } else {
            HOPPER_DMA_COPY_A
        };
        let mut c = Self {
            mem,
            vas,
            tsg,
            ch,
            pb_next: PB_OFF,
        };
        c.push(gpu, &[inc_header(0, host::SET_OBJECT, 1), class]);
        c
    }

    /// Writes `words` as a pushbuffer segment, appends a GPFIFO entry, bumps GP_PUT and rings
    /// the doorbell.
    fn push(&mut self, gpu: &mut SimGpu, words: &[u32]) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let off = self.pb_next;
        assert!(off + bytes.len() as u64 <= DATA_OFF, "pushbuffer area full");
        gpu.memory_mut().write(self.mem, off, &bytes).unwrap();
        self.pb_next = (off + bytes.len() as u64 + 0xFF) & !0xFF;
        let put = gpu.memory().read_u32(self.mem, userd::GP_PUT).unwrap();
        let entry = GpEntry::encode(VA + off, words.len() as u32);
        gpu.memory_mut()
            .write_u64(self.mem, GPFIFO_OFF + u64::from(put) * 8, entry)
            .unwrap();
        gpu.memory_mut()
            .write_u32(self.mem, userd::GP_PUT, (put + 1) % GPFIFO_ENTRIES)
            .unwrap();
        let token = gpu.work_submit_token(self.ch).unwrap();
        gpu.doorbell(token).unwrap();
    }

    fn data(&self, gpu: &SimGpu, off: u64) -> u32 {
        gpu.memory().read_u32(self.mem, DATA_OFF + off).unwrap()
    }

    fn data64(&self, gpu: &SimGpu, off: u64) -> u64 {
        gpu.memory().read_u64(self.mem, DATA_OFF + off).unwrap()
    }

    fn stats(&self, gpu: &SimGpu) -> TsgStats {
        gpu.tsg_stats(self.tsg).unwrap()
    }
}

fn runlist_is_gr(runlist: u32) -> bool {
    runlist == 0
}

fn work(ns: u64) -> Vec<u32> {
    vec![
        inc_header(0, compute::SIM_WORK_NS_LO, 3),
        ns as u32,
        (ns >> 32) as u32,
        0,
    ]
}

fn sem_release(off: u64, payload: u32, flags: u32) -> Vec<u32> {
    let va = VA + DATA_OFF + off;
    vec![
        inc_header(0, host::SEM_ADDR_LO, 4),
        va as u32,
        (va >> 32) as u32,
        payload,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::RELEASE | flags,
    ]
}

fn sem_acquire(off: u64, payload: u32, op: u32, flags: u32) -> Vec<u32> {
    let va = VA + DATA_OFF + off;
    vec![
        inc_header(0, host::SEM_ADDR_LO, 4),
        va as u32,
        (va >> 32) as u32,
        payload,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        op | flags,
    ]
}

/// A long stream of compute work: `n` items of `ns` each.
fn busy(n: usize, ns: u64) -> Vec<u32> {
    (0..n).flat_map(|_| work(ns)).collect()
}

#[test]
fn semaphore_release_after_work_carries_gpu_timestamp() {
    let mut gpu = gpu_with(simple_timing());
    let mut c = Client::new(&mut gpu, 0, 0);
    let mut s = work(1_000_000);
    s.extend(sem_release(0, 0xC0FFEE, host::SEM_RELEASE_TIMESTAMP));
    c.push(&mut gpu, &s);
    gpu.advance(500_000);
    assert_eq!(c.data(&gpu, 0), 0, "not before the work is done");
    gpu.advance(1_000_000);
    assert_eq!(c.data(&gpu, 0), 0xC0FFEE);
    let ts = c.data64(&gpu, 8);
    let m = gpu.timing().method_ns;
    assert!(
        (1_000_000..1_000_000 + 20 * m).contains(&ts),
        "timestamp {ts}"
    );
    assert_eq!(gpu.memory().read_u32(c.mem, userd::GP_GET).unwrap(), 2);
    let st = c.stats(&gpu);
    assert_eq!(st.compute_work_ns, 1_000_000);
    assert!(st.engine_time_ns >= 1_000_000 && st.engine_time_ns < 1_000_000 + 20 * m);
    assert_eq!(gpu.chram_read(c.ch).unwrap() & chram::PENDING, 0, "drained");
}

fn share(a: u64, b: u64) -> f64 {
    a as f64 / (a + b) as f64
}

#[test]
fn busy_tsgs_share_the_engine_by_timeslice() {
    let mut gpu = gpu_with(Timing::default());
    let mut a = Client::new(&mut gpu, 0, 1);
    let mut b = Client::new(&mut gpu, 0, 2);
    gpu.set_tsg_timeslice_us(a.tsg, 1000).unwrap();
    gpu.set_tsg_timeslice_us(b.tsg, 3000).unwrap();
    a.push(&mut gpu, &busy(2000, 1_000_000));
    b.push(&mut gpu, &busy(2000, 1_000_000));
    gpu.advance(1_000_000_000);
    let (sa, sb) = (a.stats(&gpu), b.stats(&gpu));
    let s = share(sa.engine_time_ns, sb.engine_time_ns);
    assert!((s - 0.25).abs() < 0.01, "engine share {s}");
    let w = share(sa.compute_work_ns, sb.compute_work_ns);
    assert!((w - 0.25).abs() < 0.01, "work share {w}");
    // About one switch per timeslice pair; every switch-out was a timeslice expiry.
    assert!((200..=260).contains(&sa.switches_in), "{sa:?}");
    assert_eq!(
        sa.timeslice_expirations,
        sa.switches_in - u64::from(gpu.resident_tsg(0).unwrap() == Some(a.tsg))
    );
    let rs = gpu.runlist_stats(0).unwrap();
    assert!(rs.ctxsw_ns > 0 && rs.idle_ns == 0);
    assert_eq!(rs.busy_ns + rs.ctxsw_ns, 1_000_000_000);
}

#[test]
fn interleave_levels_repeat_tsgs() {
    let mut gpu = gpu_with(simple_timing());
    let mut clients: Vec<Client> = (0..3).map(|g| Client::new(&mut gpu, 0, g)).collect();
    gpu.set_tsg_interleave(clients[0].tsg, InterleaveLevel::High)
        .unwrap();
    gpu.set_tsg_interleave(clients[1].tsg, InterleaveLevel::Medium)
        .unwrap();
    gpu.set_tsg_interleave(clients[2].tsg, InterleaveLevel::Low)
        .unwrap();
    // L = 1, M = 1: HIGH appears (M+1)*L = 2 times, MEDIUM and LOW once.
    let ids: Vec<u32> = gpu
        .runlist_slots(0)
        .unwrap()
        .iter()
        .map(|s| s.tsgid)
        .collect();
    let h = clients[0].tsg.tsgid;
    assert_eq!(ids.iter().filter(|&&i| i == h).count(), 2);
    assert_eq!(ids.len(), 4);
    for c in &mut clients {
        c.push(&mut gpu, &busy(1000, 1_000_000));
    }
    gpu.advance(400_000_000);
    let t: Vec<u64> = clients
        .iter()
        .map(|c| c.stats(&gpu).engine_time_ns)
        .collect();
    let total: u64 = t.iter().sum();
    let hs = t[0] as f64 / total as f64;
    assert!((hs - 0.5).abs() < 0.01, "HIGH share {hs}");
    assert!((t[1] as f64 / total as f64 - 0.25).abs() < 0.01);
}

#[test]
fn runlist_headers_carry_timeslice_and_gfid() {
    let mut gpu = gpu_with(simple_timing());
    let c = Client::new(&mut gpu, 0, 7);
    let ts = gpu.set_tsg_timeslice_us(c.tsg, 2000).unwrap();
    let slots = decode_runlist(&gpu.runlist_entries(0).unwrap()).unwrap();
    assert_eq!(slots.len(), 1);
    assert_eq!(
        (slots[0].gfid, slots[0].timeslice, slots[0].tsgid),
        (7, ts, c.tsg.tsgid)
    );
    assert_eq!(slots[0].chids, vec![c.ch.chid]);
    let info = gpu.tsg_info(c.tsg).unwrap();
    assert_eq!(
        (info.timeslice_us, info.gfid, info.interleave),
        (2000, 7, InterleaveLevel::Medium)
    );
    assert!(gpu.create_tsg(0, 64).is_err());
}

#[test]
fn preempt_pending_clears_at_the_preemption_point() {
    let timing = Timing {
        ctxsw_ns: 2_000,
        compute_preempt_granularity_ns: 10_000,
        ..Timing::default()
    };
    let mut gpu = gpu_with(timing);
    let mut a = Client::new(&mut gpu, 0, 1);
    let b = Client::new(&mut gpu, 0, 2);
    a.push(&mut gpu, &busy(10, 1_000_000));
    gpu.advance(105_000);
    assert_eq!(gpu.resident_tsg(0).unwrap(), Some(a.tsg));
    let t0 = gpu.now_ns();
    gpu.preempt_tsg(a.tsg).unwrap();
    assert_ne!(
        gpu.preempt_read(0).unwrap() & preempt::TSG_PREEMPT_PENDING,
        0
    );
    gpu.advance(1_000);
    assert!(
        gpu.preempt_pending(0).unwrap(),
        "work has not reached a preemption point yet"
    );
    gpu.advance(20_000);
    assert!(!gpu.preempt_pending(0).unwrap());
    assert_ne!(
        gpu.runlist_intr(0).unwrap() & preempt::INTR_TSG_PREEMPT_COMPLETE,
        0
    );
    let st = a.stats(&gpu);
    assert_eq!(st.preemptions, 1);
    assert!(
        st.preempt_latency_ns > 1_000 && st.preempt_latency_ns <= 10_000 + 2_000,
        "{st:?}"
    );
    // A is still the only TSG with work, so it is loaded again after the preemption.
    assert_eq!(gpu.resident_tsg(0).unwrap(), Some(a.tsg));
    assert!(gpu.now_ns() > t0);
    // Preempting a TSG that is not loaded completes at once.
    gpu.preempt_tsg(b.tsg).unwrap();
    assert!(!gpu.preempt_pending(0).unwrap());
    // Runlist-type preemption, waited for.
    gpu.runlist_intr_clear(0, u32::MAX).unwrap();
    gpu.preempt_write(0, PreemptRequest::Runlist.encode())
        .unwrap();
    assert_ne!(
        gpu.preempt_read(0).unwrap() & preempt::RUNLIST_PREEMPT_PENDING,
        0
    );
    assert!(
        gpu.preempt_write(0, PreemptRequest::Runlist.encode())
            .is_err(),
        "one at a time"
    );
    gpu.advance(20_000);
    assert_eq!(
        gpu.preempt_read(0).unwrap() & preempt::RUNLIST_PREEMPT_PENDING,
        0
    );
    assert_ne!(
        gpu.runlist_intr(0).unwrap() & preempt::INTR_RUNLIST_PREEMPT_COMPLETE,
        0
    );
    let took = gpu.preempt_tsg_and_wait(a.tsg, 1_000_000).unwrap();
    assert!(took <= 13_000, "{took}");
}

#[test]
fn a_real_compute_launch_faults_its_channel_as_an_engine_exception() {
    let mut gpu = gpu_with(simple_timing());
    let mut cuda = Client::new(&mut gpu, 0, 1);
    let mut sim = Client::new(&mut gpu, 0, 2);
    // What CUDA and Mesa push on Ampere and later: the QMD's address, then the kick.
    cuda.push(
        &mut gpu,
        &[
            inc_header(0, compute::SEND_PCAS_A, 1),
            0x1234,
            inc_header(0, compute::SEND_SIGNALING_PCAS2_B, 1),
            9,
        ],
    );
    let mut s = work(100_000);
    s.extend(sem_release(0, 7, 0));
    sim.push(&mut gpu, &s);
    gpu.advance(1_000_000);
    let f = gpu.channel_fault(cuda.ch).unwrap().expect("faulted");
    assert_eq!(f.rc_error, ROBUST_CHANNEL_GR_EXCEPTION);
    assert_eq!(
        f.kind,
        FaultKind::UnmodeledLaunch(compute::SEND_SIGNALING_PCAS2_B)
    );
    assert_ne!(gpu.chram_read(cuda.ch).unwrap() & chram::ENG_FAULTED, 0);
    assert_eq!(gpu.channel_fault(sim.ch).unwrap(), None);
    assert_eq!(gpu.memory().read_u32(sim.mem, DATA_OFF).unwrap(), 7);
}

#[test]
fn a_faulting_channel_stops_alone() {
    let mut gpu = gpu_with(simple_timing());
    let mut bad = Client::new(&mut gpu, 0, 1);
    let mut good = Client::new(&mut gpu, 0, 2);
    // Same TSG as `bad`: must keep running too.
    let mut sibling = Client::in_tsg(&mut gpu, bad.tsg);
    bad.push(&mut gpu, &[inc_header(0, host::ILLEGAL, 1), 0]);
    let mut s = work(100_000);
    s.extend(sem_release(0, 1, 0));
    good.push(&mut gpu, &s);
    sibling.push(&mut gpu, &s);
    gpu.advance(1_000_000);
    let f = gpu.channel_fault(bad.ch).unwrap().expect("faulted");
    assert_eq!(f.rc_error, ROBUST_CHANNEL_PBDMA_ERROR);
    assert!(matches!(
        f.kind,
        FaultKind::IllegalMethod {
            method: host::ILLEGAL,
            ..
        }
    ));
    assert_ne!(gpu.chram_read(bad.ch).unwrap() & chram::PBDMA_FAULTED, 0);
    // Error notifier: info32 = Xid 32, info16 = GR0, status 0xFFFF.
    let m = gpu.memory();
    assert_eq!(
        m.read_u32(bad.mem, NOTIFIER_OFF + 8).unwrap(),
        ROBUST_CHANNEL_PBDMA_ERROR
    );
    assert_eq!(m.read_u32(bad.mem, NOTIFIER_OFF + 12).unwrap(), 0xFFFF_0001);
    assert_eq!(m.read_u64(bad.mem, NOTIFIER_OFF).unwrap(), f.at_ns);
    assert_eq!(good.data(&gpu, 0), 1);
    assert_eq!(sibling.data(&gpu, 0), 1);
    assert!(gpu.channel_fault(good.ch).unwrap().is_none());
    // A faulted channel ignores further work until software resets it.
    bad.push(&mut gpu, &sem_release(0, 5, 0));
    gpu.advance(100_000);
    assert_eq!(bad.data(&gpu, 0), 0);
    gpu.chram_write(bad.ch, chram::RESET_PBDMA_FAULTED).unwrap();
    assert!(gpu.channel_fault(bad.ch).unwrap().is_none());
    gpu.doorbell(gpu.work_submit_token(bad.ch).unwrap())
        .unwrap();
    gpu.advance(100_000);
    assert_eq!(bad.data(&gpu, 0), 5);
}

#[test]
fn bad_addresses_and_gp_put_fault_without_panicking() {
    let mut gpu = gpu_with(simple_timing());
    let mut c = Client::new(&mut gpu, 0, 0);
    // Semaphore to an unmapped VA: MMU fault, Xid 31.
    let mut s = sem_release(0, 1, 0);
    s[1] = 0xDEAD_0000;
    s[2] = 0x7;
    c.push(&mut gpu, &s);
    gpu.advance(100_000);
    let f = gpu.channel_fault(c.ch).unwrap().unwrap();
    assert_eq!(f.rc_error, 31);
    // GP_PUT beyond the ring.
    let d = Client::new(&mut gpu, 0, 0);
    gpu.memory_mut()
        .write_u32(d.mem, userd::GP_PUT, 0xFFFF_FFFF)
        .unwrap();
    gpu.doorbell(gpu.work_submit_token(d.ch).unwrap()).unwrap();
    assert!(matches!(
        gpu.channel_fault(d.ch).unwrap().unwrap().kind,
        FaultKind::GpPutOutOfRange {
            gp_put: 0xFFFF_FFFF,
            ..
        }
    ));
    // Tokens naming nothing are refused.
    assert!(gpu.doorbell(WorkSubmitToken::new(99, 0)).is_err());
    assert!(gpu.doorbell(WorkSubmitToken::new(0, 2047)).is_err());
}

#[test]
fn acquire_blocks_until_another_engine_releases() {
    let mut gpu = gpu_with(simple_timing());
    let mut gr = Client::new(&mut gpu, 0, 1);
    let mut ce = Client::new(&mut gpu, 1, 1);
    // The GR channel waits for sem(CE memory)... both clients share nothing, so use the CE
    // client's memory through a second mapping in the GR client's VA space.
    gpu.map(gr.vas, 0x2_0000_0000, ce.mem, DATA_OFF, 0x1000)
        .unwrap();
    let mut s = vec![
        inc_header(0, host::SEM_ADDR_LO, 4),
        0,
        2,
        1,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::ACQ_STRICT_GEQ | host::SEM_ACQUIRE_SWITCH_TSG,
    ];
    s.extend(sem_release(0, 2, host::SEM_RELEASE_TIMESTAMP));
    gr.push(&mut gpu, &s);
    gpu.advance(200_000);
    assert_eq!(gr.data(&gpu, 0), 0, "blocked");
    assert_ne!(gpu.chram_read(gr.ch).unwrap() & chram::ACQUIRE_FAIL, 0);
    let gr_busy = gr.stats(&gpu).engine_time_ns;
    assert!(gr_busy < 1_000, "switched out while waiting: {gr_busy}");
    // CE: a 64 KiB copy, then a four-word semaphore release of 1 at DATA_OFF.
    let n = 64 * 1024u64;
    let src = VA + DATA_OFF + 0x10000;
    let dst = VA + DATA_OFF + 0x40000;
    gpu.memory_mut()
        .write(ce.mem, DATA_OFF + 0x10000, &vec![0x5A; n as usize])
        .unwrap();
    let sem = VA + DATA_OFF;
    ce.push(
        &mut gpu,
        &[
            inc_header(0, copy::SET_SEMAPHORE_A, 3),
            (sem >> 32) as u32,
            sem as u32,
            1,
            inc_header(0, copy::OFFSET_IN_UPPER, 4),
            (src >> 32) as u32,
            src as u32,
            (dst >> 32) as u32,
            dst as u32,
            inc_header(0, copy::LINE_LENGTH_IN, 1),
            n as u32,
            inc_header(0, copy::LAUNCH_DMA, 1),
            2 | 2 << 3 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH,
        ],
    );
    let t_ce = gpu.now_ns();
    gpu.advance(100_000);
    assert_eq!(ce.data(&gpu, 0), 1);
    let ce_ts = ce.data64(&gpu, 8);
    let bw = gpu.timing().copy_bytes_per_ns;
    assert!(
        ce_ts >= t_ce + n / bw,
        "copy took bandwidth time: {ce_ts} vs {t_ce}"
    );
    let mut back = vec![0u8; n as usize];
    gpu.memory()
        .read(ce.mem, DATA_OFF + 0x40000, &mut back)
        .unwrap();
    assert!(back.iter().all(|&b| b == 0x5A));
    assert_eq!(
        gr.data(&gpu, 0),
        2,
        "released after the acquire was satisfied"
    );
    assert!(gr.data64(&gpu, 8) >= ce_ts);
    assert_eq!(gpu.chram_read(gr.ch).unwrap() & chram::ACQUIRE_FAIL, 0);
}

#[test]
fn spinning_acquire_holds_the_engine_and_cpu_release_frees_it() {
    let mut gpu = gpu_with(simple_timing());
    let mut c = Client::new(&mut gpu, 0, 1);
    let mut s = sem_acquire(0x100, 3, host::sem_op::ACQUIRE, 0);
    s.extend(sem_release(0, 9, 0));
    c.push(&mut gpu, &s);
    gpu.advance(100_000);
    assert_eq!(c.data(&gpu, 0), 0);
    assert!(c.stats(&gpu).engine_time_ns > 90_000, "spins on the engine");
    gpu.memory_mut()
        .write_u32(c.mem, DATA_OFF + 0x100, 3)
        .unwrap();
    gpu.advance(10_000);
    assert_eq!(c.data(&gpu, 0), 9);
}

#[test]
fn fill_through_the_copy_engine() {
    let mut gpu = gpu_with(simple_timing());
    let mut ce = Client::new(&mut gpu, 2, 0);
    let dst = VA + DATA_OFF + 0x1000;
    ce.push(
        &mut gpu,
        &[
            inc_header(0, copy::SET_REMAP_CONST_A, 3),
            0xABCD_1234,
            0,
            copy::REMAP_CONST_A | 3 << 16,
            inc_header(0, copy::OFFSET_OUT_UPPER, 2),
            (dst >> 32) as u32,
            dst as u32,
            inc_header(0, copy::LINE_LENGTH_IN, 1),
            1000,
            inc_header(0, copy::LAUNCH_DMA, 1),
            2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH | copy::LAUNCH_REMAP,
        ],
    );
    gpu.advance(100_000);
    assert_eq!(ce.data(&gpu, 0x1000), 0xABCD_1234);
    assert_eq!(ce.data(&gpu, 0x1000 + 999 * 4), 0xABCD_1234);
    assert_eq!(ce.data(&gpu, 0x1000 + 1000 * 4), 0);
    assert_eq!(ce.stats(&gpu).copy_bytes, 4000);
    // The compute class cannot be bound on a copy engine's runlist.
    ce.push(
        &mut gpu,
        &[inc_header(1, host::SET_OBJECT, 1), HOPPER_COMPUTE_A],
    );
    gpu.advance(10_000);
    let f = gpu.channel_fault(ce.ch).unwrap().unwrap();
    assert_eq!(f.kind, FaultKind::ClassNotOnEngine(HOPPER_COMPUTE_A));
    assert_ne!(gpu.chram_read(ce.ch).unwrap() & chram::ENG_FAULTED, 0);
}

/// GR channels host the copy class as well (the GR engine's copy engine, as CUDA uses it:
/// compute on one subchannel, copies on another, in one channel).
#[test]
fn copy_class_runs_on_a_gr_channel_beside_compute() {
    let mut gpu = gpu_with(simple_timing());
    let mut gr = Client::new(&mut gpu, 0, 0);
    let dst = VA + DATA_OFF + 0x1000;
    gr.push(
        &mut gpu,
        &[
            inc_header(1, host::SET_OBJECT, 1),
            HOPPER_COMPUTE_A,
            inc_header(4, host::SET_OBJECT, 1),
            HOPPER_DMA_COPY_A,
            inc_header(1, compute::SIM_WORK_NS_LO, 3),
            5_000,
            0,
            0,
            inc_header(4, copy::SET_REMAP_CONST_A, 3),
            0x600D_C0DE,
            0,
            copy::REMAP_CONST_A | 3 << 16,
            inc_header(4, copy::OFFSET_OUT_UPPER, 2),
            (dst >> 32) as u32,
            dst as u32,
            inc_header(4, copy::LINE_LENGTH_IN, 1),
            16,
            inc_header(4, copy::LAUNCH_DMA, 1),
            2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH | copy::LAUNCH_REMAP,
        ],
    );
    gpu.advance(100_000);
    assert_eq!(gpu.channel_fault(gr.ch).unwrap(), None);
    assert_eq!(gr.data(&gpu, 0x1000), 0x600D_C0DE);
    assert_eq!(gr.data(&gpu, 0x1000 + 15 * 4), 0x600D_C0DE);
    let st = gr.stats(&gpu);
    assert_eq!((st.compute_work_ns, st.copy_bytes), (5_000, 64));
}

#[test]
fn disabled_channels_stop_being_scheduled() {
    let mut gpu = gpu_with(simple_timing());
    let mut a = Client::new(&mut gpu, 0, 1);
    let mut b = Client::new(&mut gpu, 0, 2);
    a.push(&mut gpu, &busy(500, 1_000_000));
    b.push(&mut gpu, &busy(500, 1_000_000));
    gpu.advance(10_000_000);
    gpu.set_channel_enabled(a.ch, false).unwrap();
    if gpu.resident_tsg(0).unwrap() == Some(a.tsg) {
        gpu.preempt_tsg_and_wait(a.tsg, 1_000_000).unwrap();
    }
    let before = a.stats(&gpu).engine_time_ns;
    gpu.advance(50_000_000);
    assert_eq!(
        a.stats(&gpu).engine_time_ns,
        before,
        "disabled TSG made no progress"
    );
    gpu.set_channel_enabled(a.ch, true).unwrap();
    gpu.advance(10_000_000);
    assert!(a.stats(&gpu).engine_time_ns > before);
    // GPFIFO_SCHEDULE(disable) takes the TSG off the runlist.
    gpu.schedule_tsg(b.tsg, false).unwrap();
    assert!(gpu
        .runlist_slots(0)
        .unwrap()
        .iter()
        .all(|s| s.tsgid != b.tsg.tsgid));
    let bb = b.stats(&gpu).engine_time_ns;
    gpu.advance(20_000_000);
    assert!(
        b.stats(&gpu).engine_time_ns - bb <= 1_000_000,
        "at most the drain of one item"
    );
}

#[test]
fn hostile_method_flood_is_capped_per_call() {
    let timing = Timing {
        work_budget_per_call: 10_000,
        ..simple_timing()
    };
    let mut gpu = gpu_with(timing);
    let mut flood = Client::new(&mut gpu, 0, 1);
    let mut ce = Client::new(&mut gpu, 1, 2);
    // ~500k NOP methods in one segment: 10 ms of PBDMA time at 20 ns each.
    let mut words = Vec::new();
    for _ in 0..60 {
        words.push(rm_abi::pushbuffer::non_inc_header(0, host::NOP, 8191));
        words.extend(std::iter::repeat_n(0u32, 8191));
    }
    flood.push(&mut gpu, &words);
    let sem = VA + DATA_OFF;
    ce.push(
        &mut gpu,
        &[
            inc_header(0, copy::SET_SEMAPHORE_A, 3),
            (sem >> 32) as u32,
            sem as u32,
            7,
            inc_header(0, copy::LAUNCH_DMA, 1),
            1 << 3,
        ],
    );
    gpu.advance(5_000_000);
    let rs = gpu.runlist_stats(0).unwrap();
    assert!(rs.budget_stall_ns > 0);
    assert!(flood.stats(&gpu).methods <= 10_000);
    assert_eq!(ce.data(&gpu, 0), 7, "the copy runlist is unaffected");
    // The next call gets a fresh budget.
    gpu.advance(1_000_000);
    assert!(flood.stats(&gpu).methods > 10_000);
}

#[test]
fn identical_runs_give_identical_results() {
    let run = || {
        let mut gpu = gpu_with(Timing::default());
        let mut a = Client::new(&mut gpu, 0, 1);
        let mut b = Client::new(&mut gpu, 0, 2);
        let mut c = Client::new(&mut gpu, 1, 3);
        gpu.set_tsg_timeslice_us(b.tsg, 700).unwrap();
        a.push(&mut gpu, &busy(100, 333_333));
        b.push(&mut gpu, &busy(100, 250_000));
        c.push(&mut gpu, &sem_release(0, 1, host::SEM_RELEASE_TIMESTAMP));
        for i in 0..50 {
            gpu.advance(777_777 + i);
        }
        (
            a.stats(&gpu),
            b.stats(&gpu),
            c.stats(&gpu),
            c.data64(&gpu, 8),
            gpu.runlist_stats(0).unwrap(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn teardown_releases_everything() {
    let mut gpu = gpu_with(simple_timing());
    let mut c = Client::new(&mut gpu, 0, 1);
    c.push(&mut gpu, &busy(10, 1_000_000));
    gpu.advance(1_500_000);
    assert_eq!(gpu.destroy_tsg(c.tsg), Err(SimError::TsgNotEmpty(c.tsg)));
    gpu.destroy_channel(c.ch).unwrap();
    gpu.destroy_tsg(c.tsg).unwrap();
    gpu.advance(100_000);
    assert_eq!(
        gpu.resident_tsg(0).unwrap(),
        None,
        "switched out after removal"
    );
    gpu.destroy_vaspace(c.vas).unwrap();
    gpu.free_memory(c.mem).unwrap();
    assert_eq!(
        (gpu.channel_count(), gpu.tsg_count(), gpu.vaspace_count()),
        (0, 0, 0)
    );
    assert!(gpu.memory().is_empty());
    assert!(gpu.runlist_entries(0).unwrap().is_empty());
}

#[test]
fn real_time_driver_moves_gpu_time() {
    use std::sync::{Arc, Mutex};
    let gpu = Arc::new(Mutex::new(SimGpu::new(SimConfig {
        clock: ClockMode::RealTime,
        timing: simple_timing(),
        ..SimConfig::default()
    })));
    let c = {
        let mut g = gpu.lock().unwrap();
        let mut c = Client::new(&mut g, 0, 0);
        let mut s = work(100_000);
        s.extend(sem_release(0, 4, 0));
        c.push(&mut g, &s);
        c
    };
    let _driver =
        driver::RealTimeDriver::spawn(gpu.clone(), std::time::Duration::from_micros(200)).unwrap();
    let mut done = false;
    for _ in 0..2000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        if c.data(&gpu.lock().unwrap(), 0) == 4 {
            done = true;
            break;
        }
    }
    assert!(done, "work completed under the real-time clock");
    assert!(gpu.lock().unwrap().now_ns() >= 100_000);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random pushbuffer words, GPFIFO entries and GP_PUT values never panic the GPU, and
        /// a well-behaved channel on the same runlist keeps working.
        #[test]
        fn random_streams_never_panic(words in proptest::collection::vec(any::<u32>(), 1..300),
                                      entries in proptest::collection::vec(any::<u64>(), 0..8),
                                      put in any::<u32>()) {
            let mut gpu = gpu_with(Timing { work_budget_per_call: 50_000, ..Timing::default() });
            let mut evil = Client::new(&mut gpu, 0, 1);
            let mut ok = Client::new(&mut gpu, 0, 2);
            let mut ce = Client::new(&mut gpu, 1, 1);
            evil.push(&mut gpu, &words);
            ce.push(&mut gpu, &words);
            for (i, e) in entries.iter().enumerate() {
                gpu.memory_mut().write_u64(evil.mem, GPFIFO_OFF + 16 + 8 * i as u64, *e).unwrap();
            }
            gpu.memory_mut().write_u32(evil.mem, userd::GP_PUT, put % 16).unwrap();
            gpu.doorbell(gpu.work_submit_token(evil.ch).unwrap()).unwrap();
            let mut s = work(50_000);
            s.extend(sem_release(0, 1, 0));
            ok.push(&mut gpu, &s);
            gpu.advance(20_000_000);
            prop_assert_eq!(ok.data(&gpu, 0), 1);
            gpu.memory_mut().write_u32(evil.mem, userd::GP_PUT, put).unwrap();
            let _ = gpu.doorbell(gpu.work_submit_token(evil.ch).unwrap());
            gpu.advance(1_000_000);
        }
    }
}

/// Simulation speed: simulated seconds per host second with N busy TSGs, printed against the
/// single-TSG baseline of the same run. Run with
/// `cargo test -p rm-sim --release --lib sim_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn sim_speed() {
    let measure = |n: u32, item_ns: u64| {
        let mut gpu = gpu_with(Timing::default());
        let mut clients: Vec<Client> = (0..n).map(|g| Client::new(&mut gpu, 0, g % 64)).collect();
        let sim_ns = 2_000_000_000u64;
        // Enough work to keep the engine busy for the whole run.
        let items = (sim_ns / item_ns / u64::from(n) + 10).max(100) as usize;
        for c in &mut clients {
            c.push(&mut gpu, &busy(items, item_ns));
        }
        let t = std::time::Instant::now();
        gpu.advance(sim_ns);
        let real = t.elapsed().as_secs_f64();
        let switches: u64 = clients.iter().map(|c| c.stats(&gpu).switches_in).sum();
        (sim_ns as f64 / 1e9 / real, switches)
    };
    let (base, _) = measure(1, 1_000_000);
    println!("baseline: 1 busy TSG, 1 ms work items: {base:.0} simulated s per host s");
    for n in [2u32, 8, 32, 128] {
        let (r, sw) = measure(n, 1_000_000);
        println!(
            "{n:>4} busy TSGs (1 ms items): {r:>8.0} sim s/s ({:.2}x baseline), {sw} TSG switches",
            r / base
        );
    }
    let (r, _) = measure(8, 20_000);
    println!(
        "   8 busy TSGs (20 us items): {r:>8.0} sim s/s ({:.2}x baseline)",
        r / base
    );
    // Two runlists at once (GR busy plus a copy engine streaming) force lock-step windows.
    let mut gpu = gpu_with(Timing::default());
    let mut gr = Client::new(&mut gpu, 0, 0);
    gr.push(&mut gpu, &busy(2100, 1_000_000));
    let mut ce = Client::new(&mut gpu, 1, 0);
    let (src, dst) = (VA + DATA_OFF, VA + DATA_OFF + 0x100000);
    let mut copies = Vec::new();
    for _ in 0..2000 {
        copies.extend([
            inc_header(0, copy::OFFSET_IN_UPPER, 4),
            (src >> 32) as u32,
            src as u32,
            (dst >> 32) as u32,
            dst as u32,
            inc_header(0, copy::LINE_LENGTH_IN, 1),
            64 * 1024,
            inc_header(0, copy::LAUNCH_DMA, 1),
            2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH,
        ]);
    }
    ce.push(&mut gpu, &copies);
    let t = std::time::Instant::now();
    gpu.advance(2_000_000_000);
    let r = 2.0 / t.elapsed().as_secs_f64();
    println!(
        "GR busy + CE copying 64 KiB blocks: {r:>8.1} sim s/s ({:.2}x baseline), {} MiB copied",
        r / base,
        ce.stats(&gpu).copy_bytes >> 20
    );
    // Method-bound load: NOPs only.
    let mut gpu = gpu_with(Timing {
        work_budget_per_call: u64::MAX,
        ..Timing::default()
    });
    let mut c = Client::new(&mut gpu, 0, 0);
    let mut words = Vec::new();
    for _ in 0..60 {
        words.push(rm_abi::pushbuffer::non_inc_header(0, host::NOP, 8191));
        words.extend(std::iter::repeat_n(0u32, 8191));
    }
    c.push(&mut gpu, &words);
    let t = std::time::Instant::now();
    gpu.advance(10_000_000);
    let real = t.elapsed().as_secs_f64();
    let m = c.stats(&gpu).methods;
    println!(
        "method flood: {:.1} M methods per host s, {:.3} sim s/s ({:.4}x baseline)",
        m as f64 / real / 1e6,
        0.01 / real,
        0.01 / real / base
    );
}

#[test]
fn huge_copy_and_long_spins_stay_within_the_budget() {
    let timing = Timing {
        work_budget_per_call: 5_000,
        ..simple_timing()
    };
    let mut gpu = gpu_with(timing);
    let mut ce = Client::new(&mut gpu, 1, 0);
    let a = VA + DATA_OFF;
    // 4 Gi lines of 4 KiB over the same page (pitch 0): 16 TiB asked for.
    ce.push(
        &mut gpu,
        &[
            inc_header(0, copy::OFFSET_IN_UPPER, 8),
            (a >> 32) as u32,
            a as u32,
            (a >> 32) as u32,
            a as u32,
            0,
            0,
            4096,
            0xFFFF_FFFF,
            inc_header(0, copy::LAUNCH_DMA, 1),
            2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH | copy::LAUNCH_MULTI_LINE,
        ],
    );
    let mut gr = Client::new(&mut gpu, 0, 0);
    gr.push(&mut gpu, &sem_acquire(0x800, 1, host::sem_op::ACQUIRE, 0));
    // Ten simulated seconds in one call: progress is capped, the call returns.
    gpu.advance(10_000_000_000);
    let copied = ce.stats(&gpu).copy_bytes;
    assert!(copied > 0 && copied <= 5_000 * 1024 + (4 << 20), "{copied}");
    assert!(gpu.runlist_stats(1).unwrap().budget_stall_ns > 0);
    assert!(
        gpu.runlist_stats(0).unwrap().budget_stall_ns > 0,
        "spinning acquire budgeted"
    );
}

#[test]
fn a_governed_gpu_keeps_the_hosts_timeslices_whatever_the_owner_sets() {
    let mut gpu = gpu_with(Timing::default());
    let mut a = Client::new(&mut gpu, 0, 1);
    let mut b = Client::new(&mut gpu, 0, 2);
    gpu.set_governed(true);
    gpu.program_tsg_timeslice_us(a.tsg, 3000).unwrap();
    gpu.program_tsg_timeslice_us(b.tsg, 1000).unwrap();
    // The owner of b asks for an 8.5 s slice and HIGH, again and again while it runs.
    a.push(&mut gpu, &busy(2000, 1_000_000));
    b.push(&mut gpu, &busy(2000, 1_000_000));
    for _ in 0..100 {
        gpu.set_tsg_timeslice_us(b.tsg, 8_500_000).unwrap();
        gpu.set_tsg_interleave(b.tsg, InterleaveLevel::High)
            .unwrap();
        gpu.advance(10_000_000);
    }
    let s = share(a.stats(&gpu).engine_time_ns, b.stats(&gpu).engine_time_ns);
    assert!((s - 0.75).abs() < 0.01, "a's engine share {s}");
    let info = gpu.tsg_info(b.tsg).unwrap();
    // GET_TIMESLICE answers what the owner set; the runlist carries the host's.
    assert_eq!(info.timeslice_us, 8_500_000);
    assert_eq!(info.timeslice, Timeslice::from_us(1000));
    assert_eq!(info.interleave, InterleaveLevel::Medium);
    // Ungoverned, the owner's request reaches the runlist.
    gpu.set_governed(false);
    gpu.set_tsg_timeslice_us(b.tsg, 8_500_000).unwrap();
    assert_eq!(
        gpu.tsg_info(b.tsg).unwrap().timeslice,
        Timeslice::from_us(8_500_000)
    );
}

#[test]
fn a_host_gate_holds_against_the_owners_enables_and_lifts_to_the_owners_state() {
    let mut gpu = gpu_with(simple_timing());
    let mut a = Client::new(&mut gpu, 0, 1);
    let mut b = Client::new(&mut gpu, 0, 2);
    a.push(&mut gpu, &busy(500, 1_000_000));
    b.push(&mut gpu, &busy(500, 1_000_000));
    gpu.gate_tsg(b.tsg, true).unwrap();
    // Every enable the owner has: GPFIFO_SCHEDULE on the TSG and on the channel.
    gpu.schedule_tsg(b.tsg, true).unwrap();
    gpu.set_channel_enabled(b.ch, true).unwrap();
    assert_eq!(gpu.chram_read(b.ch).unwrap() & chram::ENABLE, 0);
    if gpu.resident_tsg(0).unwrap() == Some(b.tsg) {
        gpu.preempt_tsg_and_wait(b.tsg, 1_000_000).unwrap();
    }
    let before = b.stats(&gpu).engine_time_ns;
    gpu.advance(50_000_000);
    assert_eq!(b.stats(&gpu).engine_time_ns, before, "gated TSG ran");
    // A channel the owner adds to the gated TSG starts gated too.
    let extra = Client::in_tsg(&mut gpu, b.tsg);
    assert_eq!(gpu.chram_read(extra.ch).unwrap() & chram::ENABLE, 0);
    // Lifting the gate restores what the owner asked: b.ch enabled, extra disabled.
    gpu.set_channel_enabled(extra.ch, false).unwrap();
    gpu.gate_tsg(b.tsg, false).unwrap();
    assert_ne!(gpu.chram_read(b.ch).unwrap() & chram::ENABLE, 0);
    assert_eq!(gpu.chram_read(extra.ch).unwrap() & chram::ENABLE, 0);
    gpu.advance(20_000_000);
    assert!(b.stats(&gpu).engine_time_ns > before);
}

#[test]
fn a_governed_tsg_freed_and_created_again_keeps_the_hosts_gate_and_slice() {
    let mut gpu = gpu_with(simple_timing());
    let mut a = Client::new(&mut gpu, 0, 1);
    let b = Client::new(&mut gpu, 0, 2);
    gpu.set_governed(true);
    gpu.program_tsg_timeslice_us(b.tsg, 500).unwrap();
    gpu.program_tsg_interleave(b.tsg, InterleaveLevel::Low)
        .unwrap();
    gpu.gate_tsg(b.tsg, true).unwrap();
    // The owner of b frees its TSG and makes a new one, which gets the same id back.
    gpu.destroy_channel(b.ch).unwrap();
    gpu.destroy_tsg(b.tsg).unwrap();
    let tsg = gpu.create_tsg(0, 2).unwrap();
    assert_eq!(tsg, b.tsg);
    let mut b = Client::in_tsg(&mut gpu, tsg);
    let info = gpu.tsg_info(tsg).unwrap();
    assert_eq!(
        (info.timeslice, info.interleave),
        (Timeslice::from_us(500), InterleaveLevel::Low)
    );
    assert_eq!(gpu.chram_read(b.ch).unwrap() & chram::ENABLE, 0);
    a.push(&mut gpu, &busy(100, 1_000_000));
    b.push(&mut gpu, &busy(100, 1_000_000));
    gpu.advance(20_000_000);
    assert_eq!(
        b.stats(&gpu).engine_time_ns,
        0,
        "the re-created TSG escaped the gate"
    );
    // Another GFID's new TSG is not gated by it.
    let c = Client::new(&mut gpu, 0, 3);
    assert_ne!(gpu.chram_read(c.ch).unwrap() & chram::ENABLE, 0);
}
