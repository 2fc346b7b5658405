//! Certificate serial numbers, the one reference to a certificate: random,
//! positive, minimal DER INTEGER content; hex in the proto, the store and the
//! audit log.

use std::fmt;

use rand::{rngs::OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Octets of a serial we generate. 16 octets with the top bit cleared give
/// 127 random bits, well over the 64 bits CA/B and RFC 5280 practice ask for,
/// and stay under RFC 5280's 20-octet limit.
pub const SERIAL_LEN: usize = 16;
/// RFC 5280 4.1.2.2: conforming serials are at most 20 octets.
pub const MAX_SERIAL_LEN: usize = 20;

/// The content octets of a certificate's serialNumber INTEGER, big-endian.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SerialParseError {
    #[error("is empty")]
    Empty,
    #[error("is not hex: {0}")]
    NotHex(hex::FromHexError),
    #[error("is longer than {MAX_SERIAL_LEN} octets")]
    TooLong,
}

impl Serial {
    /// A fresh random serial: the first octet is in 0x01..=0x7f, so the INTEGER
    /// is positive and its DER encoding needs no leading zero (it is minimal).
    pub fn random() -> Serial {
        let mut bytes = [0u8; SERIAL_LEN];
        loop {
            OsRng.fill_bytes(&mut bytes);
            bytes[0] &= 0x7f;
            if bytes[0] != 0 {
                return Serial(bytes.to_vec());
            }
        }
    }

    /// Parses hex as found in the proto (either case). The bytes are taken as
    /// given: lookups of serials we never issued simply find nothing.
    pub fn from_hex(text: &str) -> Result<Serial, SerialParseError> {
        if text.is_empty() {
            return Err(SerialParseError::Empty);
        }
        let bytes = hex::decode(text).map_err(SerialParseError::NotHex)?;
        if bytes.len() > MAX_SERIAL_LEN {
            return Err(SerialParseError::TooLong);
        }
        Ok(Serial(bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Serial, SerialParseError> {
        match bytes.len() {
            0 => Err(SerialParseError::Empty),
            n if n > MAX_SERIAL_LEN => Err(SerialParseError::TooLong),
            _ => Ok(Serial(bytes.to_vec())),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex, the form used in the proto and the audit log.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Serial, D::Error> {
        let text = String::deserialize(d)?;
        Serial::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn random_serials_are_positive_minimal_16_octets_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let s = Serial::random();
            let b = s.as_bytes();
            assert_eq!(b.len(), SERIAL_LEN);
            assert!(b[0] & 0x80 == 0, "negative INTEGER: {s}");
            assert!(b[0] != 0, "non-minimal INTEGER: {s}");
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_rejected() {
        let s = Serial::from_hex("01AbCd").unwrap();
        assert_eq!(s.to_hex(), "01abcd");
        assert_eq!(Serial::from_hex(""), Err(SerialParseError::Empty));
        assert!(matches!(Serial::from_hex("abc"), Err(SerialParseError::NotHex(_))));
        assert!(matches!(Serial::from_hex("zz"), Err(SerialParseError::NotHex(_))));
        assert_eq!(Serial::from_hex(&"01".repeat(21)), Err(SerialParseError::TooLong));
        assert!(Serial::from_hex(&"01".repeat(20)).is_ok());
        assert_eq!(Serial::from_bytes(&[]), Err(SerialParseError::Empty));
    }

    #[test]
    fn serde_uses_hex() {
        let s = Serial::from_hex("7f01").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"7f01\"");
        assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Serial>("\"xyz\"").is_err());
    }
}
