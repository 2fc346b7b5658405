//! What we know about a certificate, from the registry or its status feed.

use proto::registry::v1 as reg;

use crate::asn1::CRLReason;

/// The status of one certificate. Ordered by how final it is: a certificate
/// moves from Unknown to Good to Revoked and never back (HPKI has no
/// certificateHold), so merging two observations keeps the more final one,
/// whatever order they arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Never issued by this CA (or not issued yet).
    Unknown,
    Good,
    Revoked {
        at_unix: i64,
        reason: Option<CRLReason>,
        /// The invalidityDate (time of compromise) the operator gave, if any.
        invalidity_unix: Option<i64>,
    },
}

impl CertState {
    fn rank(&self) -> u8 {
        match self {
            CertState::Unknown => 0,
            CertState::Good => 1,
            CertState::Revoked { .. } => 2,
        }
    }

    /// The more final of two observations (the first revocation stands).
    pub fn merge(self, other: CertState) -> CertState {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CertState::Unknown => "unknown",
            CertState::Good => "good",
            CertState::Revoked { .. } => "revoked",
        }
    }

    /// A registry record: issued is good, revoked is revoked (even if it was revoked
    /// while only reserved: a late signature is born revoked), anything else
    /// (reserved, to-be-signed recorded) is not issued yet.
    pub fn from_record(rec: &reg::CertificateRecord) -> CertState {
        match reg::CertificateState::try_from(rec.state) {
            Ok(reg::CertificateState::Issued) => CertState::Good,
            Ok(reg::CertificateState::CertRevoked) => {
                revoked(rec.revoked_at_unix, rec.revocation_reason, rec.invalidity_date_unix)
            }
            _ => CertState::Unknown,
        }
    }

    /// A status-feed change; None for a status this version does not know.
    pub fn from_change(change: &reg::StatusChange) -> Option<CertState> {
        match reg::CertificateStatus::try_from(change.status) {
            Ok(reg::CertificateStatus::Good) => Some(CertState::Good),
            Ok(reg::CertificateStatus::Revoked) => {
                Some(revoked(change.revoked_at_unix, change.reason, change.invalidity_date_unix))
            }
            _ => None,
        }
    }
}

/// RFC 5280 §5.3.1 asks to leave out `unspecified`; we do the same in responses.
fn revoked(at_unix: i64, reason: i32, invalidity_unix: i64) -> CertState {
    let reason = domain::RevocationReason::try_from(reason)
        .ok()
        .filter(|r| *r != domain::RevocationReason::Unspecified)
        .map(crate::asn1::crl_reason);
    CertState::Revoked { at_unix, reason, invalidity_unix: (invalidity_unix != 0).then_some(invalidity_unix) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_more_final_status_in_any_order() {
        let r = CertState::Revoked { at_unix: 5, reason: Some(CRLReason::KeyCompromise), invalidity_unix: None };
        for (a, b) in [(CertState::Unknown, CertState::Good), (CertState::Good, r), (CertState::Unknown, r)] {
            assert_eq!(a.merge(b), b);
            assert_eq!(b.merge(a), b);
        }
        let later = CertState::Revoked { at_unix: 9, reason: None, invalidity_unix: None };
        assert_eq!(r.merge(later), r, "the first revocation stands");
    }

    #[test]
    fn records_and_changes_map_to_states() {
        let mut rec = reg::CertificateRecord { state: reg::CertificateState::Issued as i32, ..Default::default() };
        assert_eq!(CertState::from_record(&rec), CertState::Good);
        rec.state = reg::CertificateState::Precert as i32;
        assert_eq!(CertState::from_record(&rec), CertState::Unknown);
        rec.state = reg::CertificateState::CertRevoked as i32;
        rec.revoked_at_unix = 77;
        rec.revocation_reason = reg::RevocationReason::KeyCompromise as i32;
        assert_eq!(
            CertState::from_record(&rec),
            CertState::Revoked { at_unix: 77, reason: Some(CRLReason::KeyCompromise), invalidity_unix: None }
        );
        let change = reg::StatusChange {
            status: reg::CertificateStatus::Revoked as i32,
            revoked_at_unix: 3,
            reason: reg::RevocationReason::Unspecified as i32,
            ..Default::default()
        };
        assert_eq!(
            CertState::from_change(&change),
            Some(CertState::Revoked { at_unix: 3, reason: None, invalidity_unix: None })
        );
        // The invalidityDate comes along from either source.
        rec.invalidity_date_unix = 70;
        assert_eq!(
            CertState::from_record(&rec),
            CertState::Revoked { at_unix: 77, reason: Some(CRLReason::KeyCompromise), invalidity_unix: Some(70) }
        );
        let with = reg::StatusChange { invalidity_date_unix: 2, ..change };
        assert_eq!(
            CertState::from_change(&with),
            Some(CertState::Revoked { at_unix: 3, reason: None, invalidity_unix: Some(2) })
        );
        let odd = reg::StatusChange { status: 99, ..Default::default() };
        assert_eq!(CertState::from_change(&odd), None);
    }
}
