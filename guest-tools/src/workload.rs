//! GPU work the way a CUDA-style runtime submits it: a compute TSG and a copy TSG, each with one
//! channel and its engine object, GPFIFO entries pointing at pushbuffers that do work and release
//! a semaphore, GP_PUT in USERD, and the channel's work-submit token written to the doorbell.
//! Every semaphore value is read back and checked.

use std::time::{Duration, Instant};

use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::methods::{compute, copy, host};
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::userd;
use rm_abi::{class, Handle};
use zerocopy::IntoBytes;

use crate::rmapi::{Buffer, MappedMemory, RmApiError, RmClient, Transport, TransportError};

/// Where the workload's GPU memory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMode {
    /// Video memory (`NV01_MEMORY_LOCAL_USER`), reached through a CPU mapping; over the vGPU
    /// every access is a `MAPPING_READ` / `MAPPING_WRITE` request.
    Video,
    /// User memory wrapped as an OS descriptor (over the vGPU: window pages), which the GPU uses
    /// in place; accesses are plain loads and stores.
    Window,
}

impl MemoryMode {
    /// The better mode `t` offers.
    pub fn best(t: &dyn Transport) -> Self {
        if t.os_descriptors() {
            MemoryMode::Window
        } else {
            MemoryMode::Video
        }
    }
}

/// The workload's memory as the CPU reaches it.
enum GpuMemory<'t> {
    Mapped(MappedMemory<'t>),
    Window(Buffer),
}

impl GpuMemory<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransportError> {
        match self {
            GpuMemory::Mapped(m) => m.mapping.read(offset, buf),
            GpuMemory::Window(b) => b.read(offset as usize, buf),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), TransportError> {
        match self {
            GpuMemory::Mapped(m) => m.mapping.write(offset, data),
            GpuMemory::Window(b) => b.write(offset as usize, data),
        }
    }
}

/// Size of the memory object holding USERDs, rings, pushbuffers, semaphores and copy buffers.
pub const MEMORY_SIZE: u64 = 512 << 10;
/// GPFIFO entries per channel.
pub const GPFIFO_ENTRIES: u32 = 64;
/// Most GPFIFO entries one submission may carry (a power of two dividing [`GPFIFO_ENTRIES`]).
pub const MAX_BATCH: u32 = 32;
/// Bytes each copy entry moves.
pub const COPY_BYTES: u32 = 256;

/// Offsets inside the memory object.
mod at {
    /// USERD of channel `c` (512 bytes each).
    pub const fn userd(c: usize) -> u64 {
        0x200 * c as u64
    }
    /// GPFIFO ring of channel `c`.
    pub const fn gpfifo(c: usize) -> u64 {
        0x1000 * (c as u64 + 1)
    }
    /// Pushbuffer slot `s` of channel `c` (64 bytes each).
    pub const fn pushbuffer(c: usize, s: u32) -> u64 {
        0x1_0000 + 0x8000 * c as u64 + 64 * s as u64
    }
    /// Semaphore slot `s` of channel `c` (16 bytes each: payload, pad, timestamp).
    pub const fn semaphore(c: usize, s: u32) -> u64 {
        0x2_0000 + 0x1000 * c as u64 + 16 * s as u64
    }
    /// Copy source block.
    pub const COPY_SRC: u64 = 0x3_0000;
    /// Copy destination of slot `s`.
    pub const fn copy_dst(s: u32) -> u64 {
        0x4_0000 + super::COPY_BYTES as u64 * s as u64
    }
    /// The stream's shared work segment.
    pub const STREAM_WORK: u64 = 0x5_0000;
}

/// GPU work of one compute method of the stream; short, so the GPU can switch between tenants
/// within a unit (the sim switches at method boundaries).
pub const STREAM_ITEM_NS: u32 = 100_000;
/// Most work items one stream unit carries (its segment stays under 2 KiB).
pub const MAX_STREAM_ITEMS: u32 = 100;
/// Most units the stream keeps in flight: each is two GPFIFO entries, and the ring must never
/// fill.
pub const MAX_STREAM_DEPTH: u32 = GPFIFO_ENTRIES / 2 - 1;
/// How long the stream waits for any unit to complete before it gives up.
const STREAM_STALL: Duration = Duration::from_secs(10);

/// The channels, by index.
const COMPUTE: usize = 0;
const COPY: usize = 1;
const CHANNEL_NAMES: [&str; 2] = ["compute", "copy"];

/// Errors of the workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// An RM call failed.
    #[error(transparent)]
    Rm(#[from] RmApiError),
    /// A semaphore held another value than the work should have released.
    #[error("{channel} semaphore {slot}: read {got:#x}, expected {want:#x}")]
    Semaphore {
        /// Which channel.
        channel: &'static str,
        /// Slot.
        slot: u32,
        /// Expected value.
        want: u32,
        /// Value read.
        got: u32,
    },
    /// The copy engine's output differs from its input.
    #[error("copy destination {slot} differs from the source")]
    CopyMismatch {
        /// Slot.
        slot: u32,
    },
    /// Bad configuration.
    #[error("batch must be a power of two from 1 to {MAX_BATCH}, got {0}")]
    Batch(u32),
    /// Bad stream configuration.
    #[error("stream: {0}")]
    Stream(String),
}

impl From<crate::rmapi::TransportError> for WorkloadError {
    fn from(e: crate::rmapi::TransportError) -> Self {
        WorkloadError::Rm(e.into())
    }
}

/// How the TSGs are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsgSettings {
    /// Timeslice to set on the compute TSG, in µs.
    pub timeslice_us: u64,
    /// Interleave level to set on the compute TSG (`NVA06C_CTRL_INTERLEAVE_LEVEL_*`).
    pub interleave: u32,
}

impl Default for TsgSettings {
    fn default() -> Self {
        Self {
            timeslice_us: 2000,
            interleave: NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH,
        }
    }
}

/// A channel group this process made, as `vgpu-smi` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnTsg {
    /// TSG handle.
    pub handle: Handle,
    /// `NV2080_ENGINE_TYPE_*`.
    pub engine: u32,
    /// Interleave level this process set, if it set one (RM does not export a getter).
    pub interleave_set: Option<u32>,
}

/// Handles of everything the workload allocates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Objects {
    /// Root client.
    pub client: Handle,
    /// Device.
    pub device: Handle,
    /// Subdevice.
    pub subdevice: Handle,
    /// VA space.
    pub vaspace: Handle,
    /// The memory object.
    pub memory: Handle,
    /// TSG per channel.
    pub tsg: [Handle; 2],
    /// Channel per channel index.
    pub channel: [Handle; 2],
    /// Engine object per channel.
    pub engine_object: [Handle; 2],
    /// Work-submit token per channel.
    pub token: [u32; 2],
}

/// One round's timing.
#[derive(Debug, Clone, Copy)]
pub struct RoundTiming {
    /// From the first doorbell write to reading every semaphore of the round released.
    pub doorbell_to_semaphores: Duration,
    /// Semaphore reads before all were released.
    pub polls: u32,
}

/// A live GPU context: the objects, the CPU mapping of the memory, and ring positions.
pub struct GpuContext<'t> {
    client: RmClient<'t>,
    objects: Objects,
    map: Option<GpuMemory<'t>>,
    mode: MemoryMode,
    va: u64,
    gp_put: [u32; 2],
    round: u64,
    copy_slots: u32,
    settings: TsgSettings,
    /// Channel idles issued because the semaphores had not landed after polling.
    pub idles: u64,
}

impl std::fmt::Debug for GpuContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("objects", &self.objects)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

/// Semaphore polls before the context asks RM to idle the channel (which also drives a
/// virtual-clock GPU forward).
const POLLS_BEFORE_IDLE: u32 = 4;

impl<'t> GpuContext<'t> {
    /// Allocates the whole object tree, maps the memory, and writes the copy source.
    pub fn create(
        t: &'t dyn Transport,
        settings: TsgSettings,
        mode: MemoryMode,
    ) -> Result<Self, WorkloadError> {
        let mut c = RmClient::open(t)?;
        let mut o = Objects {
            client: c.alloc_root()?,
            ..Default::default()
        };
        o.device = c.alloc(
            o.client,
            o.client,
            class::NV01_DEVICE_0,
            &mut Nv0080AllocParameters::default(),
        )?;
        o.subdevice = c.alloc(o.client, o.device, class::NV20_SUBDEVICE_0, &mut [0u8; 4])?;
        o.vaspace = c.alloc(
            o.client,
            o.device,
            class::FERMI_VASPACE_A,
            &mut NvVaspaceAllocationParameters::default(),
        )?;
        let window = match mode {
            MemoryMode::Video => {
                o.memory = c.alloc(
                    o.client,
                    o.device,
                    class::NV01_MEMORY_LOCAL_USER,
                    &mut NvMemoryAllocationParams {
                        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
                        size: MEMORY_SIZE,
                        ..Default::default()
                    },
                )?;
                None
            }
            MemoryMode::Window => {
                let buf = t.buffer(MEMORY_SIZE as usize, 4096)?;
                buf.write(0, &vec![0u8; MEMORY_SIZE as usize])?;
                o.memory = c.alloc_os_descriptor(o.client, o.device, &buf)?;
                Some(buf)
            }
        };
        let va = c.map_dma(o.client, o.device, o.vaspace, o.memory, MEMORY_SIZE)?;
        let engines = [NV2080_ENGINE_TYPE_GR0, NV2080_ENGINE_TYPE_COPY0];
        let classes = [class::HOPPER_COMPUTE_A, class::HOPPER_DMA_COPY_A];
        for ch in [COMPUTE, COPY] {
            o.tsg[ch] = c.alloc(
                o.client,
                o.device,
                class::KEPLER_CHANNEL_GROUP_A,
                &mut NvChannelGroupAllocationParameters {
                    hVASpace: o.vaspace,
                    engineType: engines[ch],
                    ..Default::default()
                },
            )?;
            let ctxshare = c.alloc(
                o.client,
                o.tsg[ch],
                class::FERMI_CONTEXT_SHARE_A,
                &mut NvCtxshareAllocationParameters {
                    hVASpace: o.vaspace,
                    ..Default::default()
                },
            )?;
            let mut p = NvChannelAllocParams {
                gpFifoOffset: va + at::gpfifo(ch),
                gpFifoEntries: GPFIFO_ENTRIES,
                hContextShare: ctxshare,
                ..Default::default()
            };
            p.hUserdMemory[0] = o.memory;
            p.userdOffset[0] = at::userd(ch);
            o.channel[ch] = c.alloc(o.client, o.tsg[ch], class::HOPPER_CHANNEL_GPFIFO_A, &mut p)?;
            o.engine_object[ch] = c.alloc(
                o.client,
                o.channel[ch],
                classes[ch],
                &mut NvGrAllocationParameters::default(),
            )?;
            let mut tok = NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default();
            c.control(
                o.client,
                o.channel[ch],
                NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
                &mut tok,
            )?;
            o.token[ch] = tok.workSubmitToken;
        }
        c.control(
            o.client,
            o.tsg[COMPUTE],
            NVA06C_CTRL_CMD_SET_TIMESLICE,
            &mut NvA06cCtrlTimesliceParams {
                timesliceUs: settings.timeslice_us,
            },
        )?;
        c.control(
            o.client,
            o.tsg[COMPUTE],
            NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
            &mut NvA06cCtrlInterleaveLevelParams {
                tsgInterleaveLevel: settings.interleave,
            },
        )?;
        for ch in [COMPUTE, COPY] {
            c.control(
                o.client,
                o.tsg[ch],
                NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
                &mut NvA06cCtrlGpfifoScheduleParams {
                    bEnable: 1,
                    ..Default::default()
                },
            )?;
        }
        let map = match window {
            Some(buf) => GpuMemory::Window(buf),
            None => GpuMemory::Mapped(c.map_memory(o.client, o.device, o.memory, MEMORY_SIZE)?),
        };
        let pattern: Vec<u8> = (0..COPY_BYTES).map(|i| (i * 7 + 3) as u8).collect();
        map.write(at::COPY_SRC, &pattern)?;
        Ok(Self {
            client: c,
            objects: o,
            map: Some(map),
            mode,
            va,
            gp_put: [0; 2],
            round: 0,
            copy_slots: 0,
            settings,
            idles: 0,
        })
    }

    /// The handles.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The RM client the context allocated through.
    pub fn client(&mut self) -> &mut RmClient<'t> {
        &mut self.client
    }

    /// The channel groups this context made, for `vgpu-smi`.
    pub fn own_tsgs(&self) -> Vec<OwnTsg> {
        vec![
            OwnTsg {
                handle: self.objects.tsg[COMPUTE],
                engine: NV2080_ENGINE_TYPE_GR0,
                interleave_set: Some(self.settings.interleave),
            },
            OwnTsg {
                handle: self.objects.tsg[COPY],
                engine: NV2080_ENGINE_TYPE_COPY0,
                interleave_set: None,
            },
        ]
    }

    /// Where the memory lives.
    pub fn mode(&self) -> MemoryMode {
        self.mode
    }

    fn mapping(&self) -> &GpuMemory<'t> {
        self.map.as_ref().expect("mapped until destroy")
    }

    /// The value slot `i` of this round releases (never 0, so a fresh slot cannot match).
    fn payload(&self, batch: u32, i: u32) -> u32 {
        ((self.round * u64::from(batch) + u64::from(i)) as u32).wrapping_add(1) | 1 << 31
    }

    /// A compute entry: `work_ns` of the sim's engine work (its own methods; 0 leaves them
    /// out, so the entry is only real Hopper methods), then a timestamped semaphore release.
    fn compute_words(&self, sem: u64, payload: u32, work_ns: u32) -> Vec<u32> {
        let mut w = vec![inc_header(0, host::SET_OBJECT, 1), class::HOPPER_COMPUTE_A];
        if work_ns > 0 {
            w.extend([inc_header(0, compute::SIM_WORK_NS_LO, 3), work_ns, 0, 0]);
        }
        w.extend([
            inc_header(0, host::SEM_ADDR_LO, 4),
            sem as u32,
            (sem >> 32) as u32,
            payload,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
        ]);
        w
    }

    fn copy_words(&self, slot: u32, sem: u64, payload: u32) -> [u32; 16] {
        let (src, dst) = (self.va + at::COPY_SRC, self.va + at::copy_dst(slot));
        [
            inc_header(0, host::SET_OBJECT, 1),
            class::HOPPER_DMA_COPY_A,
            inc_header(0, copy::OFFSET_IN_UPPER, 7),
            (src >> 32) as u32,
            src as u32,
            (dst >> 32) as u32,
            dst as u32,
            COPY_BYTES,
            COPY_BYTES,
            COPY_BYTES,
            inc_header(0, copy::SET_SEMAPHORE_A, 3),
            (sem >> 32) as u32,
            sem as u32,
            payload,
            inc_header(0, copy::LAUNCH_DMA, 1),
            2 | copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH | 1 << copy::LAUNCH_SEMAPHORE_SHIFT,
        ]
    }

    /// Submits `batch` entries on each channel (compute doing `work_ns` of work, copy moving
    /// [`COPY_BYTES`]), rings both doorbells through `doorbell`, and waits until every
    /// semaphore holds the value its entry released.
    pub fn round(
        &mut self,
        batch: u32,
        work_ns: u32,
        doorbell: &dyn Fn(u32),
    ) -> Result<RoundTiming, WorkloadError> {
        if !batch.is_power_of_two() || batch > MAX_BATCH {
            return Err(WorkloadError::Batch(batch));
        }
        let first = self.gp_put[COMPUTE];
        debug_assert_eq!(first, self.gp_put[COPY]);
        let mut pbs: [Vec<u8>; 2] = Default::default();
        let mut entries: [Vec<u8>; 2] = Default::default();
        for i in 0..batch {
            let slot = first + i;
            let payload = self.payload(batch, i);
            let words: [Vec<u32>; 2] = [
                self.compute_words(self.va + at::semaphore(COMPUTE, slot), payload, work_ns),
                self.copy_words(slot, self.va + at::semaphore(COPY, slot), payload)
                    .to_vec(),
            ];
            for ch in [COMPUTE, COPY] {
                let mut seg = words[ch].as_bytes().to_vec();
                let dwords = words[ch].len() as u32;
                seg.resize(64, 0);
                pbs[ch].extend_from_slice(&seg);
                let entry = GpEntry::encode(self.va + at::pushbuffer(ch, slot), dwords);
                entries[ch].extend_from_slice(&entry.to_le_bytes());
            }
        }
        let m = self.mapping();
        for ch in [COMPUTE, COPY] {
            m.write(at::pushbuffer(ch, first), &pbs[ch])?;
            m.write(at::gpfifo(ch) + 8 * u64::from(first), &entries[ch])?;
        }
        let put = (first + batch) % GPFIFO_ENTRIES;
        for ch in [COMPUTE, COPY] {
            m.write(at::userd(ch) + userd::GP_PUT, &put.to_le_bytes())?;
        }
        let start = Instant::now();
        for ch in [COMPUTE, COPY] {
            doorbell(self.objects.token[ch]);
        }
        let mut polls = 0;
        let mut done = [false; 2];
        while done != [true; 2] {
            polls += 1;
            for ch in [COMPUTE, COPY] {
                if !done[ch] {
                    done[ch] = self.semaphores_released(ch, first, batch)?;
                }
            }
            if polls % POLLS_BEFORE_IDLE == 0 && done != [true; 2] {
                for ch in [COMPUTE, COPY] {
                    if !done[ch] {
                        self.idles += 1;
                        let o = self.objects;
                        self.client
                            .idle_channel(o.client, o.device, o.channel[ch], 1_000_000)?;
                    }
                }
            }
            if polls > 64 * POLLS_BEFORE_IDLE {
                // Idled and still not released: report the first wrong value.
                for ch in [COMPUTE, COPY] {
                    self.check_semaphores(ch, first, batch)?;
                }
            }
        }
        let elapsed = start.elapsed();
        for ch in [COMPUTE, COPY] {
            self.check_semaphores(ch, first, batch)?;
        }
        self.gp_put = [put; 2];
        self.round += 1;
        self.copy_slots = self.copy_slots.max(first + batch);
        Ok(RoundTiming {
            doorbell_to_semaphores: elapsed,
            polls,
        })
    }

    fn read_semaphores(
        &self,
        ch: usize,
        first: u32,
        batch: u32,
    ) -> Result<Vec<u32>, WorkloadError> {
        let mut b = vec![0u8; 16 * batch as usize];
        self.mapping().read(at::semaphore(ch, first), &mut b)?;
        Ok(b.chunks_exact(16)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .collect())
    }

    fn semaphores_released(
        &self,
        ch: usize,
        first: u32,
        batch: u32,
    ) -> Result<bool, WorkloadError> {
        let values = self.read_semaphores(ch, first, batch)?;
        Ok(values
            .iter()
            .enumerate()
            .all(|(i, &v)| v == self.payload(batch, i as u32)))
    }

    fn check_semaphores(&self, ch: usize, first: u32, batch: u32) -> Result<(), WorkloadError> {
        for (i, got) in self
            .read_semaphores(ch, first, batch)?
            .into_iter()
            .enumerate()
        {
            let want = self.payload(batch, i as u32);
            if got != want {
                return Err(WorkloadError::Semaphore {
                    channel: CHANNEL_NAMES[ch],
                    slot: first + i as u32,
                    want,
                    got,
                });
            }
        }
        Ok(())
    }

    /// Checks that every copy destination written so far equals the source block.
    pub fn check_copies(&self) -> Result<u32, WorkloadError> {
        let m = self.mapping();
        let mut src = vec![0u8; COPY_BYTES as usize];
        m.read(at::COPY_SRC, &mut src)?;
        let slots = self.copy_slots;
        let mut dst = vec![0u8; COPY_BYTES as usize];
        for slot in 0..slots {
            m.read(at::copy_dst(slot), &mut dst)?;
            if dst != src {
                return Err(WorkloadError::CopyMismatch { slot });
            }
        }
        Ok(slots)
    }

    /// Keeps the compute engine loaded for `cfg.duration`: units of `cfg.items` work methods
    /// followed by a semaphore release with the GPU's timestamp, `cfg.depth` units in flight,
    /// the queue refilled every `cfg.refill_every` (sleeping in between, so a guest leaves its
    /// CPU to others). `on_first` gets the GPU time of the first completion. Waits for every
    /// unit, checks every semaphore value, then frees the context. Needs a GPU whose clock runs
    /// by itself (vgpud's real-time sim, a real GPU).
    pub fn stream(
        mut self,
        cfg: StreamConfig,
        doorbell: &dyn Fn(u32),
        on_first: &mut dyn FnMut(u64),
    ) -> Result<StreamReport, WorkloadError> {
        if !(1..=MAX_STREAM_DEPTH).contains(&cfg.depth)
            || !(1..=MAX_STREAM_ITEMS).contains(&cfg.items)
            || cfg.bucket.is_zero()
        {
            return Err(WorkloadError::Stream(format!(
                "depth 1..={MAX_STREAM_DEPTH}, items 1..={MAX_STREAM_ITEMS} and a bucket > 0, got {cfg:?}"
            )));
        }
        let mut seg = vec![inc_header(0, host::SET_OBJECT, 1), class::HOPPER_COMPUTE_A];
        for _ in 0..cfg.items {
            seg.extend([
                inc_header(0, compute::SIM_WORK_NS_LO, 3),
                STREAM_ITEM_NS,
                0,
                0,
            ]);
        }
        self.mapping().write(at::STREAM_WORK, seg.as_bytes())?;
        let work_entry = GpEntry::encode(self.va + at::STREAM_WORK, seg.len() as u32);
        let payload = |u: u64| 0x4000_0000 | ((u + 1) as u32 & 0x3fff_ffff);
        let bucket_ns = cfg.bucket.as_nanos() as u64;
        let start = Instant::now();
        let base = self.gp_put[COMPUTE];
        let pos = |u: u64| ((u64::from(base) + 2 * u) % u64::from(GPFIFO_ENTRIES)) as u32;
        let (mut submitted, mut done) = (0u64, 0u64);
        let mut buckets: Vec<StreamBucket> = Vec::new();
        let (mut first, mut last) = (0u64, 0u64);
        let mut progress = Instant::now();
        loop {
            let submitting = start.elapsed() < cfg.duration;
            if submitting && submitted - done < u64::from(cfg.depth) {
                let m = self.mapping();
                while submitted - done < u64::from(cfg.depth) {
                    let p = pos(submitted);
                    let slot = (p + 1) % GPFIFO_ENTRIES;
                    let sem = self.va + at::semaphore(COMPUTE, slot);
                    let release = [
                        inc_header(0, host::SEM_ADDR_LO, 4),
                        sem as u32,
                        (sem >> 32) as u32,
                        payload(submitted),
                        0,
                        inc_header(0, host::SEM_EXECUTE, 1),
                        host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
                    ];
                    m.write(at::pushbuffer(COMPUTE, slot), release.as_bytes())?;
                    let sem_entry = GpEntry::encode(
                        self.va + at::pushbuffer(COMPUTE, slot),
                        release.len() as u32,
                    );
                    m.write(
                        at::gpfifo(COMPUTE) + 8 * u64::from(p),
                        &work_entry.to_le_bytes(),
                    )?;
                    m.write(
                        at::gpfifo(COMPUTE) + 8 * u64::from(slot),
                        &sem_entry.to_le_bytes(),
                    )?;
                    submitted += 1;
                }
                let put = pos(submitted);
                m.write(at::userd(COMPUTE) + userd::GP_PUT, &put.to_le_bytes())?;
                doorbell(self.objects.token[COMPUTE]);
            }
            while done < submitted {
                let slot = (pos(done) + 1) % GPFIFO_ENTRIES;
                let mut b = [0u8; 16];
                self.mapping().read(at::semaphore(COMPUTE, slot), &mut b)?;
                let got = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if got != payload(done) {
                    break;
                }
                let ts = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
                if done == 0 {
                    first = ts;
                    on_first(ts);
                }
                last = ts;
                let index = ts / bucket_ns;
                match buckets.last_mut() {
                    Some(bk) if bk.index == index => bk.units += 1,
                    _ => buckets.push(StreamBucket { index, units: 1 }),
                }
                done += 1;
                progress = Instant::now();
            }
            if !submitting && done == submitted {
                break;
            }
            if progress.elapsed() > STREAM_STALL {
                let slot = (pos(done) + 1) % GPFIFO_ENTRIES;
                self.check_semaphores_at(slot, payload(done))?;
            }
            std::thread::sleep(cfg.refill_every);
        }
        self.gp_put[COMPUTE] = pos(submitted);
        let seconds = start.elapsed().as_secs_f64();
        self.destroy()?;
        Ok(StreamReport {
            units: done,
            unit_ns: u64::from(cfg.items) * u64::from(STREAM_ITEM_NS),
            bucket_ns,
            buckets,
            first_gpu_ns: first,
            last_gpu_ns: last,
            seconds,
        })
    }

    /// Fails with the value found if the compute semaphore of `slot` does not hold `want`.
    fn check_semaphores_at(&self, slot: u32, want: u32) -> Result<(), WorkloadError> {
        let got = self.read_semaphores(COMPUTE, slot, 1)?[0];
        if got == want {
            return Ok(());
        }
        Err(WorkloadError::Semaphore {
            channel: CHANNEL_NAMES[COMPUTE],
            slot,
            want,
            got,
        })
    }

    /// Unmaps and frees everything, then closes the ctl file.
    pub fn destroy(mut self) -> Result<(), WorkloadError> {
        let window = match self.map.take() {
            Some(GpuMemory::Mapped(m)) => {
                self.client.unmap_memory(m)?;
                None
            }
            other => other,
        };
        let client = self.objects.client;
        self.client.free(client, client, client)?;
        // Window pages go back to the allocator only after RM freed the object over them.
        drop(window);
        self.client.close()?;
        Ok(())
    }
}

/// How [`GpuContext::stream`] loads the compute engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamConfig {
    /// How long to keep submitting.
    pub duration: Duration,
    /// Units kept in flight (1..=[`MAX_STREAM_DEPTH`]).
    pub depth: u32,
    /// Work items ([`STREAM_ITEM_NS`] each) per unit (1..=[`MAX_STREAM_ITEMS`]).
    pub items: u32,
    /// Width of the report's buckets, in GPU time.
    pub bucket: Duration,
    /// Host time between refills of the queue.
    pub refill_every: Duration,
}

/// Units completed in one bucket of GPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamBucket {
    /// GPU time at the bucket's start divided by the bucket width.
    pub index: u64,
    /// Units whose semaphore carries a timestamp in this bucket.
    pub units: u32,
}

/// What [`GpuContext::stream`] did. Completion times are the GPU's own semaphore timestamps, so
/// the buckets of two tenants of one GPU line up whatever their clocks say.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamReport {
    /// Units completed (every semaphore value checked).
    pub units: u64,
    /// GPU work per unit, ns.
    pub unit_ns: u64,
    /// Bucket width, GPU ns.
    pub bucket_ns: u64,
    /// Completed units per bucket, in time order (empty buckets left out).
    pub buckets: Vec<StreamBucket>,
    /// GPU time of the first and last completion.
    pub first_gpu_ns: u64,
    /// See `first_gpu_ns`.
    pub last_gpu_ns: u64,
    /// Host wall time of the whole stream, s.
    pub seconds: f64,
}

impl StreamReport {
    /// GPU work (ns) completed in the buckets that lie wholly in GPU time `[from_ns, to_ns)`.
    pub fn work_between(&self, from_ns: u64, to_ns: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| {
                b.index * self.bucket_ns >= from_ns && (b.index + 1) * self.bucket_ns <= to_ns
            })
            .map(|b| u64::from(b.units) * self.unit_ns)
            .sum()
    }
}

/// What two streams completed side by side: for each whole `width` of GPU time in
/// `[from_ns, to_ns)`, windows starting on `a`'s first bucket boundary at or after `from_ns`,
/// the window's start and each stream's work in it (ns). What shares between VMs are read from.
pub fn paired_work(
    a: &StreamReport,
    b: &StreamReport,
    from_ns: u64,
    to_ns: u64,
    width: u64,
) -> Vec<(u64, u64, u64)> {
    let bucket = a.bucket_ns.max(1);
    let mut out = Vec::new();
    let mut t = from_ns.div_ceil(bucket) * bucket;
    while width > 0 && t + width <= to_ns {
        out.push((
            t,
            a.work_between(t, t + width),
            b.work_between(t, t + width),
        ));
        t += width;
    }
    out
}

/// What [`run`] did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct WorkloadReport {
    /// Rounds submitted.
    pub rounds: u64,
    /// GPFIFO entries completed on both channels.
    pub entries: u64,
    /// Semaphore values read back and found right.
    pub semaphores_checked: u64,
    /// Copy destinations checked against the source at the end.
    pub copies_checked: u32,
    /// Entries per second of wall time.
    pub entries_per_sec: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Where the GPU memory lived.
    pub memory: MemoryMode,
    /// Channel idles needed because semaphores had not landed after polling.
    pub idles: u64,
    /// How the escapes completed (semaphores are always polled in memory); [`run`] cannot see
    /// the transport's driver and reports `Poll`: the caller that owns the driver sets it.
    #[serde(default)]
    pub completion: crate::driver::Completion,
    /// Interrupts the driver waited for during the run (set like `completion`).
    #[serde(default)]
    pub interrupts: u64,
}

/// How long [`run`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimit {
    /// Stop after this many rounds.
    pub rounds: Option<u64>,
    /// Stop after this long.
    pub duration: Duration,
}

/// Runs rounds until the limit, with progress through `on_round` (called with the round number).
pub fn run(
    ctx: &mut GpuContext<'_>,
    limit: RunLimit,
    batch: u32,
    work_ns: u32,
    doorbell: &dyn Fn(u32),
    on_round: &mut dyn FnMut(u64),
) -> Result<WorkloadReport, WorkloadError> {
    let start = Instant::now();
    let mut rounds = 0;
    while limit.rounds.is_none_or(|r| rounds < r) && start.elapsed() < limit.duration {
        ctx.round(batch, work_ns, doorbell)?;
        rounds += 1;
        on_round(rounds);
    }
    let seconds = start.elapsed().as_secs_f64();
    let entries = rounds * u64::from(batch) * 2;
    Ok(WorkloadReport {
        rounds,
        entries,
        semaphores_checked: entries,
        copies_checked: ctx.check_copies()?,
        entries_per_sec: if seconds > 0.0 {
            entries as f64 / seconds
        } else {
            0.0
        },
        seconds,
        memory: ctx.mode(),
        idles: ctx.idles,
        completion: crate::driver::Completion::Poll,
        interrupts: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of 1 ms units in 100 ms buckets, `units[i]` in bucket `first + i`.
    fn stream(first: u64, units: &[u32]) -> StreamReport {
        StreamReport {
            units: units.iter().map(|&u| u64::from(u)).sum(),
            unit_ns: 1_000_000,
            bucket_ns: 100_000_000,
            buckets: (0..)
                .zip(units)
                .map(|(i, &u)| StreamBucket {
                    index: first + i,
                    units: u,
                })
                .collect(),
            first_gpu_ns: first * 100_000_000,
            last_gpu_ns: (first + units.len() as u64) * 100_000_000,
            seconds: 0.0,
        }
    }

    #[test]
    fn paired_work_counts_whole_windows_from_the_next_bucket_boundary() {
        let a = stream(10, &[75; 25]);
        let b = stream(10, &[25; 25]);
        // From 1.05 s: windows start at 1.1 s and 1.6 s; a third would end past 2.3 s.
        let w = paired_work(&a, &b, 1_050_000_000, 2_300_000_000, 500_000_000);
        assert_eq!(
            w,
            vec![
                (1_100_000_000, 5 * 75_000_000, 5 * 25_000_000),
                (1_600_000_000, 5 * 75_000_000, 5 * 25_000_000),
            ]
        );
        assert!(paired_work(&a, &b, 0, 3_000_000_000, 0).is_empty());
    }
}
