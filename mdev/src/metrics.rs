//! The Prometheus endpoint (`vgpud --metrics ADDR`): the figures of `vgpuctl status`, per
//! instance, in the OpenMetrics text format (encoded by the Prometheus project's own
//! `prometheus-client`; served by `tiny_http`). A scrape reads the daemon's state once; nothing
//! is kept between scrapes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::Status;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Port used when `--metrics` gives only a host.
pub const DEFAULT_PORT: u16 = 9464;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    uuid: String,
    tenant: String,
    gfid: u32,
}

/// Why `--metrics` was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address does not parse or resolve.
    #[error("--metrics {0}: not an address (HOST:PORT, :PORT or HOST)")]
    BadAddress(String),
    /// It could not be bound.
    #[error("--metrics {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Parses `--metrics`: `HOST:PORT`, `:PORT` (loopback) or `HOST` ([`DEFAULT_PORT`]).
pub fn parse_addr(text: &str) -> Result<SocketAddr, MetricsError> {
    let bad = || MetricsError::BadAddress(text.to_string());
    let with_host = match text.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None if text.parse::<std::net::IpAddr>().is_ok() || !text.contains(':') => {
            format!("{text}:{DEFAULT_PORT}")
        }
        None => text.to_string(),
    };
    with_host
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// Renders `status` in the text format.
pub fn render(status: &Status) -> String {
    let mut registry = <Registry>::default();
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let f = Family::<InstanceLabels, Counter>::default();
        registry.register(name, help, f.clone());
        f
    };
    let escapes = counter(
        &mut registry,
        "vgpud_instance_escapes",
        "Escape requests answered",
    );
    let errors = counter(
        &mut registry,
        "vgpud_instance_errors",
        "Malformed escape requests refused by the device",
    );
    let notifies = counter(
        &mut registry,
        "vgpud_instance_notifies",
        "Queue notifies (each one a VM exit and a socket message)",
    );
    let doorbells = counter(
        &mut registry,
        "vgpud_instance_doorbells",
        "Doorbells accepted",
    );
    let rejected = counter(
        &mut registry,
        "vgpud_instance_doorbells_rejected",
        "Doorbells refused (token not the instance's)",
    );
    let interrupts = counter(
        &mut registry,
        "vgpud_instance_interrupts",
        "Interrupts raised",
    );
    let objects = Family::<InstanceLabels, Gauge>::default();
    registry.register(
        "vgpud_instance_objects",
        "RM objects the instance's GFID holds",
        objects.clone(),
    );
    let attached = Family::<InstanceLabels, Gauge>::default();
    registry.register(
        "vgpud_instance_attached",
        "1 while a VMM is attached",
        attached.clone(),
    );
    let target = Family::<InstanceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(
        "vgpud_instance_share_target",
        "The instance's tenant's share of GPU time under the policy (0..1)",
        target.clone(),
    );
    let achieved = Family::<InstanceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(
        "vgpud_instance_share_achieved",
        "The share of GPU time the instance's tenant got in the last balance window (0..1)",
        achieved.clone(),
    );
    for i in &status.instances {
        let l = InstanceLabels {
            uuid: i.uuid.clone(),
            tenant: i.tenant.clone(),
            gfid: i.gfid,
        };
        escapes.get_or_create(&l).inc_by(i.escapes);
        errors.get_or_create(&l).inc_by(i.errors);
        notifies.get_or_create(&l).inc_by(i.notifies);
        doorbells.get_or_create(&l).inc_by(i.doorbells);
        rejected.get_or_create(&l).inc_by(i.doorbells_rejected);
        interrupts.get_or_create(&l).inc_by(i.interrupts);
        objects.get_or_create(&l).set(i.objects as i64);
        attached.get_or_create(&l).set(i64::from(i.attached));
        if let Some(t) = i.share_target {
            target.get_or_create(&l).set(t);
        }
        if let Some(a) = i.share_achieved {
            achieved.get_or_create(&l).set(a);
        }
    }
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(status.poller.cpu_s);
    registry.register(
        "vgpud_poller_cpu_seconds",
        "CPU time of the escape-queue poller",
        cpu,
    );
    let served = Counter::<u64>::default();
    served.inc_by(status.poller.served);
    registry.register(
        "vgpud_poller_served",
        "Requests the poller found without a notify",
        served,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The HTTP endpoint's thread.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Serves `GET /metrics` on `addr` with what `status` returns at each scrape.
    pub fn start(
        addr: SocketAddr,
        status: impl Fn() -> Status + Send + 'static,
    ) -> Result<Self, MetricsError> {
        let server = Arc::new(
            tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
                addr,
                reason: e.to_string(),
            })?,
        );
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let thread = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || {
                    for req in server.incoming_requests() {
                        let response = if req.method() == &tiny_http::Method::Get
                            && req.url().split('?').next() == Some("/metrics")
                        {
                            let header =
                                tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                                    .expect("a valid header");
                            tiny_http::Response::from_string(render(&status())).with_header(header)
                        } else {
                            tiny_http::Response::from_string("only GET /metrics here\n")
                                .with_status_code(404)
                        };
                        let _ = req.respond(response);
                    }
                })
                .map_err(|e| MetricsError::Bind {
                    addr,
                    reason: e.to_string(),
                })?
        };
        Ok(Self {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on (the port is known here when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{InstanceStatus, PollerStatus};
    use std::io::{Read, Write};

    fn status() -> Status {
        Status {
            gpu: "NVIDIA H200 (sim)".into(),
            policy: None,
            instances: vec![InstanceStatus {
                uuid: "b8e3a6a4-63a4-4a6f-9a49-000000000001".into(),
                tenant: "alice".into(),
                gfid: 3,
                attached: true,
                sessions: 1,
                escapes: 41,
                errors: 2,
                notifies: 5,
                doorbells: 7,
                doorbells_rejected: 1,
                interrupts: 0,
                objects: 12,
                share_target: Some(0.75),
                share_achieved: Some(0.74),
            }],
            poller: PollerStatus {
                enabled: true,
                served: 36,
                polled: 1,
                cpu_s: 0.5,
                cpu_percent: 1.0,
            },
            gpu_time_ns: 0,
        }
    }

    #[test]
    fn text_format_carries_each_instances_figures() {
        let text = render(&status());
        let labels = r#"{uuid="b8e3a6a4-63a4-4a6f-9a49-000000000001",tenant="alice",gfid="3"}"#;
        for line in [
            format!("vgpud_instance_escapes_total{labels} 41"),
            format!("vgpud_instance_doorbells_rejected_total{labels} 1"),
            format!("vgpud_instance_objects{labels} 12"),
            format!("vgpud_instance_share_target{labels} 0.75"),
            "vgpud_poller_cpu_seconds_total 0.5".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn addresses_default_to_loopback_and_a_fixed_port() {
        assert_eq!(
            parse_addr(":9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(parse_addr("127.0.0.1").unwrap().port(), DEFAULT_PORT);
        assert!(parse_addr("no such host:x").is_err());
    }

    #[test]
    fn serves_metrics_over_http_and_nothing_else() {
        let s = MetricsServer::start("127.0.0.1:0".parse().unwrap(), status).unwrap();
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
            write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
            "{ok}"
        );
        assert!(ok.contains("vgpud_instance_escapes_total"));
        assert!(get("/etc/passwd").contains(" 404 "));
    }
}
