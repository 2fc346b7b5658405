//! Decoding a request with every limit applied: size, number of CertIDs,
//! issuers we answer for, critical extensions, the nonce. Every failure is an
//! `OcspError` whose mapping (malformedRequest / unauthorized) is in `error`.

use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use der::asn1::OctetStringRef;
use der::Decode;

use crate::asn1::{Extension, OCSPRequest};
use crate::error::OcspError;
use crate::issuers::{match_issuer, HashAlg, IssuerHashes};

/// RFC 9654 §2.1: a nonce is 1 to 128 octets; a request whose nonce is
/// empty or longer is malformedRequest.
pub const MAX_NONCE_LEN: usize = 128;

/// One certificate asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item<'a> {
    pub issuer: usize,
    pub alg: HashAlg,
    /// serialNumber INTEGER content octets (as in the certificate).
    pub serial: &'a [u8],
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// All of one issuer, at least one, at most the configured number.
    pub items: Vec<Item<'a>>,
    /// The nonce extension's extnValue as received (echoed byte for byte): an
    /// OCTET STRING of 1 to [`MAX_NONCE_LEN`] octets. Any other nonce fails
    /// the whole request (RFC 9654).
    pub nonce: Option<&'a [u8]>,
}

pub fn parse<'a>(der: &'a [u8], max_items: usize, issuers: &[IssuerHashes]) -> Result<Parsed<'a>, OcspError> {
    let req = OCSPRequest::from_der(der).map_err(|e| OcspError::Malformed(format!("not an OCSPRequest: {e}")))?;
    let tbs = req.tbs_request;
    if tbs.request_list.is_empty() {
        return Err(OcspError::Malformed("the request asks about no certificate".into()));
    }
    if tbs.request_list.len() > max_items {
        return Err(OcspError::Malformed(format!(
            "the request asks about {} certificates; at most {max_items} are answered",
            tbs.request_list.len()
        )));
    }
    let mut items = Vec::with_capacity(tbs.request_list.len());
    for r in &tbs.request_list {
        check_extensions(r.single_request_extensions.as_deref().unwrap_or_default())?;
        let (issuer, alg) = match_issuer(issuers, &r.req_cert)?;
        items.push(Item { issuer, alg, serial: r.req_cert.serial_number.as_bytes() });
    }
    if items.iter().any(|i| i.issuer != items[0].issuer) {
        // Each issuing CA has its own delegated responder: no single signer can
        // answer for both in one response.
        return Err(OcspError::Unauthorized("the request mixes certificates of two issuing CAs".into()));
    }
    let extensions = tbs.request_extensions.as_deref().unwrap_or_default();
    check_extensions(extensions)?;
    let nonce = match extensions.iter().find(|e| e.extn_id == ID_PKIX_OCSP_NONCE) {
        Some(e) => Some(checked_nonce(e.extn_value.as_bytes())?),
        None => None,
    };
    Ok(Parsed { items, nonce })
}

/// An extension we do not understand must not be critical (RFC 6960 §4.4).
fn check_extensions(exts: &[Extension<'_>]) -> Result<(), OcspError> {
    match exts.iter().find(|e| e.critical && e.extn_id != ID_PKIX_OCSP_NONCE) {
        Some(e) => Err(OcspError::Malformed(format!("unsupported critical extension {}", e.extn_id))),
        None => Ok(()),
    }
}

/// RFC 9654 §2.1: `Nonce ::= OCTET STRING (SIZE(1..128))`; a responder
/// rejects 0 octets and more than 128 with malformedRequest.
fn checked_nonce(extn_value: &[u8]) -> Result<&[u8], OcspError> {
    let nonce = <&OctetStringRef>::from_der(extn_value)
        .map_err(|e| OcspError::Malformed(format!("the nonce extension does not hold an OCTET STRING: {e}")))?;
    match nonce.as_bytes().len() {
        0 => Err(OcspError::Malformed("the nonce is empty; RFC 9654 allows 1 to 128 octets".into())),
        n if n > MAX_NONCE_LEN => {
            Err(OcspError::Malformed(format!("the nonce has {n} octets; RFC 9654 allows 1 to {MAX_NONCE_LEN}")))
        }
        _ => Ok(extn_value),
    }
}

/// An OCSP request for `serials` (DER content octets) under issuer `h`, as a
/// client would send it (for tests and benchmarks).
pub fn encode_request(
    h: &IssuerHashes,
    alg: HashAlg,
    serials: &[&[u8]],
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, OcspError> {
    use crate::asn1::{CertID, Request, TBSRequest, Version};
    use der::asn1::{AnyRef, IntRef};
    use der::Encode;
    let mut request_list = Vec::with_capacity(serials.len());
    for s in serials {
        request_list.push(Request {
            req_cert: CertID {
                hash_algorithm: spki::AlgorithmIdentifierRef { oid: alg.oid(), parameters: Some(AnyRef::NULL) },
                issuer_name_hash: OctetStringRef::new(h.name_hash(alg))?,
                issuer_key_hash: OctetStringRef::new(h.key_hash(alg))?,
                serial_number: IntRef::new(s)?,
            },
            single_request_extensions: None,
        });
    }
    let nonce_value = match nonce {
        Some(n) => Some(OctetStringRef::new(n)?.to_der()?),
        None => None,
    };
    let request_extensions = match &nonce_value {
        Some(v) => {
            Some(vec![Extension { extn_id: ID_PKIX_OCSP_NONCE, critical: false, extn_value: OctetStringRef::new(v)? }])
        }
        None => None,
    };
    let req = OCSPRequest {
        tbs_request: TBSRequest { version: Version::V1, requestor_name: None, request_list, request_extensions },
        optional_signature: None,
    };
    Ok(req.to_der()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use der::asn1::ObjectIdentifier;
    use der::Encode;

    pub(crate) fn build(h: &IssuerHashes, alg: HashAlg, serials: &[&[u8]], nonce: Option<&[u8]>) -> Vec<u8> {
        encode_request(h, alg, serials, nonce).unwrap()
    }

    fn issuers() -> Vec<IssuerHashes> {
        vec![IssuerHashes::new(b"a", b"ka"), IssuerHashes::new(b"b", b"kb")]
    }

    #[test]
    fn a_request_decodes_to_items_and_nonce() {
        let is = issuers();
        let der = build(&is[1], HashAlg::Sha256, &[&[1, 2], &[3]], Some(&[9; 16]));
        let p = parse(&der, 8, &is).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0], Item { issuer: 1, alg: HashAlg::Sha256, serial: &[1, 2] });
        assert_eq!(p.items[1].serial, &[3]);
        assert_eq!(p.nonce, Some(&[&[0x04, 16][..], &[9; 16]].concat()[..]));
    }

    #[test]
    fn limits_give_malformed_or_unauthorized() {
        let is = issuers();
        let three = build(&is[0], HashAlg::Sha1, &[&[1], &[2], &[3]], None);
        assert!(matches!(parse(&three, 2, &is), Err(OcspError::Malformed(_))));
        assert!(parse(&three, 3, &is).is_ok());
        let none = build(&is[0], HashAlg::Sha1, &[], None);
        assert!(matches!(parse(&none, 2, &is), Err(OcspError::Malformed(_))));
        let other = IssuerHashes::new(b"c", b"kc");
        let foreign = build(&other, HashAlg::Sha1, &[&[1]], None);
        assert!(matches!(parse(&foreign, 2, &is), Err(OcspError::Unauthorized(_))));
    }

    #[test]
    fn mixed_issuers_are_unauthorized() {
        let is = issuers();
        let a = build(&is[0], HashAlg::Sha1, &[&[1]], None);
        let b = build(&is[1], HashAlg::Sha1, &[&[2]], None);
        let (ra, rb) = (OCSPRequest::from_der(&a).unwrap(), OCSPRequest::from_der(&b).unwrap());
        let mut both = ra.clone();
        both.tbs_request.request_list.push(rb.tbs_request.request_list[0].clone());
        let der = both.to_der().unwrap();
        assert!(matches!(parse(&der, 8, &is), Err(OcspError::Unauthorized(_))));
    }

    #[test]
    fn nonces_follow_rfc_9654_and_critical_unknown_extensions_are_rejected() {
        let is = issuers();
        for len in [0, 129, 4000] {
            let der = build(&is[0], HashAlg::Sha1, &[&[1]], Some(&vec![7; len]));
            match parse(&der, 8, &is) {
                Err(OcspError::Malformed(m)) => assert!(m.contains("nonce"), "{len}: {m}"),
                other => panic!("nonce of {len} octets: {other:?}"),
            }
        }
        for len in [1, 16, 32, 33, 128] {
            let der = build(&is[0], HashAlg::Sha1, &[&[1]], Some(&vec![7; len]));
            let nonce = parse(&der, 8, &is).unwrap().nonce.unwrap();
            assert_eq!(<&OctetStringRef>::from_der(nonce).unwrap().as_bytes().len(), len);
        }
        // An extnValue that is not an OCTET STRING.
        let der = build(&is[0], HashAlg::Sha1, &[&[1]], Some(&[1; 32]));
        let mut req = OCSPRequest::from_der(&der).unwrap();
        let not_octets = [0x02, 0x01, 0x05];
        req.tbs_request.request_extensions.as_mut().unwrap()[0].extn_value = OctetStringRef::new(&not_octets).unwrap();
        assert!(matches!(parse(&req.to_der().unwrap(), 8, &is), Err(OcspError::Malformed(_))));

        let mut req = OCSPRequest::from_der(&der).unwrap();
        let value = [0x05, 0x00];
        let ext = Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
            critical: true,
            extn_value: OctetStringRef::new(&value).unwrap(),
        };
        req.tbs_request.request_extensions.as_mut().unwrap().push(ext.clone());
        let der = req.to_der().unwrap();
        assert!(matches!(parse(&der, 8, &is), Err(OcspError::Malformed(_))));
        let mut req = OCSPRequest::from_der(&der).unwrap();
        req.tbs_request.request_extensions.as_mut().unwrap().last_mut().unwrap().critical = false;
        assert!(parse(&req.to_der().unwrap(), 8, &is).is_ok(), "non-critical unknown extensions are ignored");
    }

    /// Never a panic: garbage, every truncation, every single-byte change, huge lengths.
    #[test]
    fn garbage_truncations_and_mutations_never_panic() {
        let is = issuers();
        let der = build(&is[0], HashAlg::Sha256, &[&[1, 2, 3], &[4]], Some(&[7; 16]));
        for n in 0..der.len() {
            assert!(matches!(parse(&der[..n], 8, &is), Err(OcspError::Malformed(_))), "prefix of {n}");
        }
        for i in 0..der.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0x81, 0x84, 0xff] {
                let mut m = der.clone();
                m[i] = v;
                let _ = parse(&m, 8, &is);
            }
        }
        for garbage in [
            &b""[..],
            b"hello",
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30; 4096],
            &[0xa0; 100],
        ] {
            assert!(matches!(parse(garbage, 8, &is), Err(OcspError::Malformed(_))));
        }
        // Deep nesting.
        let mut deep = Vec::new();
        for _ in 0..500 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(parse(&deep, 8, &is).is_err());
    }
}
