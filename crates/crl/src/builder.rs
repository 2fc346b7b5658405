//! Builds and signs a CertificateList (RFC 5280 5.1) in one buffer.
//!
//! The entries are DER-encoded as they arrive (from the registry's stream or
//! any iterator) straight into the buffer that becomes the CRL, behind room
//! reserved for the headers, so a million entries cost one allocation of
//! about 50 MB and no per-entry heap objects. Only the TBSCertList bytes are
//! handed to the signer.

use der::Encode;
use time::OffsetDateTime;
use x509_cert::ext::Extension;

use crate::asn1::{self, OnlyContains, SignatureAlgorithm, MAX_HEADER, TAG_SEQUENCE};
use crate::entry::CrlEntry;
use crate::error::CrlError;

/// An issuingDistributionPoint: the URL the CRL is published at, and which
/// kind of certificates it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuingDistributionPoint {
    /// The distributionPoint fullName; empty for none (the CRL's scope is then
    /// every certificate `only_contains` allows, whatever CRL DP it names).
    pub full_name: String,
    pub only_contains: OnlyContains,
}

/// Everything in a TBSCertList except the entries.
#[derive(Debug, Clone)]
pub struct CrlSpec {
    /// issuer: the CA certificate's subject Name DER, byte for byte.
    pub issuer: Vec<u8>,
    /// keyIdentifier of the authorityKeyIdentifier: the CA's subjectKeyIdentifier.
    pub authority_key_identifier: Vec<u8>,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub crl_number: u64,
    /// `Some(base cRLNumber)` makes this a delta CRL (deltaCRLIndicator, critical).
    pub delta_crl_indicator: Option<u64>,
    /// Critical issuingDistributionPoint (partitions, the ARL).
    pub issuing_distribution_point: Option<IssuingDistributionPoint>,
    /// freshestCRL (non-critical): the delta CRL's URL. Full CRLs only.
    pub freshest_crl: Option<String>,
    /// ExpiredCertsOnCRL (non-critical, X.509 2019): revoked certificates that
    /// expired after this time are still listed.
    pub expired_certs_on_crl: Option<OffsetDateTime>,
}

/// Signs TBSCertList bytes. Blocking.
pub trait CrlSigner {
    fn signature_algorithm(&self) -> SignatureAlgorithm;
    /// The signatureValue octets: PKCS#1 v1.5 for RSA, a DER Ecdsa-Sig-Value for ECDSA.
    fn sign(&self, tbs_cert_list: &[u8]) -> Result<Vec<u8>, CrlError>;
}

impl CrlSigner for hsm::HsmKey {
    fn signature_algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::of_key(self.algorithm())
    }

    fn sign(&self, tbs_cert_list: &[u8]) -> Result<Vec<u8>, CrlError> {
        Ok(hsm::HsmKey::sign(self, tbs_cert_list)?)
    }
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    /// DER CertificateList.
    pub der: Vec<u8>,
    /// Number of revokedCertificates entries.
    pub entries: u64,
}

/// Builds one CRL incrementally: `push` every entry, then `finish`.
#[derive(Debug)]
pub struct CrlEncoder {
    /// `[room for headers and head][entries...]`, later the whole CRL.
    buf: Vec<u8>,
    /// version, signature, issuer, thisUpdate, nextUpdate.
    head: Vec<u8>,
    /// `[0] EXPLICIT Extensions`.
    tail: Vec<u8>,
    algorithm: SignatureAlgorithm,
    entries: u64,
}

/// Room for the CertificateList, TBSCertList and revokedCertificates headers.
fn reserved(head_len: usize) -> usize {
    3 * MAX_HEADER + head_len
}

/// Average DER size of an entry with a 16-octet serial and a reasonCode.
pub const TYPICAL_ENTRY_OCTETS: usize = 50;

impl CrlEncoder {
    pub fn new(spec: &CrlSpec, algorithm: SignatureAlgorithm) -> Result<CrlEncoder, CrlError> {
        CrlEncoder::with_capacity(spec, algorithm, 0)
    }

    /// Reserves room for about `expected_entries` entries up front.
    pub fn with_capacity(
        spec: &CrlSpec,
        algorithm: SignatureAlgorithm,
        expected_entries: usize,
    ) -> Result<CrlEncoder, CrlError> {
        if spec.next_update <= spec.this_update {
            return Err(CrlError::Config(format!(
                "nextUpdate {} is not after thisUpdate {}",
                spec.next_update, spec.this_update
            )));
        }
        if spec.delta_crl_indicator.is_some() && spec.freshest_crl.is_some() {
            return Err(CrlError::InvalidArgument("a delta CRL must not carry freshestCRL (RFC 5280 5.2.6)".into()));
        }
        if spec.issuer.first().is_none_or(|t| *t != TAG_SEQUENCE) {
            return Err(CrlError::InvalidArgument("issuer is not a DER Name".into()));
        }
        let mut head = Vec::with_capacity(64 + spec.issuer.len());
        head.extend_from_slice(&[asn1::TAG_INTEGER, 0x01, 0x01]); // v2
        head.extend_from_slice(algorithm.algorithm_identifier());
        head.extend_from_slice(&spec.issuer);
        asn1::push_date_time(&mut head, spec.this_update)?;
        asn1::push_date_time(&mut head, spec.next_update)?;

        let mut extensions: Vec<Extension> =
            vec![asn1::authority_key_identifier(&spec.authority_key_identifier)?, asn1::crl_number(spec.crl_number)?];
        if let Some(base) = spec.delta_crl_indicator {
            extensions.push(asn1::delta_crl_indicator(base)?);
        }
        if let Some(idp) = &spec.issuing_distribution_point {
            extensions.push(asn1::issuing_distribution_point(&idp.full_name, idp.only_contains)?);
        }
        if let Some(url) = &spec.freshest_crl {
            extensions.push(asn1::freshest_crl(url)?);
        }
        if let Some(since) = spec.expired_certs_on_crl {
            extensions.push(asn1::expired_certs_on_crl(since)?);
        }
        let mut tail = Vec::new();
        asn1::push_tlv(&mut tail, asn1::TAG_CRL_EXTENSIONS, &extensions.to_der()?)?;

        let room = reserved(head.len());
        let capacity =
            room.saturating_add(expected_entries.saturating_mul(TYPICAL_ENTRY_OCTETS)).saturating_add(tail.len() + 600); // + algorithm and a 4096-bit signature
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(room, 0);
        Ok(CrlEncoder { buf, head, tail, algorithm, entries: 0 })
    }

    pub fn push(&mut self, entry: &CrlEntry) -> Result<(), CrlError> {
        asn1::push_entry(&mut self.buf, entry)?;
        self.entries += 1;
        Ok(())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Lays out the TBSCertList in place, has `signer` sign it and returns the
    /// CertificateList. Blocking (the signer is).
    pub fn finish(self, signer: &impl CrlSigner) -> Result<SignedCrl, CrlError> {
        if signer.signature_algorithm() != self.algorithm {
            return Err(CrlError::InvalidArgument(format!(
                "the CRL was laid out for {:?} but the key signs with {:?}",
                self.algorithm,
                signer.signature_algorithm()
            )));
        }
        let CrlEncoder { mut buf, head, tail, algorithm, entries } = self;
        let room = reserved(head.len());
        let mut pos = room;
        if entries > 0 {
            // revokedCertificates is absent, not empty, when nothing is revoked.
            let (h, n) = asn1::header(TAG_SEQUENCE, buf.len() - room)?;
            pos -= n;
            buf[pos..pos + n].copy_from_slice(&h[..n]);
        }
        pos -= head.len();
        buf[pos..pos + head.len()].copy_from_slice(&head);
        buf.extend_from_slice(&tail);
        let (h, n) = asn1::header(TAG_SEQUENCE, buf.len() - pos)?;
        pos -= n;
        buf[pos..pos + n].copy_from_slice(&h[..n]);
        let tbs_start = pos;

        let signature = signer.sign(&buf[tbs_start..])?;
        buf.extend_from_slice(algorithm.algorithm_identifier());
        let (h, n) = asn1::header(asn1::TAG_BIT_STRING, signature.len() + 1)?;
        buf.extend_from_slice(&h[..n]);
        buf.push(0); // no unused bits
        buf.extend_from_slice(&signature);

        let (h, n) = asn1::header(TAG_SEQUENCE, buf.len() - tbs_start)?;
        pos -= n;
        buf[pos..pos + n].copy_from_slice(&h[..n]);
        buf.drain(..pos);
        // Give back growth headroom: the CRL is kept in memory while served.
        buf.shrink_to_fit();
        Ok(SignedCrl { der: buf, entries })
    }
}

/// Builds and signs a CRL from `entries` in one pass.
pub fn build_crl(
    spec: &CrlSpec,
    entries: impl IntoIterator<Item = CrlEntry>,
    signer: &impl CrlSigner,
) -> Result<SignedCrl, CrlError> {
    let entries = entries.into_iter();
    let mut encoder = CrlEncoder::with_capacity(spec, signer.signature_algorithm(), entries.size_hint().0)?;
    for entry in entries {
        encoder.push(&entry)?;
    }
    encoder.finish(signer)
}

#[cfg(test)]
mod tests {
    use der::Decode;
    type Crl = x509_cert::crl::CertificateList<x509_cert::certificate::Rfc5280>;

    use super::*;
    use crate::entry::SerialNumber;
    use domain::RevocationReason;

    /// A signer that returns a fixed "signature" and records what it signed.
    struct FakeSigner(std::cell::RefCell<Vec<u8>>);

    impl CrlSigner for FakeSigner {
        fn signature_algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::EcdsaWithSha256
        }
        fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, CrlError> {
            self.0.replace(tbs.to_vec());
            Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        }
    }

    fn spec() -> CrlSpec {
        let name = x509_cert::name::Name::default().to_der().unwrap();
        CrlSpec {
            issuer: name,
            authority_key_identifier: vec![1, 2, 3, 4],
            this_update: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            next_update: OffsetDateTime::from_unix_timestamp(1_700_172_800).unwrap(),
            crl_number: 42,
            delta_crl_indicator: None,
            issuing_distribution_point: None,
            freshest_crl: None,
            expired_certs_on_crl: None,
        }
    }

    fn entry(i: u64) -> CrlEntry {
        let mut serial = [0u8; 16];
        serial[0] = 0x40;
        serial[8..].copy_from_slice(&i.to_be_bytes());
        CrlEntry {
            user_certificate: SerialNumber::from_bytes(&serial).unwrap(),
            revocation_date: 1_699_000_000 + i as i64,
            reason: if i.is_multiple_of(2) { RevocationReason::KeyCompromise } else { RevocationReason::Unspecified },
            invalidity_date: None,
        }
    }

    #[test]
    fn layout_parses_with_x509_cert_for_many_sizes() {
        // Sizes around the 1-, 2- and 3-octet length boundaries of the headers.
        for n in [0u64, 1, 2, 3, 5, 100, 1000, 1400, 5000] {
            let signer = FakeSigner(Default::default());
            let crl = build_crl(&spec(), (0..n).map(entry), &signer).unwrap();
            let parsed = Crl::from_der(&crl.der).unwrap();
            assert_eq!(crl.entries, n);
            let tbs = &parsed.tbs_cert_list;
            assert_eq!(tbs.version, x509_cert::Version::V2);
            assert_eq!(tbs.signature.oid.to_string(), "1.2.840.10045.4.3.2");
            assert_eq!(parsed.signature_algorithm, tbs.signature);
            match n {
                0 => assert!(tbs.revoked_certificates.is_none()),
                _ => assert_eq!(tbs.revoked_certificates.as_ref().unwrap().len() as u64, n),
            }
            // The signer saw exactly the TBSCertList.
            assert_eq!(*signer.0.borrow(), tbs.to_der().unwrap());
            let exts = tbs.crl_extensions.as_ref().unwrap();
            let ids: Vec<String> = exts.iter().map(|e| e.extn_id.to_string()).collect();
            assert_eq!(ids, ["2.5.29.35", "2.5.29.20"]);
            assert_eq!(tbs.this_update.to_unix_duration().as_secs(), 1_700_000_000);
            let (this, next) = asn1::crl_validity(&crl.der).unwrap();
            assert_eq!(this.unix_timestamp(), 1_700_000_000);
            assert_eq!(next.unwrap().unix_timestamp(), 1_700_172_800);
        }
    }

    #[test]
    fn delta_partition_and_freshest_extensions() {
        let signer = FakeSigner(Default::default());
        let mut s = spec();
        s.delta_crl_indicator = Some(41);
        s.issuing_distribution_point = Some(IssuingDistributionPoint {
            full_name: "http://h/crl/sign-p2.crl".into(),
            only_contains: OnlyContains::UserCerts,
        });
        let crl = build_crl(&s, (0..3).map(entry), &signer).unwrap();
        let parsed = Crl::from_der(&crl.der).unwrap();
        let exts = parsed.tbs_cert_list.crl_extensions.unwrap();
        let ids: Vec<(String, bool)> = exts.iter().map(|e| (e.extn_id.to_string(), e.critical)).collect();
        assert_eq!(
            ids,
            [
                ("2.5.29.35".to_string(), false),
                ("2.5.29.20".to_string(), false),
                ("2.5.29.27".to_string(), true),
                ("2.5.29.28".to_string(), true)
            ]
        );

        s.freshest_crl = Some("http://h/d.crl".into());
        assert!(matches!(build_crl(&s, [], &signer), Err(CrlError::InvalidArgument(_))));
        s.delta_crl_indicator = None;
        let crl = build_crl(&s, [], &signer).unwrap();
        let exts = Crl::from_der(&crl.der).unwrap().tbs_cert_list.crl_extensions.unwrap();
        assert_eq!(exts.last().unwrap().extn_id.to_string(), "2.5.29.46");
    }

    #[test]
    fn bad_specs_are_refused() {
        let signer = FakeSigner(Default::default());
        let mut s = spec();
        s.next_update = s.this_update;
        assert!(build_crl(&s, [], &signer).is_err());
        let mut s = spec();
        s.issuer = vec![0x04, 0x00];
        assert!(build_crl(&s, [], &signer).is_err());
        let enc = CrlEncoder::new(&spec(), SignatureAlgorithm::Sha256WithRsaEncryption).unwrap();
        assert!(matches!(enc.finish(&signer), Err(CrlError::InvalidArgument(_))));
    }
}
