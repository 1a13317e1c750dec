//! Replays every `RM_CONTROL` of the vecadd trace (CUDA's start-up and run on a real H200, with
//! the real params as the trace recorded them) against the sim backend through the dispatcher.
//!
//! The trace's objects are mapped by class onto one tree built on the sim (client, device,
//! subdevice, VA space, GR and copy TSGs, context share, channels, compute and copy objects,
//! video and system memory, usermode page); handles inside params are rewritten the same way.
//! Embedded pointers keep their recorded values and land in a sparse guest memory.
//!
//! The oracle is the real driver: every control it answered `NV_OK` must be answered `NV_OK`
//! here, or be refused the way the control table says (`NV_ERR_NOT_SUPPORTED` for a rejected
//! row, `NV_ERR_INSUFFICIENT_PERMISSIONS` for a denied one); never an argument or size error on
//! a valid real input. A refusal is a *difference from the driver*, reported as such with the
//! table's reason, not conformance. The controls a CUDA context needs must be answered, and
//! those whose answer depends only on what the vGPU is configured to be must be answered byte
//! for byte as the H200 answered.

use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::Nvos54Parameters;
use rm_abi::{class, read_struct, Handle, NvStatus};
use rm_core::controls::{control_info, unmodelled_info_index, Handling};
use rm_core::testing::rm_client::RmClient;
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::{full_tree, RmCalls};
use rm_core::vgpu::VgpuConfig;
use rm_core::{GuestMemory, GuestMemoryFault, Rm};
use rm_sim::{SimBackend, SimConfig};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use zerocopy::IntoBytes;

const GFID: u32 = 5;
/// The GPU id the traced H200 had (its attached-ids answer); the vGPU is configured with it.
const TRACE_GPU_ID: u32 = 6;
const ARG: u64 = 0x1000;
const PAGE: u64 = 4096;

/// Controls whose answer depends only on what the vGPU is configured to be (its GPU id) and on
/// what the sim lacks (MIG, SLI, boost groups, host-interface bugs, compute-mode rules), so the
/// sim must answer them byte for byte as the traced H200 did. (`GPU_GET_ID_INFO[_V2]` are not
/// here: their `gpuFlags` IN_USE bit changes once the trace allocates a device, and this
/// replay's tree exists from the start.)
const EXACT: &[u32] = &[
    NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS,
    NV0000_CTRL_CMD_GPU_ATTACH_IDS,
    NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS,
    NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO,
    NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES,
    NV0080_CTRL_CMD_HOST_GET_CAPS_V2,
    NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES,
    NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG,
    NV2080_CTRL_CMD_GR_GET_GPC_MASK,
    NV2080_CTRL_CMD_GR_GET_TPC_MASK,
    NV2080_CTRL_CMD_GR_GET_CAPS_V2,
];

/// Guest memory where every address exists (zero until written), so the trace's recorded
/// pointers (stack and heap addresses of the traced process) can be followed.
#[derive(Default)]
struct SparseMemory(BTreeMap<u64, Box<[u8; PAGE as usize]>>);

impl GuestMemory for SparseMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        addr.checked_add(buf.len() as u64).ok_or(GuestMemoryFault {
            addr,
            len: buf.len(),
        })?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            *b = self
                .0
                .get(&(a / PAGE))
                .map_or(0, |p| p[(a % PAGE) as usize]);
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        addr.checked_add(data.len() as u64)
            .ok_or(GuestMemoryFault {
                addr,
                len: data.len(),
            })?;
        for (i, &b) in data.iter().enumerate() {
            let a = addr + i as u64;
            self.0
                .entry(a / PAGE)
                .or_insert_with(|| Box::new([0; PAGE as usize]))[(a % PAGE) as usize] = b;
        }
        Ok(())
    }
}

/// One `RM_CONTROL` of the trace.
struct TracedControl {
    seq: u64,
    args: Nvos54Parameters,
    status: u32,
    params: Vec<u8>,
    p_out: Vec<u8>,
}

/// An object the trace allocated.
#[derive(Clone, Copy)]
struct TracedObject {
    class: u32,
    parent: Handle,
}

/// The trace's controls in order, and every object it allocated (clients too).
fn read_trace(path: &PathBuf) -> (Vec<TracedControl>, HashMap<Handle, TracedObject>) {
    let file = std::fs::File::open(path).unwrap();
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let hex = |v: &serde_json::Value| -> Vec<u8> {
        let s = v.as_str().unwrap_or("");
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let mut controls = Vec::new();
    let mut classes = HashMap::new();
    for line in lines {
        let r: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if r["op"] != "ioctl" || r["dev"] == "nvidia-uvm" {
            continue;
        }
        let out = hex(&r["out"]);
        match r["nr"].as_u64() {
            Some(0x2b) if out.len() == 48 && u32_at(&out, 40) == 0 => {
                let object = TracedObject {
                    class: u32_at(&out, 12),
                    parent: u32_at(&out, 4),
                };
                classes.insert(u32_at(&out, 8), object);
            }
            Some(0x2a) => controls.push(TracedControl {
                seq: r["seq"].as_u64().unwrap(),
                args: read_struct(&hex(&r["in"])).unwrap(),
                status: u32_at(&out, 28),
                params: hex(&r["p_in"]),
                p_out: hex(&r["p_out"]),
            }),
            _ => {}
        }
    }
    (controls, classes)
}

/// Our tree on the sim: one object per class the core models.
fn sim_tree(c: &mut RmClient<'_>) -> HashMap<u32, Handle> {
    let t = full_tree(c);
    let sysmem = c.alloc_ok(
        t.client,
        t.device,
        0x5c00_0100,
        class::NV01_MEMORY_SYSTEM,
        NvMemoryAllocationParams {
            owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
            size: 0x1_0000,
            ..Default::default()
        }
        .as_bytes(),
    );
    // A copy object on the GR channel, as CUDA makes one next to its compute object.
    let gr_copy = c.alloc_ok(
        t.client,
        t.channel,
        0x5c00_0102,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters::default().as_bytes(),
    );
    let usermode = c.alloc_ok(
        t.client,
        t.subdevice,
        0x5c00_0101,
        class::HOPPER_USERMODE_A,
        NvHopperUsermodeAParams::default().as_bytes(),
    );
    HashMap::from([
        (class::NV01_ROOT_CLIENT, t.client),
        (class::NV01_DEVICE_0, t.device),
        (class::NV20_SUBDEVICE_0, t.subdevice),
        (class::FERMI_VASPACE_A, t.vaspace),
        (class::KEPLER_CHANNEL_GROUP_A, t.tsg),
        (class::FERMI_CONTEXT_SHARE_A, t.ctxshare),
        (class::NV01_MEMORY_LOCAL_USER, t.userd),
        (class::NV01_MEMORY_SYSTEM, sysmem),
        (class::HOPPER_CHANNEL_GPFIFO_A, t.channel),
        (class::HOPPER_COMPUTE_A, t.compute),
        (class::HOPPER_DMA_COPY_A, gr_copy),
        (class::HOPPER_USERMODE_A, usermode),
    ])
}

/// What a replay found: controls with no object here, outcomes by (control, outcome), the
/// differences from the driver (control, table's reason) with their counts, and the controls
/// answered otherwise than the table says.
struct Replay {
    total: usize,
    skipped: usize,
    outcomes: BTreeMap<(&'static str, &'static str), usize>,
    differences: BTreeMap<(&'static str, &'static str), usize>,
    failures: Vec<String>,
}

impl Replay {
    fn answered(&self, name: &str) -> bool {
        self.outcomes.contains_key(&(name, "answered"))
    }

    /// One line per control the driver answered and the core refused.
    fn render_differences(&self) -> String {
        self.differences
            .iter()
            .map(|((name, why), n)| format!("  {n:>3} x {name}: {why}\n"))
            .collect()
    }
}

/// Replays the controls of the trace fixture `<name>`; `None` when it is absent (outside CI).
fn replay(name: &str) -> Option<Replay> {
    let path = rm_core::testing::traces::trace(name)?;
    let (controls, objects) = read_trace(&path);

    let mut rm = Rm::new(SimBackend::new(SimConfig::default()));
    let fb = rm.gpu_info().fb_bytes;
    rm.create_vgpu(
        GFID,
        VgpuConfig {
            gpu_id: TRACE_GPU_ID,
            ..VgpuConfig::with_quota(fb / 2)
        },
    )
    .unwrap();
    // The vGPU is made above with the trace's GPU id; the transport finds it in place.
    let core = CoreTransport::new(rm, GFID, VgpuConfig::with_quota(0)).unwrap();
    let mut g = RmClient::open(&core).unwrap();
    let ours = sim_tree(&mut g);
    let map = |h: Handle| objects.get(&h).and_then(|o| ours.get(&o.class)).copied();
    // The trace's GR channels (those holding a compute object) are what our one GR channel
    // mirrors exactly; its copy channels ran on copy engines chosen by TSG alloc params that
    // the trace does not record.
    let gr_channels: HashSet<Handle> = objects
        .values()
        .filter(|o| o.class == class::HOPPER_COMPUTE_A)
        .map(|o| o.parent)
        .collect();

    let mut mem = SparseMemory::default();
    let req = IoctlRequest::encode(Escape::RM_CONTROL as u8, 32).unwrap();
    let mut outcomes: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
    let mut differences: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
    let mut skipped = 0;
    let mut failures = Vec::new();
    for c in &controls {
        let info = control_info(c.args.cmd).expect("every traced control is in the table");
        // Controls the real driver refused, or on objects of classes the core does not model
        // (their allocs fail here), have no OK answer to match.
        let target = if c.args.hObject == c.args.hClient {
            Some(ours[&class::NV01_ROOT_CLIENT])
        } else {
            map(c.args.hObject)
        };
        let Some(target) = target.filter(|_| c.status == 0) else {
            skipped += 1;
            continue;
        };
        // Handles inside the params: the trace's objects become ours; a control naming an
        // object of a class the core does not model has nothing to act on here.
        let mut params = c.params.clone();
        let mut names_unmodelled = false;
        for w in params.chunks_exact_mut(4) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            if let Some(h) = map(v) {
                w.copy_from_slice(&h.to_le_bytes());
            } else if objects.contains_key(&v) {
                names_unmodelled = true;
            }
        }
        if names_unmodelled {
            skipped += 1;
            continue;
        }
        let addr = 0x10_0000;
        mem.write(addr, &params).unwrap();
        let args = Nvos54Parameters {
            hClient: ours[&class::NV01_ROOT_CLIENT],
            hObject: target,
            params: if params.is_empty() { 0 } else { addr },
            status: 0,
            ..c.args
        };
        mem.write(ARG, args.as_bytes()).unwrap();
        assert_eq!(core.rm().ioctl(GFID, g.ctl(), req, ARG, &mut mem), 0);
        let mut out = [0u8; 32];
        mem.read(ARG, &mut out).unwrap();
        let status = NvStatus(read_struct::<Nvos54Parameters>(&out).unwrap().status);
        if status == NvStatus::OK {
            let mut got = vec![0u8; params.len()];
            mem.read(addr, &mut got).unwrap();
            // The engine of an engine object on a GR channel; its handle is ours here.
            let engine_id = c.args.cmd == NV906F_CTRL_GET_CLASS_ENGINEID
                && gr_channels.contains(&c.args.hObject);
            let exact = EXACT.contains(&c.args.cmd);
            if (exact && got != c.p_out) || (engine_id && got.get(4..) != c.p_out.get(4..)) {
                failures.push(format!(
                    "seq {} {}: answer {} differs from the real driver's {}",
                    c.seq,
                    info.name,
                    hex(&got),
                    hex(&c.p_out)
                ));
            }
        }
        let outcome = match (info.handling, status) {
            (Handling::Core(_) | Handling::Backend(..), NvStatus::OK) => "answered",
            (Handling::Rejected(why), NvStatus::ERR_NOT_SUPPORTED)
            | (Handling::Denied(why), NvStatus::ERR_INSUFFICIENT_PERMISSIONS) => {
                *differences.entry((info.name, why)).or_default() += 1;
                "refused"
            }
            // An info list asking an index the sim does not model (e.g. FB bus width, L2 size).
            (Handling::Core(_), NvStatus::ERR_NOT_SUPPORTED)
                if unmodelled_info_index(c.args.cmd, &params).is_some() =>
            {
                *differences
                    .entry((info.name, "an index the sim does not model"))
                    .or_default() += 1;
                "refused"
            }
            _ => {
                failures.push(format!(
                    "seq {} {} ({}): {status:?}",
                    c.seq,
                    info.name,
                    info.handling.kind()
                ));
                continue;
            }
        };
        *outcomes.entry((info.name, outcome)).or_default() += 1;
    }
    Some(Replay {
        total: controls.len(),
        skipped,
        outcomes,
        differences,
        failures,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Controls CUDA's context creation reads and uses: each must be answered.
const CUDA_NEEDS: &[&str] = &[
    "NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS",
    "NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO",
    "NV0080_CTRL_CMD_HOST_GET_CAPS_V2",
    "NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST",
    "NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES",
    "NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG",
    "NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION",
    "NV0000_CTRL_CMD_GPU_GET_ID_INFO",
    "NV2080_CTRL_CMD_GPU_GET_GID_INFO",
    "NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN",
    "NV906F_CTRL_GET_CLASS_ENGINEID",
    "NV2080_CTRL_CMD_GR_GET_GPC_MASK",
    "NV2080_CTRL_CMD_GR_GET_TPC_MASK",
    "NV2080_CTRL_CMD_GR_GET_CAPS_V2",
];

#[test]
fn vecadd_controls_match_the_driver_or_are_reported_as_differences() {
    let Some(r) = replay("vecadd") else { return };
    assert!(r.total > 150, "the vecadd trace holds 197 controls");
    assert!(r.failures.is_empty(), "{:#?}", r.failures);
    let refused: usize = r.differences.values().sum();
    eprintln!(
        "vecadd: {} controls, {} skipped, {} answered, {refused} refused where the driver \
         answered (differences from the driver):\n{}",
        r.total,
        r.skipped,
        r.outcomes
            .iter()
            .filter(|((_, o), _)| *o == "answered")
            .map(|(_, n)| n)
            .sum::<usize>(),
        r.render_differences()
    );
    // Nearly every control reached an object here, and what the core now answers was answered.
    assert!(r.skipped < 20, "{} of {} skipped", r.skipped, r.total);
    for name in CUDA_NEEDS {
        assert!(r.answered(name), "{name} not answered: {:#?}", r.outcomes);
    }
}

#[test]
fn the_other_traces_controls_match_the_driver_or_are_reported_as_differences() {
    for name in ["spin", "smi", "smiq"] {
        let Some(r) = replay(name) else { continue };
        assert!(r.failures.is_empty(), "{name}: {:#?}", r.failures);
        assert!(
            r.outcomes.values().sum::<usize>() > 0,
            "{name}: nothing replayed"
        );
        eprintln!("{name} differences:\n{}", r.render_differences());
    }
}
