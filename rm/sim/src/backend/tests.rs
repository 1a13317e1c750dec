//! Unit tests that span escape kinds: a GPU program's whole life (allocations, controls,
//! mappings, work, teardown), isolation between GFIDs, and RM errors for bad parameters.

use super::fixtures::*;
use super::SimBackend;
use crate::engine::{NV2080_ENGINE_TYPE_COPY0, NV2080_ENGINE_TYPE_GR0};
use crate::userd;
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvCtxshareAllocationParameters, Nvb0b5AllocationParameters,
};
use rm_abi::class;
use rm_abi::ctrl::*;
use rm_abi::methods::{
    host, HOPPER_CHANNEL_GPFIFO_A, HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A, HOPPER_USERMODE_A,
};
use rm_abi::nvos::{
    Nvos33Parameters, Nvos46Parameters, Nvos47Parameters, NVOS46_FLAGS_DMA_OFFSET_FIXED,
};
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::{read_struct, NvStatus};
use rm_core::backend::Backend;
use zerocopy::IntoBytes;

#[test]
fn gpu_program_lifecycle_and_teardown() {
    let mut b = sim();
    let va = base(&mut b, 1, C1);
    ok(tsg(&mut b, 1, C1, TSG, NV2080_ENGINE_TYPE_GR0));
    let (s, out) = alloc(
        &mut b,
        1,
        C1,
        TSG,
        SHARE,
        class::FERMI_CONTEXT_SHARE_A,
        &NvCtxshareAllocationParameters {
            hVASpace: VAS,
            ..Default::default()
        },
    );
    ok(s);
    assert_eq!(
        read_struct::<NvCtxshareAllocationParameters>(&out)
            .unwrap()
            .subctxId,
        0
    );
    ok(memory(
        &mut b,
        1,
        C1,
        NOTIFIER,
        class::NV01_MEMORY_SYSTEM,
        4096,
    ));
    let (s, chid) = channel(&mut b, 1, C1, TSG, CH, va, 0);
    ok(s);
    ok(alloc(&mut b, 1, C1, CH, COMPUTE, HOPPER_COMPUTE_A, &[0u8; 16]).0);
    // A GR channel hosts the copy class too (as CUDA uses it), with any copy engine the
    // GPU has or none named; a compute object never goes on a copy-engine channel.
    assert_eq!(
        alloc(
            &mut b,
            1,
            C1,
            CH,
            COPY,
            HOPPER_DMA_COPY_A,
            &Nvb0b5AllocationParameters {
                version: 0,
                engineType: NV2080_ENGINE_TYPE_GR0,
            },
        )
        .0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    ok(alloc(&mut b, 1, C1, CH, COPY, HOPPER_DMA_COPY_A, &[0u8; 8]).0);
    ok(b.free(1, C1, COPY));
    ok(tsg(&mut b, 1, C1, CE_TSG, NV2080_ENGINE_TYPE_COPY0));
    let (s, _) = channel(&mut b, 1, C1, CE_TSG, CE_CH, va, 0x200);
    ok(s);
    ok(alloc(
        &mut b,
        1,
        C1,
        CE_CH,
        COPY,
        HOPPER_DMA_COPY_A,
        &Nvb0b5AllocationParameters {
            version: 0,
            engineType: NV2080_ENGINE_TYPE_COPY0,
        },
    )
    .0);
    ok(alloc(&mut b, 1, C1, SUB, USERMODE, HOPPER_USERMODE_A, &[0u8; 2]).0);
    let mut m = Nvos33Parameters {
        hClient: C1,
        hDevice: DEV,
        hMemory: USERMODE,
        ..Default::default()
    };
    ok(b.map_memory(1, &mut m));
    assert_ne!(m.pLinearAddress, 0);

    // Controls.
    let (s, tok) = ctrl(
        &mut b,
        1,
        C1,
        CH,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    ok(s);
    assert_eq!(tok.workSubmitToken, chid);
    ok(ctrl(
        &mut b,
        1,
        C1,
        TSG,
        NVA06C_CTRL_CMD_SET_TIMESLICE,
        &NvA06cCtrlTimesliceParams { timesliceUs: 3000 },
    )
    .0);
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_GET_TIMESLICE,
            &NvA06cCtrlTimesliceParams::default()
        )
        .1
        .timesliceUs,
        3000
    );
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
            &NvA06cCtrlInterleaveLevelParams {
                tsgInterleaveLevel: 3
            }
        )
        .0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    ok(ctrl(
        &mut b,
        1,
        C1,
        TSG,
        NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
        &NvA06cCtrlInterleaveLevelParams {
            tsgInterleaveLevel: 2,
        },
    )
    .0);
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL,
            &NvA06cCtrlInterleaveLevelParams::default()
        )
        .0,
        NvStatus::ERR_NOT_SUPPORTED
    );
    ok(ctrl(
        &mut b,
        1,
        C1,
        TSG,
        NVA06C_CTRL_CMD_BIND,
        &NvA06cCtrlBindParams {
            engineType: NV2080_ENGINE_TYPE_GR0,
        },
    )
    .0);
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_BIND,
            &NvA06cCtrlBindParams { engineType: 9 }
        )
        .0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    let tsgid = b.tsg_of(C1, TSG).unwrap().tsgid;
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_GET_INFO,
            &NvA06cCtrlGetInfoParams::default()
        )
        .1
        .tsgID,
        tsgid
    );
    ok(schedule(&mut b, 1, C1, TSG, true));
    {
        let g = b.gpu();
        let g = g.lock().unwrap();
        let slots = g.runlist_slots(0).unwrap();
        assert_eq!(
            (slots[0].gfid, slots[0].timeslice.as_ns() / 1000),
            (1, 2998)
        );
    }

    // Program: pushbuffer at MEM+0x10000 with SET_OBJECT, 50 µs of work, a semaphore
    // release with timestamp to MEM+0x20000; one GPFIFO entry; GP_PUT = 1; doorbell.
    let sem = va + 0x20000;
    let words = [
        inc_header(0, host::SET_OBJECT, 1),
        HOPPER_COMPUTE_A,
        inc_header(0, rm_abi::methods::compute::SIM_WORK_NS_LO, 3),
        50_000,
        0,
        0,
        inc_header(0, host::SEM_ADDR_LO, 4),
        sem as u32,
        (sem >> 32) as u32,
        42,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
    ];
    ok(b.write_memory(1, C1, MEM, 0x10000, words.as_bytes()));
    let entry = GpEntry::encode(va + 0x10000, words.len() as u32);
    ok(b.write_memory(1, C1, MEM, 0x1000, &entry.to_le_bytes()));
    ok(b.write_memory(1, C1, MEM, userd::GP_PUT, &1u32.to_le_bytes()));
    ok(b.doorbell(1, tok.workSubmitToken));
    assert_eq!(
        b.doorbell(2, tok.workSubmitToken),
        NvStatus::ERR_INVALID_ARGUMENT,
        "not gfid 2's channel"
    );
    ok(b.idle_channel(1, C1, CH, 0));
    let mut v = [0u8; 16];
    ok(b.read_memory(1, C1, MEM, 0x20000, &mut v));
    assert_eq!(u32::from_le_bytes(v[0..4].try_into().unwrap()), 42);
    assert!(u64::from_le_bytes(v[8..16].try_into().unwrap()) >= 50_000);
    let mut gp_get = [0u8; 4];
    ok(b.read_memory(1, C1, CH, userd::GP_GET, &mut gp_get));
    assert_eq!(
        u32::from_le_bytes(gp_get),
        1,
        "USERD reachable through the channel handle"
    );
    assert_eq!(
        b.read_memory(1, C1, MEM, (4 << 20) - 2, &mut v),
        NvStatus::ERR_INVALID_OFFSET
    );

    ok(ctrl(
        &mut b,
        1,
        C1,
        TSG,
        NVA06C_CTRL_CMD_PREEMPT,
        &NvA06cCtrlPreemptParams {
            bWait: 1,
            bManualTimeout: 1,
            timeoutUs: 1000,
            ..Default::default()
        },
    )
    .0);
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_PREEMPT,
            &NvA06cCtrlPreemptParams {
                bWait: 1,
                bManualTimeout: 1,
                timeoutUs: 1_000_001,
                ..Default::default()
            }
        )
        .0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_MAKE_REALTIME,
            &NvA06cCtrlMakeRealtimeParams::default()
        )
        .0,
        NvStatus::ERR_NOT_SUPPORTED
    );

    // Teardown in the core's order: children before parents, client last.
    for h in [COMPUTE, CH, SHARE, TSG, COPY, CE_CH, CE_TSG, USERMODE] {
        ok(b.free(1, C1, h));
    }
    let mut u = Nvos47Parameters {
        hClient: C1,
        hDevice: DEV,
        hDma: VAS,
        hMemory: MEM,
        dmaOffset: va,
        ..Default::default()
    };
    ok(b.unmap_memory_dma(1, &mut u));
    for h in [MEM, NOTIFIER, VAS, SUB, DEV, C1] {
        ok(b.free(1, C1, h));
    }
    assert_eq!(b.object_count(), 0);
    assert_eq!(
        b.doorbell(1, tok.workSubmitToken),
        NvStatus::ERR_INVALID_ARGUMENT,
        "freed channel"
    );
    let g = b.gpu();
    let g = g.lock().unwrap();
    assert_eq!(
        (g.channel_count(), g.tsg_count(), g.vaspace_count()),
        (0, 0, 0)
    );
    assert!(g.memory().is_empty());
}

#[test]
fn another_gfid_cannot_touch_objects() {
    let mut b = sim();
    let va = base(&mut b, 1, C1);
    ok(tsg(&mut b, 1, C1, TSG, 0));
    ok(channel(&mut b, 1, C1, TSG, CH, va, 0).0);
    // GFID 2 naming client 1's handles.
    assert_eq!(b.free(2, C1, CH), NvStatus::ERR_INVALID_CLIENT);
    assert_eq!(
        ctrl(
            &mut b,
            2,
            C1,
            TSG,
            NVA06C_CTRL_CMD_SET_TIMESLICE,
            &NvA06cCtrlTimesliceParams { timesliceUs: 1 }
        )
        .0,
        NvStatus::ERR_INVALID_CLIENT
    );
    assert_eq!(
        b.write_memory(2, C1, MEM, 0, &[1]),
        NvStatus::ERR_INVALID_CLIENT
    );
    assert_eq!(
        alloc(&mut b, 2, C1, DEV, 0x99, class::FERMI_VASPACE_A, &[0u8; 56]).0,
        NvStatus::ERR_INVALID_CLIENT
    );
    // FIFO_DISABLE_CHANNELS from GFID 2's own subdevice listing client 1's channel.
    base(&mut b, 2, C2);
    let mut p = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: 1,
        numChannels: 1,
        ..Default::default()
    };
    p.hClientList[0] = C1;
    p.hChannelList[0] = CH;
    assert_eq!(
        disable_channels(&mut b, 2, C2, &p),
        NvStatus::ERR_INVALID_CLIENT
    );
    let ch = b.channel_of(C1, CH).unwrap();
    ok(schedule(&mut b, 1, C1, TSG, true));
    assert!(channel_enabled(&b, ch));
    // The owner can disable (and re-enable) its own channel.
    p.hClientList[0] = C1;
    ok(disable_channels(&mut b, 1, C1, &p));
    assert!(!channel_enabled(&b, ch));
    p.bDisable = 0;
    ok(disable_channels(&mut b, 1, C1, &p));
    p.numChannels = 65;
    assert_eq!(
        disable_channels(&mut b, 1, C1, &p),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    p.numChannels = 1;
    p.pRunlistPreemptEvent = 0x1000;
    assert_eq!(
        disable_channels(&mut b, 1, C1, &p),
        NvStatus::ERR_INSUFFICIENT_PERMISSIONS
    );
    // Freeing the client releases everything it still held.
    ok(b.free(1, C1, C1));
    ok(b.free(2, C2, C2));
    assert_eq!(b.object_count(), 0);
    let g = b.gpu();
    let g = g.lock().unwrap();
    assert_eq!((g.channel_count(), g.tsg_count()), (0, 0));
    assert!(g.memory().is_empty());
}

#[test]
fn bad_parameters_get_rm_errors() {
    let mut b = sim();
    let va = base(&mut b, 1, C1);
    assert_eq!(
        tsg(&mut b, 1, C1, TSG, 0x55),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    ok(tsg(&mut b, 1, C1, TSG, 0));
    let alloc_channel = |b: &mut SimBackend, p: &NvChannelAllocParams| {
        alloc(b, 1, C1, TSG, CH, HOPPER_CHANNEL_GPFIFO_A, p).0
    };
    let mut p = NvChannelAllocParams {
        gpFifoOffset: va + 0x1000,
        gpFifoEntries: 3,
        ..Default::default()
    };
    p.hUserdMemory[0] = MEM;
    assert_eq!(alloc_channel(&mut b, &p), NvStatus::ERR_INVALID_ARGUMENT);
    p.gpFifoEntries = 256;
    p.userdOffset[0] = (4 << 20) - 256;
    assert_eq!(alloc_channel(&mut b, &p), NvStatus::ERR_INVALID_OFFSET);
    p.userdOffset[0] = 0;
    p.hUserdMemory[0] = 0;
    ok(alloc_channel(&mut b, &p));
    assert_eq!(
        alloc_channel(&mut b, &p),
        NvStatus::ERR_INSERT_DUPLICATE_NAME
    );
    assert_eq!(
        memory(&mut b, 1, C1, 0x40, class::NV01_MEMORY_LOCAL_USER, 1 << 60),
        NvStatus::ERR_NO_MEMORY
    );
    assert_eq!(
        memory(&mut b, 1, C1, 0x41, class::NV01_MEMORY_LOCAL_USER, 0),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    let mut m = Nvos46Parameters {
        hClient: C1,
        hDevice: DEV,
        hDma: VAS,
        hMemory: MEM,
        offset: 1,
        ..Default::default()
    };
    assert_eq!(b.map_memory_dma(1, &mut m), NvStatus::ERR_INVALID_OFFSET);
    m.offset = 0;
    m.flags = NVOS46_FLAGS_DMA_OFFSET_FIXED;
    m.dmaOffset = va;
    assert_eq!(
        b.map_memory_dma(1, &mut m),
        NvStatus::ERR_INVALID_OFFSET,
        "overlaps the first mapping"
    );
    let mut c = Nvos33Parameters {
        hClient: C1,
        hDevice: DEV,
        hMemory: MEM,
        offset: 4 << 20,
        length: 1,
        ..Default::default()
    };
    assert_eq!(b.map_memory(1, &mut c), NvStatus::ERR_INVALID_LIMIT);
    assert_eq!(
        b.control(1, C1, TSG, NVA06C_CTRL_CMD_SET_TIMESLICE, &mut [0u8; 4]),
        NvStatus::ERR_INVALID_PARAM_STRUCT
    );
    assert_eq!(
        b.control(1, C1, SUB, 0x2080_0102, &mut [0u8; 564]),
        NvStatus::ERR_NOT_SUPPORTED
    );
    assert_eq!(
        b.control(1, C1, CH, NVA06C_CTRL_CMD_SET_TIMESLICE, &mut [0u8; 8]),
        NvStatus::ERR_INVALID_OBJECT_HANDLE
    );
}
