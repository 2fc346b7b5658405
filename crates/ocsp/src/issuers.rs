//! Which issuing CA a CertID names: both hashes (SHA-1 and SHA-256) of each
//! issuing CA's name and key, computed once.

use const_oid::db::rfc5912;
use der::asn1::AnyRef;
use sha2::{Digest, Sha256};

use crate::asn1::CertID;
use crate::error::OcspError;

/// The CertID hash algorithms we answer for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    pub const ALL: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    pub fn index(self) -> usize {
        match self {
            HashAlg::Sha1 => 0,
            HashAlg::Sha256 => 1,
        }
    }

    pub fn oid(self) -> der::asn1::ObjectIdentifier {
        match self {
            HashAlg::Sha1 => rfc5912::ID_SHA_1,
            HashAlg::Sha256 => rfc5912::ID_SHA_256,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => sha1(data).to_vec(),
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
        }
    }
}

pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    let mut out = [0u8; 20];
    out.copy_from_slice(d.as_ref());
    out
}

/// issuerNameHash / issuerKeyHash of one issuing CA, in both algorithms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerHashes {
    sha1_name: [u8; 20],
    sha1_key: [u8; 20],
    sha256_name: [u8; 32],
    sha256_key: [u8; 32],
}

impl IssuerHashes {
    /// `subject_der`: the CA's subject Name DER; `public_key`: its
    /// subjectPublicKey BIT STRING contents (RFC 6960 §4.1.1).
    pub fn new(subject_der: &[u8], public_key: &[u8]) -> IssuerHashes {
        IssuerHashes {
            sha1_name: sha1(subject_der),
            sha1_key: sha1(public_key),
            sha256_name: Sha256::digest(subject_der).into(),
            sha256_key: Sha256::digest(public_key).into(),
        }
    }

    pub fn from_ca(ca: &profile::IssuingCa) -> IssuerHashes {
        IssuerHashes::new(ca.subject_der(), rcgen::PublicKeyData::der_bytes(ca))
    }

    pub fn name_hash(&self, alg: HashAlg) -> &[u8] {
        match alg {
            HashAlg::Sha1 => &self.sha1_name,
            HashAlg::Sha256 => &self.sha256_name,
        }
    }

    pub fn key_hash(&self, alg: HashAlg) -> &[u8] {
        match alg {
            HashAlg::Sha1 => &self.sha1_key,
            HashAlg::Sha256 => &self.sha256_key,
        }
    }

    fn matches(&self, alg: HashAlg, id: &CertID<'_>) -> bool {
        id.issuer_name_hash.as_bytes() == self.name_hash(alg) && id.issuer_key_hash.as_bytes() == self.key_hash(alg)
    }
}

/// The hash algorithm of a CertID, if we answer for it. Parameters must be
/// absent or NULL (both are seen in the wild).
pub fn hash_alg(id: &CertID<'_>) -> Option<HashAlg> {
    let params_ok = match id.hash_algorithm.parameters {
        None => true,
        Some(p) => p == AnyRef::NULL,
    };
    if !params_ok {
        return None;
    }
    HashAlg::ALL.into_iter().find(|a| a.oid() == id.hash_algorithm.oid)
}

/// The index of the issuer a CertID names, and its hash algorithm.
/// Another issuer (or a hash we do not compute) is `unauthorized`.
pub fn match_issuer(issuers: &[IssuerHashes], id: &CertID<'_>) -> Result<(usize, HashAlg), OcspError> {
    let alg = hash_alg(id).ok_or_else(|| {
        OcspError::Unauthorized(format!("CertID hash algorithm {} is not SHA-1 or SHA-256", id.hash_algorithm.oid))
    })?;
    issuers
        .iter()
        .position(|h| h.matches(alg, id))
        .map(|i| (i, alg))
        .ok_or_else(|| OcspError::Unauthorized("the CertID names an issuer we do not answer for".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::{IntRef, OctetStringRef};
    use spki::AlgorithmIdentifierRef;

    fn cert_id<'a>(alg: HashAlg, h: &'a IssuerHashes, params: Option<AnyRef<'a>>) -> CertID<'a> {
        CertID {
            hash_algorithm: AlgorithmIdentifierRef { oid: alg.oid(), parameters: params },
            issuer_name_hash: OctetStringRef::new(h.name_hash(alg)).unwrap(),
            issuer_key_hash: OctetStringRef::new(h.key_hash(alg)).unwrap(),
            serial_number: IntRef::new(&[1]).unwrap(),
        }
    }

    #[test]
    fn both_hashes_of_both_issuers_match_and_others_are_unauthorized() {
        let a = IssuerHashes::new(b"name-a", b"key-a");
        let b = IssuerHashes::new(b"name-b", b"key-b");
        let issuers = [a.clone(), b.clone()];
        for alg in HashAlg::ALL {
            assert_eq!(match_issuer(&issuers, &cert_id(alg, &a, Some(AnyRef::NULL))).unwrap(), (0, alg));
            assert_eq!(match_issuer(&issuers, &cert_id(alg, &b, None)).unwrap(), (1, alg));
        }
        let other = IssuerHashes::new(b"name-c", b"key-c");
        let err = match_issuer(&issuers, &cert_id(HashAlg::Sha1, &other, None)).unwrap_err();
        assert!(matches!(err, OcspError::Unauthorized(_)), "{err:?}");
        // Name of one issuer, key of the other.
        let mut mixed = cert_id(HashAlg::Sha256, &a, None);
        mixed.issuer_key_hash = OctetStringRef::new(b.key_hash(HashAlg::Sha256)).unwrap();
        assert!(match_issuer(&issuers, &mixed).is_err());
        // Odd parameters.
        let odd = AnyRef::new(der::Tag::Integer, &[1]).unwrap();
        assert!(match_issuer(&issuers, &cert_id(HashAlg::Sha1, &a, Some(odd))).is_err());
    }

    #[test]
    fn sha1_is_sha1() {
        assert_eq!(hex::encode(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
