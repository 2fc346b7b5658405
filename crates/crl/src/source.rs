//! Where revocations and CRL numbers come from: the registry over gRPC (an
//! in-memory stand-in for tests).

use std::future::Future;
use std::pin::Pin;

use proto::registry::v1 as reg;
use proto::registry::v1::registry_client::RegistryClient;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;

use crate::error::CrlError;
use crate::layout::{RecordedScope, Scope};

/// A CRL number and the status-feed position when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlNumberGrant {
    pub crl_number: u64,
    pub feed_sequence: u64,
}

pub type EntryStream = Pin<Box<dyn Stream<Item = Result<reg::RevokedEntry, CrlError>> + Send>>;

/// The registry calls the publisher makes.
pub trait RevocationSource: Send + Sync + 'static {
    /// The next cRLNumber of `scope` ("sign", "auth"); strictly increasing, persisted.
    fn next_crl_number(&self, scope: &str) -> impl Future<Output = Result<CrlNumberGrant, CrlError>> + Send;

    /// Revoked certificates of `issuer_label` whose revocation has a feed
    /// sequence above `after_sequence` (0 = all): every one with
    /// `expired_since: None`, else those whose notAfter is not before it.
    fn list_revoked(
        &self,
        issuer_label: &str,
        after_sequence: u64,
        expired_since: Option<i64>,
    ) -> impl Future<Output = Result<EntryStream, CrlError>> + Send;

    /// The CRL scopes certificates of `issuer_label` were issued under.
    fn crl_scopes(&self, issuer_label: &str) -> impl Future<Output = Result<Vec<RecordedScope>, CrlError>> + Send;

    /// Appends to the audit log.
    fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail_json: String,
    ) -> impl Future<Output = Result<(), CrlError>> + Send;
}

/// The registry's gRPC API.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: RegistryClient<Channel>,
}

impl RegistrySource {
    /// A lazily connecting client, so the publisher can start before the registry.
    pub fn connect_lazy(kit: &tls::GrpcKit, url: &str) -> Result<RegistrySource, CrlError> {
        let endpoint = kit
            .endpoint_as("crl", url)
            .map_err(|e| CrlError::Config(format!("crl.registry_url {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5));
        Ok(RegistrySource { client: kit.client(RegistryClient::new(endpoint.connect_lazy())) })
    }
}

impl RevocationSource for RegistrySource {
    async fn next_crl_number(&self, scope: &str) -> Result<CrlNumberGrant, CrlError> {
        let resp = self
            .client
            .clone()
            .next_crl_number(reg::NextCrlNumberRequest { scope: scope.to_owned() })
            .await?
            .into_inner();
        Ok(CrlNumberGrant { crl_number: resp.crl_number, feed_sequence: resp.feed_sequence })
    }

    async fn list_revoked(
        &self,
        issuer_label: &str,
        after_sequence: u64,
        expired_since: Option<i64>,
    ) -> Result<EntryStream, CrlError> {
        let stream = self
            .client
            .clone()
            .list_revoked(reg::ListRevokedRequest {
                issuer_label: issuer_label.to_owned(),
                after_sequence,
                include_expired: expired_since.is_none(),
                // Never 0 here: the registry reads 0 as now.
                at_unix: expired_since.map_or(0, |t| t.max(1)),
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(CrlError::from))))
    }

    async fn crl_scopes(&self, issuer_label: &str) -> Result<Vec<RecordedScope>, CrlError> {
        let resp = self
            .client
            .clone()
            .list_crl_scopes(reg::ListCrlScopesRequest { issuer_label: issuer_label.to_owned() })
            .await?
            .into_inner();
        Ok(resp
            .scopes
            .into_iter()
            .filter_map(|r| {
                let s = r.scope?;
                Some(RecordedScope {
                    scope: Scope { crl_url: s.crl_url, partitions: s.partitions, deltas: s.delta_crls },
                    not_after_unix: r.not_after_unix,
                })
            })
            .collect())
    }

    async fn audit(&self, actor: &str, action: &str, subject: &str, detail_json: String) -> Result<(), CrlError> {
        self.client
            .clone()
            .append_audit(reg::AppendAuditRequest {
                actor: actor.to_owned(),
                action: action.to_owned(),
                subject: subject.to_owned(),
                detail_json,
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod memory {
    //! An in-memory registry: revocations with feed sequences, CRL numbers per scope.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct State {
        sequence: u64,
        numbers: HashMap<String, u64>,
        revoked: Vec<(String, reg::RevokedEntry)>,
        audit: Vec<(String, String, String)>,
        scopes: Vec<(String, RecordedScope)>,
        fail: bool,
    }

    #[derive(Debug, Default)]
    pub(crate) struct MemorySource {
        state: Mutex<State>,
    }

    impl MemorySource {
        pub fn revoke(&self, issuer_label: &str, serial: &str, reason: reg::RevocationReason) {
            self.revoke_expiring(issuer_label, serial, reason, 4_000_000_000);
        }

        /// A revocation of a certificate whose notAfter is `not_after_unix`.
        pub fn revoke_expiring(
            &self,
            issuer_label: &str,
            serial: &str,
            reason: reg::RevocationReason,
            not_after_unix: i64,
        ) {
            let mut s = self.state.lock().unwrap();
            s.sequence += 1;
            let entry = reg::RevokedEntry {
                serial: serial.to_owned(),
                revoked_at_unix: time::OffsetDateTime::now_utc().unix_timestamp() - 30,
                reason: reason as i32,
                not_after_unix,
                sequence: s.sequence,
                invalidity_date_unix: 0,
            };
            s.revoked.push((issuer_label.to_owned(), entry));
        }

        /// Records that certificates of `issuer_label` were issued under `scope`.
        pub fn record_scope(&self, issuer_label: &str, scope: RecordedScope) {
            self.state.lock().unwrap().scopes.push((issuer_label.to_owned(), scope));
        }

        pub fn set_failing(&self, fail: bool) {
            self.state.lock().unwrap().fail = fail;
        }

        pub fn audit_log(&self) -> Vec<(String, String, String)> {
            self.state.lock().unwrap().audit.clone()
        }

        fn check(&self) -> Result<(), CrlError> {
            match self.state.lock().unwrap().fail {
                true => Err(CrlError::Registry(tonic::Status::unavailable("registry down"))),
                false => Ok(()),
            }
        }
    }

    impl RevocationSource for MemorySource {
        async fn next_crl_number(&self, scope: &str) -> Result<CrlNumberGrant, CrlError> {
            self.check()?;
            let mut s = self.state.lock().unwrap();
            let feed_sequence = s.sequence;
            let n = s.numbers.entry(scope.to_owned()).or_insert(0);
            *n += 1;
            Ok(CrlNumberGrant { crl_number: *n, feed_sequence })
        }

        async fn list_revoked(
            &self,
            issuer_label: &str,
            after_sequence: u64,
            expired_since: Option<i64>,
        ) -> Result<EntryStream, CrlError> {
            self.check()?;
            let s = self.state.lock().unwrap();
            let items: Vec<Result<reg::RevokedEntry, CrlError>> = s
                .revoked
                .iter()
                .filter(|(label, e)| label == issuer_label && e.sequence > after_sequence)
                .filter(|(_, e)| expired_since.is_none_or(|t| e.not_after_unix >= t))
                .map(|(_, e)| Ok(e.clone()))
                .collect();
            Ok(Box::pin(tokio_stream::iter(items)))
        }

        async fn crl_scopes(&self, issuer_label: &str) -> Result<Vec<RecordedScope>, CrlError> {
            self.check()?;
            let s = self.state.lock().unwrap();
            Ok(s.scopes.iter().filter(|(label, _)| label == issuer_label).map(|(_, r)| r.clone()).collect())
        }

        async fn audit(&self, actor: &str, action: &str, subject: &str, _detail_json: String) -> Result<(), CrlError> {
            self.state.lock().unwrap().audit.push((actor.to_owned(), action.to_owned(), subject.to_owned()));
            Ok(())
        }
    }
}
