//! Tests of [`NvidiaBackend`] without a GPU: a driver that answers the identity controls with
//! what the H200's driver answered (the shared traces and the GR probe), keeps the object tree
//! it was asked to build, and checks the node rules the real driver enforces. Test device files
//! are plain files, so mmaps (the usermode doorbell page) work and can be read back.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rm_abi::alloc_params::{Nv0080AllocParameters, NvChannelAllocParams, NvMemoryAllocationParams};
use rm_abi::class;
use rm_abi::ctrl::{
    Nv2080CtrlFifoDisableChannelsParams, NV0000_CTRL_CMD_GPU_ATTACH_IDS,
    NV2080_CTRL_CMD_FB_GET_INFO_V2, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
    NV2080_CTRL_CMD_GR_GET_INFO, NV2080_CTRL_CMD_GR_GET_TPC_MASK,
};
use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A;
use rm_abi::nvos::{
    Nvos00Parameters, Nvos02ParametersWithFd, Nvos21Parameters, Nvos33ParametersWithFd,
    Nvos46Parameters, Nvos47Parameters, Nvos54Parameters,
};
use rm_abi::{userd, Handle, NvStatus};
use rm_core::backend::{AllocRequest, Backend, ExternalPages, PageSource};
use rm_core::testing::traces;
use zerocopy::{FromBytes, IntoBytes};

use super::backend::{DeviceFiles, NvidiaBackend};
use super::driver::{NvDriver, EINVAL};

/// What the H200's driver answered each control, by command (and TPC masks by GPC).
#[derive(Default)]
struct Answers {
    by_cmd: HashMap<u32, Vec<u8>>,
    tpc: HashMap<u32, Vec<u8>>,
    fb: HashMap<u32, u32>,
    gr_info: HashMap<u32, u32>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl Answers {
    fn load() -> Option<Answers> {
        let mut a = Answers::default();
        let path = traces::trace("vecadd")?;
        let r = BufReader::new(flate2::read::GzDecoder::new(File::open(path).unwrap()));
        for line in r.lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if v["nr"] != 42 || v["p_out"].is_null() {
                continue;
            }
            let cmd = u32_at(&hex(v["in"].as_str().unwrap()), 8);
            let (p_in, p_out) = (
                hex(v["p_in"].as_str().unwrap()),
                hex(v["p_out"].as_str().unwrap()),
            );
            match cmd {
                NV2080_CTRL_CMD_GR_GET_TPC_MASK => {
                    a.tpc.insert(u32_at(&p_in, 16), p_out);
                }
                NV2080_CTRL_CMD_FB_GET_INFO_V2 => {
                    for i in 0..u32_at(&p_out, 0) as usize {
                        a.fb.insert(u32_at(&p_out, 4 + 8 * i), u32_at(&p_out, 8 + 8 * i));
                    }
                }
                _ => {
                    a.by_cmd.entry(cmd).or_insert(p_out);
                }
            }
        }
        let probe = traces::h200_probe("gr-probe.json")?;
        let probe: serde_json::Value =
            serde_json::from_slice(&std::fs::read(probe).unwrap()).unwrap();
        for pair in probe["gr_info"].as_array().unwrap() {
            a.gr_info.insert(
                pair[0].as_u64().unwrap() as u32,
                pair[1].as_u64().unwrap() as u32,
            );
        }
        Some(a)
    }
}

/// What the fake driver saw and holds.
#[derive(Default)]
struct Rm {
    /// Live objects per driver client.
    objects: HashMap<Handle, BTreeSet<Handle>>,
    /// Which ctl file each client was allocated on.
    client_file: HashMap<Handle, String>,
    /// Device file name -> the ctl file it was registered to.
    registered: HashMap<String, String>,
    next_client: Handle,
    /// (escape, client) of every call.
    calls: Vec<(Escape, Handle)>,
    /// `pMemory` and `limit` of OS descriptors.
    os_descriptors: Vec<(u64, u64)>,
    /// `hClientList` of DISABLE_CHANNELS calls.
    disabled_clients: Vec<Handle>,
    /// Class of every live object, by (client, object).
    classes: HashMap<(Handle, Handle), u32>,
    /// Virtual ranges handed out (their base VAs).
    next_range: u64,
}

#[derive(Clone)]
struct FakeDriver {
    answers: Arc<Answers>,
    rm: Arc<Mutex<Rm>>,
}

/// The file name behind `fd` (`ctl-N` or `gpu-N`).
fn file_name(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl FakeDriver {
    fn control(&self, p: &mut Nvos54Parameters) -> NvStatus {
        let rm = self.rm.lock().unwrap();
        if !rm
            .objects
            .get(&p.hClient)
            .is_some_and(|o| o.contains(&p.hObject))
        {
            return NvStatus::ERR_INVALID_OBJECT_HANDLE;
        }
        drop(rm);
        // SAFETY: the backend passes its own params buffer of `paramsSize` bytes.
        let params =
            unsafe { std::slice::from_raw_parts_mut(p.params as *mut u8, p.paramsSize as usize) };
        let a = &self.answers;
        match p.cmd {
            NV0000_CTRL_CMD_GPU_ATTACH_IDS => NvStatus::OK,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS => {
                let d = Nv2080CtrlFifoDisableChannelsParams::read_from_prefix(params)
                    .unwrap()
                    .0;
                let n = d.numChannels as usize;
                self.rm
                    .lock()
                    .unwrap()
                    .disabled_clients
                    .extend_from_slice(&d.hClientList[..n]);
                NvStatus::OK
            }
            NV2080_CTRL_CMD_GR_GET_TPC_MASK => match a.tpc.get(&u32_at(params, 16)) {
                Some(out) => {
                    params.copy_from_slice(out);
                    NvStatus::OK
                }
                None => NvStatus::ERR_INVALID_ARGUMENT,
            },
            NV2080_CTRL_CMD_FB_GET_INFO_V2 => {
                for i in 0..u32_at(params, 0) as usize {
                    let index = u32_at(params, 4 + 8 * i);
                    let Some(&v) = a.fb.get(&index) else {
                        return NvStatus::ERR_INVALID_ARGUMENT;
                    };
                    params[8 + 8 * i..12 + 8 * i].copy_from_slice(&v.to_le_bytes());
                }
                NvStatus::OK
            }
            NV2080_CTRL_CMD_GR_GET_INFO => {
                let n = u32_at(params, 0) as usize;
                let list = u64::from_le_bytes(params[8..16].try_into().unwrap()) as *mut u32;
                for i in 0..n {
                    // SAFETY: the backend's own `{index, data}` list of `n` entries.
                    let (index, data) = unsafe { (list.add(2 * i), list.add(2 * i + 1)) };
                    // SAFETY: as above.
                    match a.gr_info.get(&unsafe { index.read() }) {
                        // SAFETY: as above.
                        Some(&v) => unsafe { data.write(v) },
                        None => return NvStatus::ERR_INVALID_ARGUMENT,
                    }
                }
                NvStatus::OK
            }
            cmd => match a.by_cmd.get(&cmd) {
                Some(out) if out.len() == params.len() => {
                    params.copy_from_slice(out);
                    NvStatus::OK
                }
                _ => NvStatus::ERR_NOT_SUPPORTED,
            },
        }
    }

    fn alloc(&self, fd: i32, p: &mut Nvos21Parameters) -> NvStatus {
        let mut rm = self.rm.lock().unwrap();
        if p.hClass == class::NV01_ROOT_CLIENT {
            rm.next_client += 1;
            let h = 0xC1D0_0000 + rm.next_client;
            p.hObjectNew = h;
            rm.objects.insert(h, BTreeSet::from([h]));
            rm.client_file.insert(h, file_name(fd));
            return NvStatus::OK;
        }
        if rm.client_file.get(&p.hRoot) != Some(&file_name(fd)) {
            return NvStatus::ERR_INVALID_CLIENT;
        }
        let Some(objects) = rm.objects.get_mut(&p.hRoot) else {
            return NvStatus::ERR_INVALID_CLIENT;
        };
        if !objects.contains(&p.hObjectParent) {
            return NvStatus::ERR_INVALID_OBJECT_PARENT;
        }
        if !objects.insert(p.hObjectNew) {
            return NvStatus::ERR_INSERT_DUPLICATE_NAME;
        }
        // A device whose VA spaces are not its own client's would share the GPU's global one.
        if p.hClass == class::NV01_DEVICE_0 {
            // SAFETY: the backend passes its device params.
            let params = unsafe {
                std::slice::from_raw_parts(p.pAllocParms as *const u8, p.paramsSize as usize)
            };
            let d = Nv0080AllocParameters::read_from_prefix(params).unwrap().0;
            if d.hClientShare != p.hRoot {
                rm.objects.get_mut(&p.hRoot).unwrap().remove(&p.hObjectNew);
                return NvStatus::ERR_INVALID_ARGUMENT;
            }
        }
        // The driver lets a client have a device only while the GPU's file is open and
        // registered to the client's ctl file (measured on the H200).
        let ctl = rm.client_file[&p.hRoot].clone();
        if p.hClass == class::NV01_DEVICE_0 && !rm.registered.values().any(|c| *c == ctl) {
            rm.objects.get_mut(&p.hRoot).unwrap().remove(&p.hObjectNew);
            return NvStatus::ERR_INSUFFICIENT_PERMISSIONS;
        }
        if p.hClass == 0x50A0 {
            // SAFETY: the backend passes its NV_MEMORY_ALLOCATION_PARAMS for a virtual range.
            let params = unsafe {
                std::slice::from_raw_parts_mut(p.pAllocParms as *mut u8, p.paramsSize as usize)
            };
            let range = NvMemoryAllocationParams::mut_from_bytes(params).unwrap();
            rm.next_range += 1;
            range.offset = 0x10_0000_0000 * rm.next_range;
        }
        rm.classes.insert((p.hRoot, p.hObjectNew), p.hClass);
        NvStatus::OK
    }
}

impl NvDriver for FakeDriver {
    unsafe fn ioctl(&self, fd: i32, request: u64, arg: *mut u8) -> Result<i32, i32> {
        let req = IoctlRequest::decode(request as u32);
        let esc = Escape::from_nr(req.nr).ok_or(EINVAL)?;
        // SAFETY: the backend passes a buffer of the escape's size.
        let buf = unsafe { std::slice::from_raw_parts_mut(arg, req.size as usize) };
        let name = file_name(fd);
        let on_ctl = name.starts_with("ctl-");
        match esc {
            Escape::REGISTER_FD => {
                let ctl = file_name(i32::from_le_bytes(buf[..4].try_into().unwrap()));
                self.rm.lock().unwrap().registered.insert(name, ctl);
            }
            Escape::RM_ALLOC_MEMORY => {
                if on_ctl {
                    return Err(EINVAL);
                }
                let p = Nvos02ParametersWithFd::mut_from_bytes(buf).unwrap();
                let mut rm = self.rm.lock().unwrap();
                // The client context of a device file is the ctl file it was registered to.
                if rm.registered.get(&name) != rm.client_file.get(&p.params.hRoot) {
                    p.params.status = NvStatus::ERR_INVALID_CLIENT.0;
                    return Ok(0);
                }
                rm.calls.push((esc, p.params.hRoot));
                rm.os_descriptors.push((p.params.pMemory, p.params.limit));
                let ok = rm
                    .objects
                    .get_mut(&p.params.hRoot)
                    .unwrap()
                    .insert(p.params.hObjectNew);
                p.params.status = if ok {
                    0
                } else {
                    NvStatus::ERR_INSERT_DUPLICATE_NAME.0
                };
            }
            _ if !on_ctl => return Err(EINVAL),
            Escape::RM_ALLOC => {
                let p = Nvos21Parameters::mut_from_bytes(buf).unwrap();
                p.status = self.alloc(fd, p).0;
                self.rm.lock().unwrap().calls.push((esc, p.hRoot));
            }
            Escape::RM_FREE => {
                let p = Nvos00Parameters::mut_from_bytes(buf).unwrap();
                let mut rm = self.rm.lock().unwrap();
                rm.calls.push((esc, p.hRoot));
                let client = p.hRoot;
                if p.hObjectOld == client {
                    rm.classes.retain(|k, _| k.0 != client);
                } else {
                    rm.classes.remove(&(client, p.hObjectOld));
                }
                let gone = if p.hObjectOld == p.hRoot {
                    rm.objects.remove(&p.hRoot).is_some()
                } else {
                    rm.objects
                        .get_mut(&p.hRoot)
                        .is_some_and(|o| o.remove(&p.hObjectOld))
                };
                p.status = if gone {
                    0
                } else {
                    NvStatus::ERR_INVALID_OBJECT_HANDLE.0
                };
            }
            Escape::RM_CONTROL => {
                let p = Nvos54Parameters::mut_from_bytes(buf).unwrap();
                p.status = self.control(p).0;
                self.rm.lock().unwrap().calls.push((esc, p.hClient));
            }
            Escape::RM_MAP_MEMORY_DMA => {
                let p = Nvos46Parameters::mut_from_bytes(buf).unwrap();
                let rm = self.rm.lock().unwrap();
                // The driver maps only into a virtual memory object, not a VA space.
                let into_range = rm.classes.get(&(p.hClient, p.hDma)) == Some(&0x50A0);
                p.status = if into_range {
                    0
                } else {
                    NvStatus::ERR_INVALID_OBJECT_HANDLE.0
                };
                p.dmaOffset = 0x10_0000_0000 * rm.next_range;
            }
            Escape::RM_MAP_MEMORY => {
                let p = Nvos33ParametersWithFd::mut_from_bytes(buf).unwrap();
                p.params.pLinearAddress = 0x7000_0000;
                self.rm.lock().unwrap().calls.push((esc, p.params.hClient));
            }
            _ => {
                let client = u32::from_le_bytes(buf[..4].try_into().unwrap());
                self.rm.lock().unwrap().calls.push((esc, client));
            }
        }
        Ok(0)
    }
}

/// Device files as plain files in a directory: `ctl-N`, `gpu-N` (64 KiB each, so the doorbell
/// page maps).
struct TestFiles {
    dir: PathBuf,
    next: Mutex<u32>,
}

impl TestFiles {
    fn open(&self, kind: &str) -> std::io::Result<File> {
        let mut n = self.next.lock().unwrap();
        let path = self.dir.join(format!("{kind}-{n}"));
        *n += 1;
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.set_len(0x1_0000)?;
        Ok(f)
    }
}

impl DeviceFiles for TestFiles {
    fn open_ctl(&self) -> std::io::Result<File> {
        self.open("ctl")
    }
    fn open_gpu(&self) -> std::io::Result<File> {
        self.open("gpu")
    }
}

struct Rig {
    backend: NvidiaBackend<FakeDriver>,
    rm: Arc<Mutex<Rm>>,
    dir: tempfile::TempDir,
    answers: Arc<Answers>,
}

fn rig() -> Option<Rig> {
    let answers = Arc::new(Answers::load()?);
    let dir = tempfile::tempdir().unwrap();
    let rm = Arc::new(Mutex::new(Rm::default()));
    let driver = FakeDriver {
        answers: answers.clone(),
        rm: rm.clone(),
    };
    let files = TestFiles {
        dir: dir.path().to_path_buf(),
        next: Mutex::new(0),
    };
    let backend = NvidiaBackend::with_driver(driver, Box::new(files)).unwrap();
    Some(Rig {
        backend,
        rm,
        dir,
        answers,
    })
}

/// Host client handles as the core makes them: GFID 1's and GFID 2's first clients.
const CLIENT_G1: Handle = 0xE000_0001;
const CLIENT_G2: Handle = 0xE010_0001;

fn req(gfid: u32, client: Handle, parent: Handle, object: Handle, class: u32) -> AllocRequest {
    AllocRequest {
        gfid,
        client,
        parent,
        object,
        class,
    }
}

#[test]
fn the_gpu_is_described_by_what_the_h200_answered() {
    let Some(r) = rig() else { return };
    let info = r.backend.gpu_info();
    assert_eq!(info.name, "NVIDIA H200");
    assert_eq!((info.pci_vendor_id, info.pci_device_id), (0x10DE, 0x2335));
    assert_eq!(info.architecture, 0x180, "GH100");
    // TOTAL_RAM_SIZE in KiB as the driver reported it: the H200's 143771 MiB.
    assert_eq!(info.fb_bytes, u64::from(r.answers.fb[&0x08]) << 10);
    assert_eq!(info.fb_bytes >> 20, 143_771);
    assert!(info.classes.contains(&HOPPER_CHANNEL_GPFIFO_A) && info.classes.contains(&0xCBC0));
    assert!(info.engines.contains(&1), "GR0");
    assert_eq!(info.gr.tpc_masks.len(), 8, "8 GPCs");
    let tpcs: u32 = info.gr.tpc_masks.iter().map(|m| m.count_ones()).sum();
    assert_eq!(tpcs, 66);
    assert_eq!(info.gr.info.len(), 58);
    assert_eq!(info.gr.info[8], (8, 132), "132 SMs");
    let uuid = &r.answers.by_cmd[&rm_abi::ctrl::NV2080_CTRL_CMD_GPU_GET_GID_INFO];
    assert_eq!(&info.uuid[..], &uuid[12..28]);
}

#[test]
fn guest_clients_become_driver_named_clients_on_their_own_files() {
    let Some(mut r) = rig() else { return };
    let b = &mut r.backend;
    for (gfid, client) in [(1, CLIENT_G1), (2, CLIENT_G2)] {
        assert_eq!(
            b.alloc(
                &req(gfid, client, 0, client, class::NV01_ROOT_CLIENT),
                &mut [0; 4]
            ),
            NvStatus::OK
        );
        let mut dev = Nv0080AllocParameters::default();
        assert_eq!(
            b.alloc(
                &req(gfid, client, client, 0x5c00_0001, class::NV01_DEVICE_0),
                dev.as_mut_bytes()
            ),
            NvStatus::OK
        );
    }
    {
        let rm = r.rm.lock().unwrap();
        // The backend's own client plus one per guest, each on a ctl file of its own.
        assert_eq!(rm.objects.len(), 3);
        let files: BTreeSet<&String> = rm.client_file.values().collect();
        assert_eq!(files.len(), 3);
        assert!(rm.objects.keys().all(|h| h & 0xFFF0_0000 == 0xC1D0_0000));
    }
    // GFID 2 cannot name GFID 1's client, and a parent the driver does not hold is refused
    // by the driver itself.
    assert_eq!(
        b.alloc(
            &req(
                2,
                CLIENT_G1,
                0x5c00_0001,
                0x5c00_0002,
                class::NV20_SUBDEVICE_0
            ),
            &mut [0; 8]
        ),
        NvStatus::ERR_INVALID_CLIENT
    );
    assert_eq!(
        b.alloc(
            &req(
                1,
                CLIENT_G1,
                0x5c00_0099,
                0x5c00_0002,
                class::NV20_SUBDEVICE_0
            ),
            &mut [0; 8]
        ),
        NvStatus::ERR_INVALID_OBJECT_PARENT
    );
    assert_eq!(
        b.alloc(
            &req(
                1,
                CLIENT_G1,
                0x5c00_0001,
                0x5c00_0002,
                class::NV20_SUBDEVICE_0
            ),
            &mut [0; 8]
        ),
        NvStatus::OK
    );
    // DISABLE_CHANNELS names clients: the driver sees its own handles.
    let mut d = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: 1,
        numChannels: 1,
        ..Default::default()
    };
    d.hClientList[0] = CLIENT_G1;
    d.hChannelList[0] = 0x5c00_0010;
    let st = b.control(
        1,
        CLIENT_G1,
        0x5c00_0002,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        d.as_mut_bytes(),
    );
    assert_eq!(st, NvStatus::OK);
    d.hClientList[0] = CLIENT_G2;
    let st = b.control(
        1,
        CLIENT_G1,
        0x5c00_0002,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        d.as_mut_bytes(),
    );
    assert_eq!(
        st,
        NvStatus::ERR_INVALID_CLIENT,
        "a list naming another GFID's client"
    );
    let driver_g1 = *r.rm.lock().unwrap().disabled_clients.first().unwrap();
    assert!(
        driver_g1 & 0xFFF0_0000 == 0xC1D0_0000 && r.rm.lock().unwrap().disabled_clients.len() == 1
    );

    // Tearing down GFID 1 frees its client in the driver; GFID 2 keeps its own.
    b.destroy_vgpu(1);
    assert_eq!(b.client_count(1), 0);
    assert_eq!(b.client_count(2), 1);
    let rm = r.rm.lock().unwrap();
    assert!(!rm.objects.contains_key(&driver_g1));
    assert_eq!(rm.objects.len(), 2);
}

/// A window-like page source over a heap buffer with a stable address.
struct Pages(Mutex<Vec<u8>>, *mut u8);

// SAFETY: the buffer is never resized, so the pointer stays valid; accesses are locked.
unsafe impl Send for Pages {}
// SAFETY: as above.
unsafe impl Sync for Pages {}

impl PageSource for Pages {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        let v = self.0.lock().unwrap();
        let Some(s) = v.get(offset as usize..offset as usize + buf.len()) else {
            return false;
        };
        buf.copy_from_slice(s);
        true
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> bool {
        let mut v = self.0.lock().unwrap();
        let Some(s) = v.get_mut(offset as usize..offset as usize + data.len()) else {
            return false;
        };
        s.copy_from_slice(data);
        true
    }
    fn host_address(&self) -> Option<*mut u8> {
        Some(self.1)
    }
}

#[test]
fn window_pages_become_os_descriptors_and_usermode_doorbells_and_userd_idle_are_real() {
    let Some(mut r) = rig() else { return };
    let b = &mut r.backend;
    assert_eq!(
        b.alloc(
            &req(1, CLIENT_G1, 0, CLIENT_G1, class::NV01_ROOT_CLIENT),
            &mut [0; 4]
        ),
        NvStatus::OK
    );
    let mut dev = Nv0080AllocParameters::default();
    assert_eq!(
        b.alloc(
            &req(1, CLIENT_G1, CLIENT_G1, 0x5c00_0001, class::NV01_DEVICE_0),
            dev.as_mut_bytes()
        ),
        NvStatus::OK
    );
    let mut buf = vec![0u8; 0x4000];
    let base = buf.as_mut_ptr();
    let source = Arc::new(Pages(Mutex::new(buf), base));
    let pages = ExternalPages::new(source.clone(), 0x1000, 0x2000).unwrap();
    let os = req(
        1,
        CLIENT_G1,
        0x5c00_0001,
        0x5c00_0003,
        class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
    );
    assert_eq!(b.alloc_os_descriptor(&os, pages), NvStatus::OK);
    assert_eq!(
        r.rm.lock().unwrap().os_descriptors,
        vec![(base as u64 + 0x1000, 0x1FFF)],
        "the driver pins vgpud's own mapping of those window pages"
    );
    // A GPU mapping of it into a VA space goes through a virtual range of that VA space.
    let vas = req(
        1,
        CLIENT_G1,
        0x5c00_0001,
        0x5c00_0002,
        class::FERMI_VASPACE_A,
    );
    assert_eq!(b.alloc(&vas, &mut [0u8; 64]), NvStatus::OK);
    let mut m = Nvos46Parameters {
        hClient: CLIENT_G1,
        hDevice: 0x5c00_0001,
        hDma: 0x5c00_0002,
        hMemory: 0x5c00_0003,
        length: 0x2000,
        ..Default::default()
    };
    assert_eq!(b.map_memory_dma(1, &mut m), NvStatus::OK);
    assert_eq!(m.dmaOffset, 0x10_0000_0000, "the range's base");
    let fake = r.rm.clone();
    let ranges = || {
        fake.lock()
            .unwrap()
            .classes
            .values()
            .filter(|&&c| c == 0x50A0)
            .count()
    };
    assert_eq!(ranges(), 1);
    let mut u = Nvos47Parameters {
        hClient: CLIENT_G1,
        hDevice: 0x5c00_0001,
        hDma: 0x5c00_0002,
        hMemory: 0x5c00_0003,
        dmaOffset: m.dmaOffset,
        ..Default::default()
    };
    assert_eq!(b.unmap_memory_dma(1, &mut u), NvStatus::OK);
    assert_eq!(ranges(), 0, "the range is freed with its mapping");
    assert_eq!(
        b.unmap_memory_dma(1, &mut u),
        NvStatus::ERR_INVALID_ARGUMENT,
        "twice"
    );
    // A channel whose USERD is in that memory: idle is read from GP_GET and GP_PUT there.
    let mut ch = NvChannelAllocParams::default();
    ch.hUserdMemory[0] = 0x5c00_0003;
    ch.userdOffset[0] = 0x200;
    let chan = req(
        1,
        CLIENT_G1,
        0x5c00_0001,
        0x5c00_0004,
        HOPPER_CHANNEL_GPFIFO_A,
    );
    assert_eq!(b.alloc(&chan, ch.as_mut_bytes()), NvStatus::OK);
    let userd_at = 0x1000 + 0x200;
    source.write_at(userd_at + userd::GP_PUT, &5u32.to_le_bytes());
    assert_eq!(
        b.idle_channel(1, CLIENT_G1, 0x5c00_0004, 0),
        NvStatus::ERR_BUSY_RETRY
    );
    source.write_at(userd_at + userd::GP_GET, &5u32.to_le_bytes());
    assert_eq!(b.idle_channel(1, CLIENT_G1, 0x5c00_0004, 0), NvStatus::OK);
    assert_eq!(
        b.idle_channel(1, CLIENT_G1, 0x5c00_0099, 0),
        NvStatus::ERR_NOT_SUPPORTED
    );

    // The doorbell goes to NOTIFY_CHANNEL_PENDING of the page the backend mapped (its second
    // GPU file; the first stays open for its client).
    assert_eq!(b.doorbell(1, 0x0001_0007), NvStatus::OK);
    let page = std::fs::read(r.dir.path().join("gpu-2")).unwrap();
    assert_eq!(u32_at(&page, 0x90), 0x0001_0007);

    // Freed, the OS descriptor is forgotten: its USERD no longer reads.
    assert_eq!(b.free(1, CLIENT_G1, 0x5c00_0004), NvStatus::OK);
    assert_eq!(b.free(1, CLIENT_G1, 0x5c00_0003), NvStatus::OK);
    assert_eq!(
        b.idle_channel(1, CLIENT_G1, 0x5c00_0004, 0),
        NvStatus::ERR_NOT_SUPPORTED
    );
    assert_eq!(b.free(1, CLIENT_G1, CLIENT_G1), NvStatus::OK);
    assert_eq!(b.client_count(1), 0);
}
