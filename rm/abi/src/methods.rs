//! Class and method numbers the sim executes: the Hopper host class (`HOPPER_CHANNEL_GPFIFO_A`,
//! methods below 0x100 on any subchannel), the copy class (`HOPPER_DMA_COPY_A`) and the compute
//! class (`HOPPER_COMPUTE_A`) with one sim-defined method.

/// `HOPPER_CHANNEL_GPFIFO_A`.
pub const HOPPER_CHANNEL_GPFIFO_A: u32 = 0xC86F;
/// `HOPPER_COMPUTE_A`.
pub const HOPPER_COMPUTE_A: u32 = 0xCBC0;
/// `HOPPER_DMA_COPY_A`.
pub const HOPPER_DMA_COPY_A: u32 = 0xC8B5;
/// `HOPPER_USERMODE_A`.
pub const HOPPER_USERMODE_A: u32 = 0xC661;

/// Methods below this byte address are host (PBDMA) methods on every subchannel.
pub const HOST_METHOD_LIMIT: u32 = 0x100;

/// Host class methods (`clc86f.h`).
pub mod host {
    /// Binds a class to the subchannel (`NVCLASS` 15:0).
    pub const SET_OBJECT: u32 = 0x0000;
    /// Always a PBDMA error.
    pub const ILLEGAL: u32 = 0x0004;
    /// No operation.
    pub const NOP: u32 = 0x0008;
    /// Raises a non-stalling interrupt.
    pub const NON_STALL_INTERRUPT: u32 = 0x0020;
    /// Memory operation, part A (TLB/membar; no-ops in the sim, which has no caches).
    pub const MEM_OP_A: u32 = 0x0028;
    /// Memory operation, part B.
    pub const MEM_OP_B: u32 = 0x002C;
    /// Memory operation, part C.
    pub const MEM_OP_C: u32 = 0x0030;
    /// Memory operation, part D.
    pub const MEM_OP_D: u32 = 0x0034;
    /// Writes USERD `Reference`.
    pub const SET_REFERENCE: u32 = 0x0050;
    /// Semaphore address bits 31:2.
    pub const SEM_ADDR_LO: u32 = 0x005C;
    /// Semaphore address bits 56:32 (field 24:0).
    pub const SEM_ADDR_HI: u32 = 0x0060;
    /// Payload low 32 bits.
    pub const SEM_PAYLOAD_LO: u32 = 0x0064;
    /// Payload high 32 bits.
    pub const SEM_PAYLOAD_HI: u32 = 0x0068;
    /// Executes the semaphore operation.
    pub const SEM_EXECUTE: u32 = 0x006C;
    /// Wait for idle.
    pub const WFI: u32 = 0x0078;
    /// CRC check (ignored).
    pub const CRC_CHECK: u32 = 0x007C;
    /// Yield the rest of the timeslice.
    pub const YIELD: u32 = 0x0080;

    /// `SEM_EXECUTE_OPERATION` (2:0) values.
    pub mod sem_op {
        /// Wait until the value equals the payload.
        pub const ACQUIRE: u32 = 0;
        /// Write the payload.
        pub const RELEASE: u32 = 1;
        /// Wait until value >= payload (unsigned).
        pub const ACQ_STRICT_GEQ: u32 = 2;
        /// Wait until value >= payload (wrapping).
        pub const ACQ_CIRC_GEQ: u32 = 3;
        /// Wait until value & payload != 0.
        pub const ACQ_AND: u32 = 4;
        /// Wait until !(value | payload) != 0.
        pub const ACQ_NOR: u32 = 5;
        /// Atomic reduction of the payload into the value.
        pub const REDUCTION: u32 = 6;
    }
    /// `SEM_EXECUTE_ACQUIRE_SWITCH_TSG` (12:12): yield the TSG while the acquire fails.
    pub const SEM_ACQUIRE_SWITCH_TSG: u32 = 1 << 12;
    /// `SEM_EXECUTE_RELEASE_WFI` (20:20).
    pub const SEM_RELEASE_WFI: u32 = 1 << 20;
    /// `SEM_EXECUTE_PAYLOAD_SIZE_64BIT` (24:24).
    pub const SEM_PAYLOAD_64BIT: u32 = 1 << 24;
    /// `SEM_EXECUTE_RELEASE_TIMESTAMP_EN` (25:25): also write the GPU time at +8.
    pub const SEM_RELEASE_TIMESTAMP: u32 = 1 << 25;
    /// `SEM_EXECUTE_REDUCTION` shift (30:27).
    pub const SEM_REDUCTION_SHIFT: u32 = 27;
    /// `SEM_EXECUTE_REDUCTION_FORMAT_UNSIGNED` (31:31 = 1).
    pub const SEM_REDUCTION_UNSIGNED: u32 = 1 << 31;
}

/// Copy class methods (`clc8b5.h`).
pub mod copy {
    /// Semaphore address bits 56:32.
    pub const SET_SEMAPHORE_A: u32 = 0x0240;
    /// Semaphore address bits 31:0.
    pub const SET_SEMAPHORE_B: u32 = 0x0244;
    /// Semaphore payload.
    pub const SET_SEMAPHORE_PAYLOAD: u32 = 0x0248;
    /// Starts the transfer.
    pub const LAUNCH_DMA: u32 = 0x0300;
    /// Source VA bits 56:32.
    pub const OFFSET_IN_UPPER: u32 = 0x0400;
    /// Source VA bits 31:0.
    pub const OFFSET_IN_LOWER: u32 = 0x0404;
    /// Destination VA bits 56:32.
    pub const OFFSET_OUT_UPPER: u32 = 0x0408;
    /// Destination VA bits 31:0.
    pub const OFFSET_OUT_LOWER: u32 = 0x040C;
    /// Source pitch (multi-line).
    pub const PITCH_IN: u32 = 0x0410;
    /// Destination pitch (multi-line).
    pub const PITCH_OUT: u32 = 0x0414;
    /// Bytes (or remap elements) per line.
    pub const LINE_LENGTH_IN: u32 = 0x0418;
    /// Lines (multi-line).
    pub const LINE_COUNT: u32 = 0x041C;
    /// Remap constant A.
    pub const SET_REMAP_CONST_A: u32 = 0x0700;
    /// Remap constant B.
    pub const SET_REMAP_CONST_B: u32 = 0x0704;
    /// Remap component selection.
    pub const SET_REMAP_COMPONENTS: u32 = 0x0708;

    /// `LAUNCH_DMA_DATA_TRANSFER_TYPE` (1:0): 0 = none (semaphore only).
    pub const LAUNCH_TRANSFER_TYPE_MASK: u32 = 3;
    /// `LAUNCH_DMA_SEMAPHORE_TYPE` shift (4:3): 1 one-word, 2 four-word (with timestamp).
    pub const LAUNCH_SEMAPHORE_SHIFT: u32 = 3;
    /// `LAUNCH_DMA_SRC_MEMORY_LAYOUT_PITCH` (7:7).
    pub const LAUNCH_SRC_PITCH: u32 = 1 << 7;
    /// `LAUNCH_DMA_DST_MEMORY_LAYOUT_PITCH` (8:8).
    pub const LAUNCH_DST_PITCH: u32 = 1 << 8;
    /// `LAUNCH_DMA_MULTI_LINE_ENABLE` (9:9).
    pub const LAUNCH_MULTI_LINE: u32 = 1 << 9;
    /// `LAUNCH_DMA_REMAP_ENABLE` (10:10).
    pub const LAUNCH_REMAP: u32 = 1 << 10;
    /// `LAUNCH_DMA_SRC_TYPE_PHYSICAL` (12:12).
    pub const LAUNCH_SRC_PHYSICAL: u32 = 1 << 12;
    /// `LAUNCH_DMA_DST_TYPE_PHYSICAL` (13:13).
    pub const LAUNCH_DST_PHYSICAL: u32 = 1 << 13;

    /// Remap source selector: source component X.
    pub const REMAP_SRC_X: u32 = 0;
    /// Remap source selector: constant A.
    pub const REMAP_CONST_A: u32 = 4;
    /// Remap source selector: constant B.
    pub const REMAP_CONST_B: u32 = 5;
    /// Remap source selector: leave the destination component unwritten.
    pub const REMAP_NO_WRITE: u32 = 6;
}

/// Compute class methods.
pub mod compute {
    /// **Sim-defined** (not a real `HOPPER_COMPUTE_A` method; the range 0x3E00-0x3E0C is
    /// unused by the class): engine work to occupy, in ns, low 32 bits.
    pub const SIM_WORK_NS_LO: u32 = 0x3E00;
    /// **Sim-defined**: engine work in ns, high 32 bits.
    pub const SIM_WORK_NS_HI: u32 = 0x3E04;
    /// **Sim-defined**: starts the work set by `SIM_WORK_NS_LO/HI` (the datum is ignored).
    /// The engine is busy for that long and preemptible at the configured granularity.
    pub const SIM_LAUNCH_WORK: u32 = 0x3E08;
    /// `SEND_PCAS_A` (`clc6c0.h`, kept by `clcbc0.h`): the launch's QMD address >> 8.
    pub const SEND_PCAS_A: u32 = 0x02B4;
    /// `SEND_SIGNALING_PCAS_B`: launches the QMD (the kick of Turing and older drivers).
    pub const SEND_SIGNALING_PCAS_B: u32 = 0x02BC;
    /// `SEND_SIGNALING_PCAS2_B`: launches the QMD (the kick of Ampere and later drivers, with
    /// `PCAS_ACTION` in bits 3:0).
    pub const SEND_SIGNALING_PCAS2_B: u32 = 0x02C0;
}
