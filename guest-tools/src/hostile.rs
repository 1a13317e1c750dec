//! A hostile guest: requests with wrong sizes, pointers outside the window, malformed descriptor
//! chains, bad files and operations, and doorbells for channels it does not own. Each must get
//! the error the protocol promises, and the device must keep serving good requests afterwards.

use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::Nvos54Parameters;
use rm_abi::{class, NvStatus};
use serde::{Deserialize, Serialize};

use crate::driver::protocol::{error, op, QueueFault, RequestHeader, ResponseFooter};
use crate::driver::queue::{F_NEXT, F_WRITE};
use crate::driver::{DriverError, VgpuDriver};
use crate::rmapi::{RmClient, Transport, VgpuTransport};
use crate::workload::{GpuContext, MemoryMode, TsgSettings};

/// The outcome of one hostile request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was sent.
    pub name: String,
    /// Whether the device answered as the protocol says.
    pub ok: bool,
    /// What came back.
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.into(),
        ok,
        detail,
    }
}

/// Writes `descs` (index, addr, len, flags, next), publishes `publish` as a chain head, notifies,
/// and returns the used length (None: the device wrote no used entry).
fn raw_chain(
    d: &mut VgpuDriver,
    descs: &[(u16, u64, u32, u16, u16)],
    publish: u16,
) -> Result<Option<u32>, DriverError> {
    {
        let (q, w) = d.raw_queue();
        for &(i, addr, len, flags, next) in descs {
            q.put_desc(w, i, addr, len, flags, next)?;
        }
        q.publish(w, publish)?;
    }
    d.notify();
    Ok(d.try_used()?.map(|u| u.len))
}

/// The device's count of refused doorbells once it moved past `before` (at most a second: a
/// doorbell posted in the mailbox is checked when the device next drains it), else as it is.
fn rejected_after(d: &VgpuDriver, before: u64) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let n = d.counters().doorbells_rejected;
        if n != before || start.elapsed() > std::time::Duration::from_secs(1) {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// Runs every hostile request against the device behind `t`, then a good request and a GPU round;
/// returns one [`Check`] per step.
pub fn run(t: &VgpuTransport) -> Result<Vec<Check>, DriverError> {
    let mut out = Vec::new();
    let window = t.driver().info().window_size;
    let client = RmClient::open(t).map_err(|_| DriverError::NothingToAttach)?;
    let ctl = client.ctl();
    let arg = t
        .buffer(64, 64)
        .map_err(|_| DriverError::WindowTooSmall(window))?;
    let mut d = t.driver();
    let good = IoctlRequest::encode(Escape::RM_CONTROL as u8, 32).expect("fits");
    let ioctl = |d: &mut VgpuDriver, file: i32, request: u32, arg: u64| {
        d.request(&RequestHeader {
            op: op::IOCTL,
            file,
            request,
            arg,
            ..Default::default()
        })
    };

    let wrong = IoctlRequest::encode(Escape::RM_CONTROL as u8, 31).expect("fits");
    let r = ioctl(&mut d, ctl, wrong, arg.addr())?;
    out.push(check(
        "ioctl with a wrong argument size",
        r.ret == -libc::EINVAL,
        format!("ret {}", r.ret),
    ));

    let r = ioctl(&mut d, ctl, good, window - 16)?;
    out.push(check(
        "argument struct crossing the window's end",
        r.ret == -libc::EFAULT,
        format!("ret {}", r.ret),
    ));

    let p = Nvos54Parameters {
        hClient: 0xc1d0_0001,
        hObject: 0xc1d0_0001,
        cmd: rm_abi::ctrl::NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION,
        params: window + 0x1000,
        paramsSize: 40,
        ..Default::default()
    };
    arg.put(0, &p)
        .map_err(|_| DriverError::WindowTooSmall(window))?;
    let r = ioctl(&mut d, ctl, good, arg.addr())?;
    let back: Nvos54Parameters = arg
        .get(0)
        .map_err(|_| DriverError::WindowTooSmall(window))?;
    out.push(check(
        "embedded params pointer outside the window",
        r.ret == -libc::EFAULT || (r.ret == 0 && NvStatus(back.status) != NvStatus::OK),
        format!("ret {} status {}", r.ret, NvStatus(back.status)),
    ));

    let r = ioctl(&mut d, 4242, good, arg.addr())?;
    out.push(check(
        "ioctl on a file never opened",
        r.ret == -libc::EBADF,
        format!("ret {}", r.ret),
    ));

    let r = d.request(&RequestHeader {
        op: 77,
        ..Default::default()
    })?;
    out.push(check(
        "unknown operation",
        r.ret == -libc::ENOSYS,
        format!("ret {}", r.ret),
    ));

    // Malformed chains, built by hand in descriptors 60..63.
    let scratch = arg.addr();
    let len = raw_chain(
        &mut d,
        &[
            (60, scratch, 32, F_NEXT, 61),
            (61, scratch + 32, 16, F_NEXT | F_WRITE, 60),
        ],
        60,
    )?;
    let f = d.last_queue_fault();
    out.push(check(
        "descriptor loop",
        len == Some(0) && f == QueueFault::ChainTooLong as u32,
        format!("used length {len:?}, fault {f}"),
    ));

    let len = raw_chain(
        &mut d,
        &[
            (60, window - 8, 32, F_NEXT, 61),
            (61, scratch + 32, 16, F_WRITE, 0),
        ],
        60,
    )?;
    let mut b = [0u8; 16];
    arg.read(32, &mut b)
        .map_err(|_| DriverError::WindowTooSmall(window))?;
    let foot = ResponseFooter::from_bytes(&b);
    out.push(check(
        "request header outside the window",
        len == Some(16)
            && foot.ret == -libc::EFAULT
            && foot.fault == QueueFault::OutOfWindow as u32,
        format!(
            "used length {len:?}, ret {}, fault {}",
            foot.ret, foot.fault
        ),
    ));

    let len = raw_chain(
        &mut d,
        &[
            (60, scratch, 32, F_NEXT, 61),
            (61, scratch + 32, 8, F_WRITE, 0),
        ],
        60,
    )?;
    let f = d.last_queue_fault();
    out.push(check(
        "footer of the wrong length",
        len == Some(0) && f == QueueFault::BadLength as u32,
        format!("used length {len:?}, fault {f}"),
    ));

    let len = raw_chain(&mut d, &[], 200)?;
    let f = d.last_queue_fault();
    out.push(check(
        "head index outside the descriptor table",
        len.is_none() && f == QueueFault::BadHeadIndex as u32,
        format!("used entry {len:?}, fault {f}"),
    ));
    let malformed = d.error_status() & error::MALFORMED_REQUEST != 0;
    d.clear_errors(u32::MAX);

    let before = d.counters().doorbells_rejected;
    let invented = 0x00ff_0fff;
    d.doorbell(invented);
    let rejected = rejected_after(&d, before);
    out.push(check(
        "doorbell with an invented token",
        rejected == before + 1
            && d.last_rejected_token() == invented
            && d.error_status() & error::DOORBELL_REJECTED != 0,
        format!(
            "rejected {} -> {}, last token {:#x}, malformed bit was {malformed}",
            before,
            rejected,
            d.last_rejected_token()
        ),
    ));
    d.clear_errors(u32::MAX);
    drop(d);
    drop(arg);
    let _ = client.close();

    // A channel this guest owned, freed: its token must be refused now.
    let mut ctx = GpuContext::create(t, TsgSettings::default(), MemoryMode::best(t))
        .map_err(|_| DriverError::NothingToAttach)?;
    let stale = ctx.objects().token[0];
    let o = *ctx.objects();
    ctx.client()
        .free(o.client, o.device, o.tsg[0])
        .map_err(|_| DriverError::NothingToAttach)?;
    let before = t.driver().counters().doorbells_rejected;
    t.driver().doorbell(stale);
    let after = rejected_after(&t.driver(), before);
    out.push(check(
        "doorbell for a freed channel",
        after == before + 1 && t.driver().last_rejected_token() == stale,
        format!("token {stale:#x}, rejected {before} -> {after}"),
    ));
    t.driver().clear_errors(u32::MAX);
    let _ = ctx.destroy();

    // The device still serves a well-behaved client.
    let served = (|| -> Result<String, crate::rmapi::RmApiError> {
        let mut c = RmClient::open(t)?;
        let client = c.alloc_root()?;
        let dev = c.alloc(
            client,
            client,
            class::NV01_DEVICE_0,
            &mut rm_abi::alloc_params::Nv0080AllocParameters::default(),
        )?;
        let mut n = rm_abi::ctrl::Nv0080CtrlGpuGetNumSubdevicesParams::default();
        c.control(
            client,
            dev,
            rm_abi::ctrl::NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES,
            &mut n,
        )?;
        c.free(client, client, client)?;
        c.close()?;
        Ok(format!("{} subdevice(s)", n.numSubDevices))
    })();
    out.push(check(
        "a good client afterwards",
        served.is_ok(),
        served.unwrap_or_else(|e| e.to_string()),
    ));
    Ok(out)
}
