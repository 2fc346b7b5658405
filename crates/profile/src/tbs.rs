//! Two-phase signing: rcgen lays out the TBSCertificate with a signer that
//! only captures the bytes; the registry records them; the HSM signs them;
//! `assemble_certificate` wraps TBS, algorithm and signature into a Certificate.

use const_oid::db::{rfc5280, rfc5912};
use std::cell::RefCell;

use der::asn1::{BitStringRef, UintRef};
use der::{Decode, Encode, Header, Length, Reader, Sequence, SliceReader, Tag, TagNumber};
use rcgen::{CertificateParams, IsCa, PublicKeyData, SigningKey};
use x509_cert::{Certificate, TbsCertificate};

use crate::ca::IssuingCa;
use crate::error::ProfileError;
use crate::extensions;
use crate::keys;
use crate::names::oid_arcs;

/// Signer that mimics the CA (algorithm, public key) and records what rcgen
/// asks it to sign: exactly the DER TBSCertificate.
struct CapturingSigner<'a> {
    ca: &'a IssuingCa,
    captured: RefCell<Option<Vec<u8>>>,
}

impl PublicKeyData for CapturingSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.ca.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.ca.signature_algorithm()
    }
}

impl SigningKey for CapturingSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.captured.replace(Some(msg.to_vec()));
        // Placeholder; the certificate rcgen builds around it is thrown away.
        Ok(Vec::new())
    }
}

/// The TBSCertificate rcgen produces for `params` under `issuer`, unchecked.
pub(crate) fn capture_tbs(
    params: &CertificateParams,
    subject_key: &impl PublicKeyData,
    issuer: &IssuingCa,
) -> Result<Vec<u8>, ProfileError> {
    let signer = CapturingSigner { ca: issuer, captured: RefCell::new(None) };
    let rc_issuer = rcgen::Issuer::new(issuer.issuer_params(), &signer);
    params.signed_by(subject_key, &rc_issuer)?;
    signer.captured.take().ok_or_else(|| ProfileError::Der("rcgen produced no TBSCertificate to sign".into()))
}

/// Adds the subjectKeyIdentifier (SHA-1 of the subjectPublicKey, RFC 5280
/// method 1) to end-entity params. rcgen writes an SKI only for CA
/// certificates, from `key_identifier_method`, which `ca_params` sets.
pub fn add_subject_key_identifier(
    params: &mut CertificateParams,
    subject_key: &impl PublicKeyData,
) -> Result<(), ProfileError> {
    if !matches!(params.is_ca, IsCa::NoCa) {
        return Ok(());
    }
    let ski_arcs = oid_arcs(rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER);
    if params.custom_extensions.iter().any(|e| e.oid_components().eq(ski_arcs.iter().copied())) {
        return Ok(());
    }
    let value = extensions::subject_key_identifier(&keys::key_identifier(subject_key.der_bytes()))?;
    params.custom_extensions.push(extensions::custom(rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER, value, false));
    Ok(())
}

/// The exact TBSCertificate DER to be signed by the issuing CA's key.
/// Adds the end-entity SKI when missing, and checks the issuer name is the
/// CA's subject byte-for-byte.
pub fn tbs_certificate(
    params: &CertificateParams,
    subject_key: &impl PublicKeyData,
    issuer: &IssuingCa,
) -> Result<Vec<u8>, ProfileError> {
    if params.serial_number.is_none() {
        // rcgen would invent one from the key hash; the registry must choose it.
        return Err(ProfileError::InvalidSerial("the params carry no serial number".into()));
    }
    let mut params = params.clone();
    add_subject_key_identifier(&mut params, subject_key)?;
    let tbs = capture_tbs(&params, subject_key, issuer)?;
    if RawTbs::parse(&tbs)?.issuer != issuer.subject_der() {
        return Err(ProfileError::InvalidCaCertificate(
            "the issuer name rcgen wrote differs from the CA certificate's subject".into(),
        ));
    }
    Ok(tbs)
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`
/// from recorded TBS bytes (kept byte-for-byte) and the HSM's signature.
/// signatureAlgorithm is copied from the TBS `signature` field. For ECDSA
/// the signature may be DER `ECDSA-Sig-Value` or PKCS#11's raw r‖s.
pub fn assemble_certificate(tbs_der: &[u8], signature: &[u8]) -> Result<Vec<u8>, ProfileError> {
    // Full parse: refuse to wrap bytes that are not a TBSCertificate.
    TbsCertificate::from_der(tbs_der)?;
    let raw = RawTbs::parse(tbs_der)?;
    let alg = spki::AlgorithmIdentifierRef::from_der(raw.signature)?;
    if signature.is_empty() {
        return Err(ProfileError::Der("the signature is empty".into()));
    }
    let signature = if alg.oid == rfc5912::ECDSA_WITH_SHA_256 { ecdsa_der(signature)? } else { signature.to_vec() };
    let bits = BitStringRef::from_bytes(&signature)?.to_der()?;

    let body_len = Length::try_from(tbs_der.len() + raw.signature.len() + bits.len())?;
    let mut out = Header::new(Tag::Sequence, body_len).to_der()?;
    out.extend_from_slice(tbs_der);
    out.extend_from_slice(raw.signature);
    out.extend_from_slice(&bits);
    // Not parsed again: the TBS and its algorithm were parsed above and the
    // BIT STRING built by `der`, so the SEQUENCE of them parses (the chain tests
    // parse and verify what this returns).
    Ok(out)
}

/// The tbsCertificate DER bytes of a certificate, as they appear in it.
pub fn tbs_of_certificate(cert_der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    Certificate::from_der(cert_der)?;
    Ok(RawSigned::parse(cert_der)?.tbs.to_vec())
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3)
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

fn ecdsa_der(signature: &[u8]) -> Result<Vec<u8>, ProfileError> {
    if EcdsaSigValue::from_der(signature).is_ok() {
        return Ok(signature.to_vec());
    }
    if signature.len() != 64 {
        return Err(ProfileError::Der(format!(
            "ECDSA P-256 signature of {} bytes is neither DER nor raw r||s (64 bytes)",
            signature.len()
        )));
    }
    let (r, s) = signature.split_at(32);
    Ok(EcdsaSigValue { r: UintRef::new(r)?, s: UintRef::new(s)? }.to_der()?)
}

/// `SIGNED{...}`: the three parts shared by Certificate and CertificationRequest
/// (to-be-signed, signatureAlgorithm, signature), as raw slices so signatures
/// are checked over the bytes as received, never over a re-encoding.
pub(crate) struct RawSigned<'a> {
    /// The to-be-signed TLV (tbsCertificate / certificationRequestInfo).
    pub(crate) tbs: &'a [u8],
    pub(crate) signature_algorithm: &'a [u8],
    /// The signature BIT STRING contents.
    pub(crate) signature: &'a [u8],
}

impl<'a> RawSigned<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, der::Error> {
        let mut reader = SliceReader::new(der)?;
        let (tbs, signature_algorithm, bits) =
            reader.sequence(|r| Ok::<_, der::Error>((r.tlv_bytes()?, r.tlv_bytes()?, BitStringRef::decode(r)?)))?;
        reader.finish()?;
        // A signature is a whole number of octets.
        let signature = bits.as_bytes().ok_or_else(|| der::Error::from(Tag::BitString.value_error()))?;
        Ok(RawSigned { tbs, signature_algorithm, signature })
    }
}

/// Raw TLV slices of the TBSCertificate fields we compare byte-for-byte.
pub(crate) struct RawTbs<'a> {
    pub(crate) signature: &'a [u8],
    pub(crate) issuer: &'a [u8],
    pub(crate) subject: &'a [u8],
}

impl<'a> RawTbs<'a> {
    pub(crate) fn parse(tbs_der: &'a [u8]) -> Result<Self, ProfileError> {
        let mut reader = SliceReader::new(tbs_der)?;
        let raw = reader.sequence(|r| {
            let version_tag = Tag::ContextSpecific { constructed: true, number: TagNumber(0) };
            if Tag::peek(r)? == version_tag {
                r.tlv_bytes()?;
            }
            let _serial = r.tlv_bytes()?;
            let signature = r.tlv_bytes()?;
            let issuer = r.tlv_bytes()?;
            let _validity = r.tlv_bytes()?;
            let subject = r.tlv_bytes()?;
            while !r.is_finished() {
                r.tlv_bytes()?;
            }
            Ok::<_, der::Error>(RawTbs { signature, issuer, subject })
        })?;
        reader.finish()?;
        Ok(raw)
    }
}
