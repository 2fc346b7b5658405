//! The operations view: gRPC health of each service, the age and time to
//! nextUpdate of every published CRL and of the ARL, and the OCSP
//! responder's hit, miss and tryLater rates (from its `/metrics`).

use std::sync::Arc;
use std::time::Duration;

use proto::crl::v1 as crl;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::App;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a service gave the operations view no answer; shown as it is.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error("no answer in {} s", TIMEOUT.as_secs())]
    Timeout,
    #[error("{:?}: {}", .0.code(), .0.message())]
    Grpc(tonic::Status),
    #[error("health check failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("/metrics is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Fetch(#[from] crate::ocsp_live::FetchError),
}

/// The services asked for their health, and the gRPC service name each reports.
pub const SERVICES: [(&str, &str); 4] = [
    ("registry", "hpki.registry.v1.Registry"),
    ("issuance", "hpki.issuance.v1.Issuance"),
    ("revocation", "hpki.revocation.v1.Revocation"),
    ("crl", "hpki.crl.v1.CrlPublisher"),
];

#[derive(Debug, Clone)]
pub struct Health {
    pub service: &'static str,
    /// SERVING, NOT_SERVING, …, or why there was no answer.
    pub status: Result<String, Arc<Unanswered>>,
}

async fn check(mut client: HealthClient<Channel>, name: &str) -> Result<String, Unanswered> {
    let req = HealthCheckRequest { service: name.to_owned() };
    match tokio::time::timeout(TIMEOUT, client.check(req)).await {
        Err(_) => Err(Unanswered::Timeout),
        Ok(Err(s)) => Err(Unanswered::Grpc(s)),
        Ok(Ok(r)) => Ok(ServingStatus::try_from(r.into_inner().status)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| "?".into())),
    }
}

/// Every service's health, asked at once (each bounded by the timeout).
pub async fn health(app: &App) -> Vec<Health> {
    let tasks: Vec<_> = app
        .health
        .iter()
        .map(|(service, name, client)| {
            let (service, name, client) = (*service, *name, client.clone());
            (service, tokio::spawn(async move { check(client, name).await }))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (service, task) in tasks {
        let status = task.await.unwrap_or_else(|e| Err(Unanswered::Task(e))).map_err(Arc::new);
        out.push(Health { service, status });
    }
    out
}

/// One published CRL as the CRL publisher reports it.
#[derive(Debug, Clone)]
pub struct Published {
    pub crl: crl::PublishedCrl,
    /// Seconds since thisUpdate, and until nextUpdate (negative: past).
    pub age: Option<i64>,
    pub to_next_update: Option<i64>,
}

fn seconds_since(rfc3339: &str, now: time::OffsetDateTime) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (now - t).whole_seconds())
}

/// The latest CRL of each scope (CrlPublisher GetStatus).
pub async fn published(app: &App) -> Result<Vec<Published>, Unanswered> {
    let answer = tokio::time::timeout(TIMEOUT, app.crl.clone().get_status(crl::GetStatusRequest {}))
        .await
        .map_err(|_| Unanswered::Timeout)?
        .map_err(Unanswered::Grpc)?;
    let now = time::OffsetDateTime::now_utc();
    Ok(answer
        .into_inner()
        .latest
        .into_iter()
        .map(|c| Published {
            age: seconds_since(&c.this_update, now),
            to_next_update: seconds_since(&c.next_update, now).map(|s| -s),
            crl: c,
        })
        .collect())
}

pub fn kind_name(kind: i32) -> &'static str {
    match crl::CrlKind::try_from(kind) {
        Ok(crl::CrlKind::Full) => "full",
        Ok(crl::CrlKind::Delta) => "delta",
        _ => "?",
    }
}

/// A sample of the Prometheus text format: name, labels (as written), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The samples of a text exposition (comments skipped; label values without
/// escaped quotes, which ours never have).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or(rest);
                let labels = inner
                    .split("\",")
                    .filter_map(|kv| kv.split_once("=\""))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim_end_matches('"').to_owned()))
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        out.push(Sample { name: name.to_owned(), labels, value });
    }
    out
}

/// A CRL file the distribution point serves (its `/metrics`): the ARL among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub path: String,
    pub arl: bool,
    pub age: Option<i64>,
    pub to_next_update: Option<i64>,
}

pub fn served(samples: &[Sample]) -> Vec<Served> {
    let mut out: Vec<Served> = Vec::new();
    for s in samples {
        let field = match s.name.as_str() {
            "hpki_crl_age_seconds" => 0,
            "hpki_crl_seconds_to_next_update" => 1,
            _ => continue,
        };
        let Some(path) = s.label("path") else { continue };
        let index = match out.iter().position(|o| o.path == path) {
            Some(i) => i,
            None => {
                out.push(Served {
                    path: path.to_owned(),
                    arl: s.label("arl") == Some("true"),
                    age: None,
                    to_next_update: None,
                });
                out.len() - 1
            }
        };
        let v = Some(s.value as i64);
        if field == 0 {
            out[index].age = v;
        } else {
            out[index].to_next_update = v;
        }
    }
    out.sort_by(|a, b| (!a.arl, &a.path).cmp(&(!b.arl, &b.path)));
    out
}

/// The OCSP responder's answers since it started.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OcspRates {
    pub hits: f64,
    pub misses: f64,
    pub try_later: f64,
    pub responses: f64,
}

impl OcspRates {
    pub fn from_samples(samples: &[Sample]) -> OcspRates {
        let sum = |name: &str, pred: &dyn Fn(&Sample) -> bool| {
            samples.iter().filter(|s| s.name == name && pred(s)).map(|s| s.value).sum::<f64>()
        };
        OcspRates {
            hits: sum("ocsp_cache_hits_total", &|_| true),
            misses: sum("ocsp_cache_misses_total", &|_| true),
            try_later: sum("ocsp_responses_total", &|s| s.label("status") == Some("trylater")),
            responses: sum("ocsp_responses_total", &|_| true),
        }
    }

    /// `part` of `whole` in percent; `None` when nothing was counted yet.
    pub fn percent(part: f64, whole: f64) -> Option<f64> {
        (whole > 0.0).then(|| 100.0 * part / whole)
    }
}

/// `/metrics` of `base_url`, parsed.
pub async fn metrics(base_url: &str) -> Result<Vec<Sample>, Unanswered> {
    let body = tokio::time::timeout(TIMEOUT, crate::ocsp_live::http_get(base_url, "/metrics"))
        .await
        .map_err(|_| Unanswered::Timeout)??;
    let text = String::from_utf8(body.to_vec()).map_err(|_| Unanswered::NotUtf8)?;
    Ok(parse_metrics(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n# TYPE ocsp_responses_total counter\n\
        ocsp_responses_total{status=\"good\"} 6\nocsp_responses_total{status=\"trylater\"} 2\n\
        ocsp_cache_hits_total 3\nocsp_cache_misses_total 1\n\
        hpki_crl_seconds_to_next_update{path=\"/crl/sign.crl\",arl=\"false\"} 3500\n\
        hpki_crl_seconds_to_next_update{path=\"/crl/arl.crl\",arl=\"true\"} -20\n\
        hpki_crl_age_seconds{path=\"/crl/sign.crl\",arl=\"false\"} 100\n";

    #[test]
    fn ocsp_rates_from_the_text_format() {
        let r = OcspRates::from_samples(&parse_metrics(TEXT));
        assert_eq!(r, OcspRates { hits: 3.0, misses: 1.0, try_later: 2.0, responses: 8.0 });
        assert_eq!(OcspRates::percent(r.hits, r.hits + r.misses), Some(75.0));
        assert_eq!(OcspRates::percent(1.0, 0.0), None);
    }

    #[test]
    fn served_crls_with_the_arl_first() {
        let s = served(&parse_metrics(TEXT));
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            (s[0].path.as_str(), s[0].arl, s[0].to_next_update, s[0].age),
            ("/crl/arl.crl", true, Some(-20), None)
        );
        assert_eq!((s[1].path.as_str(), s[1].age, s[1].to_next_update), ("/crl/sign.crl", Some(100), Some(3500)));
    }
}
