//! One CRL entry as RFC 5280 5.1.2.6, 5.3.1 and 5.3.2 name its parts: the
//! revoked certificate's serial number, the revocation date, the CRLReason
//! and the invalidity date.

use std::fmt;

use domain::RevocationReason;

use crate::error::CrlError;

/// Longest DER INTEGER content of a CertificateSerialNumber (RFC 5280 4.1.2.2).
pub const MAX_SERIAL_OCTETS: usize = 20;

/// A positive certificate serial number, kept as its minimal big-endian
/// magnitude in a fixed buffer (no allocation per CRL entry).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialNumber {
    bytes: [u8; MAX_SERIAL_OCTETS],
    len: u8,
}

impl SerialNumber {
    /// From big-endian octets (leading zero octets allowed). The DER INTEGER
    /// must be positive and fit in 20 octets.
    pub fn from_bytes(bytes: &[u8]) -> Result<SerialNumber, CrlError> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let magnitude = &bytes[start..];
        let Some(first) = magnitude.first() else {
            return Err(CrlError::InvalidArgument("serial number is zero or empty".into()));
        };
        let encoded = magnitude.len() + usize::from(first & 0x80 != 0);
        if encoded > MAX_SERIAL_OCTETS {
            return Err(CrlError::InvalidArgument(format!(
                "serial number needs {encoded} octets; at most {MAX_SERIAL_OCTETS} are allowed"
            )));
        }
        let mut out = [0u8; MAX_SERIAL_OCTETS];
        out[..magnitude.len()].copy_from_slice(magnitude);
        Ok(SerialNumber { bytes: out, len: magnitude.len() as u8 })
    }

    /// From hex as the registry writes it (upper or lower case, even length).
    pub fn from_hex(hex_str: &str) -> Result<SerialNumber, CrlError> {
        let mut buf = [0u8; MAX_SERIAL_OCTETS + 1];
        let n = hex_str.len() / 2;
        if !hex_str.len().is_multiple_of(2) || n == 0 || n > buf.len() {
            // Allow extra leading zero octets beyond 21 only via from_bytes; rare.
            let bytes = hex::decode(hex_str).map_err(|_| bad_hex(hex_str))?;
            return SerialNumber::from_bytes(&bytes);
        }
        hex::decode_to_slice(hex_str, &mut buf[..n]).map_err(|_| bad_hex(hex_str))?;
        SerialNumber::from_bytes(&buf[..n])
    }

    /// The minimal big-endian magnitude (no sign octet).
    pub fn magnitude(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex of the magnitude.
    pub fn to_hex(&self) -> String {
        hex::encode(self.magnitude())
    }
}

fn bad_hex(s: &str) -> CrlError {
    let shown: String = s.chars().take(48).collect();
    CrlError::InvalidArgument(format!("serial number {shown:?} is not hex"))
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({})", self.to_hex())
    }
}

/// One revokedCertificates entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlEntry {
    pub user_certificate: SerialNumber,
    /// revocationDate, seconds since the Unix epoch.
    pub revocation_date: i64,
    pub reason: RevocationReason,
    /// invalidityDate (RFC 5280 5.3.2), seconds since the Unix epoch: when the
    /// key is known or suspected to have been compromised, as the operator
    /// gave it. It may lie before the revocation date.
    pub invalidity_date: Option<i64>,
}

impl CrlEntry {
    /// From one entry of the registry's ListRevoked stream.
    pub fn from_registry(e: &proto::registry::v1::RevokedEntry) -> Result<CrlEntry, CrlError> {
        let user_certificate = SerialNumber::from_hex(&e.serial).map_err(|err| CrlError::BadEntry(err.to_string()))?;
        Ok(CrlEntry {
            user_certificate,
            revocation_date: e.revoked_at_unix,
            // Unknown values become unspecified: the certificate is still listed as revoked.
            reason: RevocationReason::try_from(e.reason).unwrap_or_else(|value| {
                tracing::warn!(value, "unknown revocation reason from the registry; listed as unspecified");
                RevocationReason::Unspecified
            }),
            invalidity_date: (e.invalidity_date_unix != 0).then_some(e.invalidity_date_unix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_minimal_positive_and_bounded() {
        assert_eq!(SerialNumber::from_bytes(&[0, 0, 1]).unwrap().magnitude(), &[1]);
        assert_eq!(SerialNumber::from_hex("00FF").unwrap().magnitude(), &[0xff]);
        assert_eq!(SerialNumber::from_hex("0a0B").unwrap().to_hex(), "0a0b");
        assert!(SerialNumber::from_bytes(&[0x7f; 20]).is_ok());
        assert!(SerialNumber::from_bytes(&[0x80; 19]).is_ok());
        assert!(SerialNumber::from_bytes(&[0x80; 20]).is_err());
        assert!(SerialNumber::from_bytes(&[]).is_err());
        assert!(SerialNumber::from_hex("0000").is_err());
        assert!(SerialNumber::from_hex("").is_err());
        assert!(SerialNumber::from_hex("abc").is_err());
        assert!(SerialNumber::from_hex("zz").is_err());
        assert!(SerialNumber::from_hex("ü1").is_err());
        assert!(SerialNumber::from_hex(&"01".repeat(21)).is_err());
        assert_eq!(SerialNumber::from_hex(&format!("{}01", "00".repeat(30))).unwrap().magnitude(), &[1]);
    }

    #[test]
    fn registry_reasons_map_and_unknown_ones_are_unspecified() {
        let reason = |code| {
            let e = proto::registry::v1::RevokedEntry { serial: "01".into(), reason: code, ..Default::default() };
            CrlEntry::from_registry(&e).unwrap().reason
        };
        assert_eq!(reason(9), RevocationReason::PrivilegeWithdrawn);
        assert_eq!(reason(1), RevocationReason::KeyCompromise);
        assert_eq!(reason(6), RevocationReason::Unspecified);
        assert_eq!(reason(-1), RevocationReason::Unspecified);
    }

    #[test]
    fn registry_entries_with_bad_serials_are_bad_entries() {
        let e = proto::registry::v1::RevokedEntry { serial: "xyz".into(), ..Default::default() };
        assert!(matches!(CrlEntry::from_registry(&e), Err(CrlError::BadEntry(_))));
    }
}
