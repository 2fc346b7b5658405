//! The ASN.1 of RFC 6960 (OCSP) and RFC 8954 (nonce), with der 0.8.
//!
//! Types are named as in the RFC. They borrow from the input (zero-copy) so
//! decoding a request allocates only the request list. The module has no
//! logic: limits, issuer matching and response assembly live elsewhere.
#![allow(clippy::upper_case_acronyms)]

use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, IntRef, Null, ObjectIdentifier, OctetStringRef};
use der::{Choice, Enumerated, Sequence};
use spki::AlgorithmIdentifierRef;

// The OIDs (id-pkix-ocsp-basic, -nonce, -nocheck, id-sha1, id-sha256, ...) are
// `const_oid::db::{rfc6960, rfc5280, rfc5912}`'s.

/// `Version ::= INTEGER { v1(0) }`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
pub enum Version {
    #[default]
    V1 = 0,
}

/// `Extension` (RFC 5280), borrowed.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct Extension<'a> {
    pub extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    pub critical: bool,
    pub extn_value: &'a OctetStringRef,
}

/// ```text
/// OCSPRequest ::= SEQUENCE {
///     tbsRequest                  TBSRequest,
///     optionalSignature   [0]     EXPLICIT Signature OPTIONAL }
/// ```
/// The signature is kept undecoded: we neither require nor check signed requests.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct OCSPRequest<'a> {
    pub tbs_request: TBSRequest<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub optional_signature: Option<AnyRef<'a>>,
}

/// ```text
/// TBSRequest ::= SEQUENCE {
///     version             [0]     EXPLICIT Version DEFAULT v1,
///     requestorName       [1]     EXPLICIT GeneralName OPTIONAL,
///     requestList                 SEQUENCE OF Request,
///     requestExtensions   [2]     EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TBSRequest<'a> {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub requestor_name: Option<AnyRef<'a>>,
    pub request_list: Vec<Request<'a>>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Vec<Extension<'a>>>,
}

/// ```text
/// Request ::= SEQUENCE {
///     reqCert                     CertID,
///     singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct Request<'a> {
    pub req_cert: CertID<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub single_request_extensions: Option<Vec<Extension<'a>>>,
}

/// ```text
/// CertID ::= SEQUENCE {
///     hashAlgorithm       AlgorithmIdentifier,
///     issuerNameHash      OCTET STRING, -- Hash of issuer's DN
///     issuerKeyHash       OCTET STRING, -- Hash of issuer's public key
///     serialNumber        CertificateSerialNumber }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CertID<'a> {
    pub hash_algorithm: AlgorithmIdentifierRef<'a>,
    pub issuer_name_hash: &'a OctetStringRef,
    pub issuer_key_hash: &'a OctetStringRef,
    pub serial_number: IntRef<'a>,
}

/// ```text
/// OCSPResponseStatus ::= ENUMERATED {
///     successful (0), malformedRequest (1), internalError (2),
///     tryLater (3), sigRequired (5), unauthorized (6) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enumerated)]
#[repr(u8)]
pub enum OCSPResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

/// ```text
/// OCSPResponse ::= SEQUENCE {
///     responseStatus         OCSPResponseStatus,
///     responseBytes          [0] EXPLICIT ResponseBytes OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct OCSPResponse<'a> {
    pub response_status: OCSPResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub response_bytes: Option<ResponseBytes<'a>>,
}

/// ```text
/// ResponseBytes ::= SEQUENCE {
///     responseType   OBJECT IDENTIFIER,
///     response       OCTET STRING }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct ResponseBytes<'a> {
    pub response_type: ObjectIdentifier,
    pub response: &'a OctetStringRef,
}

/// ```text
/// BasicOCSPResponse ::= SEQUENCE {
///    tbsResponseData      ResponseData,
///    signatureAlgorithm   AlgorithmIdentifier,
///    signature            BIT STRING,
///    certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
/// ```
/// Certificates are kept undecoded.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct BasicOCSPResponse<'a> {
    pub tbs_response_data: ResponseData<'a>,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub certs: Option<Vec<AnyRef<'a>>>,
}

/// ```text
/// ResponseData ::= SEQUENCE {
///    version              [0] EXPLICIT Version DEFAULT v1,
///    responderID              ResponderID,
///    producedAt               GeneralizedTime,
///    responses                SEQUENCE OF SingleResponse,
///    responseExtensions   [1] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct ResponseData<'a> {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    pub responder_id: ResponderID<'a>,
    pub produced_at: GeneralizedTime,
    pub responses: Vec<SingleResponse<'a>>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub response_extensions: Option<Vec<Extension<'a>>>,
}

/// ```text
/// ResponderID ::= CHOICE {
///    byName   [1] Name,
///    byKey    [2] KeyHash }
/// KeyHash ::= OCTET STRING -- SHA-1 hash of responder's public key
/// ```
/// (The OCSP module uses explicit tags.) The Name is kept undecoded.
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
pub enum ResponderID<'a> {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(AnyRef<'a>),
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(&'a OctetStringRef),
}

/// ```text
/// SingleResponse ::= SEQUENCE {
///    certID                       CertID,
///    certStatus                   CertStatus,
///    thisUpdate                   GeneralizedTime,
///    nextUpdate         [0]       EXPLICIT GeneralizedTime OPTIONAL,
///    singleExtensions   [1]       EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SingleResponse<'a> {
    pub cert_id: CertID<'a>,
    pub cert_status: CertStatus,
    pub this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub single_extensions: Option<Vec<Extension<'a>>>,
}

/// ```text
/// CertStatus ::= CHOICE {
///     good        [0]     IMPLICIT NULL,
///     revoked     [1]     IMPLICIT RevokedInfo,
///     unknown     [2]     IMPLICIT UnknownInfo }
/// UnknownInfo ::= NULL
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
pub enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// ```text
/// RevokedInfo ::= SEQUENCE {
///     revocationTime              GeneralizedTime,
///     revocationReason    [0]     EXPLICIT CRLReason OPTIONAL }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct RevokedInfo {
    pub revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub revocation_reason: Option<CRLReason>,
}

/// `CRLReason` (RFC 5280 §5.3.1): x509-cert's, under the name RFC 6960 uses.
pub use x509_cert::ext::pkix::CrlReason as CRLReason;

/// The DER value of a domain reason: the same RFC 5280 code.
pub fn crl_reason(r: domain::RevocationReason) -> CRLReason {
    CRLReason::try_from(u32::from(r.code())).expect("every domain reason is an RFC 5280 CRLReason")
}

/// RFC 8954: `Nonce ::= OCTET STRING (SIZE(1..32))`, carried DER-encoded in the
/// nonce extension's extnValue.
pub type Nonce<'a> = &'a OctetStringRef;

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn error_response_is_the_classic_five_bytes() {
        let r = OCSPResponse { response_status: OCSPResponseStatus::Unauthorized, response_bytes: None };
        assert_eq!(r.to_der().unwrap(), vec![0x30, 0x03, 0x0a, 0x01, 0x06]);
    }

    #[test]
    fn cert_status_tags_follow_the_rfc() {
        assert_eq!(CertStatus::Good(Null).to_der().unwrap(), vec![0x80, 0x00]);
        assert_eq!(CertStatus::Unknown(Null).to_der().unwrap(), vec![0x82, 0x00]);
        let t = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(0)).unwrap();
        let revoked =
            CertStatus::Revoked(RevokedInfo { revocation_time: t, revocation_reason: Some(CRLReason::KeyCompromise) })
                .to_der()
                .unwrap();
        assert_eq!(revoked[0], 0xa1);
        assert_eq!(&revoked[revoked.len() - 5..], &[0xa0, 0x03, 0x0a, 0x01, 0x01]);
        assert_eq!(CertStatus::from_der(&revoked).unwrap().to_der().unwrap(), revoked);
    }

    #[test]
    fn responder_id_by_key_is_explicitly_tagged() {
        let hash = [7u8; 20];
        let id = ResponderID::ByKey(OctetStringRef::new(&hash).unwrap());
        let der = id.to_der().unwrap();
        assert_eq!(&der[..4], &[0xa2, 22, 0x04, 20]);
        assert_eq!(ResponderID::from_der(&der).unwrap(), id);
    }

    #[test]
    fn domain_reasons_have_their_rfc_5280_code() {
        for r in domain::RevocationReason::ALL {
            assert_eq!(crl_reason(r) as u32, u32::from(r.code()), "{r}");
            // ENUMERATED, one content octet: what the responder has always written.
            assert_eq!(crl_reason(r).to_der().unwrap(), [0x0a, 0x01, r.code()], "{r}");
        }
    }
}
