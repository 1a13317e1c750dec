//! [`Transport`] over the vGPU's escape queue: system calls become requests, buffers live in the
//! window and are addressed by window offset, mappings are read and written with
//! `MAPPING_READ` / `MAPPING_WRITE`.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use super::transport::{Buffer, BufferPool, Fd, Mapping, Node, Transport, TransportError};
use crate::driver::protocol::{node, op, RequestHeader, MAX_MAPPING_COPY};
use crate::driver::queue::layout;
use crate::driver::{DriverError, SharedWindow, VgpuDriver, WindowAllocator};

impl From<DriverError> for TransportError {
    fn from(e: DriverError) -> Self {
        TransportError::Device(Box::new(e))
    }
}

/// The window's free space, handed out as [`Buffer`]s.
struct WindowPool {
    window: Arc<SharedWindow>,
    alloc: Mutex<WindowAllocator>,
}

impl BufferPool for WindowPool {
    fn release(&self, addr: u64, len: usize) {
        lock(&self.alloc).free(addr, len as u64);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The vGPU as an NVIDIA client's system-call surface.
pub struct VgpuTransport {
    driver: Mutex<VgpuDriver>,
    pool: Arc<WindowPool>,
}

impl std::fmt::Debug for VgpuTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VgpuTransport").finish_non_exhaustive()
    }
}

impl VgpuTransport {
    /// A transport over a driver that is up.
    pub fn new(driver: VgpuDriver) -> Self {
        let window = driver.window().clone();
        let pool = Arc::new(WindowPool {
            alloc: Mutex::new(WindowAllocator::new(layout::HEAP, window.size())),
            window,
        });
        Self {
            driver: Mutex::new(driver),
            pool,
        }
    }

    /// The driver (for doorbells, counters and raw access).
    pub fn driver(&self) -> MutexGuard<'_, VgpuDriver> {
        lock(&self.driver)
    }

    /// Gives the driver back.
    pub fn into_driver(self) -> VgpuDriver {
        self.driver.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn call(&self, call: &'static str, h: &RequestHeader) -> Result<i32, TransportError> {
        let f = self.driver().request(h)?;
        if f.ret < 0 && h.op != op::IOCTL {
            return Err(TransportError::Errno {
                call,
                errno: -f.ret,
            });
        }
        Ok(if h.op == op::OPEN { f.file } else { f.ret })
    }
}

impl Transport for VgpuTransport {
    fn open(&self, which: Node) -> Result<Fd, TransportError> {
        let (request, arg) = match which {
            Node::Ctl => (node::CTL, 0),
            Node::Device(minor) => (node::DEVICE, u64::from(minor)),
        };
        self.call(
            "open",
            &RequestHeader {
                op: op::OPEN,
                request,
                arg,
                ..Default::default()
            },
        )
    }

    fn close(&self, fd: Fd) -> Result<(), TransportError> {
        self.call(
            "close",
            &RequestHeader {
                op: op::CLOSE,
                file: fd,
                ..Default::default()
            },
        )
        .map(drop)
    }

    fn ioctl(&self, fd: Fd, request: u32, arg: &Buffer) -> Result<i32, TransportError> {
        self.call(
            "ioctl",
            &RequestHeader {
                op: op::IOCTL,
                file: fd,
                request,
                arg: arg.addr(),
                ..Default::default()
            },
        )
    }

    fn buffer(&self, len: usize, align: usize) -> Result<Buffer, TransportError> {
        let at = lock(&self.pool.alloc)
            .alloc(len as u64, align as u64)
            .ok_or(TransportError::OutOfMemory(len))?;
        let ptr = self.pool.window.base().wrapping_add(at as usize);
        let ptr = NonNull::new(ptr).ok_or(TransportError::OutOfMemory(len))?;
        // SAFETY: the allocator handed out `at..at + len` inside the window exclusively, and the
        // pool (which the buffer keeps) keeps the window mapped.
        Ok(unsafe { Buffer::new(ptr, len, at, self.pool.clone()) })
    }

    fn os_descriptors(&self) -> bool {
        self.driver().has_window_memory()
    }

    fn map(&self, fd: Fd, length: u64) -> Result<Box<dyn Mapping + '_>, TransportError> {
        let staging = self.buffer((MAX_MAPPING_COPY as usize).min(length.max(1) as usize), 64)?;
        Ok(Box::new(CopyMapping {
            transport: self,
            fd,
            length,
            staging,
        }))
    }
}

/// A mapping read and written through `MAPPING_READ` / `MAPPING_WRITE` requests via a staging
/// buffer in the window.
struct CopyMapping<'t> {
    transport: &'t VgpuTransport,
    fd: Fd,
    length: u64,
    staging: Buffer,
}

impl CopyMapping<'_> {
    fn check(&self, offset: u64, len: usize) -> Result<(), TransportError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.length => Ok(()),
            _ => Err(TransportError::OutOfBounds {
                what: "mapping",
                offset,
                len,
                size: self.length,
            }),
        }
    }

    fn copy(&self, op_code: u32, offset: u64, len: usize) -> Result<(), TransportError> {
        let call = if op_code == op::MAPPING_READ {
            "mapping read"
        } else {
            "mapping write"
        };
        let ret = self.transport.call(
            call,
            &RequestHeader {
                op: op_code,
                file: self.fd,
                length: len as u32,
                arg: self.staging.addr(),
                offset,
                ..Default::default()
            },
        )?;
        if ret < 0 {
            return Err(TransportError::Errno { call, errno: -ret });
        }
        Ok(())
    }
}

impl Mapping for CopyMapping<'_> {
    fn len(&self) -> u64 {
        self.length
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransportError> {
        self.check(offset, buf.len())?;
        let mut at = offset;
        for chunk in buf.chunks_mut(self.staging.len()) {
            self.copy(op::MAPPING_READ, at, chunk.len())?;
            self.staging.read(0, chunk)?;
            at += chunk.len() as u64;
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), TransportError> {
        self.check(offset, data.len())?;
        let mut at = offset;
        for chunk in data.chunks(self.staging.len()) {
            self.staging.write(0, chunk)?;
            self.copy(op::MAPPING_WRITE, at, chunk.len())?;
            at += chunk.len() as u64;
        }
        Ok(())
    }
}
