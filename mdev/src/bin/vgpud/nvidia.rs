//! `vgpud --backend nvidia`: registers tenants (processes running `librmshim.so`) and enforces
//! the scheduler's policy file on a real NVIDIA GPU by gating each tenant's channels.

use anyhow::{Context, Result};
use mdev::enforce::tick;
use mdev::gate::{policy_gfids, ChannelGate, RealClock};
use mdev::protocol::{self, Message, PeerIdentity, TenantReader};
use mdev::tenants::{load_pairs, policy_bindings, TenantRegistry};
use rm_nvidia::ownership::ClientFiles;
use rm_nvidia::{HostClient, SyscallDriver};
use scheduler::policy_file::Policy;
use scheduler::reload::{PolicyWatcher, ReloadOutcome};
use scheduler::scheduler::{Method, Scheduler};
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the nvidia backend's loop needs from the command line.
#[derive(Debug)]
pub struct NvidiaArgs {
    /// Scheduling policy file.
    pub policy: PathBuf,
    /// Unix socket tenants connect to.
    pub socket: PathBuf,
    /// Its permission bits.
    pub socket_mode: u32,
    /// File listing the channels of connected tenants.
    pub state: PathBuf,
    /// GPU minor number.
    pub gpu: u32,
    /// Statistics file.
    pub stats: Option<PathBuf>,
    /// Scheduler log file.
    pub log: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct TenantStats {
    name: String,
    gfid: u32,
    run_s: f64,
}

#[derive(serde::Serialize)]
struct Stats {
    driver: String,
    policy: String,
    uptime_s: f64,
    tenants: Vec<TenantStats>,
    connected: Vec<mdev::tenants::TenantInfo>,
    switch_total_s: f64,
    disables: mdev::gate::CallStats,
    enables: mdev::gate::CallStats,
    disable_mean_us: f64,
    enable_mean_us: f64,
    recovered_channels: usize,
}

/// Gates process tenants' channels on a real GPU by the policy until SIGTERM or SIGINT.
pub fn run(cli: NvidiaArgs) -> Result<()> {
    let policy = Policy::load(&cli.policy)?;
    let gfids = policy_gfids(&policy).map_err(anyhow::Error::msg)?;
    let mut watcher = PolicyWatcher::new(&cli.policy).context("watching the policy file")?;
    let mut host = HostClient::open(cli.gpu).context("opening the GPU")?;
    let driver = host.version().to_string();
    check_client_validation(&host)?;

    // A disable outlives its issuer: whatever a dead instance left disabled comes back first.
    let leftover = load_pairs(&cli.state);
    let mut recovered = 0;
    for &pair in &leftover {
        if mdev::gate::ChannelSwitch::set_enabled(&mut host, &[pair], true).is_ok() {
            recovered += 1;
        }
    }
    eprintln!("vgpud: driver {driver}, {policy}; re-enabled {recovered} of {} channel(s) left by a previous instance", leftover.len());

    let registry = TenantRegistry::new(Some(cli.state.clone()));
    registry.set_bindings(policy_bindings(&policy));
    for t in policy.tenants.iter().filter(|t| t.binding.is_open()) {
        eprintln!(
            "vgpud: tenant {} sets no uids, gids or cgroup: any local user may connect as it",
            t.name
        );
    }
    let _ = std::fs::remove_file(&cli.socket);
    let listener = UnixListener::bind(&cli.socket)
        .with_context(|| format!("binding {}", cli.socket.display()))?;
    std::fs::set_permissions(
        &cli.socket,
        std::fs::Permissions::from_mode(cli.socket_mode),
    )?;
    {
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept(listener, registry))?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;

    let gate = ChannelGate::new(host, RealClock::default(), registry.clone(), gfids);
    let mut sched = Scheduler::new(gate, policy, Some(Method::Gating), HashMap::new())?;
    let start = Instant::now();
    let mut last_stats = Instant::now();
    let mut log_file = match &cli.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the scheduler log {}", path.display()))?,
        ),
        None => None,
    };
    let write_stats = |sched: &Scheduler<ChannelGate<HostClient, RealClock>>| {
        let Some(path) = &cli.stats else { return };
        let m = sched.mechanism();
        let policy = sched.policy();
        let s = Stats {
            driver: driver.clone(),
            policy: policy.kind.name().to_string(),
            uptime_s: start.elapsed().as_secs_f64(),
            tenants: policy
                .tenants
                .iter()
                .zip(sched.tenant_run_times())
                .map(|(t, d)| TenantStats {
                    name: t.name.clone(),
                    gfid: t.gfids.first().copied().unwrap_or(0),
                    run_s: d.as_secs_f64(),
                })
                .collect(),
            connected: registry.tenants(),
            switch_total_s: sched.switch_time().as_secs_f64(),
            disables: m.disables,
            enables: m.enables,
            disable_mean_us: m.disables.mean_us(),
            enable_mean_us: m.enables.mean_us(),
            recovered_channels: recovered,
        };
        if let Ok(text) = serde_json::to_string_pretty(&s) {
            let _ = std::fs::write(path, text);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match tick(&mut sched, Some(&mut watcher))? {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Applied(summary) => eprintln!("vgpud: policy reloaded: {summary}"),
            ReloadOutcome::Refused(why) => {
                eprintln!("vgpud: policy reload refused, keeping the policy in force: {why}")
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            write_stats(&sched);
            flush_log(&mut sched, &mut log_file);
            last_stats = Instant::now();
        }
    }
    sched.release()?;
    flush_log(&mut sched, &mut log_file);
    let all = registry.all_channels();
    let failed = sched.mechanism_mut().enable_all(&all);
    write_stats(&sched);
    let _ = std::fs::remove_file(&cli.socket);
    eprintln!(
        "vgpud: stopped; re-enabled {} channel(s), {failed} could not be (gone with their process, or never real)",
        all.len() - failed
    );
    Ok(())
}

/// Moves the scheduler's records to the log file, if there is one, so memory stays bounded.
fn flush_log<M: scheduler::mechanism::Mechanism>(
    sched: &mut Scheduler<M>,
    file: &mut Option<std::fs::File>,
) {
    let log = sched.take_log();
    if let Some(f) = file {
        let mut out = std::io::BufWriter::new(f);
        if let Err(e) = log.write_jsonl(&mut out).and_then(|()| out.flush()) {
            eprintln!("vgpud: writing the scheduler log: {e}");
        }
    }
}

/// Channel ownership is proven by the driver's refusal of a client on a file it was not
/// allocated on; refuses to run where the driver does not refuse (client validation turned off
/// with `RmValidateClientData`), since any tenant could then claim any channel.
fn check_client_validation(host: &HostClient) -> Result<()> {
    let other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/nvidiactl")
        .context("opening /dev/nvidiactl")?;
    match rm_nvidia::ownership::strict_validation(&SyscallDriver, other.as_fd(), host.client()) {
        Ok(true) => Ok(()),
        Ok(false) => anyhow::bail!(
            "the driver answers for a client on a file it was not allocated on (client \
             validation is off, RmValidateClientData): tenants' channel ownership cannot be \
             checked"
        ),
        Err(e) => Err(anyhow::anyhow!(
            "checking the driver's client validation: {e}"
        )),
    }
}

/// Serves each tenant connection on a thread of its own, at most
/// [`protocol::MAX_CONNECTIONS`] at once; a connection over the limit is closed at once.
fn accept(listener: UnixListener, registry: TenantRegistry) {
    let slots = protocol::ConnectionSlots::new(
        protocol::MAX_CONNECTIONS,
        protocol::MAX_CONNECTIONS_PER_UID,
    );
    mdev::acceptor::accept_loop(&listener, |stream| {
        let Ok(peer) = protocol::peer_credentials(&stream) else {
            return;
        };
        let Some(slot) = slots.try_acquire(peer.uid) else {
            tracing::debug!(
                "refusing a tenant connection of uid {}: {} in all or {} of one user served",
                peer.uid,
                protocol::MAX_CONNECTIONS,
                protocol::MAX_CONNECTIONS_PER_UID
            );
            return;
        };
        let registry = registry.clone();
        let _ = std::thread::Builder::new()
            .name("tenant".into())
            .spawn(move || {
                let _slot = slot;
                serve(stream, peer, registry)
            });
    });
}

/// Tenant connections refused since start.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// One tenant connection: HELLO first (within [`protocol::HELLO_TIMEOUT`]), then the files of
/// its clients and its channel sets, until end of file. Only channels the driver confirms
/// through the file passed for their client are gated (`rm_nvidia::ownership`). When the tenant
/// goes the gate enables its channels again (if its process is gone they are gone too and this
/// fails harmlessly) and forgets them.
fn serve(stream: UnixStream, peer: protocol::PeerCredentials, registry: TenantRegistry) {
    if let Err(e) = stream.set_read_timeout(Some(protocol::HELLO_TIMEOUT)) {
        tracing::warn!("tenant connection: {e}");
        return;
    }
    let mut reader = TenantReader::new(stream);
    let id = match reader.read_line().map(|(l, _)| protocol::parse(&l)) {
        Some(Ok(Message::Hello { name, pid })) => {
            if let Err(e) = protocol::authenticate(pid, peer) {
                tracing::warn!("tenant connection refused: {e}");
                return;
            }
            let id = match registry.connect(&name, &PeerIdentity::of(peer)) {
                Ok(id) => id,
                Err(e) => {
                    // Counted, logged at powers of two: a refused client that keeps
                    // reconnecting must not flood the log.
                    let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        eprintln!("vgpud: tenant connection refused: {e} ({n} refused so far)");
                    }
                    return;
                }
            };
            if let Err(e) = reader.get_ref().set_read_timeout(None) {
                tracing::warn!("tenant connection: {e}");
                registry.disconnect(id);
                return;
            }
            eprintln!(
                "vgpud: tenant {name} (pid {pid}, uid {}) connected",
                peer.uid
            );
            id
        }
        other => {
            tracing::warn!("tenant connection without HELLO: {other:?}");
            return;
        }
    };
    let mut files = ClientFiles::default();
    while let Some((line, mut passed)) = reader.read_line() {
        match protocol::parse(&line) {
            Ok(Message::Client(client)) => {
                if let Err(e) = files.add(client, passed.pop()) {
                    eprintln!("vgpud: tenant connection {id}: {e}");
                }
            }
            Ok(Message::Channels(named)) => {
                let (owned, refused) = files.verify(&SyscallDriver, &named);
                if let Some(first) = refused.first() {
                    eprintln!(
                        "vgpud: tenant connection {id}: {} of {} channel(s) not proven its own, \
                         not gated (first: {first})",
                        refused.len(),
                        named.len()
                    );
                }
                registry.set_channels(id, &owned)
            }
            Ok(Message::Hello { .. }) => tracing::warn!("repeated HELLO ignored"),
            Err(e) => {
                tracing::warn!("dropping tenant connection: {e}");
                break;
            }
        }
    }
    let gone = registry.disconnect(id);
    eprintln!(
        "vgpud: tenant connection {id} closed ({} channel(s) released)",
        gone.len()
    );
}
