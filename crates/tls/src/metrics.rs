//! Prometheus metrics of the gRPC services (registry, issuance, revocation;
//! the crl and ocsp processes have their own on their HTTP listeners): every
//! call counted by method where the authorization layer sees it, refusals by
//! gRPC code, time in the handler; and a small HTTP listener per service
//! answering `GET /metrics` in the text exposition format ([`serve`],
//! `[<service>] metrics_listen`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tonic::codegen::http;

/// The text format helpers, shared with the OCSP responder's metrics.
pub fn counter(o: &mut String, name: &str, help: &str, v: u64) -> std::fmt::Result {
    writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}")
}

pub fn gauge(o: &mut String, name: &str, help: &str, v: f64) -> std::fmt::Result {
    writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}")
}

/// A label value, escaped as the exposition format asks.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    calls: u64,
    micros: u64,
}

#[derive(Debug, Default)]
struct Counts {
    /// By method (`/package.Service/Method`).
    calls: BTreeMap<&'static str, Calls>,
    /// By method and gRPC code.
    refused: BTreeMap<(&'static str, i32), u64>,
}

fn counts() -> &'static Mutex<Counts> {
    static COUNTS: OnceLock<Mutex<Counts>> = OnceLock::new();
    COUNTS.get_or_init(Mutex::default)
}

fn started() -> &'static SystemTime {
    static STARTED: OnceLock<SystemTime> = OnceLock::new();
    STARTED.get_or_init(SystemTime::now)
}

/// Only methods of the policy table get a label of their own (no allocation
/// per call, and a client cannot grow the table with made-up paths).
fn method_label(path: &str) -> &'static str {
    crate::policy::rule(path).map_or("other", |r| r.rpc)
}

/// A call that reached its handler and took `took`.
pub fn observe_call(path: &str, took: Duration) {
    let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
    let entry = c.calls.entry(method_label(path)).or_default();
    entry.calls += 1;
    entry.micros = entry.micros.saturating_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
}

/// A call refused before its handler (authentication, authorization).
pub fn observe_refusal(path: &str, code: tonic::Code) {
    let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
    *c.refused.entry((method_label(path), code as i32)).or_default() += 1;
}

/// The metrics of this process as `service` ("registry", "issuance", "revocation").
pub fn render(service: &str) -> String {
    let mut o = String::with_capacity(2048);
    let _ = write(&mut o, service);
    o
}

fn write(o: &mut String, service: &str) -> std::fmt::Result {
    let s = label(service);
    writeln!(o, "# HELP hpki_up 1 while the service answers.\n# TYPE hpki_up gauge\nhpki_up{{service=\"{s}\"}} 1")?;
    let start = started().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    writeln!(o, "# HELP hpki_process_start_time_seconds When the process started (Unix seconds).")?;
    writeln!(o, "# TYPE hpki_process_start_time_seconds gauge")?;
    writeln!(o, "hpki_process_start_time_seconds{{service=\"{s}\"}} {start}")?;
    // One process may serve several services (`hpki-ca run`): each listener
    // shows the methods of its own service.
    let own = format!("/hpki.{service}.v1.");
    let c = counts().lock().unwrap_or_else(|e| e.into_inner());
    let calls: Vec<(&&'static str, &Calls)> = c.calls.iter().filter(|(m, _)| m.starts_with(&own)).collect();
    writeln!(o, "# HELP hpki_grpc_calls_total gRPC calls that reached their handler, by method.")?;
    writeln!(o, "# TYPE hpki_grpc_calls_total counter")?;
    for (m, v) in &calls {
        writeln!(o, "hpki_grpc_calls_total{{service=\"{s}\",method=\"{}\"}} {}", label(m), v.calls)?;
    }
    writeln!(o, "# HELP hpki_grpc_call_seconds_total Time spent in gRPC handlers, by method.")?;
    writeln!(o, "# TYPE hpki_grpc_call_seconds_total counter")?;
    for (m, v) in &calls {
        let secs = v.micros as f64 / 1e6;
        writeln!(o, "hpki_grpc_call_seconds_total{{service=\"{s}\",method=\"{}\"}} {secs}", label(m))?;
    }
    writeln!(o, "# HELP hpki_grpc_refused_total gRPC calls refused before their handler, by method and code.")?;
    writeln!(o, "# TYPE hpki_grpc_refused_total counter")?;
    for ((m, code), v) in c.refused.iter().filter(|((m, _), _)| m.starts_with(&own)) {
        let code = format!("{:?}", tonic::Code::from_i32(*code));
        writeln!(o, "hpki_grpc_refused_total{{service=\"{s}\",method=\"{}\",code=\"{code}\"}} {v}", label(m))?;
    }
    Ok(())
}

/// Answers `GET /metrics` on `listener` with [`render`]`(service)` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    service: &'static str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let _ = started();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let handler = crate::net::Answer(move |req| metrics_page(service, &req));
    let limits = crate::net::HttpListenerLimits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: 64,
        threads: 0,
        flatten_writes: true,
    };
    crate::net::serve_http(listener, handler, limits, || {}, stop_rx).await;
}

/// `GET /metrics` answers [`render`]`(service)`; anything else is 404.
fn metrics_page<B>(service: &'static str, req: &http::Request<B>) -> http::Response<String> {
    let (status, content_type, body) = if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
        (http::StatusCode::OK, "text/plain; version=0.0.4", render(service))
    } else {
        (http::StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n".to_owned())
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_refusals_are_rendered_by_method() {
        observe_call("/hpki.registry.v1.Registry/GetCard", Duration::from_millis(3));
        observe_refusal("/hpki.registry.v1.Registry/RevokeCard", tonic::Code::PermissionDenied);
        observe_call("/made.up/Path", Duration::from_millis(1));
        let text = render("registry");
        assert!(text.contains("hpki_up{service=\"registry\"} 1"), "{text}");
        assert!(
            text.contains("hpki_grpc_calls_total{service=\"registry\",method=\"/hpki.registry.v1.Registry/GetCard\"} "),
            "{text}"
        );
        assert!(
            text.contains(
                "hpki_grpc_refused_total{service=\"registry\",method=\"/hpki.registry.v1.Registry/RevokeCard\",code=\"PermissionDenied\"} "
            ),
            "{text}"
        );
        assert!(!text.contains("made.up"), "a made-up path gets no label of its own: {text}");
        observe_call("/hpki.issuance.v1.Issuance/GetFee", Duration::from_millis(1));
        assert!(!render("registry").contains("GetFee"), "each service shows its own methods");
        assert!(render("issuance").contains("method=\"/hpki.issuance.v1.Issuance/GetFee\"} 1"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
