//! Registry records into revocation responses, and the choice of the CRLs an
//! emergency revocation publishes.

use proto::crl::v1 as crl;
use proto::registry::v1 as reg;
use proto::revocation::v1 as pb;

use crate::validate::rfc3339;

/// "signing" / "authentication", as the CRL publisher names the issuing CAs too.
pub fn kind_name(kind: i32) -> &'static str {
    match reg::CertificateKind::try_from(kind) {
        Ok(reg::CertificateKind::Signing) => "signing",
        Ok(reg::CertificateKind::Authentication) => "authentication",
        Ok(reg::CertificateKind::OcspResponder) => "ocsp-responder",
        _ => "unknown",
    }
}

pub fn card_state_name(state: i32) -> &'static str {
    match reg::CardState::try_from(state) {
        Ok(reg::CardState::Pending) => "pending",
        Ok(reg::CardState::Active) => "active",
        Ok(reg::CardState::Revoked) => "revoked",
        _ => "unknown",
    }
}

pub fn is_revoked(rec: &reg::CertificateRecord) -> bool {
    rec.state == reg::CertificateState::CertRevoked as i32
}

/// "good" once signed and stored, "revoked", or "pending" before it is signed.
pub fn status_name(rec: &reg::CertificateRecord) -> &'static str {
    match reg::CertificateState::try_from(rec.state) {
        Ok(reg::CertificateState::Issued) => "good",
        Ok(reg::CertificateState::CertRevoked) => "revoked",
        _ => "pending",
    }
}

pub fn revoked_out(rec: &reg::CertificateRecord, already_revoked: bool) -> pb::RevokedCertificate {
    pb::RevokedCertificate {
        serial: rec.serial.clone(),
        kind: kind_name(rec.kind).into(),
        revoked_at: rfc3339(rec.revoked_at_unix),
        reason: rec.revocation_reason,
        already_revoked,
        compromised_at: rfc3339(rec.invalidity_date_unix),
    }
}

pub fn status_out(rec: &reg::CertificateRecord) -> pb::CertificateStatusInfo {
    let revoked = is_revoked(rec);
    pb::CertificateStatusInfo {
        serial: rec.serial.clone(),
        kind: kind_name(rec.kind).into(),
        status: status_name(rec).into(),
        not_after: rfc3339(rec.not_after_unix),
        revoked_at: if revoked { rfc3339(rec.revoked_at_unix) } else { String::new() },
        reason: if revoked { rec.revocation_reason } else { reg::RevocationReason::Unspecified as i32 },
        revoked_by: if revoked { rec.revoked_by.clone() } else { String::new() },
        compromised_at: if revoked { rfc3339(rec.invalidity_date_unix) } else { String::new() },
    }
}

/// The card's revoked certificates after a registry RevokeCard that newly
/// revoked `newly_revoked` of them. The registry revokes a card in one
/// transaction, so the ones it revoked carry the highest feed sequences; every
/// other one was revoked before and keeps its first revocation.
pub fn card_revocations(certs: &[reg::CertificateRecord], newly_revoked: u32) -> Vec<pb::RevokedCertificate> {
    let mut revoked: Vec<&reg::CertificateRecord> = certs.iter().filter(|c| is_revoked(c)).collect();
    let mut by_sequence: Vec<u64> = revoked.iter().map(|c| c.revocation_sequence).collect();
    by_sequence.sort_unstable_by(|a, b| b.cmp(a));
    let newly = usize::try_from(newly_revoked).unwrap_or(usize::MAX).min(revoked.len());
    // The lowest sequence that is still one of the new ones.
    let threshold = if newly == 0 { None } else { by_sequence.get(newly - 1).copied() };
    revoked.sort_by_key(|c| c.kind);
    revoked
        .into_iter()
        .map(|c| {
            let new = threshold.is_some_and(|t| c.revocation_sequence >= t);
            revoked_out(c, !new)
        })
        .collect()
}

/// The `issuer` of the CRL publish request after revoking these certificates:
/// None when there is nothing to publish, "signing" or "authentication" when
/// only that CA's certificates are involved, "" (both) otherwise, including
/// for an issuer label the configuration does not know.
pub fn crl_issuer(certs: &[reg::CertificateRecord], signing_label: &str, authentication_label: &str) -> Option<String> {
    let (mut signing, mut authentication) = (false, false);
    for c in certs {
        if c.issuer_label == signing_label {
            signing = true;
        } else if c.issuer_label == authentication_label {
            authentication = true;
        } else {
            return Some(String::new());
        }
    }
    match (signing, authentication) {
        (false, false) => None,
        (true, false) => Some("signing".into()),
        (false, true) => Some("authentication".into()),
        (true, true) => Some(String::new()),
    }
}

/// The CRL numbers published, without repeats, in the publisher's order.
pub fn crl_numbers(crls: &[crl::PublishedCrl]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(crls.len());
    for c in crls {
        if !out.contains(&c.crl_number) {
            out.push(c.crl_number);
        }
    }
    out
}

/// Per issuing CA, in the publisher's order: the delta and full CRL numbers,
/// the full one pending when it follows in the background.
pub fn issuer_crls(published: &crl::PublishResponse) -> Vec<pb::IssuerCrls> {
    let mut out: Vec<pb::IssuerCrls> = Vec::new();
    fn entry<'a>(out: &'a mut Vec<pb::IssuerCrls>, issuer: &str) -> &'a mut pb::IssuerCrls {
        match out.iter().position(|e| e.issuer == issuer) {
            Some(i) => &mut out[i],
            None => {
                out.push(pb::IssuerCrls { issuer: issuer.to_owned(), ..Default::default() });
                let last = out.len() - 1;
                &mut out[last]
            }
        }
    }
    for c in &published.crls {
        let e = entry(&mut out, &c.issuer);
        if c.kind == crl::CrlKind::Delta as i32 {
            e.delta_crl_number = e.delta_crl_number.max(c.crl_number);
        } else if c.kind == crl::CrlKind::Full as i32 {
            e.full_crl_number = e.full_crl_number.max(c.crl_number);
        }
    }
    for f in &published.following {
        let e = entry(&mut out, &f.issuer);
        e.full_crl_number = f.crl_number;
        e.full_pending = true;
    }
    out
}

/// "delta", "full", or "full+delta" when the publisher made both kinds.
pub fn crl_kind(crls: &[crl::PublishedCrl]) -> String {
    let full = crls.iter().any(|c| c.kind == crl::CrlKind::Full as i32);
    let delta = crls.iter().any(|c| c.kind == crl::CrlKind::Delta as i32);
    match (full, delta) {
        (true, true) => "full+delta".into(),
        (true, false) => "full".into(),
        (false, true) => "delta".into(),
        (false, false) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(kind: reg::CertificateKind, label: &str, revoked_seq: Option<u64>) -> reg::CertificateRecord {
        reg::CertificateRecord {
            serial: format!("{:02x}", kind as i32),
            kind: kind as i32,
            issuer_label: label.into(),
            state: match revoked_seq {
                Some(_) => reg::CertificateState::CertRevoked as i32,
                None => reg::CertificateState::Issued as i32,
            },
            revocation_sequence: revoked_seq.unwrap_or(0),
            revoked_at_unix: revoked_seq.map_or(0, |_| 1_767_193_200),
            revocation_reason: reg::RevocationReason::KeyCompromise as i32,
            revoked_by: "op-1".into(),
            not_after_unix: 1_924_959_599,
            ..Default::default()
        }
    }

    use reg::CertificateKind::{Authentication as A, Signing as S};

    #[test]
    fn the_newly_revoked_ones_are_those_with_the_latest_sequences() {
        let certs = [cert(S, "sign-ca", Some(7)), cert(A, "auth-ca", Some(12))];
        let flags = |n| card_revocations(&certs, n).iter().map(|r| r.already_revoked).collect::<Vec<_>>();
        assert_eq!(flags(2), [false, false]);
        assert_eq!(flags(1), [true, false], "the signing one was revoked earlier");
        assert_eq!(flags(0), [true, true]);
        let out = card_revocations(&certs, 2);
        assert_eq!(out[0].kind, "signing");
        assert_eq!(out[0].revoked_at, "2025-12-31T15:00:00Z");
        // Not revoked: left out.
        assert_eq!(card_revocations(&[cert(S, "sign-ca", None)], 0).len(), 0);
    }

    #[test]
    fn the_crl_issuer_follows_the_certificates_labels() {
        let both = [cert(S, "sign-ca", None), cert(A, "auth-ca", None)];
        assert_eq!(crl_issuer(&both, "sign-ca", "auth-ca").as_deref(), Some(""));
        assert_eq!(crl_issuer(&both[..1], "sign-ca", "auth-ca").as_deref(), Some("signing"));
        assert_eq!(crl_issuer(&both[1..], "sign-ca", "auth-ca").as_deref(), Some("authentication"));
        assert_eq!(crl_issuer(&[], "sign-ca", "auth-ca"), None);
        let odd = [cert(S, "old-sign-ca", None)];
        assert_eq!(crl_issuer(&odd, "sign-ca", "auth-ca").as_deref(), Some(""), "unknown label: publish both");
    }

    #[test]
    fn statuses_name_good_revoked_pending() {
        let good = cert(S, "sign-ca", None);
        let s = status_out(&good);
        assert_eq!((s.status.as_str(), s.revoked_at.as_str(), s.reason), ("good", "", 0));
        assert_eq!(s.not_after, "2030-12-31T14:59:59Z");
        let s = status_out(&cert(A, "auth-ca", Some(3)));
        assert_eq!((s.status.as_str(), s.revoked_by.as_str()), ("revoked", "op-1"));
        assert_eq!(s.reason, reg::RevocationReason::KeyCompromise as i32);
        let reserved = reg::CertificateRecord { state: reg::CertificateState::Reserved as i32, ..good };
        assert_eq!(status_out(&reserved).status, "pending");
    }

    #[test]
    fn crl_numbers_and_kind() {
        let published =
            |kind: crl::CrlKind, n| crl::PublishedCrl { kind: kind as i32, crl_number: n, ..Default::default() };
        let crls = [published(crl::CrlKind::Delta, 5), published(crl::CrlKind::Delta, 9)];
        assert_eq!(crl_numbers(&crls), [5, 9]);
        assert_eq!(crl_kind(&crls), "delta");
        let mixed = [published(crl::CrlKind::Full, 4), published(crl::CrlKind::Delta, 4)];
        assert_eq!(crl_numbers(&mixed), [4]);
        assert_eq!(crl_kind(&mixed), "full+delta");
        assert_eq!(crl_kind(&[]), "");
    }

    #[test]
    fn issuer_crls_name_each_cas_numbers() {
        let published = |issuer: &str, kind: crl::CrlKind, n| crl::PublishedCrl {
            issuer: issuer.into(),
            kind: kind as i32,
            crl_number: n,
            ..Default::default()
        };
        let emergency = crl::PublishResponse {
            crls: vec![
                published("signing", crl::CrlKind::Delta, 7),
                published("authentication", crl::CrlKind::Delta, 5),
            ],
            following: vec![
                crl::FollowingCrl { issuer: "signing".into(), crl_number: 8 },
                crl::FollowingCrl { issuer: "authentication".into(), crl_number: 0 },
            ],
        };
        let got: Vec<(String, u64, u64, bool)> = issuer_crls(&emergency)
            .into_iter()
            .map(|e| (e.issuer, e.delta_crl_number, e.full_crl_number, e.full_pending))
            .collect();
        assert_eq!(got, [("signing".into(), 7, 8, true), ("authentication".into(), 5, 0, true)]);
        // Deltas off, or a first publication: the full CRL (and its delta) at once.
        let at_once = crl::PublishResponse {
            crls: vec![
                published("authentication", crl::CrlKind::Full, 3),
                published("authentication", crl::CrlKind::Delta, 4),
            ],
            following: Vec::new(),
        };
        let got: Vec<(String, u64, u64, bool)> = issuer_crls(&at_once)
            .into_iter()
            .map(|e| (e.issuer, e.delta_crl_number, e.full_crl_number, e.full_pending))
            .collect();
        assert_eq!(got, [("authentication".into(), 4, 3, false)]);
    }
}
