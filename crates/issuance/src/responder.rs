//! Delegated OCSP responder certificates (IssueResponderCertificate): the OCSP
//! process sends a CSR made with the key in its own token; we issue the
//! certificate exactly as a card's: the registry reserves the serial (kind
//! OCSP_RESPONDER, no card), records the to-be-signed bytes, we sign with the
//! issuing CA key and the registry stores the result. So the certificate is in
//! GetCertificate, `hpki-ca status`, the status feed, revocation and the audit
//! log, and a crash between signing and storing is resolved by the restart
//! recovery (`recovery`), which signs recorded PRECERTs of any kind.

use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;

use crate::error::IssuanceError;
use crate::service::{invalid, rfc3339, IssuanceService};

impl IssuanceService {
    pub(crate) async fn issue_responder(
        &self,
        req: iss::ResponderCertificateRequest,
    ) -> Result<iss::ResponderCertificate, IssuanceError> {
        self.hsm_reachable_now().await?;
        let ca = match req.issuer.trim() {
            "signing" => &self.signing,
            "authentication" => &self.authentication,
            other => return Err(invalid("issuer", format!("{other:?} is neither \"signing\" nor \"authentication\""))),
        };
        let csr = profile::csr::parse_and_verify(&req.csr, self.policy.min_rsa_bits).map_err(|e| invalid("csr", e))?;
        if csr.subject_public_key_info_der() == ca.ca.subject_public_key_info_der() {
            return Err(invalid("csr", "carries the issuing CA's own key"));
        }
        let not_before = time::OffsetDateTime::now_utc().replace_nanosecond(0).map_err(IssuanceError::Clock)?;
        let days = i64::from(self.responder_validity_days.max(1));
        let not_after = (not_before + time::Duration::days(days)).min(ca.ca.not_after());
        if not_after <= not_before {
            return Err(IssuanceError::FailedPrecondition(format!(
                "issuer: the issuing CA {:?} has expired",
                ca.label
            )));
        }
        let mut registry = self.registry.clone();
        let serial = registry
            .reserve_serial(reg::ReserveSerialRequest {
                card_id: String::new(),
                kind: reg::CertificateKind::OcspResponder as i32,
                issuer_label: ca.label.clone(),
                not_before_unix: not_before.unix_timestamp(),
                not_after_unix: not_after.unix_timestamp(),
            })
            .await?
            .into_inner()
            .serial;
        let serial_bytes = domain::Serial::from_hex(&serial).map_err(|_| IssuanceError::BadSerial(serial.clone()))?;
        let params = profile::responder_params(&ca.ca, &ca.label, serial_bytes.as_bytes(), not_before, not_after)?;
        let tbs = profile::tbs_certificate(&params, &csr, &ca.ca)?;
        registry
            .record_tbs(reg::RecordTbsRequest { serial: serial.clone(), tbs_der: tbs.clone(), crl_scope: None })
            .await?;
        let (key, to_sign) = (ca.key.clone(), tbs.clone());
        let signature =
            tokio::task::spawn_blocking(move || key.sign(&to_sign)).await.map_err(IssuanceError::task("signing"))??;
        let der = profile::assemble_certificate(&tbs, &signature)?;
        ca.ca.verify_issued(&der)?;
        registry
            .store_certificate(reg::StoreCertificateRequest { serial: serial.clone(), certificate_der: der.clone() })
            .await?;
        tracing::info!(%serial, issuer = %ca.label, not_after = %not_after, "OCSP responder certificate issued");
        Ok(iss::ResponderCertificate {
            serial,
            certificate_der: der,
            issuer_label: ca.label.clone(),
            not_before: rfc3339(not_before.unix_timestamp()),
            not_after: rfc3339(not_after.unix_timestamp()),
        })
    }
}
