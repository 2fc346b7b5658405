//! Certificate serial numbers as given by the registry (big-endian, unsigned).

use crate::error::ProfileError;

/// RFC 5280 §4.1.2.2: positive, at most 20 octets once DER-encoded.
pub fn serial_number(serial: &[u8]) -> Result<rcgen::SerialNumber, ProfileError> {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    let magnitude = &serial[start..];
    let Some(first) = magnitude.first() else {
        return Err(ProfileError::InvalidSerial("the serial number must be positive, not zero or empty".into()));
    };
    // DER adds a 0x00 octet when the top bit is set, to keep the INTEGER positive.
    let encoded_len = magnitude.len() + usize::from(first & 0x80 != 0);
    if encoded_len > 20 {
        return Err(ProfileError::InvalidSerial(format!(
            "the serial number needs {encoded_len} octets; RFC 5280 allows at most 20"
        )));
    }
    Ok(rcgen::SerialNumber::from_slice(magnitude))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_positive_up_to_20_encoded_octets() {
        assert_eq!(serial_number(&[0, 0, 1]).unwrap().to_bytes(), vec![1]);
        assert!(serial_number(&[0x7f; 20]).is_ok());
        assert!(serial_number(&[0x80; 19]).is_ok());
    }

    #[test]
    fn rejects_zero_empty_and_long() {
        assert!(serial_number(&[]).is_err());
        assert!(serial_number(&[0, 0]).is_err());
        assert!(serial_number(&[0x80; 20]).is_err());
        assert!(serial_number(&[0x01; 21]).is_err());
    }
}
