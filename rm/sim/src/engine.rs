//! Engines behind the runlists and the work they execute: compute work (the sim-defined
//! method that occupies the engine for a given time) and copy-engine transfers (copy, and fill
//! through the remap unit), both advancing with GPU time and preemptible.

use std::collections::BTreeMap;

use super::channel::CopyRegs;
use super::fault::FaultKind;
use super::memory::MemoryPool;
use super::timing::Timing;
use super::vaspace::{VaFault, VaSpace, VaSpaceId};
use rm_abi::methods::{copy, HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A};

/// `NV2080_ENGINE_TYPE_GR0`.
pub const NV2080_ENGINE_TYPE_GR0: u32 = 0x1;
/// `NV2080_ENGINE_TYPE_COPY0`; COPYn is COPY0 + n for n < 10.
pub const NV2080_ENGINE_TYPE_COPY0: u32 = 0x9;
/// Copy engines the sim can model (`NV2080_ENGINE_TYPE_COPY0..COPY9`).
pub const MAX_COPY_ENGINES: u32 = 10;

/// What kind of engine serves a runlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Graphics/compute engine GR0.
    Graphics,
    /// Copy engine n.
    Copy(u32),
}

/// One engine and the runlist that feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Runlist id (runlist 0 = GR0, runlist 1 + n = COPYn).
    pub runlist: u32,
    /// Engine kind.
    pub kind: EngineKind,
    /// `NV2080_ENGINE_TYPE_*` value.
    pub nv2080_engine_type: u32,
    /// Classes SET_OBJECT may bind on channels of this runlist.
    pub classes: Vec<u32>,
}

impl EngineInfo {
    /// The engine of runlist `runlist` in the sim's fixed topology.
    pub fn for_runlist(runlist: u32) -> Self {
        if runlist == 0 {
            Self {
                runlist,
                kind: EngineKind::Graphics,
                nv2080_engine_type: NV2080_ENGINE_TYPE_GR0,
                // GR channels also host the copy class: the GR engine's own copy engines
                // (GRCE) serve it, as on the real GPU, where CUDA allocates a copy object on
                // every compute channel.
                classes: vec![HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A],
            }
        } else {
            let n = runlist - 1;
            Self {
                runlist,
                kind: EngineKind::Copy(n),
                nv2080_engine_type: NV2080_ENGINE_TYPE_COPY0 + n,
                classes: vec![HOPPER_DMA_COPY_A],
            }
        }
    }

    /// The `ROBUST_CHANNEL_*` code for an engine-side fault on this engine.
    pub fn engine_rc_error(&self) -> u32 {
        match self.kind {
            EngineKind::Graphics => super::fault::ROBUST_CHANNEL_GR_EXCEPTION,
            EngineKind::Copy(n) => super::fault::ROBUST_CHANNEL_CE0_ERROR + n,
        }
    }
}

/// What work execution may touch: memory, VA spaces, the cost model and the current time.
pub(crate) struct ExecCtx<'a> {
    pub pool: &'a mut MemoryPool,
    pub vaspaces: &'a BTreeMap<VaSpaceId, VaSpace>,
    pub timing: &'a Timing,
    pub now: u64,
}

/// Resolves a channel's VA space; a destroyed VA space faults every access.
pub(crate) fn vaspace(
    vaspaces: &BTreeMap<VaSpaceId, VaSpace>,
    id: VaSpaceId,
    va: u64,
    write: bool,
) -> Result<&VaSpace, VaFault> {
    vaspaces.get(&id).ok_or(VaFault { va, write })
}

/// Work occupying the engine on behalf of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkItem {
    /// Compute work of `total` ns, `done` so far.
    Compute { total: u64, done: u64 },
    /// A copy-engine transfer.
    Copy(Box<CopyJob>),
}

/// Semaphore the copy engine releases when a transfer completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopySemaphore {
    pub va: u64,
    pub payload: u32,
    /// Four-word form: payload, 0, then the 64-bit timestamp.
    pub with_timestamp: bool,
}

/// Remap-unit configuration: each destination component from a source component, a
/// constant, or left unwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remap {
    pub dst: [u32; 4],
    pub component_size: u64,
    pub num_src: u64,
    pub num_dst: u64,
    pub const_a: u32,
    pub const_b: u32,
}

/// A transfer in progress: `lines` lines of `line_len` elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyJob {
    pub vaspace: VaSpaceId,
    pub src: u64,
    pub dst: u64,
    pub pitch_in: u64,
    pub pitch_out: u64,
    pub line_len: u64,
    pub lines: u64,
    pub src_elem: u64,
    pub dst_elem: u64,
    pub remap: Option<Remap>,
    pub transfer: bool,
    pub semaphore: Option<CopySemaphore>,
    pub line: u64,
    pub elem: u64,
    /// Bandwidth credit (bytes) not yet spent on a whole element.
    pub credit: u64,
    /// Destination bytes written so far.
    pub bytes_done: u64,
}

/// Largest chunk of a line moved at once (bounds host buffer size).
const COPY_CHUNK_BYTES: u64 = 64 * 1024;
/// Most bytes one `WorkItem::run` call moves (bounds host work per call).
const COPY_RUN_MAX_BYTES: u64 = 4 << 20;

impl CopyJob {
    /// Builds a job from the copy registers and a LAUNCH_DMA value, refusing what the sim
    /// (or the hardware) does not do.
    pub fn launch(regs: &CopyRegs, launch: u32, vaspace: VaSpaceId) -> Result<Self, FaultKind> {
        let transfer = launch & copy::LAUNCH_TRANSFER_TYPE_MASK != 0;
        if transfer {
            if launch & (copy::LAUNCH_SRC_PHYSICAL | copy::LAUNCH_DST_PHYSICAL) != 0 {
                return Err(FaultKind::InvalidCopy(
                    "physical addressing is not available to clients",
                ));
            }
            if launch & copy::LAUNCH_SRC_PITCH == 0 || launch & copy::LAUNCH_DST_PITCH == 0 {
                return Err(FaultKind::InvalidCopy(
                    "block-linear layout is not modelled",
                ));
            }
        }
        let remap = if transfer && launch & copy::LAUNCH_REMAP != 0 {
            let c = regs.remap_components;
            let r = Remap {
                dst: [c & 7, (c >> 4) & 7, (c >> 8) & 7, (c >> 12) & 7],
                component_size: u64::from((c >> 16) & 3) + 1,
                num_src: u64::from((c >> 20) & 3) + 1,
                num_dst: u64::from((c >> 24) & 3) + 1,
                const_a: regs.remap_const_a,
                const_b: regs.remap_const_b,
            };
            for &sel in &r.dst[..r.num_dst as usize] {
                let ok = match sel {
                    0..=3 => u64::from(sel) < r.num_src,
                    copy::REMAP_CONST_A | copy::REMAP_CONST_B | copy::REMAP_NO_WRITE => true,
                    _ => false,
                };
                if !ok {
                    return Err(FaultKind::InvalidCopy("bad remap component selection"));
                }
            }
            Some(r)
        } else {
            None
        };
        let (src_elem, dst_elem) = remap.map_or((1, 1), |r| {
            (r.num_src * r.component_size, r.num_dst * r.component_size)
        });
        let multi = launch & copy::LAUNCH_MULTI_LINE != 0;
        let semaphore = match (launch >> copy::LAUNCH_SEMAPHORE_SHIFT) & 3 {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(FaultKind::InvalidCopy("unsupported semaphore type")),
        }
        .map(|with_timestamp| CopySemaphore {
            va: regs.sem_va,
            payload: regs.sem_payload,
            with_timestamp,
        });
        Ok(Self {
            vaspace,
            src: regs.offset_in,
            dst: regs.offset_out,
            pitch_in: regs.pitch_in.into(),
            pitch_out: regs.pitch_out.into(),
            line_len: if transfer { regs.line_length.into() } else { 0 },
            lines: if !transfer {
                0
            } else if multi {
                regs.line_count.into()
            } else {
                1
            },
            src_elem,
            dst_elem,
            remap,
            transfer,
            semaphore,
            line: 0,
            elem: 0,
            credit: 0,
            bytes_done: 0,
        })
    }

    fn finished_transfer(&self) -> bool {
        self.line >= self.lines || self.line_len == 0
    }

    /// Moves up to `elems` elements of the current line; returns how many moved.
    fn move_elements(&mut self, ctx: &mut ExecCtx<'_>, elems: u64) -> Result<u64, FaultKind> {
        let n = elems
            .min(self.line_len - self.elem)
            .min((COPY_CHUNK_BYTES / self.dst_elem.max(self.src_elem)).max(1));
        let src = self
            .src
            .wrapping_add(self.line.wrapping_mul(self.pitch_in))
            .wrapping_add(self.elem * self.src_elem);
        let dst = self
            .dst
            .wrapping_add(self.line.wrapping_mul(self.pitch_out))
            .wrapping_add(self.elem * self.dst_elem);
        let vas = vaspace(ctx.vaspaces, self.vaspace, dst, true).map_err(FaultKind::EngineMmu)?;
        let out_len = (n * self.dst_elem) as usize;
        let mut out = vec![0u8; out_len];
        match self.remap {
            None => vas
                .read(ctx.pool, src, &mut out)
                .map_err(FaultKind::EngineMmu)?,
            Some(r) => {
                let needs_src = r.dst[..r.num_dst as usize].iter().any(|&s| s < 4);
                let needs_dst = r.dst[..r.num_dst as usize].contains(&copy::REMAP_NO_WRITE);
                let mut inp = vec![
                    0u8;
                    if needs_src {
                        (n * self.src_elem) as usize
                    } else {
                        0
                    }
                ];
                if needs_src {
                    vas.read(ctx.pool, src, &mut inp)
                        .map_err(FaultKind::EngineMmu)?;
                }
                if needs_dst {
                    vas.read(ctx.pool, dst, &mut out)
                        .map_err(FaultKind::EngineMmu)?;
                }
                let cs = r.component_size as usize;
                for e in 0..n as usize {
                    for (k, &sel) in r.dst[..r.num_dst as usize].iter().enumerate() {
                        let o = e * self.dst_elem as usize + k * cs;
                        let bytes_a = r.const_a.to_le_bytes();
                        let bytes_b = r.const_b.to_le_bytes();
                        match sel {
                            0..=3 => {
                                let i = e * self.src_elem as usize + sel as usize * cs;
                                out[o..o + cs].copy_from_slice(&inp[i..i + cs]);
                            }
                            copy::REMAP_CONST_A => out[o..o + cs].copy_from_slice(&bytes_a[..cs]),
                            copy::REMAP_CONST_B => out[o..o + cs].copy_from_slice(&bytes_b[..cs]),
                            _ => {}
                        }
                    }
                }
            }
        }
        vas.write(ctx.pool, dst, &out)
            .map_err(FaultKind::EngineMmu)?;
        self.elem += n;
        self.bytes_done += out_len as u64;
        if self.elem >= self.line_len {
            self.elem = 0;
            self.line += 1;
        }
        Ok(n)
    }

    fn release(&self, ctx: &mut ExecCtx<'_>) -> Result<bool, FaultKind> {
        let Some(s) = self.semaphore else {
            return Ok(false);
        };
        let vas = vaspace(ctx.vaspaces, self.vaspace, s.va, true).map_err(FaultKind::EngineMmu)?;
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&s.payload.to_le_bytes());
        b[8..16].copy_from_slice(&ctx.now.to_le_bytes());
        let len = if s.with_timestamp { 16 } else { 4 };
        vas.write(ctx.pool, s.va, &b[..len])
            .map_err(FaultKind::EngineMmu)?;
        Ok(true)
    }
}

/// Result of running a work item for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkProgress {
    /// GPU time consumed.
    pub used_ns: u64,
    /// The item completed.
    pub finished: bool,
    /// Host work units spent (1 per KiB copied).
    pub units: u64,
    /// Compute ns completed.
    pub compute_ns: u64,
    /// Bytes written by the copy engine.
    pub copy_bytes: u64,
    /// A completion semaphore was released.
    pub released: bool,
}

impl WorkItem {
    /// GPU time until the item next reaches a preemption point (0 if it is at one).
    pub fn ns_to_preemption_point(&self, timing: &Timing) -> u64 {
        match self {
            WorkItem::Compute { total, done } => {
                let g = timing.compute_preempt_granularity_ns.max(1);
                let into = done % g;
                if into == 0 {
                    0
                } else {
                    (g - into).min(total - done)
                }
            }
            WorkItem::Copy(_) => 0,
        }
    }

    /// Runs the item for at most `max_ns` of GPU time, starting at `ctx.now`.
    pub fn run(&mut self, ctx: &mut ExecCtx<'_>, max_ns: u64) -> Result<WorkProgress, FaultKind> {
        let mut p = WorkProgress {
            used_ns: 0,
            finished: false,
            units: 0,
            compute_ns: 0,
            copy_bytes: 0,
            released: false,
        };
        match self {
            WorkItem::Compute { total, done } => {
                let step = max_ns.min(*total - *done);
                *done += step;
                p.used_ns = step;
                p.compute_ns = step;
                p.finished = *done >= *total;
            }
            WorkItem::Copy(job) => {
                let bw = ctx.timing.copy_bytes_per_ns.max(1);
                // Bound host work per call; the caller comes back for the rest.
                let max_ns = max_ns.min((COPY_RUN_MAX_BYTES / bw).max(1));
                let start_bytes = job.bytes_done;
                let earned = job.credit.saturating_add(max_ns.saturating_mul(bw));
                let mut credit = earned;
                while !job.finished_transfer() {
                    let elems = credit / job.dst_elem;
                    if elems == 0 {
                        break;
                    }
                    let n = job.move_elements(ctx, elems)?;
                    credit -= n * job.dst_elem;
                }
                p.copy_bytes = job.bytes_done - start_bytes;
                p.units = p.copy_bytes.div_ceil(1024);
                if job.finished_transfer() {
                    // Time actually needed for what moved in this call; the rest is unused.
                    let spent = (earned - credit).div_ceil(bw);
                    p.used_ns = spent.min(max_ns);
                    job.credit = 0;
                    let at = ctx.now.saturating_add(p.used_ns);
                    let now = std::mem::replace(&mut ctx.now, at);
                    p.released = job.release(ctx)?;
                    ctx.now = now;
                    p.finished = true;
                } else {
                    job.credit = credit;
                    p.used_ns = max_ns;
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::{Aperture, PAGE_SIZE};
    use super::*;

    fn env() -> (MemoryPool, BTreeMap<VaSpaceId, VaSpace>) {
        let mut pool = MemoryPool::new(1 << 24, 1 << 24);
        let m = pool.alloc(Aperture::Vidmem, 4 * PAGE_SIZE).unwrap();
        let mut v = VaSpace::new();
        v.map(&pool, 0x10000, m, 0, 4 * PAGE_SIZE).unwrap();
        let mut map = BTreeMap::new();
        map.insert(VaSpaceId(1), v);
        (pool, map)
    }

    fn launch_bits() -> u32 {
        2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH
    }

    #[test]
    fn compute_preemption_points() {
        let t = Timing {
            compute_preempt_granularity_ns: 100,
            ..Timing::default()
        };
        let w = WorkItem::Compute {
            total: 250,
            done: 30,
        };
        assert_eq!(w.ns_to_preemption_point(&t), 70);
        let w = WorkItem::Compute {
            total: 250,
            done: 230,
        };
        assert_eq!(w.ns_to_preemption_point(&t), 20);
        assert_eq!(
            WorkItem::Compute {
                total: 250,
                done: 200
            }
            .ns_to_preemption_point(&t),
            0
        );
    }

    #[test]
    fn copy_moves_bytes_at_bandwidth_and_releases_with_timestamp() {
        let (mut pool, vas) = env();
        let timing = Timing {
            copy_bytes_per_ns: 10,
            ..Timing::default()
        };
        let src: Vec<u8> = (0..200u8).collect();
        vas[&VaSpaceId(1)].write(&mut pool, 0x10000, &src).unwrap();
        let regs = CopyRegs {
            offset_in: 0x10000,
            offset_out: 0x11000,
            line_length: 200,
            sem_va: 0x12000,
            sem_payload: 0xCAFE,
            ..CopyRegs::default()
        };
        let mut w = WorkItem::Copy(Box::new(
            CopyJob::launch(&regs, launch_bits() | 2 << 3, VaSpaceId(1)).unwrap(),
        ));
        let mut ctx = ExecCtx {
            pool: &mut pool,
            vaspaces: &vas,
            timing: &timing,
            now: 1000,
        };
        let p = w.run(&mut ctx, 15).unwrap();
        assert_eq!((p.used_ns, p.finished, p.copy_bytes), (15, false, 150));
        ctx.now = 1015;
        let p = w.run(&mut ctx, 100).unwrap();
        assert_eq!(
            (p.used_ns, p.finished, p.copy_bytes, p.released),
            (5, true, 50, true)
        );
        let mut back = vec![0u8; 200];
        vas[&VaSpaceId(1)].read(&pool, 0x11000, &mut back).unwrap();
        assert_eq!(back, src);
        assert_eq!(pool.read_u32(MemoryIdOf::first(), 0x2000).unwrap(), 0xCAFE);
        assert_eq!(pool.read_u64(MemoryIdOf::first(), 0x2008).unwrap(), 1020);
    }

    struct MemoryIdOf;
    impl MemoryIdOf {
        fn first() -> super::super::memory::MemoryId {
            super::super::memory::MemoryId(1)
        }
    }

    #[test]
    fn fill_through_remap_and_multiline_pitch() {
        let (mut pool, vas) = env();
        let timing = Timing::default();
        // 3 lines of 4 u32 elements, pitch 64: fill with CONST_A.
        let regs = CopyRegs {
            offset_out: 0x10000,
            pitch_out: 64,
            line_length: 4,
            line_count: 3,
            remap_const_a: 0xDEAD_BEEF,
            remap_components: copy::REMAP_CONST_A | 3 << 16,
            ..CopyRegs::default()
        };
        let l = launch_bits() | copy::LAUNCH_REMAP | copy::LAUNCH_MULTI_LINE;
        let mut w = WorkItem::Copy(Box::new(CopyJob::launch(&regs, l, VaSpaceId(1)).unwrap()));
        let mut ctx = ExecCtx {
            pool: &mut pool,
            vaspaces: &vas,
            timing: &timing,
            now: 0,
        };
        let p = w.run(&mut ctx, 1_000).unwrap();
        assert!(p.finished);
        assert_eq!(p.copy_bytes, 48);
        let m = MemoryIdOf::first();
        for line in 0..3u64 {
            for e in 0..4u64 {
                assert_eq!(pool.read_u32(m, line * 64 + e * 4).unwrap(), 0xDEAD_BEEF);
            }
            assert_eq!(
                pool.read_u32(m, line * 64 + 16).unwrap(),
                0,
                "gap untouched"
            );
        }
    }

    #[test]
    fn copy_refusals_and_faults() {
        let (mut pool, vas) = env();
        let timing = Timing::default();
        let regs = CopyRegs {
            offset_in: 0x10000,
            offset_out: 0x90000,
            line_length: 8,
            ..CopyRegs::default()
        };
        assert!(CopyJob::launch(
            &regs,
            launch_bits() | copy::LAUNCH_SRC_PHYSICAL,
            VaSpaceId(1)
        )
        .is_err());
        assert!(
            CopyJob::launch(&regs, 2, VaSpaceId(1)).is_err(),
            "block linear"
        );
        let bad_remap = CopyRegs {
            remap_components: 3,
            ..regs
        };
        assert!(
            CopyJob::launch(&bad_remap, launch_bits() | copy::LAUNCH_REMAP, VaSpaceId(1)).is_err()
        );
        let mut w = WorkItem::Copy(Box::new(
            CopyJob::launch(&regs, launch_bits(), VaSpaceId(1)).unwrap(),
        ));
        let mut ctx = ExecCtx {
            pool: &mut pool,
            vaspaces: &vas,
            timing: &timing,
            now: 0,
        };
        assert!(matches!(
            w.run(&mut ctx, 100),
            Err(FaultKind::EngineMmu(VaFault {
                va: 0x90000,
                write: true
            }))
        ));
        // Semaphore-only launch (transfer type NONE) finishes at once.
        let s = CopyRegs {
            sem_va: 0x10100,
            sem_payload: 5,
            ..CopyRegs::default()
        };
        let mut w = WorkItem::Copy(Box::new(CopyJob::launch(&s, 1 << 3, VaSpaceId(1)).unwrap()));
        let p = w.run(&mut ctx, 100).unwrap();
        assert!(p.finished && p.released && p.used_ns == 0);
        // Hostile sizes: 4G lines of 4G bytes only progress at bandwidth, never all at once.
        let huge = CopyRegs {
            offset_in: 0x10000,
            offset_out: 0x10000,
            line_length: u32::MAX,
            line_count: u32::MAX,
            ..CopyRegs::default()
        };
        let mut w = WorkItem::Copy(Box::new(
            CopyJob::launch(&huge, launch_bits() | copy::LAUNCH_MULTI_LINE, VaSpaceId(1)).unwrap(),
        ));
        let r = w.run(&mut ctx, 10);
        assert!(matches!(r, Err(FaultKind::EngineMmu(_))) || r.is_ok_and(|p| p.copy_bytes <= 640));
    }
}
