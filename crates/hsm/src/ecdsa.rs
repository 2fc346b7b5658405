//! Converting CKM_ECDSA's raw r||s into the DER Ecdsa-Sig-Value X.509 expects.

use der::asn1::UintRef;
use der::{Encode, Sequence};

use crate::error::HsmError;

/// Length of a raw P-256 signature: 32-byte r then 32-byte s.
pub(crate) const P256_RAW_SIG_LEN: usize = 64;

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// DER-encodes a raw r||s signature; `UintRef` strips leading zeros and adds the
/// 0x00 pad when the high bit is set, so the INTEGERs are minimal and positive.
pub(crate) fn raw_to_der(raw: &[u8]) -> Result<Vec<u8>, HsmError> {
    if raw.len() != P256_RAW_SIG_LEN {
        return Err(HsmError::Encoding(format!("ECDSA signature is {} bytes, expected {P256_RAW_SIG_LEN}", raw.len())));
    }
    let (r, s) = raw.split_at(P256_RAW_SIG_LEN / 2);
    let enc = |e: der::Error| HsmError::Encoding(format!("ECDSA signature: {e}"));
    EcdsaSigValue { r: UintRef::new(r).map_err(enc)?, s: UintRef::new(s).map_err(enc)? }.to_der().map_err(enc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(r: [u8; 32], s: [u8; 32]) -> Vec<u8> {
        [r, s].concat()
    }

    #[test]
    fn high_bit_gets_zero_pad() {
        let der = raw_to_der(&raw([0x80; 32], [0x01; 32])).unwrap();
        let mut want = vec![0x30, 0x45, 0x02, 0x21, 0x00];
        want.extend([0x80; 32]);
        want.extend([0x02, 0x20]);
        want.extend([0x01; 32]);
        assert_eq!(der, want);
    }

    #[test]
    fn leading_zeros_are_stripped() {
        let mut r = [0x11; 32];
        r[0] = 0;
        r[1] = 0;
        let mut s = [0x22; 32];
        s[0] = 0;
        s[1] = 0x90; // after stripping, high bit set: needs the pad back
        let der = raw_to_der(&raw(r, s)).unwrap();
        let mut want = vec![0x30, 0x42, 0x02, 0x1e];
        want.extend([0x11; 30]);
        want.extend([0x02, 0x20, 0x00, 0x90]);
        want.extend([0x22; 30]);
        assert_eq!(der, want);
    }

    #[test]
    fn zero_value_is_a_single_zero_byte() {
        let der = raw_to_der(&raw([0; 32], [0x7f; 32])).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x25, 0x02, 0x01, 0x00]);
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert!(matches!(raw_to_der(&[1; 63]), Err(HsmError::Encoding(_))));
        assert!(matches!(raw_to_der(&[1; 96]), Err(HsmError::Encoding(_))));
    }
}
