//! Serial numbers as cache keys: the DER INTEGER content octets of the
//! certificate's serialNumber (the registry's hex is the same octets), stored
//! inline with the issuer so a lookup allocates nothing.

use std::fmt;

/// RFC 5280 4.1.2.2: conforming serials are at most 20 octets.
pub const MAX_SERIAL_LEN: usize = 20;

/// Issuer index + serial octets. Serials longer than 20 octets are never ours.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialKey {
    issuer: u8,
    len: u8,
    bytes: [u8; MAX_SERIAL_LEN],
}

impl SerialKey {
    /// None for an empty serial or one longer than 20 octets, or an issuer index over 255.
    pub fn new(issuer: usize, serial: &[u8]) -> Option<SerialKey> {
        let issuer = u8::try_from(issuer).ok()?;
        if serial.is_empty() || serial.len() > MAX_SERIAL_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_SERIAL_LEN];
        bytes[..serial.len()].copy_from_slice(serial);
        Some(SerialKey { issuer, len: serial.len() as u8, bytes })
    }

    /// From the registry's lower- or upper-case hex.
    pub fn from_hex(issuer: usize, hex_serial: &str) -> Option<SerialKey> {
        let bytes = hex::decode(hex_serial).ok()?;
        SerialKey::new(issuer, &bytes)
    }

    pub fn issuer(&self) -> usize {
        usize::from(self.issuer)
    }

    pub fn serial(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The registry's form.
    pub fn hex(&self) -> String {
        hex::encode(self.serial())
    }
}

impl fmt::Debug for SerialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.issuer, self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bound_the_length() {
        let k = SerialKey::new(1, &[0x01, 0xab]).unwrap();
        assert_eq!(k.serial(), &[0x01, 0xab]);
        assert_eq!(k.issuer(), 1);
        assert_eq!(k.hex(), "01ab");
        assert_eq!(SerialKey::from_hex(1, "01AB"), Some(k));
        assert_ne!(SerialKey::new(0, &[0x01, 0xab]), Some(k));
        assert!(SerialKey::new(0, &[]).is_none());
        assert!(SerialKey::new(0, &[1; 21]).is_none());
        assert!(SerialKey::new(0, &[1; 20]).is_some());
        assert!(SerialKey::new(256, &[1]).is_none());
        assert!(SerialKey::from_hex(0, "xyz").is_none());
        assert_eq!(format!("{k:?}"), "1:01ab");
    }
}
