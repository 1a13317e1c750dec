//! Property test on the sim backend: two guests (GFIDs 1 and 2) build valid object trees with
//! random parameters, then issue random controls (right and wrong param sizes), frees, GPU and
//! CPU mappings, CPU writes, GPFIFO entries and pushbuffers of random but plausible methods,
//! random GP_PUT values and doorbells (own, foreign and made-up tokens), idles, closes and
//! whole-vGPU teardowns, while the virtual clock advances. After every step:
//! * nothing panicked and the step did a bounded amount of sim work;
//! * the core and the sim agree on the number of live objects;
//! * a step of GFID 2 changed neither GFID 1's object count nor its semaphore memory.
//!
//! At the end both vGPUs are destroyed and neither the core nor the sim holds anything.
//! `PROPTEST_CASES=2000 cargo test -p rm-sim --test fuzz_sim` runs it long; the `#[ignore]`d
//! `long_deterministic_run` drives the same steps from a fixed seed for many thousands of steps.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::methods::{compute, copy, host};
use rm_abi::nvos::*;
use rm_abi::pushbuffer::{immediate_header, inc_header, non_inc_header, GpEntry};
use rm_abi::{class, Handle, NvStatus};
use rm_core::testing::rm_client::{Fd, Node, RmClient, Transport};
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::RmCalls;
use rm_core::{Rm, VgpuConfig};
use rm_sim::{userd, SimBackend, SimConfig, Timing};
use std::sync::MutexGuard;
use zerocopy::IntoBytes;

/// Host work one `run_until` call may do per runlist in this test (small, so steps are fast).
const BUDGET: u64 = 20_000;
/// Largest clock advance one step makes.
const MAX_ADVANCE_NS: u64 = 2_000_000;

/// Layout of each program's memory object (mapped at `va`).
const MEM_SIZE: u64 = 1 << 20;
const USERD_AT: u64 = 0;
const RING_AT: u64 = 0x1000;
const PB_AT: u64 = 0x1_0000;
const PB_SIZE: u64 = 0x1_0000;
const SEM_AT: u64 = 0x2_0000;
const SEM_SIZE: u64 = 0x1000;
const DATA_AT: u64 = 0x4_0000;

fn sim() -> Rm<SimBackend> {
    Rm::new(SimBackend::new(SimConfig {
        timing: Timing {
            work_budget_per_call: BUDGET,
            ..Timing::default()
        },
        ..SimConfig::default()
    }))
}

/// Random parameters of one object tree.
#[derive(Debug, Clone)]
struct TreeSpec {
    /// 0: GR0, n: COPY(n-1); 9: an engine type the GPU lacks.
    engine: u8,
    vidmem: bool,
    channels: u8,
    gp_entries: u32,
    ring_offset_jitter: u64,
    /// Whether the channel names USERD in the memory object (else the sim allocates it).
    userd_in_mem: bool,
    copy_on_channel: bool,
    schedule: bool,
}

/// A pushbuffer method sequence, drawn from what programs do plus garbage.
#[derive(Debug, Clone)]
enum Chunk {
    SetObject(u32, u32),
    Release {
        sem: u64,
        payload: u32,
        flags: u32,
    },
    Acquire {
        sem: u64,
        payload: u32,
        op: u32,
    },
    Reduction {
        sem: u64,
        payload: u32,
        op: u32,
    },
    Compute(u64),
    Copy {
        src: u64,
        dst: u64,
        len: u32,
        lines: u32,
        launch: u32,
    },
    CopyRelease {
        sem: u64,
        payload: u32,
    },
    Yield,
    Immediate(u32, u32),
    NonInc(u32, Vec<u32>),
    Raw(Vec<u32>),
}

#[derive(Debug, Clone)]
enum GpSpec {
    /// All of the pushbuffer just written.
    Whole,
    /// A segment of the pushbuffer just written: (start dword, dwords).
    Segment(u32, u32),
    Raw(u64),
}

#[derive(Debug, Clone)]
enum PutSpec {
    Advance(u32),
    Raw(u32),
}

#[derive(Debug, Clone)]
enum TokenSpec {
    Own,
    OtherGfid,
    Raw(u32),
}

/// Which object of a program a call names.
#[derive(Debug, Clone, Copy)]
enum Target {
    Client,
    Device,
    Subdevice,
    VaSpace,
    Tsg,
    Channel(u8),
    Memory,
    Random(u32),
}

#[derive(Debug, Clone)]
enum CtrlParams {
    Timeslice(u64),
    Interleave(u32),
    Preempt {
        wait: bool,
        manual: bool,
        timeout_us: u32,
    },
    Schedule(bool),
    Disable {
        disable: bool,
        rewind: bool,
        only_sched: bool,
        event: bool,
        entries: Vec<(bool, u8)>,
        count: Option<u32>,
    },
    Bytes {
        cmd: usize,
        size: i32,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Build(u8, TreeSpec),
    Control {
        g: u8,
        p: u8,
        target: Target,
        params: CtrlParams,
    },
    Free {
        g: u8,
        p: u8,
        target: Target,
    },
    Submit {
        g: u8,
        p: u8,
        ch: u8,
        prelude: bool,
        chunks: Vec<Chunk>,
        entries: Vec<GpSpec>,
        put: PutSpec,
        token: TokenSpec,
        /// GPU time to run after the doorbell.
        run_ns: u64,
    },
    CpuWrite {
        g: u8,
        p: u8,
        offset: u64,
        bytes: Vec<u8>,
    },
    MapDma {
        g: u8,
        p: u8,
        offset: u64,
        length: u64,
        fixed: Option<u64>,
    },
    UnmapDma {
        g: u8,
        p: u8,
        va: Option<u64>,
    },
    MapCpu {
        g: u8,
        p: u8,
        target: Target,
        offset: u64,
        length: u64,
    },
    Idle {
        g: u8,
        p: u8,
        ch: u8,
        timeout_us: u32,
    },
    Advance(u64),
    Close {
        g: u8,
        p: u8,
        ctl: bool,
    },
    Teardown(u8),
}

impl Op {
    /// The guest the step belongs to (None for host-side steps).
    fn gfid(&self) -> Option<u32> {
        let g = match self {
            Op::Build(g, _) | Op::Teardown(g) => *g,
            Op::Control { g, .. }
            | Op::Free { g, .. }
            | Op::Submit { g, .. }
            | Op::CpuWrite { g, .. }
            | Op::MapDma { g, .. }
            | Op::UnmapDma { g, .. }
            | Op::MapCpu { g, .. }
            | Op::Idle { g, .. }
            | Op::Close { g, .. } => *g,
            Op::Advance(_) => return None,
        };
        Some(u32::from(g) + 1)
    }
}

fn sem_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (0u64..SEM_SIZE / 16).prop_map(|i| SEM_AT + i * 16),
        1 => 0u64..MEM_SIZE + 0x2000,
        1 => any::<u64>(),
    ]
}

/// Work a well-behaved program submits: semaphore releases, bounded compute and copies.
fn clean_chunk() -> impl Strategy<Value = Chunk> {
    let valid_sem = || (0u64..SEM_SIZE / 16).prop_map(|i| SEM_AT + i * 16);
    prop_oneof![
        4 => (valid_sem(), any::<u32>(), prop::sample::select(vec![
            host::sem_op::RELEASE,
            host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
            host::sem_op::RELEASE | host::SEM_PAYLOAD_64BIT,
            host::sem_op::RELEASE | host::SEM_RELEASE_WFI | host::SEM_RELEASE_TIMESTAMP,
        ])).prop_map(|(sem, payload, flags)| Chunk::Release { sem, payload, flags }),
        2 => (1u64..200_000).prop_map(Chunk::Compute),
        2 => (0u64..0x8_0000, 0u64..0x8_0000, 1u32..0x4000, 1u32..4, prop::sample::select(vec![
                0x182u32, // pitch source and destination, non-pipelined
                0x182 | (1 << copy::LAUNCH_SEMAPHORE_SHIFT),
                0x182 | copy::LAUNCH_MULTI_LINE,
                0x182 | copy::LAUNCH_REMAP,
            ]))
            .prop_map(|(src, dst, len, lines, launch)| Chunk::Copy { src: src + DATA_AT, dst: dst + DATA_AT, len, lines, launch }),
        1 => (valid_sem(), any::<u32>()).prop_map(|(sem, payload)| Chunk::CopyRelease { sem, payload }),
        1 => (valid_sem(), any::<u32>(), 0u32..3).prop_map(|(sem, payload, op)| Chunk::Reduction { sem, payload, op: op << 27 }),
        1 => Just(Chunk::Yield),
    ]
}

/// Anything a hostile guest may put in a pushbuffer.
fn chunk() -> impl Strategy<Value = Chunk> {
    let class = prop_oneof![
        Just(class::HOPPER_COMPUTE_A),
        Just(class::HOPPER_DMA_COPY_A),
        any::<u32>()
    ];
    prop_oneof![
        4 => clean_chunk(),
        1 => (0u32..8, class).prop_map(|(s, c)| Chunk::SetObject(s, c)),
        1 => (sem_offset(), any::<u32>(), any::<u32>())
            .prop_map(|(sem, payload, flags)| Chunk::Release { sem, payload, flags }),
        1 => (sem_offset(), any::<u32>(), prop_oneof![0u32..6, Just(host::SEM_ACQUIRE_SWITCH_TSG), any::<u32>()])
            .prop_map(|(sem, payload, op)| Chunk::Acquire { sem, payload, op }),
        1 => (sem_offset(), any::<u32>(), any::<u32>())
            .prop_map(|(sem, payload, op)| Chunk::Reduction { sem, payload, op }),
        1 => any::<u64>().prop_map(Chunk::Compute),
        1 => (sem_offset(), sem_offset(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(src, dst, len, lines, launch)| Chunk::Copy { src, dst, len, lines, launch }),
        1 => (sem_offset(), any::<u32>()).prop_map(|(sem, payload)| Chunk::CopyRelease { sem, payload }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(m, d)| Chunk::Immediate(m, d)),
        1 => (any::<u32>(), prop::collection::vec(any::<u32>(), 0..6)).prop_map(|(m, d)| Chunk::NonInc(m, d)),
        1 => prop::collection::vec(any::<u32>(), 0..8).prop_map(Chunk::Raw),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        1 => Just(Target::Client),
        1 => Just(Target::Device),
        2 => Just(Target::Subdevice),
        1 => Just(Target::VaSpace),
        4 => Just(Target::Tsg),
        4 => (0u8..4).prop_map(Target::Channel),
        1 => Just(Target::Memory),
        1 => prop_oneof![(0x5c00_0000u32..0x5c00_0040), any::<u32>()].prop_map(Target::Random),
    ]
}

fn ctrl_params() -> impl Strategy<Value = CtrlParams> {
    let n = rm_core::controls::CONTROLS.len();
    prop_oneof![
        2 => prop_oneof![0u64..100_000, any::<u64>()].prop_map(CtrlParams::Timeslice),
        1 => prop_oneof![0u32..4, any::<u32>()].prop_map(CtrlParams::Interleave),
        2 => (any::<bool>(), any::<bool>(), prop_oneof![0u32..2_000, 0u32..2_000_000, any::<u32>()])
            .prop_map(|(wait, manual, timeout_us)| CtrlParams::Preempt { wait, manual, timeout_us }),
        2 => any::<bool>().prop_map(CtrlParams::Schedule),
        3 => (any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.05),
              prop::collection::vec((prop::bool::weighted(0.2), 0u8..8), 0..6),
              prop::option::weighted(0.1, any::<u32>()))
            .prop_map(|(disable, rewind, only_sched, event, entries, count)| CtrlParams::Disable {
                disable, rewind, only_sched, event, entries, count,
            }),
        4 => (0..n, prop_oneof![Just(0i32), -8i32..9, Just(-100_000)], prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(cmd, size, bytes)| CtrlParams::Bytes { cmd, size, bytes }),
    ]
}

fn tree_spec() -> impl Strategy<Value = TreeSpec> {
    (
        prop_oneof![4 => Just(0u8), 3 => 1u8..5, 1 => Just(9u8)],
        any::<bool>(),
        1u8..4,
        prop_oneof![
            4 => Just(64u32),
            1 => Just(0u32),
            1 => Just(1u32),
            1 => Just(3u32),
            1 => Just(512u32),
            1 => any::<u32>()
        ],
        prop_oneof![6 => Just(0u64), 1 => 0u64..0x10_0000, 1 => any::<u64>()],
        prop::bool::weighted(0.9),
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(
                engine,
                vidmem,
                channels,
                gp_entries,
                ring_offset_jitter,
                userd_in_mem,
                copy_on_channel,
                schedule,
            )| TreeSpec {
                engine,
                vidmem,
                channels,
                gp_entries,
                ring_offset_jitter,
                userd_in_mem,
                copy_on_channel,
                schedule,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let g = 0u8..2;
    let p = 0u8..4;
    prop_oneof![
        16 => (g.clone(), tree_spec()).prop_map(|(g, t)| Op::Build(g, t)),
        24 => (g.clone(), p.clone(), target(), ctrl_params())
            .prop_map(|(g, p, target, params)| Op::Control { g, p, target, params }),
        4 => (g.clone(), p.clone(), target()).prop_map(|(g, p, target)| Op::Free { g, p, target }),
        // A well-behaved submission: whole entries, GP_PUT at the last one, own doorbell.
        40 => (g.clone(), p.clone(), 0u8..4, prop::collection::vec(clean_chunk(), 1..6), 1usize..3, prop_oneof![Just(0u64), 1u64..300_000])
            .prop_map(|(g, p, ch, chunks, n, run_ns)| Op::Submit {
                g, p, ch, prelude: true, chunks, entries: vec![GpSpec::Whole; n],
                put: PutSpec::Advance(0), token: TokenSpec::Own, run_ns,
            }),
        // A hostile one.
        12 => (
            g.clone(),
            p.clone(),
            0u8..4,
            prop::bool::weighted(0.8),
            prop::collection::vec(chunk(), 0..8),
            prop::collection::vec(
                prop_oneof![6 => Just(GpSpec::Whole),
                            2 => (0u32..64, prop_oneof![0u32..64, Just(0x1F_FFFF)]).prop_map(|(s, l)| GpSpec::Segment(s, l)),
                            1 => any::<u64>().prop_map(GpSpec::Raw)],
                0..4,
            ),
            prop_oneof![6 => (0u32..6).prop_map(PutSpec::Advance), 1 => any::<u32>().prop_map(PutSpec::Raw)],
            prop_oneof![4 => Just(TokenSpec::Own), 1 => Just(TokenSpec::OtherGfid), 1 => any::<u32>().prop_map(TokenSpec::Raw)],
            prop_oneof![Just(0u64), 1u64..300_000],
        )
            .prop_map(|(g, p, ch, prelude, chunks, entries, put, token, run_ns)| Op::Submit { g, p, ch, prelude, chunks, entries, put, token, run_ns }),
        4 => (g.clone(), p.clone(), prop_oneof![0u64..MEM_SIZE, any::<u64>()], prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(g, p, offset, bytes)| Op::CpuWrite { g, p, offset, bytes }),
        4 => (g.clone(), p.clone(), prop_oneof![Just(0u64), 0u64..MEM_SIZE * 2], prop_oneof![Just(0u64), 0u64..MEM_SIZE * 2, any::<u64>()],
              prop::option::weighted(0.3, prop_oneof![0u64..1 << 40, any::<u64>()]))
            .prop_map(|(g, p, offset, length, fixed)| Op::MapDma { g, p, offset, length, fixed }),
        4 => (g.clone(), p.clone(), prop::option::weighted(0.3, any::<u64>()))
            .prop_map(|(g, p, va)| Op::UnmapDma { g, p, va }),
        4 => (g.clone(), p.clone(), target(), prop_oneof![Just(0u64), any::<u64>()], prop_oneof![Just(0u64), 1u64..0x2000, any::<u64>()])
            .prop_map(|(g, p, target, offset, length)| Op::MapCpu { g, p, target, offset, length }),
        8 => (g.clone(), p.clone(), 0u8..4, prop_oneof![Just(0u32), 1u32..5_000, any::<u32>()])
            .prop_map(|(g, p, ch, timeout_us)| Op::Idle { g, p, ch, timeout_us }),
        12 => prop_oneof![1u64..20_000, 1u64..MAX_ADVANCE_NS].prop_map(Op::Advance),
        4 => (g.clone(), p.clone(), any::<bool>()).prop_map(|(g, p, ctl)| Op::Close { g, p, ctl }),
        1 => g.prop_map(Op::Teardown),
    ]
}

/// One channel of a program.
#[derive(Debug, Clone, Copy)]
struct Chan {
    handle: Handle,
    token: u32,
    /// Entries in its ring (as allocated) and its ring's offset in the memory object.
    entries: u32,
    ring: u64,
    userd: Option<u64>,
    put: u32,
}

/// A valid object tree of one guest process, with the memory its programs run from.
struct Program<'t> {
    /// The process's RM client (its ctl file).
    guest: RmClient<'t>,
    /// Its `/dev/nvidia0` file (opened, never registered).
    dev: Fd,
    client: Handle,
    device: Handle,
    subdevice: Handle,
    vaspace: Handle,
    memory: Handle,
    va: u64,
    tsg: Handle,
    /// A GR TSG (else a copy-engine one).
    graphics: bool,
    channels: Vec<Chan>,
    dma_maps: Vec<u64>,
    closed: bool,
}

impl Program<'_> {
    fn handle(&self, t: Target) -> Handle {
        match t {
            Target::Client => self.client,
            Target::Device => self.device,
            Target::Subdevice => self.subdevice,
            Target::VaSpace => self.vaspace,
            Target::Tsg => self.tsg,
            Target::Channel(i) => self
                .channels
                .get(usize::from(i) % self.channels.len().max(1))
                .map_or(0x5c00_0099, |c| c.handle),
            Target::Memory => self.memory,
            Target::Random(h) => h,
        }
    }
}

fn ok_handle((s, h): (NvStatus, Handle)) -> Option<Handle> {
    (s == NvStatus::OK).then_some(h)
}

/// Builds a tree from `spec`; the parts whose random parameters the driver refuses are left
/// out (the refusal itself is part of what is tested).
fn build<'t>(
    t: &'t CoreTransport<SimBackend>,
    next: &mut u32,
    spec: &TreeSpec,
) -> Option<Program<'t>> {
    let mut g = RmClient::open(t).unwrap();
    let dev = t.open(Node::Device(0)).unwrap();
    let mut h = || {
        *next += 1;
        0x5c00_0000 + *next
    };
    let client = g.alloc_ok(0, 0, 0, class::NV01_ROOT, &[]);
    let device = ok_handle(RmCalls::alloc(
        &mut g,
        client,
        client,
        h(),
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    ))?;
    let subdevice = ok_handle(RmCalls::alloc(
        &mut g,
        client,
        device,
        h(),
        class::NV20_SUBDEVICE_0,
        &[0; 4],
    ))?;
    let vaspace = ok_handle(RmCalls::alloc(
        &mut g,
        client,
        device,
        h(),
        class::FERMI_VASPACE_A,
        NvVaspaceAllocationParameters::default().as_bytes(),
    ))?;
    let mem_class = if spec.vidmem {
        class::NV01_MEMORY_LOCAL_USER
    } else {
        class::NV01_MEMORY_SYSTEM
    };
    let memory = ok_handle(RmCalls::alloc(
        &mut g,
        client,
        device,
        h(),
        mem_class,
        NvMemoryAllocationParams {
            owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
            size: MEM_SIZE,
            ..Default::default()
        }
        .as_bytes(),
    ))?;
    let (ret, m46) = g
        .ioctl_raw(
            g.ctl(),
            Escape::RM_MAP_MEMORY_DMA,
            &Nvos46Parameters {
                hClient: client,
                hDevice: device,
                hDma: vaspace,
                hMemory: memory,
                length: MEM_SIZE,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((ret, NvStatus(m46.status)), (0, NvStatus::OK));
    let va = m46.dmaOffset;
    let engine_type = match spec.engine {
        0 => NV2080_ENGINE_TYPE_GR0,
        n @ 1..=4 => NV2080_ENGINE_TYPE_COPY0 + u32::from(n) - 1,
        _ => NV2080_ENGINE_TYPE_COPY0 + 7,
    };
    let tsg = ok_handle(RmCalls::alloc(
        &mut g,
        client,
        device,
        h(),
        class::KEPLER_CHANNEL_GROUP_A,
        NvChannelGroupAllocationParameters {
            hVASpace: vaspace,
            engineType: engine_type,
            ..Default::default()
        }
        .as_bytes(),
    ));
    let mut prog = Program {
        guest: g,
        dev,
        client,
        device,
        subdevice,
        vaspace,
        memory,
        va,
        tsg: tsg.unwrap_or(0x5c00_00ff),
        graphics: spec.engine == 0,
        channels: Vec::new(),
        dma_maps: vec![va],
        closed: false,
    };
    let Some(tsg) = tsg else {
        return Some(prog);
    };
    let g = &mut prog.guest;
    let ctxshare = ok_handle(RmCalls::alloc(
        g,
        client,
        tsg,
        h(),
        class::FERMI_CONTEXT_SHARE_A,
        NvCtxshareAllocationParameters {
            hVASpace: vaspace,
            ..Default::default()
        }
        .as_bytes(),
    ))
    .unwrap_or(0);
    for i in 0..u64::from(spec.channels) {
        let ring = RING_AT + i * 0x1000;
        let userd = spec.userd_in_mem.then_some(USERD_AT + i * 0x200);
        let mut p = NvChannelAllocParams {
            gpFifoOffset: (va + ring).wrapping_add(spec.ring_offset_jitter),
            gpFifoEntries: spec.gp_entries,
            hContextShare: ctxshare,
            ..Default::default()
        };
        if let Some(u) = userd {
            p.hUserdMemory[0] = memory;
            p.userdOffset[0] = u;
        }
        let Some(ch) = ok_handle(RmCalls::alloc(
            g,
            client,
            tsg,
            h(),
            class::HOPPER_CHANNEL_GPFIFO_A,
            p.as_bytes(),
        )) else {
            continue;
        };
        let (obj_class, obj_params) = if spec.engine == 0 {
            (
                class::HOPPER_COMPUTE_A,
                NvGrAllocationParameters::default().as_bytes().to_vec(),
            )
        } else {
            (
                class::HOPPER_DMA_COPY_A,
                Nvb0b5AllocationParameters::default().as_bytes().to_vec(),
            )
        };
        assert_eq!(
            RmCalls::alloc(g, client, ch, h(), obj_class, &obj_params).0,
            NvStatus::OK
        );
        if spec.copy_on_channel && spec.engine == 0 {
            let _ = RmCalls::alloc(
                g,
                client,
                ch,
                h(),
                class::HOPPER_DMA_COPY_A,
                Nvb0b5AllocationParameters::default().as_bytes(),
            );
        }
        let (s, tok) = RmCalls::control(
            g,
            client,
            ch,
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
        );
        assert_eq!(s, NvStatus::OK);
        prog.channels.push(Chan {
            handle: ch,
            token: tok.workSubmitToken,
            entries: spec.gp_entries,
            ring,
            userd,
            put: 0,
        });
    }
    if spec.schedule {
        let _ = RmCalls::control(
            g,
            client,
            tsg,
            NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
            &NvA06cCtrlGpfifoScheduleParams {
                bEnable: 1,
                ..Default::default()
            },
        );
    }
    Some(prog)
}

/// Encodes a chunk into pushbuffer dwords; `va` is the program memory's GPU address.
fn encode(c: &Chunk, va: u64, out: &mut Vec<u32>) {
    let sem_methods = |out: &mut Vec<u32>, sem: u64, payload: u32| {
        let a = va.wrapping_add(sem);
        out.extend([
            inc_header(0, host::SEM_ADDR_LO, 4),
            a as u32,
            (a >> 32) as u32,
            payload,
            0,
        ]);
    };
    match c {
        Chunk::SetObject(s, class_id) => {
            out.extend([inc_header(*s, host::SET_OBJECT, 1), *class_id])
        }
        Chunk::Release {
            sem,
            payload,
            flags,
        } => {
            sem_methods(out, *sem, *payload);
            out.extend([inc_header(0, host::SEM_EXECUTE, 1), *flags]);
        }
        Chunk::Acquire { sem, payload, op } => {
            sem_methods(out, *sem, *payload);
            out.extend([inc_header(0, host::SEM_EXECUTE, 1), *op]);
        }
        Chunk::Reduction { sem, payload, op } => {
            sem_methods(out, *sem, *payload);
            out.extend([
                inc_header(0, host::SEM_EXECUTE, 1),
                host::sem_op::REDUCTION | (op & !7),
            ]);
        }
        Chunk::Compute(ns) => out.extend([
            inc_header(1, compute::SIM_WORK_NS_LO, 3),
            *ns as u32,
            (*ns >> 32) as u32,
            0,
        ]),
        Chunk::Copy {
            src,
            dst,
            len,
            lines,
            launch,
        } => {
            let (s, d) = (va.wrapping_add(*src), va.wrapping_add(*dst));
            out.extend([
                inc_header(4, copy::OFFSET_IN_UPPER, 8),
                (s >> 32) as u32,
                s as u32,
                (d >> 32) as u32,
                d as u32,
                *len,
                *len,
                *len,
                *lines,
                inc_header(4, copy::LAUNCH_DMA, 1),
                *launch,
            ]);
        }
        Chunk::CopyRelease { sem, payload } => {
            let a = va.wrapping_add(*sem);
            out.extend([
                inc_header(4, copy::SET_SEMAPHORE_A, 3),
                (a >> 32) as u32,
                a as u32,
                *payload,
                inc_header(4, copy::LAUNCH_DMA, 1),
                1 << copy::LAUNCH_SEMAPHORE_SHIFT,
            ]);
        }
        Chunk::Yield => out.extend([inc_header(0, host::YIELD, 1), 0]),
        Chunk::Immediate(m, d) => out.push(immediate_header(m % 8, m & 0x3FFC, *d)),
        Chunk::NonInc(m, d) => {
            out.push(non_inc_header(m % 8, m & 0x3FFC, d.len() as u32));
            out.extend(d);
        }
        Chunk::Raw(w) => out.extend(w),
    }
}

/// The whole fuzzed system: the core over a sim, as the transports of GFIDs 1 and 2, and each
/// guest's programs.
struct World<'t> {
    t: [&'t CoreTransport<SimBackend>; 2],
    progs: [Vec<Program<'t>>; 2],
    next_handle: u32,
    pb_cursor: [u64; 2],
}

impl<'t> World<'t> {
    fn new(t: [&'t CoreTransport<SimBackend>; 2]) -> Self {
        Self {
            t,
            progs: [Vec::new(), Vec::new()],
            next_handle: 0x100,
            pb_cursor: [0; 2],
        }
    }

    /// The core, locked: one guard at a time (a second in the same statement deadlocks).
    fn rm(&self) -> MutexGuard<'t, Rm<SimBackend>> {
        self.t[0].rm()
    }

    /// GFID 1's channels all idle (or faulted): its memory cannot change by itself.
    fn quiescent(&self, gfid: u32) -> bool {
        let gpu = self.rm().backend().gpu();
        let gpu = gpu.lock().unwrap();
        gpu.tsgs()
            .iter()
            .filter(|t| t.gfid == gfid)
            .flat_map(|t| t.channels.clone())
            .all(|c| gpu.channel_idle(c).unwrap_or(true))
    }

    /// GFID 1's semaphore areas, as its client reads them.
    fn semaphores(&mut self, g: u8) -> Vec<Vec<u8>> {
        let gfid = u32::from(g) + 1;
        let targets: Vec<(Handle, Handle)> = self.progs[usize::from(g)]
            .iter()
            .filter(|p| !p.closed)
            .map(|p| (p.client, p.memory))
            .collect();
        targets
            .into_iter()
            .map(|(c, m)| {
                let mut b = vec![0u8; SEM_SIZE as usize];
                let s = self.rm().read_memory(gfid, c, m, SEM_AT, &mut b);
                if s != NvStatus::OK {
                    b.clear();
                }
                b
            })
            .collect()
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Build(g, spec) => {
                let t = self.t[usize::from(*g)];
                if let Some(p) = build(t, &mut self.next_handle, spec) {
                    self.progs[usize::from(*g)].push(p);
                }
            }
            Op::Control {
                g,
                p,
                target,
                params,
            } => self.control(*g, *p, *target, params),
            Op::Free { g, p, target } => {
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let h = prog.handle(*target);
                let (c, d) = (prog.client, prog.device);
                let parent = if h == d || h == c { c } else { d };
                if prog.guest.free_status(c, parent, h).unwrap() == NvStatus::OK && h == c {
                    prog.closed = true;
                }
            }
            Op::Submit {
                g,
                p,
                ch,
                prelude,
                chunks,
                entries,
                put,
                token,
                run_ns,
            } => {
                self.submit(*g, *p, *ch, *prelude, chunks, entries, put, token);
                self.rm().backend().gpu().lock().unwrap().advance(*run_ns);
            }
            Op::CpuWrite {
                g,
                p,
                offset,
                bytes,
            } => {
                let gfid = u32::from(*g) + 1;
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let (c, m) = (prog.client, prog.memory);
                let _ = self.rm().write_memory(gfid, c, m, *offset, bytes);
            }
            Op::MapDma {
                g,
                p,
                offset,
                length,
                fixed,
            } => {
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let arg = Nvos46Parameters {
                    hClient: prog.client,
                    hDevice: prog.device,
                    hDma: prog.vaspace,
                    hMemory: prog.memory,
                    offset: *offset,
                    length: *length,
                    flags: if fixed.is_some() {
                        NVOS46_FLAGS_DMA_OFFSET_FIXED
                    } else {
                        0
                    },
                    dmaOffset: fixed.unwrap_or(0),
                    ..Default::default()
                };
                let (ret, out) = prog
                    .guest
                    .ioctl_raw(prog.guest.ctl(), Escape::RM_MAP_MEMORY_DMA, &arg)
                    .unwrap();
                assert!(ret <= 0);
                if out.status == 0 {
                    prog.dma_maps.push(out.dmaOffset);
                }
            }
            Op::UnmapDma { g, p, va } => {
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let at = va.unwrap_or_else(|| prog.dma_maps.last().copied().unwrap_or(0));
                let arg = Nvos47Parameters {
                    hClient: prog.client,
                    hDevice: prog.device,
                    hDma: prog.vaspace,
                    hMemory: prog.memory,
                    dmaOffset: at,
                    ..Default::default()
                };
                let (ret, out) = prog
                    .guest
                    .ioctl_raw(prog.guest.ctl(), Escape::RM_UNMAP_MEMORY_DMA, &arg)
                    .unwrap();
                assert!(ret <= 0);
                if out.status == 0 {
                    prog.dma_maps.retain(|&v| v != at);
                }
            }
            Op::MapCpu {
                g,
                p,
                target,
                offset,
                length,
            } => {
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let t = self.t[usize::from(*g)];
                let Ok(fd) = t.open(Node::Device(0)) else {
                    return;
                };
                let arg = Nvos33ParametersWithFd {
                    params: Nvos33Parameters {
                        hClient: prog.client,
                        hDevice: prog.device,
                        hMemory: prog.handle(*target),
                        offset: *offset,
                        length: *length,
                        ..Default::default()
                    },
                    fd,
                    _pad: 0,
                };
                let (ret, out) = prog
                    .guest
                    .ioctl_raw(prog.guest.ctl(), Escape::RM_MAP_MEMORY, &arg)
                    .unwrap();
                assert!(ret <= 0);
                if out.params.status == 0 {
                    let un = Nvos34Parameters {
                        hClient: prog.client,
                        hDevice: prog.device,
                        hMemory: prog.handle(*target),
                        pLinearAddress: out.params.pLinearAddress,
                        ..Default::default()
                    };
                    let (ret, _) = prog
                        .guest
                        .ioctl_raw(prog.guest.ctl(), Escape::RM_UNMAP_MEMORY, &un)
                        .unwrap();
                    assert!(ret <= 0);
                }
                t.close(fd).unwrap();
            }
            Op::Idle {
                g,
                p,
                ch,
                timeout_us,
            } => {
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let arg = Nvos30Parameters {
                    hClient: prog.client,
                    hDevice: prog.device,
                    hChannel: prog.handle(Target::Channel(*ch)),
                    timeout: *timeout_us,
                    ..Default::default()
                };
                let (ret, _) = prog
                    .guest
                    .ioctl_raw(prog.guest.ctl(), Escape::RM_IDLE_CHANNELS, &arg)
                    .unwrap();
                assert!(ret <= 0);
            }
            Op::Advance(ns) => {
                self.rm().backend().gpu().lock().unwrap().advance(*ns);
            }
            Op::Close { g, p, ctl } => {
                let t = self.t[usize::from(*g)];
                let Some(prog) = pick(&mut self.progs[usize::from(*g)], *p) else {
                    return;
                };
                let fd = if *ctl { prog.guest.ctl() } else { prog.dev };
                // Closing the ctl fd frees the clients allocated through it.
                if t.close(fd).is_ok() && *ctl {
                    prog.closed = true;
                }
            }
            Op::Teardown(g) => {
                let gfid = u32::from(*g) + 1;
                self.rm().destroy_vgpu(gfid).unwrap();
                assert_eq!(self.rm().object_count(gfid), 0);
                self.rm()
                    .create_vgpu(gfid, VgpuConfig::with_quota(1 << 30))
                    .unwrap();
                self.progs[usize::from(*g)].clear();
            }
        }
    }

    fn control(&mut self, g: u8, p: u8, target: Target, params: &CtrlParams) {
        let other: Vec<(Handle, Handle)> = self.progs[usize::from(1 - g)]
            .iter()
            .flat_map(|p| p.channels.iter().map(|c| (p.client, c.handle)))
            .collect();
        let Some(prog) = pick(&mut self.progs[usize::from(g)], p) else {
            return;
        };
        let object = prog.handle(target);
        let (client, g_) = (prog.client, &mut prog.guest);
        match params {
            CtrlParams::Timeslice(us) => {
                RmCalls::control(
                    g_,
                    client,
                    object,
                    NVA06C_CTRL_CMD_SET_TIMESLICE,
                    &NvA06cCtrlTimesliceParams { timesliceUs: *us },
                );
                RmCalls::control(
                    g_,
                    client,
                    object,
                    NVA06C_CTRL_CMD_GET_TIMESLICE,
                    &NvA06cCtrlTimesliceParams::default(),
                );
            }
            CtrlParams::Interleave(level) => {
                RmCalls::control(
                    g_,
                    client,
                    object,
                    NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
                    &NvA06cCtrlInterleaveLevelParams {
                        tsgInterleaveLevel: *level,
                    },
                );
            }
            CtrlParams::Preempt {
                wait,
                manual,
                timeout_us,
            } => {
                RmCalls::control(
                    g_,
                    client,
                    object,
                    NVA06C_CTRL_CMD_PREEMPT,
                    &NvA06cCtrlPreemptParams {
                        bWait: u8::from(*wait),
                        bManualTimeout: u8::from(*manual),
                        timeoutUs: *timeout_us,
                        ..Default::default()
                    },
                );
            }
            CtrlParams::Schedule(on) => {
                let cmd = if matches!(target, Target::Channel(_)) {
                    NVA06F_CTRL_CMD_GPFIFO_SCHEDULE
                } else {
                    NVA06C_CTRL_CMD_GPFIFO_SCHEDULE
                };
                RmCalls::control(
                    g_,
                    client,
                    object,
                    cmd,
                    &NvA06cCtrlGpfifoScheduleParams {
                        bEnable: u8::from(*on),
                        ..Default::default()
                    },
                );
            }
            CtrlParams::Disable {
                disable,
                rewind,
                only_sched,
                event,
                entries,
                count,
            } => {
                let mut d = Nv2080CtrlFifoDisableChannelsParams {
                    bDisable: u8::from(*disable),
                    bRewindGpPut: u8::from(*rewind),
                    bOnlyDisableScheduling: u8::from(*only_sched),
                    numChannels: count.unwrap_or(entries.len() as u32),
                    pRunlistPreemptEvent: if *event { 0xdead_0000 } else { 0 },
                    ..Default::default()
                };
                for (i, (foreign, k)) in entries.iter().enumerate() {
                    let (c, h) = if *foreign && !other.is_empty() {
                        other[usize::from(*k) % other.len()]
                    } else {
                        (
                            client,
                            prog.channels
                                .get(usize::from(*k) % prog.channels.len().max(1))
                                .map_or(0, |c| c.handle),
                        )
                    };
                    d.hClientList[i] = c;
                    d.hChannelList[i] = h;
                }
                RmCalls::control(
                    g_,
                    client,
                    object,
                    NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
                    &d,
                );
            }
            CtrlParams::Bytes { cmd, size, bytes } => {
                let info = &rm_core::controls::CONTROLS[*cmd];
                let len = (i64::from(info.size) + i64::from(*size)).clamp(0, 0x4000) as usize;
                let mut b = bytes.clone();
                b.resize(len, 0);
                g_.control_bytes(client, object, info.cmd, &mut b);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        g: u8,
        p: u8,
        ch: u8,
        prelude: bool,
        chunks: &[Chunk],
        entries: &[GpSpec],
        put: &PutSpec,
        token: &TokenSpec,
    ) {
        let gfid = u32::from(g) + 1;
        // A live channel of the other vGPU, as the sim knows it.
        let other_token = {
            let gpu = self.rm().backend().gpu();
            let gpu = gpu.lock().unwrap();
            gpu.tsgs()
                .iter()
                .filter(|t| t.gfid == 2 - u32::from(g))
                .flat_map(|t| t.channels.clone())
                .map(|c| c.runlist << 16 | c.chid)
                .next()
        };
        let cursor = self.pb_cursor[usize::from(g)];
        let mut rm = self.rm();
        let Some(prog) = pick(&mut self.progs[usize::from(g)], p) else {
            return;
        };
        let n = prog.channels.len();
        let Some(chan) = prog.channels.get_mut(usize::from(ch) % n.max(1)) else {
            return;
        };
        let (c, m, va) = (prog.client, prog.memory, prog.va);
        // The prelude binds what the engine hosts: compute (GR only) on subchannel 1, copy on 4.
        let mut words = if prelude {
            let mut w = vec![inc_header(4, host::SET_OBJECT, 1), class::HOPPER_DMA_COPY_A];
            if prog.graphics {
                w.extend([inc_header(1, host::SET_OBJECT, 1), class::HOPPER_COMPUTE_A]);
            }
            w
        } else {
            Vec::new()
        };
        for k in chunks {
            // With the prelude the submission is meant to run: no compute on a copy engine.
            if !(prelude && !prog.graphics && matches!(k, Chunk::Compute(_))) {
                encode(k, va, &mut words);
            }
        }
        let pb = PB_AT + cursor % (PB_SIZE / 2);
        let _ = rm.write_memory(gfid, c, m, pb, words.as_bytes());
        let pb_dwords = words.len() as u32;
        for e in entries {
            let raw = match e {
                GpSpec::Whole => GpEntry::encode(va + pb, pb_dwords),
                GpSpec::Segment(start, len) => {
                    let start = start % (pb_dwords + 1);
                    let len = if *len == 0x1F_FFFF {
                        *len
                    } else {
                        len.min(&(pb_dwords - start)).max(&1).to_owned()
                    };
                    GpEntry::encode(va + pb + u64::from(start) * 4, len)
                }
                GpSpec::Raw(r) => *r,
            };
            let slot = u64::from(chan.put % chan.entries.max(1));
            let _ = rm.write_memory(gfid, c, m, chan.ring + slot * 8, &raw.to_le_bytes());
            chan.put = chan.put.wrapping_add(1) % chan.entries.max(1);
        }
        let put_v = match put {
            PutSpec::Advance(0) => chan.put,
            PutSpec::Advance(k) => (chan.put + k - 1) % chan.entries.max(1),
            PutSpec::Raw(v) => *v,
        };
        // A channel without USERD memory of its own has no GP_PUT the guest can reach; its
        // doorbell still rings.
        if let Some(u) = chan.userd {
            let _ = rm.write_memory(gfid, c, m, u + userd::GP_PUT, &put_v.to_le_bytes());
        }
        let t = match token {
            TokenSpec::Own => chan.token,
            TokenSpec::OtherGfid => other_token.unwrap_or(chan.token ^ 1),
            TokenSpec::Raw(v) => *v,
        };
        let s = rm.doorbell(gfid, t);
        if matches!(token, TokenSpec::OtherGfid) && other_token.is_some() {
            assert_ne!(s, NvStatus::OK, "GFID {gfid} rang a foreign channel");
        }
        self.pb_cursor[usize::from(g)] = cursor + words.len() as u64 * 4;
    }

    /// Asserts everything the world must satisfy after a step.
    fn check(&mut self) {
        let rm = self.rm();
        assert_eq!(
            rm.backend().object_count(),
            rm.total_objects(),
            "core and sim disagree on live objects"
        );
    }
}

/// Program `p` (modulo the number of them) of a guest, unless its client is gone.
fn pick<'a, 't>(list: &'a mut [Program<'t>], p: u8) -> Option<&'a mut Program<'t>> {
    let n = list.len();
    list.get_mut(usize::from(p) % n.max(1))
        .filter(|p| !p.closed)
}

/// Runs `ops` on a fresh world, checking the invariants after every step and the teardown at
/// the end.
fn run(ops: &[Op]) {
    let t1 = CoreTransport::new(sim(), 1, VgpuConfig::with_quota(1 << 30)).unwrap();
    let t2 = t1.another(2, VgpuConfig::with_quota(1 << 30)).unwrap();
    let mut w = World::new([&t1, &t2]);
    let bound = {
        let gpu = w.rm().backend().gpu();
        let gpu = gpu.lock().unwrap();
        let runlists = u64::from(gpu.runlist_count());
        let windows = MAX_ADVANCE_NS / gpu.timing().sync_quantum_ns + 1;
        // One wait may spend a call's budget and overshoot by one more run of every runlist.
        BUDGET * (runlists + 2) + 4 * windows
    };
    for op in ops {
        let victim_watch = op.gfid() == Some(2);
        let before = victim_watch.then(|| {
            let quiet = w.quiescent(1);
            let now = w.rm().backend().gpu().lock().unwrap().now_ns();
            let count = w.rm().object_count(1);
            (count, quiet, now, w.semaphores(0))
        });
        let work0 = w.rm().backend().gpu().lock().unwrap().host_work_units();
        w.step(op);
        let (work1, now1) = {
            let gpu = w.rm().backend().gpu();
            let gpu = gpu.lock().unwrap();
            (gpu.host_work_units(), gpu.now_ns())
        };
        assert!(
            work1 - work0 <= bound,
            "step did {} units of sim work (bound {bound}): {op:?}",
            work1 - work0
        );
        w.check();
        if let Some((count, quiet, now0, sems)) = before {
            assert_eq!(
                w.rm().object_count(1),
                count,
                "GFID 2 changed GFID 1's objects: {op:?}"
            );
            if quiet || now0 == now1 {
                assert_eq!(
                    w.semaphores(0),
                    sems,
                    "GFID 2 changed GFID 1's memory: {op:?}"
                );
            }
        }
    }
    w.rm().destroy_vgpu(1).unwrap();
    w.rm().destroy_vgpu(2).unwrap();
    assert_eq!(w.rm().total_objects(), 0);
    assert_eq!(w.rm().backend().object_count(), 0);
    let gpu = w.rm().backend().gpu();
    let gpu = gpu.lock().unwrap();
    assert_eq!(
        (
            gpu.tsg_count(),
            gpu.channel_count(),
            gpu.vaspace_count(),
            gpu.memory().len()
        ),
        (0, 0, 0, 0),
        "the sim holds TSGs, channels, VA spaces or memory after teardown"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sim_survives_hostile_guests_and_keeps_them_apart(ops in prop::collection::vec(op(), 1..100)) {
        run(&ops);
    }
}

/// The same steps from a fixed seed, many more of them (run with `--ignored`).
#[test]
#[ignore = "long run: cargo test -p rm-sim --release --test fuzz_sim -- --ignored"]
fn long_deterministic_run() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(op(), 400..600);
    for _ in 0..200 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        run(&ops);
    }
}
