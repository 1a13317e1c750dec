//! The PBDMA: fetches a channel's GPFIFO entries and pushbuffer segments through the channel's
//! VA space, decodes method headers and executes methods — host methods itself (semaphores,
//! SET_OBJECT, ...), engine methods by handing work to the engine.
//!
//! Everything read here is guest-controlled: GP_PUT, GPFIFO entries, segment addresses and
//! lengths, headers and data. Each is checked; anything invalid becomes a [`FaultKind`] for
//! this channel. One call to `step` does one bounded unit of work.

use std::collections::BTreeMap;

use super::channel::{Channel, MethodRun, PendingAcquire};
use super::engine::{vaspace, CopyJob, EngineInfo, ExecCtx, WorkItem};
use super::fault::FaultKind;
use super::memory::MemoryPool;
use super::userd;
use super::vaspace::{VaFault, VaSpace, VaSpaceId};
use rm_abi::methods::{
    compute, copy, host, HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A, HOST_METHOD_LIMIT,
};
use rm_abi::pushbuffer::{
    decode_header, GpEntry, MethodHeader, MethodMode, GP_ENTRY_SIZE, GP_OPCODE_ILLEGAL,
};

/// Dwords prefetched from a segment at once.
const FETCH_DWORDS: u32 = 256;

/// What one PBDMA step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepOutcome {
    /// One unit of work done; more may follow.
    Progress,
    /// Nothing left to fetch (GP_GET == GP_PUT, no segment data).
    Empty,
    /// The channel executed YIELD.
    Yield,
    /// The channel must be stopped.
    Fault(FaultKind),
}

/// Does one unit of PBDMA work for `ch`: a GPFIFO fetch, a header, or a method.
pub(crate) fn step(ch: &mut Channel, engine: &EngineInfo, ctx: &mut ExecCtx<'_>) -> StepOutcome {
    match step_inner(ch, engine, ctx) {
        Ok(o) => o,
        Err(f) => StepOutcome::Fault(f),
    }
}

fn step_inner(
    ch: &mut Channel,
    engine: &EngineInfo,
    ctx: &mut ExecCtx<'_>,
) -> Result<StepOutcome, FaultKind> {
    let Some(dword) = next_dword(ch, ctx)? else {
        return fetch_gp_entry(ch, ctx);
    };
    if let Some(run) = ch.method.as_mut() {
        let (subchannel, method) = (run.subchannel, run.method);
        run.left -= 1;
        match run.mode {
            MethodMode::Incrementing => run.method = run.method.wrapping_add(4) & 0x3FFC,
            MethodMode::IncrementOnce => {
                run.method = run.method.wrapping_add(4) & 0x3FFC;
                run.mode = MethodMode::NonIncrementing;
            }
            MethodMode::NonIncrementing => {}
        }
        if run.left == 0 {
            ch.method = None;
        }
        return execute(ch, engine, ctx, subchannel, method, dword);
    }
    match decode_header(dword) {
        MethodHeader::Methods { count: 0, .. } | MethodHeader::SubdeviceMask => {
            Ok(StepOutcome::Progress)
        }
        MethodHeader::Methods {
            subchannel,
            method,
            count,
            mode,
        } => {
            ch.method = Some(MethodRun {
                subchannel,
                method,
                left: count,
                mode,
            });
            Ok(StepOutcome::Progress)
        }
        MethodHeader::Immediate {
            subchannel,
            method,
            data,
        } => execute(ch, engine, ctx, subchannel, method, data),
        MethodHeader::EndSegment => {
            ch.seg.clear();
            Ok(StepOutcome::Progress)
        }
        MethodHeader::Invalid(h) => Err(FaultKind::InvalidHeader(h)),
    }
}

/// Next pushbuffer dword of the current segment, prefetching as needed.
fn next_dword(ch: &mut Channel, ctx: &mut ExecCtx<'_>) -> Result<Option<u32>, FaultKind> {
    if ch.seg.pos < ch.seg.buf.len() {
        ch.seg.pos += 1;
        return Ok(Some(ch.seg.buf[ch.seg.pos - 1]));
    }
    if ch.seg.remaining == 0 {
        return Ok(None);
    }
    let n = ch.seg.remaining.min(FETCH_DWORDS);
    let va = ch.seg.va;
    let vas = vaspace(ctx.vaspaces, ch.cfg.vaspace, va, false).map_err(FaultKind::PbdmaMmu)?;
    let mut bytes = vec![0u8; n as usize * 4];
    vas.read(ctx.pool, va, &mut bytes)
        .map_err(FaultKind::PbdmaMmu)?;
    ch.seg.buf.clear();
    ch.seg.buf.extend(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    ch.seg.va = va.wrapping_add(u64::from(n) * 4);
    ch.seg.remaining -= n;
    ch.seg.pos = 1;
    Ok(Some(ch.seg.buf[0]))
}

/// Latches GP_PUT from USERD (what a doorbell and the PBDMA's USERD poll do), checking it
/// against the ring size.
pub(crate) fn latch_gp_put(ch: &mut Channel, ctx: &ExecCtx<'_>) -> Result<(), FaultKind> {
    let put = ch
        .cfg
        .userd
        .read(ctx.pool, userd::GP_PUT)
        .map_err(|_| FaultKind::UserdInaccessible)?;
    if put >= ch.cfg.gpfifo_entries {
        return Err(FaultKind::GpPutOutOfRange {
            gp_put: put,
            entries: ch.cfg.gpfifo_entries,
        });
    }
    ch.gp_put = put;
    Ok(())
}

fn fetch_gp_entry(ch: &mut Channel, ctx: &mut ExecCtx<'_>) -> Result<StepOutcome, FaultKind> {
    if ch.gp_get == ch.gp_put {
        latch_gp_put(ch, ctx)?;
        if ch.gp_get == ch.gp_put {
            return Ok(StepOutcome::Empty);
        }
    }
    let va = ch
        .cfg
        .gpfifo_va
        .checked_add(u64::from(ch.gp_get) * GP_ENTRY_SIZE)
        .ok_or(FaultKind::PbdmaMmu(VaFault {
            va: u64::MAX,
            write: false,
        }))?;
    let vas = vaspace(ctx.vaspaces, ch.cfg.vaspace, va, false).map_err(FaultKind::PbdmaMmu)?;
    let raw = vas.read_u64(ctx.pool, va).map_err(FaultKind::PbdmaMmu)?;
    ch.gp_get = (ch.gp_get + 1) % ch.cfg.gpfifo_entries;
    ch.cfg
        .userd
        .write(ctx.pool, userd::GP_GET, ch.gp_get)
        .map_err(|_| FaultKind::UserdInaccessible)?;
    ch.stats.gp_entries += 1;
    let e = GpEntry::decode(raw);
    if e.length_dwords == 0 {
        return if e.opcode == GP_OPCODE_ILLEGAL {
            Err(FaultKind::IllegalGpEntry)
        } else {
            Ok(StepOutcome::Progress)
        };
    }
    ch.seg.clear();
    ch.seg.va = e.address;
    ch.seg.remaining = e.length_dwords;
    Ok(StepOutcome::Progress)
}

fn execute(
    ch: &mut Channel,
    engine: &EngineInfo,
    ctx: &mut ExecCtx<'_>,
    subchannel: u32,
    method: u32,
    data: u32,
) -> Result<StepOutcome, FaultKind> {
    ch.stats.methods += 1;
    if method < HOST_METHOD_LIMIT {
        return host_method(ch, engine, ctx, subchannel, method, data);
    }
    let class = ch.subchannels[subchannel as usize & 7]
        .ok_or(FaultKind::NoObject { subchannel, method })?;
    match class {
        HOPPER_DMA_COPY_A => copy_method(ch, method, data),
        HOPPER_COMPUTE_A => compute_method(ch, method, data),
        other => Err(FaultKind::ClassNotOnEngine(other)),
    }
}

fn host_method(
    ch: &mut Channel,
    engine: &EngineInfo,
    ctx: &mut ExecCtx<'_>,
    subchannel: u32,
    method: u32,
    data: u32,
) -> Result<StepOutcome, FaultKind> {
    match method {
        host::SET_OBJECT => {
            let class = data & 0xFFFF;
            if !engine.classes.contains(&class) {
                return Err(FaultKind::ClassNotOnEngine(class));
            }
            ch.subchannels[subchannel as usize & 7] = Some(class);
        }
        host::NOP
        | host::MEM_OP_A
        | host::MEM_OP_B
        | host::MEM_OP_C
        | host::MEM_OP_D
        | host::WFI
        | host::CRC_CHECK => {}
        host::NON_STALL_INTERRUPT => ch.stats.nonstall_interrupts += 1,
        host::SET_REFERENCE => ch
            .cfg
            .userd
            .write(ctx.pool, userd::REFERENCE, data)
            .map_err(|_| FaultKind::UserdInaccessible)?,
        host::SEM_ADDR_LO => {
            ch.host.sem_va = (ch.host.sem_va & !0xFFFF_FFFF) | u64::from(data & !3)
        }
        host::SEM_ADDR_HI => {
            ch.host.sem_va = (ch.host.sem_va & 0xFFFF_FFFF) | u64::from(data & 0x1FF_FFFF) << 32
        }
        host::SEM_PAYLOAD_LO => {
            ch.host.payload = (ch.host.payload & !0xFFFF_FFFF) | u64::from(data)
        }
        host::SEM_PAYLOAD_HI => {
            ch.host.payload = (ch.host.payload & 0xFFFF_FFFF) | u64::from(data) << 32
        }
        host::SEM_EXECUTE => semaphore_execute(ch, ctx, data)?,
        host::YIELD => return Ok(StepOutcome::Yield),
        _ => return Err(FaultKind::IllegalMethod { subchannel, method }),
    }
    Ok(StepOutcome::Progress)
}

fn semaphore_execute(ch: &mut Channel, ctx: &mut ExecCtx<'_>, data: u32) -> Result<(), FaultKind> {
    let op = data & 7;
    let is64 = data & host::SEM_PAYLOAD_64BIT != 0;
    let va = ch.host.sem_va;
    let payload = if is64 {
        ch.host.payload
    } else {
        ch.host.payload & 0xFFFF_FFFF
    };
    let vas = vaspace(ctx.vaspaces, ch.cfg.vaspace, va, true).map_err(FaultKind::PbdmaMmu)?;
    match op {
        host::sem_op::RELEASE => {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&payload.to_le_bytes());
            let len = if is64 { 8 } else { 4 };
            vas.write(ctx.pool, va, &b[..len])
                .map_err(FaultKind::PbdmaMmu)?;
            if data & host::SEM_RELEASE_TIMESTAMP != 0 {
                let ts_va = va
                    .checked_add(8)
                    .ok_or(FaultKind::PbdmaMmu(VaFault { va, write: true }))?;
                vas.write(ctx.pool, ts_va, &ctx.now.to_le_bytes())
                    .map_err(FaultKind::PbdmaMmu)?;
            }
            ch.stats.semaphore_releases += 1;
        }
        host::sem_op::REDUCTION => {
            let cur = read_sem(vas, ctx.pool, va, is64)?;
            let new = reduce(data, cur, payload, is64)?;
            let len = if is64 { 8 } else { 4 };
            vas.write(ctx.pool, va, &new.to_le_bytes()[..len])
                .map_err(FaultKind::PbdmaMmu)?;
            ch.stats.semaphore_releases += 1;
        }
        host::sem_op::ACQUIRE
        | host::sem_op::ACQ_STRICT_GEQ
        | host::sem_op::ACQ_CIRC_GEQ
        | host::sem_op::ACQ_AND
        | host::sem_op::ACQ_NOR => {
            let acq = PendingAcquire {
                va,
                payload,
                op,
                is64,
                switch_tsg: data & host::SEM_ACQUIRE_SWITCH_TSG != 0,
            };
            if !acquire_satisfied(&acq, ch, ctx.pool, ctx.vaspaces)? {
                ch.acquire = Some(acq);
            }
        }
        _ => return Err(FaultKind::InvalidSemaphore(data)),
    }
    Ok(())
}

fn read_sem(vas: &VaSpace, pool: &MemoryPool, va: u64, is64: bool) -> Result<u64, FaultKind> {
    if is64 {
        vas.read_u64(pool, va).map_err(FaultKind::PbdmaMmu)
    } else {
        vas.read_u32(pool, va)
            .map(u64::from)
            .map_err(FaultKind::PbdmaMmu)
    }
}

/// Applies `SEM_EXECUTE_REDUCTION` (IMIN, IMAX, IXOR, IAND, IOR, IADD, INC, DEC).
fn reduce(data: u32, cur: u64, payload: u64, is64: bool) -> Result<u64, FaultKind> {
    let unsigned = data & host::SEM_REDUCTION_UNSIGNED != 0;
    let mask = if is64 { u64::MAX } else { 0xFFFF_FFFF };
    let signed = |v: u64| {
        if is64 {
            v as i64
        } else {
            i64::from(v as u32 as i32)
        }
    };
    let v = match (data >> host::SEM_REDUCTION_SHIFT) & 0xF {
        0 if unsigned => cur.min(payload),
        0 => (signed(cur).min(signed(payload))) as u64,
        1 if unsigned => cur.max(payload),
        1 => (signed(cur).max(signed(payload))) as u64,
        2 => cur ^ payload,
        3 => cur & payload,
        4 => cur | payload,
        5 => cur.wrapping_add(payload),
        6 => {
            if cur >= payload {
                0
            } else {
                cur + 1
            }
        }
        7 => {
            if cur == 0 || cur > payload {
                payload
            } else {
                cur - 1
            }
        }
        _ => return Err(FaultKind::InvalidSemaphore(data)),
    };
    Ok(v & mask)
}

/// Evaluates an acquire against memory now.
pub(crate) fn acquire_satisfied(
    acq: &PendingAcquire,
    ch: &Channel,
    pool: &MemoryPool,
    vaspaces: &BTreeMap<VaSpaceId, VaSpace>,
) -> Result<bool, FaultKind> {
    let vas = vaspace(vaspaces, ch.cfg.vaspace, acq.va, false).map_err(FaultKind::PbdmaMmu)?;
    let v = read_sem(vas, pool, acq.va, acq.is64)?;
    let p = acq.payload;
    Ok(match acq.op {
        host::sem_op::ACQUIRE => v == p,
        host::sem_op::ACQ_STRICT_GEQ => v >= p,
        host::sem_op::ACQ_CIRC_GEQ => {
            if acq.is64 {
                (v.wrapping_sub(p) as i64) >= 0
            } else {
                ((v as u32).wrapping_sub(p as u32) as i32) >= 0
            }
        }
        host::sem_op::ACQ_AND => v & p != 0,
        _ => !(v | p) & if acq.is64 { u64::MAX } else { 0xFFFF_FFFF } != 0,
    })
}

fn copy_method(ch: &mut Channel, method: u32, data: u32) -> Result<StepOutcome, FaultKind> {
    let r = &mut ch.copy;
    let hi = |v: u64| (v & 0xFFFF_FFFF) | u64::from(data & 0x1FF_FFFF) << 32;
    let lo = |v: u64| (v & !0xFFFF_FFFF) | u64::from(data);
    match method {
        copy::SET_SEMAPHORE_A => r.sem_va = hi(r.sem_va),
        copy::SET_SEMAPHORE_B => r.sem_va = lo(r.sem_va),
        copy::SET_SEMAPHORE_PAYLOAD => r.sem_payload = data,
        copy::OFFSET_IN_UPPER => r.offset_in = hi(r.offset_in),
        copy::OFFSET_IN_LOWER => r.offset_in = lo(r.offset_in),
        copy::OFFSET_OUT_UPPER => r.offset_out = hi(r.offset_out),
        copy::OFFSET_OUT_LOWER => r.offset_out = lo(r.offset_out),
        copy::PITCH_IN => r.pitch_in = data,
        copy::PITCH_OUT => r.pitch_out = data,
        copy::LINE_LENGTH_IN => r.line_length = data,
        copy::LINE_COUNT => r.line_count = data,
        copy::SET_REMAP_CONST_A => r.remap_const_a = data,
        copy::SET_REMAP_CONST_B => r.remap_const_b = data,
        copy::SET_REMAP_COMPONENTS => r.remap_components = data,
        copy::LAUNCH_DMA => {
            let job = CopyJob::launch(r, data, ch.cfg.vaspace)?;
            ch.work = Some(WorkItem::Copy(Box::new(job)));
        }
        // Other state methods of the class (physical modes, secure copy, ...) have no effect here.
        _ => {}
    }
    Ok(StepOutcome::Progress)
}

fn compute_method(ch: &mut Channel, method: u32, data: u32) -> Result<StepOutcome, FaultKind> {
    match method {
        compute::SIM_WORK_NS_LO => {
            ch.compute_work_ns = (ch.compute_work_ns & !0xFFFF_FFFF) | u64::from(data)
        }
        compute::SIM_WORK_NS_HI => {
            ch.compute_work_ns = (ch.compute_work_ns & 0xFFFF_FFFF) | u64::from(data) << 32
        }
        compute::SIM_LAUNCH_WORK if ch.compute_work_ns > 0 => {
            ch.work = Some(WorkItem::Compute {
                total: ch.compute_work_ns,
                done: 0,
            });
        }
        compute::SEND_SIGNALING_PCAS_B | compute::SEND_SIGNALING_PCAS2_B => {
            return Err(FaultKind::UnmodeledLaunch(method))
        }
        // The class's state methods (shader memory, the QMD address, cache invalidation) are
        // accepted without effect; only a launch would need shaders to run.
        _ => {}
    }
    Ok(StepOutcome::Progress)
}

#[cfg(test)]
mod tests {
    use super::super::channel::ChannelConfig;
    use super::super::memory::{Aperture, MemoryId};
    use super::super::timing::Timing;
    use super::super::userd::Userd;
    use super::*;
    use rm_abi::pushbuffer::{immediate_header, inc_header, non_inc_header};

    const GPFIFO: u64 = 0x100000;
    const PB: u64 = 0x200000;
    const SEM: u64 = 0x300000;

    struct Env {
        pool: MemoryPool,
        vas: BTreeMap<VaSpaceId, VaSpace>,
        mem: MemoryId,
        ch: Channel,
        timing: Timing,
    }

    fn env() -> Env {
        let mut pool = MemoryPool::new(1 << 26, 1 << 26);
        let mem = pool.alloc(Aperture::Vidmem, 0x400000).unwrap();
        let mut v = VaSpace::new();
        v.map(&pool, 0x100000, mem, 0x100000, 0x300000).unwrap();
        let mut vas = BTreeMap::new();
        vas.insert(VaSpaceId(1), v);
        let cfg = ChannelConfig {
            vaspace: VaSpaceId(1),
            gpfifo_va: GPFIFO,
            gpfifo_entries: 16,
            userd: Userd {
                memory: mem,
                offset: 0,
            },
            error_notifier: None,
        };
        Env {
            pool,
            vas,
            mem,
            ch: Channel::new(cfg, 0),
            timing: Timing::default(),
        }
    }

    impl Env {
        /// Writes `words` as one pushbuffer segment at `PB + off` and one GPFIFO entry for it.
        fn submit(&mut self, off: u64, words: &[u32]) {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let v = &self.vas[&VaSpaceId(1)];
            v.write(&mut self.pool, PB + off, &bytes).unwrap();
            let put = self.ch.cfg.userd.read(&self.pool, userd::GP_PUT).unwrap();
            let e = GpEntry::encode(PB + off, words.len() as u32);
            v.write(
                &mut self.pool,
                GPFIFO + u64::from(put) * 8,
                &e.to_le_bytes(),
            )
            .unwrap();
            self.ch
                .cfg
                .userd
                .write(&mut self.pool, userd::GP_PUT, (put + 1) % 16)
                .unwrap();
        }

        fn run(&mut self, engine: &EngineInfo, now: u64) -> StepOutcome {
            let mut ctx = ExecCtx {
                pool: &mut self.pool,
                vaspaces: &self.vas,
                timing: &self.timing,
                now,
            };
            for _ in 0..10_000 {
                let o = step(&mut self.ch, engine, &mut ctx);
                if o != StepOutcome::Progress || self.ch.acquire.is_some() || self.ch.work.is_some()
                {
                    return o;
                }
            }
            panic!("no end");
        }
    }

    fn release(payload: u32, flags: u32) -> Vec<u32> {
        vec![
            inc_header(0, host::SEM_ADDR_LO, 4),
            SEM as u32,
            (SEM >> 32) as u32,
            payload,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::RELEASE | flags,
        ]
    }

    #[test]
    fn semaphore_release_with_timestamp_and_gp_get_writeback() {
        let mut e = env();
        e.submit(0, &release(0x1234, host::SEM_RELEASE_TIMESTAMP));
        assert_eq!(e.run(&EngineInfo::for_runlist(0), 777), StepOutcome::Empty);
        assert_eq!(e.pool.read_u32(e.mem, SEM).unwrap(), 0x1234);
        assert_eq!(e.pool.read_u64(e.mem, SEM + 8).unwrap(), 777);
        assert_eq!(e.ch.cfg.userd.read(&e.pool, userd::GP_GET).unwrap(), 1);
        assert_eq!(e.ch.stats.semaphore_releases, 1);
        // 64-bit payload, no timestamp: the word at +8 keeps its old value.
        let mut w = release(0, host::SEM_PAYLOAD_64BIT);
        w[3] = 0xAAAA_BBBB;
        w[4] = 0x1;
        e.submit(64, &w);
        e.run(&EngineInfo::for_runlist(0), 900);
        assert_eq!(e.pool.read_u64(e.mem, SEM).unwrap(), 0x1_AAAA_BBBB);
        assert_eq!(e.pool.read_u64(e.mem, SEM + 8).unwrap(), 777);
    }

    #[test]
    fn acquire_blocks_until_memory_satisfies_it() {
        let mut e = env();
        let acq = vec![
            inc_header(0, host::SEM_ADDR_LO, 3),
            SEM as u32 + 0x40,
            0,
            5,
            immediate_header(0, host::SEM_EXECUTE, host::sem_op::ACQ_STRICT_GEQ),
        ];
        let mut words = acq.clone();
        words.extend(release(9, 0));
        e.submit(0, &words);
        assert_eq!(e.run(&EngineInfo::for_runlist(0), 0), StepOutcome::Progress);
        let a = e.ch.acquire.expect("blocked");
        assert!(!acquire_satisfied(&a, &e.ch, &e.pool, &e.vas).unwrap());
        e.pool.write_u32(e.mem, SEM + 0x40, 4).unwrap();
        assert!(!acquire_satisfied(&a, &e.ch, &e.pool, &e.vas).unwrap());
        e.pool.write_u32(e.mem, SEM + 0x40, 6).unwrap();
        assert!(acquire_satisfied(&a, &e.ch, &e.pool, &e.vas).unwrap());
        e.ch.acquire = None;
        assert_eq!(e.run(&EngineInfo::for_runlist(0), 0), StepOutcome::Empty);
        assert_eq!(e.pool.read_u32(e.mem, SEM).unwrap(), 9);
    }

    #[test]
    fn acquire_operations() {
        let e = env();
        let mut pool = e.pool;
        let mk = |op, payload, is64| PendingAcquire {
            va: SEM,
            payload,
            op,
            is64,
            switch_tsg: false,
        };
        let check = |pool: &mut MemoryPool, v: u64, a: PendingAcquire| {
            pool.write_u64(e.mem, SEM, v).unwrap();
            acquire_satisfied(&a, &e.ch, pool, &e.vas).unwrap()
        };
        assert!(check(&mut pool, 7, mk(host::sem_op::ACQUIRE, 7, false)));
        assert!(!check(&mut pool, 8, mk(host::sem_op::ACQUIRE, 7, false)));
        assert!(
            check(
                &mut pool,
                2,
                mk(host::sem_op::ACQ_CIRC_GEQ, 0xFFFF_FFF0, false)
            ),
            "wrapped"
        );
        assert!(!check(
            &mut pool,
            2,
            mk(host::sem_op::ACQ_STRICT_GEQ, 0xFFFF_FFF0, false)
        ));
        assert!(check(
            &mut pool,
            0b0110,
            mk(host::sem_op::ACQ_AND, 0b0010, false)
        ));
        assert!(!check(
            &mut pool,
            0b0100,
            mk(host::sem_op::ACQ_AND, 0b0010, false)
        ));
        assert!(check(
            &mut pool,
            0xF,
            mk(host::sem_op::ACQ_NOR, 0xF0, false)
        ));
        assert!(check(
            &mut pool,
            1 << 40,
            mk(host::sem_op::ACQ_STRICT_GEQ, 1 << 39, true)
        ));
    }

    #[test]
    fn reductions() {
        let red = |op: u32, unsigned: bool| {
            host::sem_op::REDUCTION | op << 27 | if unsigned { 1 << 31 } else { 0 }
        };
        assert_eq!(
            reduce(red(5, true), 0xFFFF_FFFF, 2, false).unwrap(),
            1,
            "32-bit add wraps"
        );
        assert_eq!(
            reduce(red(0, false), 0xFFFF_FFFF, 2, false).unwrap(),
            0xFFFF_FFFF,
            "signed min(-1, 2)"
        );
        assert_eq!(reduce(red(0, true), 0xFFFF_FFFF, 2, false).unwrap(), 2);
        assert_eq!(reduce(red(6, true), 3, 3, false).unwrap(), 0);
        assert_eq!(reduce(red(6, true), 2, 3, false).unwrap(), 3);
        assert_eq!(reduce(red(7, true), 0, 9, false).unwrap(), 9);
        assert_eq!(reduce(red(2, true), 0b1100, 0b1010, true).unwrap(), 0b0110);
        assert!(reduce(red(8, true), 0, 0, false).is_err());
    }

    #[test]
    fn method_modes_and_set_object() {
        let mut e = env();
        let ce = EngineInfo::for_runlist(1);
        e.submit(
            0,
            &[
                inc_header(3, host::SET_OBJECT, 1),
                0xC8B5,
                non_inc_header(3, copy::LINE_LENGTH_IN, 2),
                10,
                20,
                5 << 29 | 2 << 16 | 3 << 13 | copy::PITCH_IN >> 2,
                111,
                222,
            ],
        );
        assert_eq!(e.run(&ce, 0), StepOutcome::Empty);
        assert_eq!(e.ch.subchannels[3], Some(0xC8B5));
        assert_eq!(e.ch.copy.line_length, 20);
        assert_eq!((e.ch.copy.pitch_in, e.ch.copy.pitch_out), (111, 222));
        // A method's data may continue in the next GPFIFO entry's segment.
        e.submit(0x100, &[inc_header(3, copy::LINE_COUNT, 2), 7]);
        e.submit(0x200, &[8]);
        assert_eq!(e.run(&ce, 0), StepOutcome::Empty);
        assert_eq!(e.ch.copy.line_count, 7);
        assert_eq!(e.ch.copy.remap_const_a, 0);
        assert_eq!(e.ch.stats.methods, 7);
    }

    #[test]
    fn faults_on_hostile_input() {
        let gr = EngineInfo::for_runlist(0);
        type Check = fn(&FaultKind) -> bool;
        let cases: Vec<(Vec<u32>, Check)> = vec![
            (vec![6 << 29], |f| matches!(f, FaultKind::InvalidHeader(_))),
            (vec![inc_header(0, host::ILLEGAL, 1), 0], |f| {
                matches!(f, FaultKind::IllegalMethod { .. })
            }),
            (vec![inc_header(0, 0xF0, 1), 0], |f| {
                matches!(f, FaultKind::IllegalMethod { .. })
            }),
            (vec![inc_header(2, 0x300, 1), 0], |f| {
                matches!(f, FaultKind::NoObject { subchannel: 2, .. })
            }),
            (vec![inc_header(0, 0, 1), 0xC86F], |f| {
                *f == FaultKind::ClassNotOnEngine(0xC86F)
            }),
            (vec![inc_header(0, host::SEM_EXECUTE, 1), 7], |f| {
                matches!(f, FaultKind::InvalidSemaphore(7))
            }),
            (release(1, 0), |f| matches!(f, FaultKind::PbdmaMmu(_))),
        ];
        for (i, (words, want)) in cases.into_iter().enumerate() {
            let mut e = env();
            let mut words = words;
            if i == 6 {
                words[1] = 0x50; // SEM_ADDR_LO: unmapped semaphore address
            }
            e.submit(0, &words);
            match e.run(&gr, 0) {
                StepOutcome::Fault(f) => assert!(want(&f), "case {i}: {f:?}"),
                o => panic!("case {i}: {o:?}"),
            }
        }
    }

    #[test]
    fn bad_gpfifo_state_faults() {
        let gr = EngineInfo::for_runlist(0);
        let mut e = env();
        e.ch.cfg
            .userd
            .write(&mut e.pool, userd::GP_PUT, 16)
            .unwrap();
        assert_eq!(
            e.run(&gr, 0),
            StepOutcome::Fault(FaultKind::GpPutOutOfRange {
                gp_put: 16,
                entries: 16
            })
        );
        // Entry pointing at an unmapped segment.
        let mut e = env();
        let v = &e.vas[&VaSpaceId(1)];
        v.write(
            &mut e.pool,
            GPFIFO,
            &GpEntry::encode(0x8000, 4).to_le_bytes(),
        )
        .unwrap();
        e.ch.cfg.userd.write(&mut e.pool, userd::GP_PUT, 1).unwrap();
        assert_eq!(
            e.run(&gr, 0),
            StepOutcome::Fault(FaultKind::PbdmaMmu(VaFault {
                va: 0x8000,
                write: false
            }))
        );
        // GPFIFO ring itself unmapped.
        let mut e = env();
        e.ch.cfg.gpfifo_va = 0x10;
        e.ch.cfg.userd.write(&mut e.pool, userd::GP_PUT, 1).unwrap();
        assert!(matches!(
            e.run(&gr, 0),
            StepOutcome::Fault(FaultKind::PbdmaMmu(_))
        ));
        // ILLEGAL control entry.
        let mut e = env();
        let v = &e.vas[&VaSpaceId(1)];
        v.write(&mut e.pool, GPFIFO, &(1u64 << 32).to_le_bytes())
            .unwrap();
        e.ch.cfg.userd.write(&mut e.pool, userd::GP_PUT, 1).unwrap();
        assert_eq!(e.run(&gr, 0), StepOutcome::Fault(FaultKind::IllegalGpEntry));
        // END_PB_SEGMENT drops the rest of the segment, including a would-be invalid header.
        let mut e = env();
        e.submit(0, &[7 << 29, 6 << 29]);
        assert_eq!(e.run(&gr, 0), StepOutcome::Empty);
    }

    #[test]
    fn compute_work_and_yield() {
        let gr = EngineInfo::for_runlist(0);
        let mut e = env();
        e.submit(
            0,
            &[
                inc_header(0, 0, 1),
                0xCBC0,
                inc_header(0, compute::SIM_WORK_NS_LO, 3),
                5000,
                1,
                0,
                inc_header(0, host::YIELD, 1),
                0,
            ],
        );
        assert_eq!(e.run(&gr, 0), StepOutcome::Progress);
        assert_eq!(
            e.ch.work,
            Some(WorkItem::Compute {
                total: (1 << 32) + 5000,
                done: 0
            })
        );
        e.ch.work = None;
        assert_eq!(e.run(&gr, 0), StepOutcome::Yield);
    }
}
