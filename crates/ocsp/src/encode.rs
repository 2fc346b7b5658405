//! Building responses: the to-be-signed ResponseData, the signed body, and the
//! final OCSPResponse around it.
//!
//! A cached response is kept as its *body* (tbsResponseData, signatureAlgorithm
//! and signature, exactly as signed) plus a shared *tail* (the `certs` field with
//! the responder certificate, which the signature does not cover). `assemble`
//! wraps the two in the BasicOCSPResponse / ResponseBytes / OCSPResponse
//! headers, so a million cached responses do not hold a million copies of the
//! responder certificate.

use const_oid::db::{rfc5280, rfc6960};
use std::time::Duration;

use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, IntRef, Null, ObjectIdentifier, OctetStringRef};
use der::{Encode, Header, Length, Tag};
use spki::AlgorithmIdentifierRef;

use crate::asn1::{
    self, CertID, CertStatus, Extension, OCSPResponseStatus, ResponderID, ResponseData, RevokedInfo, SingleResponse,
};
use crate::error::OcspError;
use crate::issuers::{HashAlg, IssuerHashes};
use crate::status::CertState;

/// One SingleResponse to write.
#[derive(Clone, Copy, Debug)]
pub struct Single<'a> {
    pub alg: HashAlg,
    pub issuer: &'a IssuerHashes,
    pub serial: &'a [u8],
    pub state: CertState,
    pub this_update: i64,
    pub next_update: i64,
}

fn time(unix: i64) -> Result<GeneralizedTime, OcspError> {
    let secs = u64::try_from(unix).map_err(|_| OcspError::TimeBefore1970(unix))?;
    Ok(GeneralizedTime::from_unix_duration(Duration::from_secs(secs))?)
}

/// The extensions field holding one non-critical extension `id` with
/// extnValue `value`; none without a value.
fn non_critical(id: ObjectIdentifier, value: Option<&[u8]>) -> Result<Option<Vec<Extension<'_>>>, OcspError> {
    let Some(value) = value else { return Ok(None) };
    Ok(Some(vec![Extension { extn_id: id, critical: false, extn_value: OctetStringRef::new(value)? }]))
}

/// DER of `ResponseData` (responderID byKey) for `singles`, with the nonce
/// extension echoed when given (its extnValue as the client sent it).
pub fn response_data(
    responder_key_hash: &[u8],
    produced_at: i64,
    singles: &[Single<'_>],
    nonce_extn_value: Option<&[u8]>,
) -> Result<Vec<u8>, OcspError> {
    let mut responses = Vec::with_capacity(singles.len());
    let mut names = Vec::with_capacity(singles.len());
    // DER of each invalidityDate's GeneralizedTime (the extnValue), when there is one.
    let mut invalidity = Vec::with_capacity(singles.len());
    for s in singles {
        names.push((s.issuer.name_hash(s.alg), s.issuer.key_hash(s.alg)));
        invalidity.push(match s.state {
            CertState::Revoked { invalidity_unix: Some(at), .. } => Some(time(at)?.to_der()?),
            _ => None,
        });
    }
    for ((s, (name, key)), invalidity) in singles.iter().zip(&names).zip(&invalidity) {
        let cert_status = match s.state {
            CertState::Good => CertStatus::Good(Null),
            CertState::Unknown => CertStatus::Unknown(Null),
            CertState::Revoked { at_unix, reason, .. } => {
                CertStatus::Revoked(RevokedInfo { revocation_time: time(at_unix)?, revocation_reason: reason })
            }
        };
        // RFC 6960 §4.4.5 / RFC 5280 §5.3.2: the time of compromise, non-critical,
        // beside (never instead of) the revocationTime.
        let single_extensions = non_critical(rfc5280::ID_CE_INVALIDITY_DATE, invalidity.as_deref())?;
        responses.push(SingleResponse {
            cert_id: CertID {
                // With NULL parameters, as OpenSSL and most clients write it.
                hash_algorithm: AlgorithmIdentifierRef { oid: s.alg.oid(), parameters: Some(AnyRef::NULL) },
                issuer_name_hash: OctetStringRef::new(name)?,
                issuer_key_hash: OctetStringRef::new(key)?,
                serial_number: IntRef::new(s.serial)?,
            },
            cert_status,
            this_update: time(s.this_update)?,
            next_update: Some(time(s.next_update)?),
            single_extensions,
        });
    }
    let response_extensions = non_critical(rfc6960::ID_PKIX_OCSP_NONCE, nonce_extn_value)?;
    let data = ResponseData {
        version: asn1::Version::V1,
        responder_id: ResponderID::ByKey(OctetStringRef::new(responder_key_hash)?),
        produced_at: time(produced_at)?,
        responses,
        response_extensions,
    };
    Ok(data.to_der()?)
}

/// tbsResponseData ‖ signatureAlgorithm ‖ signature: the body of a BasicOCSPResponse
/// without its SEQUENCE header and without certs.
pub fn signed_body(tbs: &[u8], signature_algorithm_der: &[u8], signature: &[u8]) -> Result<Vec<u8>, OcspError> {
    let bits = BitStringRef::from_bytes(signature)?.to_der()?;
    let mut out = Vec::with_capacity(tbs.len() + signature_algorithm_der.len() + bits.len());
    out.extend_from_slice(tbs);
    out.extend_from_slice(signature_algorithm_der);
    out.extend_from_slice(&bits);
    Ok(out)
}

/// The `certs [0] EXPLICIT SEQUENCE OF Certificate` field holding `certs`.
pub fn certs_field(certs: &[&[u8]]) -> Result<Vec<u8>, OcspError> {
    let inner: usize = certs.iter().map(|c| c.len()).sum();
    let mut seq = header(Tag::Sequence, inner)?;
    for c in certs {
        seq.extend_from_slice(c);
    }
    let tag = Tag::ContextSpecific { constructed: true, number: der::TagNumber(0) };
    let mut out = header(tag, seq.len())?;
    out.extend_from_slice(&seq);
    Ok(out)
}

fn header(tag: Tag, len: usize) -> Result<Vec<u8>, OcspError> {
    Ok(Header::new(tag, Length::try_from(len)?).to_der()?)
}

/// DER length octets of `len`.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn len_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        1 + (usize::BITS as usize / 8 - len.leading_zeros() as usize / 8)
    }
}

/// `06 08 2b 06 01 05 05 07 30 01 01`: id-pkix-ocsp-basic.
const BASIC_OID_TLV: [u8; 11] = [0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// The complete successful OCSPResponse for a signed body and certs tail.
pub fn assemble(body: &[u8], tail: &[u8]) -> Vec<u8> {
    let basic = body.len() + tail.len();
    let octets = 1 + len_len(basic) + basic;
    let rb = BASIC_OID_TLV.len() + 1 + len_len(octets) + octets;
    let ctx = 1 + len_len(rb) + rb;
    let outer = 3 + 1 + len_len(ctx) + ctx;
    let mut out = Vec::with_capacity(1 + len_len(outer) + outer);
    out.push(0x30);
    push_len(&mut out, outer);
    out.extend_from_slice(&[0x0a, 0x01, 0x00]);
    out.push(0xa0);
    push_len(&mut out, ctx);
    out.push(0x30);
    push_len(&mut out, rb);
    out.extend_from_slice(&BASIC_OID_TLV);
    out.push(0x04);
    push_len(&mut out, octets);
    out.push(0x30);
    push_len(&mut out, basic);
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    out
}

/// The five-byte OCSPResponse of an error status.
pub fn error_response(status: OCSPResponseStatus) -> [u8; 5] {
    [0x30, 0x03, 0x0a, 0x01, status as u8]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asn1::{BasicOCSPResponse, OCSPResponse, ResponseBytes};
    use const_oid::db::rfc5912;
    use der::Decode;

    /// Revoked at 1_700_000_000 for keyCompromise, with `invalidity_unix`.
    fn key_compromise(invalidity_unix: Option<i64>) -> CertState {
        CertState::Revoked { at_unix: 1_700_000_000, reason: Some(asn1::CRLReason::KeyCompromise), invalidity_unix }
    }

    #[test]
    fn lengths_are_der() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x123456] {
            let mut a = Vec::new();
            push_len(&mut a, len);
            assert_eq!(a.len(), len_len(len), "{len}");
            assert_eq!(a, Length::try_from(len).unwrap().to_der().unwrap(), "{len}");
        }
    }

    #[test]
    fn an_invalidity_date_goes_in_single_extensions_and_not_in_the_revocation_time() {
        let issuer = IssuerHashes::new(b"n", b"k");
        let state = key_compromise(Some(1_699_000_000));
        let single = Single {
            alg: HashAlg::Sha256,
            issuer: &issuer,
            serial: &[0x01],
            state,
            this_update: 1_700_000_100,
            next_update: 1_700_086_500,
        };
        let plain = Single { state: CertState::Good, serial: &[0x02], ..single };
        let tbs = response_data(&[3; 20], 1_700_000_100, &[single, plain], None).unwrap();
        let data = ResponseData::from_der(&tbs).unwrap();
        let CertStatus::Revoked(info) = &data.responses[0].cert_status else { panic!("not revoked") };
        assert_eq!(info.revocation_time.to_unix_duration().as_secs(), 1_700_000_000);
        let exts = data.responses[0].single_extensions.as_ref().unwrap();
        assert_eq!(exts.len(), 1);
        assert_eq!(exts[0].extn_id, rfc5280::ID_CE_INVALIDITY_DATE);
        assert!(!exts[0].critical);
        let t = GeneralizedTime::from_der(exts[0].extn_value.as_bytes()).unwrap();
        assert_eq!(t.to_unix_duration().as_secs(), 1_699_000_000);
        assert!(data.responses[1].single_extensions.is_none());
    }

    #[test]
    fn assembled_response_equals_the_typed_encoding() {
        let issuer = IssuerHashes::new(b"n", b"k");
        let state = key_compromise(None);
        let singles = [
            Single {
                alg: HashAlg::Sha1,
                issuer: &issuer,
                serial: &[0x01, 0x02],
                state,
                this_update: 1_700_000_100,
                next_update: 1_700_086_500,
            },
            Single {
                alg: HashAlg::Sha256,
                issuer: &issuer,
                serial: &[0x7f],
                state: CertState::Good,
                this_update: 1_700_000_100,
                next_update: 1_700_086_500,
            },
        ];
        let nonce = [0x04, 0x02, 0xaa, 0xbb];
        let tbs = response_data(&[3; 20], 1_700_000_100, &singles, Some(&nonce)).unwrap();
        let alg = AlgorithmIdentifierRef { oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION, parameters: Some(AnyRef::NULL) }
            .to_der()
            .unwrap();
        // Certificates are opaque here; any DER SEQUENCE will do.
        let cert_a = [0x30, 0x03, 0x02, 0x01, 0x05];
        let big_cert = {
            let mut c = header(Tag::Sequence, 300).unwrap();
            c.extend_from_slice(&[0x04, 0x82, 0x01, 0x28]);
            c.extend(std::iter::repeat_n(0x55, 296));
            c
        };
        for sig_len in [64usize, 256, 512] {
            let sig = vec![0x42; sig_len];
            let body = signed_body(&tbs, &alg, &sig).unwrap();
            let tail = certs_field(&[&cert_a, &big_cert]).unwrap();
            let ours = assemble(&body, &tail);

            let basic = BasicOCSPResponse {
                tbs_response_data: der::Decode::from_der(&tbs).unwrap(),
                signature_algorithm: AlgorithmIdentifierRef::from_der(&alg).unwrap(),
                signature: BitStringRef::from_bytes(&sig).unwrap(),
                certs: Some(vec![AnyRef::from_der(&cert_a).unwrap(), AnyRef::from_der(&big_cert).unwrap()]),
            }
            .to_der()
            .unwrap();
            let typed = OCSPResponse {
                response_status: OCSPResponseStatus::Successful,
                response_bytes: Some(ResponseBytes {
                    response_type: rfc6960::ID_PKIX_OCSP_BASIC,
                    response: OctetStringRef::new(&basic).unwrap(),
                }),
            }
            .to_der()
            .unwrap();
            assert_eq!(ours, typed, "signature of {sig_len} bytes");
            let parsed = OCSPResponse::from_der(&ours).unwrap();
            let bytes = parsed.response_bytes.unwrap();
            let basic = BasicOCSPResponse::from_der(bytes.response.as_bytes()).unwrap();
            let data = basic.tbs_response_data;
            assert_eq!(data.responses.len(), 2);
            assert_eq!(
                data.responses[0].cert_status,
                CertStatus::Revoked(RevokedInfo {
                    revocation_time: time(1_700_000_000).unwrap(),
                    revocation_reason: Some(asn1::CRLReason::KeyCompromise),
                })
            );
            assert_eq!(data.responses[1].cert_status, CertStatus::Good(Null));
            assert_eq!(data.response_extensions.unwrap()[0].extn_value.as_bytes(), &nonce);
        }
    }

    #[test]
    fn error_responses_decode() {
        for s in [OCSPResponseStatus::MalformedRequest, OCSPResponseStatus::TryLater, OCSPResponseStatus::Unauthorized]
        {
            let der = error_response(s);
            let r = OCSPResponse::from_der(&der).unwrap();
            assert_eq!(r.response_status, s);
            assert!(r.response_bytes.is_none());
        }
    }
}
