//! `NV_STATUS` codes (`nvstatuscodes.h`): what RM writes into an escape's `status` field.

/// An RM status code. `NvStatus::OK` is success; every other value is an `NV_ERR_*`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NvStatus(pub u32);

macro_rules! statuses {
    ($($name:ident = $v:expr;)*) => {
        impl NvStatus {
            $(#[doc = concat!("`NV_", stringify!($name), "`")] pub const $name: NvStatus = NvStatus($v);)*

            /// The `NV_*` name, or `None` for a code this table lacks.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(concat!("NV_", stringify!($name))),)* _ => None }
            }
        }
    };
}

statuses! {
    OK = 0x00;
    ERR_BUFFER_TOO_SMALL = 0x02;
    ERR_BUSY_RETRY = 0x03;
    ERR_CARD_NOT_PRESENT = 0x05;
    ERR_IN_USE = 0x17;
    ERR_INSERT_DUPLICATE_NAME = 0x19;
    ERR_INSUFFICIENT_RESOURCES = 0x1A;
    ERR_INSUFFICIENT_PERMISSIONS = 0x1B;
    ERR_INVALID_ACCESS_TYPE = 0x1D;
    ERR_INVALID_ADDRESS = 0x1E;
    ERR_INVALID_ARGUMENT = 0x1F;
    ERR_INVALID_BASE = 0x20;
    ERR_INVALID_CHANNEL = 0x21;
    ERR_INVALID_CLASS = 0x22;
    ERR_INVALID_CLIENT = 0x23;
    ERR_INVALID_COMMAND = 0x24;
    ERR_INVALID_DATA = 0x25;
    ERR_INVALID_DEVICE = 0x26;
    ERR_INVALID_EVENT = 0x28;
    ERR_INVALID_FLAGS = 0x29;
    ERR_INVALID_FUNCTION = 0x2A;
    ERR_INVALID_INDEX = 0x2C;
    ERR_INVALID_LIMIT = 0x2E;
    ERR_INVALID_LOCK_STATE = 0x2F;
    ERR_INVALID_METHOD = 0x30;
    ERR_INVALID_OBJECT = 0x31;
    ERR_INVALID_OBJECT_BUFFER = 0x32;
    ERR_INVALID_OBJECT_HANDLE = 0x33;
    ERR_INVALID_OBJECT_NEW = 0x34;
    ERR_INVALID_OBJECT_OLD = 0x35;
    ERR_INVALID_OBJECT_PARENT = 0x36;
    ERR_INVALID_OFFSET = 0x37;
    ERR_INVALID_OPERATION = 0x38;
    ERR_INVALID_OWNER = 0x39;
    ERR_INVALID_PARAM_STRUCT = 0x3A;
    ERR_INVALID_PARAMETER = 0x3B;
    ERR_INVALID_POINTER = 0x3D;
    ERR_INVALID_REQUEST = 0x3F;
    ERR_INVALID_STATE = 0x40;
    ERR_INVALID_STRING_LENGTH = 0x41;
    ERR_INVALID_READ = 0x42;
    ERR_INVALID_WRITE = 0x43;
    ERR_MORE_DATA_AVAILABLE = 0x4C;
    ERR_NO_FREE_FIFOS = 0x4F;
    ERR_NO_MEMORY = 0x51;
    ERR_NOT_COMPATIBLE = 0x54;
    ERR_NOT_READY = 0x55;
    ERR_NOT_SUPPORTED = 0x56;
    ERR_OBJECT_NOT_FOUND = 0x57;
    ERR_OBJECT_TYPE_MISMATCH = 0x58;
    ERR_OPERATING_SYSTEM = 0x59;
    ERR_OUT_OF_RANGE = 0x5B;
    ERR_OVERFLOW = 0x5C;
    ERR_PROTECTION_FAULT = 0x5E;
    ERR_RC_ERROR = 0x60;
    ERR_STATE_IN_USE = 0x63;
    ERR_TIMEOUT = 0x65;
    ERR_LIB_RM_VERSION_MISMATCH = 0x6A;
    ERR_GENERIC = 0xFFFF;
}

impl NvStatus {
    /// Whether this is `NV_OK`.
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl core::fmt::Debug for NvStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "NV_STATUS({:#x})", self.0),
        }
    }
}

impl core::fmt::Display for NvStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_seen_in_the_traces_have_their_names() {
        assert_eq!(NvStatus(0x56).name(), Some("NV_ERR_NOT_SUPPORTED"));
        assert_eq!(NvStatus(0x57).name(), Some("NV_ERR_OBJECT_NOT_FOUND"));
        assert_eq!(NvStatus(0x55).name(), Some("NV_ERR_NOT_READY"));
        assert_eq!(format!("{:?}", NvStatus(0x1234)), "NV_STATUS(0x1234)");
    }
}
