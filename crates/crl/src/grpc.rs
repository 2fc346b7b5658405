//! The CrlPublisher gRPC service: Publish on demand, GetStatus.

use std::sync::Arc;

use proto::crl::v1 as pb;
use proto::crl::v1::crl_publisher_server::CrlPublisher;
use tonic::{Request, Response, Status};

use crate::error::CrlError;
use crate::published::{CrlInfo, CrlKind};
use crate::publisher::{Issuer, Publisher, Urgent};
use crate::source::RevocationSource;
use crate::timefmt::rfc3339;

pub struct CrlService<S> {
    publisher: Arc<Publisher<S>>,
}

impl<S> CrlService<S> {
    pub fn new(publisher: Arc<Publisher<S>>) -> CrlService<S> {
        CrlService { publisher }
    }
}

fn kind_of(value: i32) -> Result<Option<CrlKind>, CrlError> {
    match pb::CrlKind::try_from(value) {
        Ok(pb::CrlKind::Unspecified) => Ok(None),
        Ok(pb::CrlKind::Full) => Ok(Some(CrlKind::Full)),
        Ok(pb::CrlKind::Delta) => Ok(Some(CrlKind::Delta)),
        Err(_) => Err(CrlError::InvalidArgument(format!("unknown CRL kind {value}"))),
    }
}

pub(crate) fn to_proto(i: &CrlInfo) -> pb::PublishedCrl {
    pb::PublishedCrl {
        issuer: i.issuer.clone(),
        kind: match i.kind {
            CrlKind::Full => pb::CrlKind::Full,
            CrlKind::Delta => pb::CrlKind::Delta,
        } as i32,
        partition: i.partition,
        crl_number: i.crl_number,
        base_crl_number: i.base_crl_number,
        this_update: rfc3339(i.this_update),
        next_update: rfc3339(i.next_update),
        url: i.url.clone(),
        entries: i.entries,
        sha256: i.sha256.clone(),
    }
}

#[tonic::async_trait]
impl<S: RevocationSource> CrlPublisher for CrlService<S> {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        // The actor is the caller's identity; our services (issuance,
        // revocation) relay the person they act for.
        let caller = tls::caller(&request).filter(|c| !c.is_service()).map(|c| c.identity.clone());
        let mut req = request.into_inner();
        if let Some(identity) = caller {
            if !req.actor.trim().is_empty() && req.actor.trim() != identity {
                return Err(Status::invalid_argument(format!(
                    "actor: {:?} is not the identity of the caller's client certificate ({identity:?}); \
                     leave it empty or give that identity",
                    req.actor.trim()
                )));
            }
            req.actor = identity;
        }
        let issuer = Issuer::parse(&req.issuer)?;
        let kind = kind_of(req.kind)?;
        let Urgent { crls, following } = match req.full_after_delta {
            true => self.publisher.publish_urgent(issuer, kind).await?,
            false => Urgent { crls: self.publisher.publish(issuer, kind).await?, following: Vec::new() },
        };
        let detail = serde_json::json!({
            "reason": req.reason,
            "crls": crls.iter().map(|c| serde_json::json!({
                "issuer": c.issuer, "kind": c.kind, "partition": c.partition,
                "crl_number": c.crl_number, "base_crl_number": c.base_crl_number,
                "entries": c.entries, "sha256": c.sha256,
            })).collect::<Vec<_>>(),
            "following_full": following.iter().map(|f| serde_json::json!({
                "issuer": f.issuer.name(), "crl_number": f.crl_number,
            })).collect::<Vec<_>>(),
        });
        let actor = if req.actor.trim().is_empty() { "unknown" } else { req.actor.trim() };
        let subject = if req.issuer.is_empty() { "all" } else { req.issuer.as_str() };
        // The CRLs are out; a failed audit write must not make the caller retry.
        if let Err(e) = self.publisher.source().audit(actor, "crl-published", subject, detail.to_string()).await {
            tracing::warn!(error = %e, "CRL published but the audit entry could not be written");
        }
        Ok(Response::new(pb::PublishResponse {
            crls: crls.iter().map(to_proto).collect(),
            following: following
                .iter()
                .map(|f| pb::FollowingCrl { issuer: f.issuer.name().to_owned(), crl_number: f.crl_number })
                .collect(),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let latest = self.publisher.store().latest();
        Ok(Response::new(pb::GetStatusResponse { latest: latest.iter().map(to_proto).collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_and_unknown_is_invalid() {
        assert_eq!(kind_of(0).unwrap(), None);
        assert_eq!(kind_of(1).unwrap(), Some(CrlKind::Full));
        assert_eq!(kind_of(2).unwrap(), Some(CrlKind::Delta));
        assert!(matches!(kind_of(7), Err(CrlError::InvalidArgument(_))));
        assert!(matches!(Issuer::parse("root"), Err(CrlError::InvalidArgument(_))));
    }
}
