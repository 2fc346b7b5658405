//! Stored records: serde structs mirroring the proto messages. The registry
//! converts them to and from proto; the store never sees proto types.

use std::fmt;

use serde::{Deserialize, Serialize};

use domain::Serial;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Membership {
    Member,
    NonMember,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateKind {
    Signing,
    Authentication,
    /// A delegated OCSP responder certificate: no card (its `card_id` is empty).
    OcspResponder,
}

impl CertificateKind {
    /// The two certificates of a card.
    pub const ALL: [CertificateKind; 2] = [CertificateKind::Signing, CertificateKind::Authentication];

    pub fn name(self) -> &'static str {
        match self {
            CertificateKind::Signing => "signing",
            CertificateKind::Authentication => "authentication",
            CertificateKind::OcspResponder => "ocsp-responder",
        }
    }

    /// Whether certificates of this kind belong to a card.
    pub fn of_card(self) -> bool {
        !matches!(self, CertificateKind::OcspResponder)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardState {
    Pending,
    Active,
    Revoked,
}

impl fmt::Display for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CardState::Pending => "PENDING",
            CardState::Active => "ACTIVE",
            CardState::Revoked => "REVOKED",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateState {
    Reserved,
    Precert,
    Issued,
    Revoked,
    /// Reserved but never signed, and never will be: recovery after a restart
    /// gave the serial up (no to-be-signed bytes were recorded, so the CA cannot
    /// have signed it). Terminal; the card's slot was freed for a new serial.
    Abandoned,
}

impl fmt::Display for CertificateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateState::Reserved => "RESERVED",
            CertificateState::Precert => "PRECERT",
            CertificateState::Issued => "ISSUED",
            CertificateState::Revoked => "CERT_REVOKED",
            CertificateState::Abandoned => "ABANDONED",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAddress {
    pub postal_code: String,
    pub address: String,
    pub phone: String,
    pub email: String,
}

/// What the RA tells us about a holder (the proto `Holder` without `holder_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderDetails {
    pub family_name_kanji: String,
    pub given_name_kanji: String,
    pub family_name_kana: String,
    pub given_name_kana: String,
    pub family_name_latin: String,
    pub given_name_latin: String,
    /// YYYY-MM-DD
    pub date_of_birth: String,
    pub licence_number: String,
    /// YYYY-MM-DD
    pub licence_registered_on: String,
    pub membership: Membership,
    pub contact: ContactAddress,
    pub institution: String,
    /// Records from before the kanji name existed have none.
    #[serde(default)]
    pub institution_kanji: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    pub holder_id: String,
    pub details: HolderDetails,
    /// The holder's cards, oldest first. Kept here rather than in a range index
    /// because sled transactions can only read by key, and begin_application
    /// must see the newest card inside its transaction.
    pub card_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    pub card_id: String,
    pub holder_id: String,
    pub application_id: String,
    pub state: CardState,
    pub signing_serial: Option<Serial>,
    pub authentication_serial: Option<Serial>,
    pub created_at_unix: i64,
    pub application_json: String,
    /// How the card came about; records written before procedures existed are "new".
    #[serde(default)]
    pub procedure: Procedure,
    /// Renewal or reissue: the card this one follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_card_id: Option<String>,
    /// Set on this card, in the same transaction, when a renewal or reissue of
    /// it begins; the card then no longer counts as the holder's current card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

/// How a card came about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Procedure {
    #[default]
    New,
    /// Before the old card expires; the old card stays ACTIVE and its
    /// certificates valid until they expire.
    Renewal,
    /// After the old card was revoked (loss, damage, change of name or membership).
    Reissue,
}

impl Procedure {
    pub const ALL: [Procedure; 3] = [Procedure::New, Procedure::Renewal, Procedure::Reissue];

    /// The proto's spelling: "new", "renewal", "reissue".
    pub fn name(self) -> &'static str {
        match self {
            Procedure::New => "new",
            Procedure::Renewal => "renewal",
            Procedure::Reissue => "reissue",
        }
    }

    pub fn from_name(name: &str) -> Option<Procedure> {
        Procedure::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Procedure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `Store::begin_procedure` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationProcedure {
    New,
    /// Replaces an ACTIVE card that is not superseded yet.
    Renewal {
        replaces_card_id: String,
    },
    /// Replaces a REVOKED card that is not superseded yet.
    Reissue {
        replaces_card_id: String,
    },
}

impl ApplicationProcedure {
    pub fn procedure(&self) -> Procedure {
        match self {
            ApplicationProcedure::New => Procedure::New,
            ApplicationProcedure::Renewal { .. } => Procedure::Renewal,
            ApplicationProcedure::Reissue { .. } => Procedure::Reissue,
        }
    }

    pub fn replaces_card_id(&self) -> Option<&str> {
        match self {
            ApplicationProcedure::New => None,
            ApplicationProcedure::Renewal { replaces_card_id } | ApplicationProcedure::Reissue { replaces_card_id } => {
                Some(replaces_card_id)
            }
        }
    }
}

impl CardRecord {
    pub fn serial(&self, kind: CertificateKind) -> Option<&Serial> {
        match kind {
            CertificateKind::Signing => self.signing_serial.as_ref(),
            CertificateKind::Authentication => self.authentication_serial.as_ref(),
            CertificateKind::OcspResponder => None,
        }
    }

    /// Frees the card's slot of `kind` (an abandoned reservation).
    pub(crate) fn clear_serial(&mut self, kind: CertificateKind) {
        match kind {
            CertificateKind::Signing => self.signing_serial = None,
            CertificateKind::Authentication => self.authentication_serial = None,
            CertificateKind::OcspResponder => {}
        }
    }

    pub(crate) fn set_serial(&mut self, kind: CertificateKind, serial: Serial) {
        match kind {
            CertificateKind::Signing => self.signing_serial = Some(serial),
            CertificateKind::Authentication => self.authentication_serial = Some(serial),
            CertificateKind::OcspResponder => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub serial: Serial,
    pub card_id: String,
    pub kind: CertificateKind,
    pub issuer_label: String,
    pub state: CertificateState,
    /// What the HSM is to sign, recorded before it signs. Once the certificate
    /// is stored and carries these bytes as its first element, it is dropped
    /// (the record would hold them twice); `tbs()` reads either.
    #[serde(with = "hex_opt")]
    pub tbs_der: Option<Vec<u8>>,
    #[serde(with = "hex_opt")]
    pub certificate_der: Option<Vec<u8>>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub reserved_at_unix: i64,
    /// Set once, when revoked (state `Revoked`); never changed afterwards.
    #[serde(default)]
    pub revocation: Option<Revocation>,
}

impl CertificateRecord {
    /// The recorded to-be-signed bytes: kept as recorded, or inside the stored
    /// certificate once it holds them.
    pub fn tbs(&self) -> Option<&[u8]> {
        match (&self.tbs_der, &self.certificate_der) {
            (Some(tbs), _) => Some(tbs),
            (None, Some(cert)) => first_element(cert),
            (None, None) => None,
        }
    }
}

/// The first TLV inside an outer DER SEQUENCE: a certificate's tbsCertificate.
pub(crate) fn first_element(der: &[u8]) -> Option<&[u8]> {
    use der::{Decode, Header, Reader, SliceReader, Tag};
    let mut reader = SliceReader::new(der).ok()?;
    let outer = Header::decode(&mut reader).ok()?;
    outer.tag().assert_eq(Tag::Sequence).ok()?;
    reader.tlv_bytes().ok()
}

/// RFC 5280 CRLReason, stored by its proto-style name ("KEY_COMPROMISE").
pub use domain::RevocationReason;

/// How a certificate was revoked: the first revocation's, kept for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub revoked_at_unix: i64,
    pub reason: RevocationReason,
    pub revoked_by: String,
    pub note: String,
    /// The status-feed sequence of the REVOKED change.
    pub sequence: u64,
    /// When the key is known or suspected to have been compromised, as the
    /// operator gave it (the CRL entry's and the OCSP answer's
    /// invalidityDate); 0 for none. It may lie before `revoked_at_unix`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invalidity_date_unix: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// What an operator asks for when revoking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRequest {
    pub reason: RevocationReason,
    /// 0 means now; otherwise not before 1970 and not more than
    /// `MAX_CLOCK_SKEW_SECS` in the future.
    pub revoked_at_unix: i64,
    pub actor: String,
    pub note: String,
    /// The operator's time of compromise (invalidityDate), 0 for none. Not
    /// before the certificate's notBefore, nor after the revocation time.
    pub invalidity_date_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeOutcome {
    /// The certificate as now stored.
    pub certificate: CertificateRecord,
    /// True when it was revoked before: nothing was written, the first
    /// revocation's time and reason stand.
    pub already_revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRevokeOutcome {
    /// The card (state REVOKED), its holder and every certificate as now stored.
    pub view: CardView,
    /// Certificates this call revoked; 0 when the card was already fully revoked.
    pub newly_revoked: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Signed and stored (ISSUED).
    Good,
    Revoked,
}

/// One entry of the status feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Gapless and strictly increasing from 1; never reused.
    pub sequence: u64,
    pub serial: Serial,
    pub issuer_label: String,
    pub status: CertificateStatus,
    /// 0 for GOOD.
    pub revoked_at_unix: i64,
    /// `None` for GOOD.
    pub reason: Option<RevocationReason>,
    pub not_after_unix: i64,
    pub card_id: String,
    /// When the change was committed.
    pub at_unix_micros: i64,
    /// The revocation's invalidityDate; 0 for none (and for GOOD).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invalidity_date_unix: i64,
}

/// One revoked certificate of an issuing CA, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at_unix: i64,
    pub reason: RevocationReason,
    pub not_after_unix: i64,
    /// The status-feed sequence of the revocation.
    pub sequence: u64,
    /// invalidityDate of the entry; 0 for none.
    pub invalidity_date_unix: i64,
}

/// Which revoked certificates `Store::revoked_entries` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedQuery {
    pub issuer_label: String,
    /// Only revocations with a feed sequence above this (0 = all): delta CRLs.
    pub after_sequence: u64,
    /// Also list certificates past their notAfter.
    pub include_expired: bool,
    /// "Now" for the expiry test; 0 = the current time.
    pub at_unix: i64,
}

/// A CRL number and the feed position it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlNumber {
    pub crl_number: u64,
    /// Every status change up to and including this sequence was committed
    /// (and is durable) before the number was taken.
    pub feed_sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalState {
    Awaiting,
    Approved,
    Executed,
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApprovalState::Awaiting => "AWAITING",
            ApprovalState::Approved => "APPROVED",
            ApprovalState::Executed => "EXECUTED",
        })
    }
}

/// A change that needs a second operator (two-person control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub approval_id: String,
    pub kind: String,
    pub subject: String,
    pub payload_json: String,
    pub requested_by: String,
    /// Empty until approved.
    pub approved_by: String,
    pub state: ApprovalState,
    pub created_at_unix: i64,
    #[serde(default)]
    pub approved_at_unix: i64,
    #[serde(default)]
    pub executed_at_unix: i64,
}

/// A new approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    pub kind: String,
    pub subject: String,
    pub payload_json: String,
    pub requested_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub sequence: u64,
    pub at_unix_micros: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail_json: String,
    /// SHA-256 of the previous entry's canonical bytes; zeros for the first entry.
    #[serde(with = "hex::serde")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex::serde")]
    pub hash: [u8; 32],
}

/// A card with its holder and certificates, as the read calls return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    pub card: CardRecord,
    pub holder: HolderRecord,
    /// Signing first, then authentication; only those reserved so far.
    pub certificates: Vec<CertificateRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginOutcome {
    pub view: CardView,
    /// True when the application_id had been seen before and nothing was written.
    pub existing: bool,
}

/// One of a card's public keys, named by the SHA-256 of its SubjectPublicKeyInfo DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardKey {
    pub kind: CertificateKind,
    pub spki_sha256: [u8; 32],
}

/// A new application as the RA submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApplication {
    pub application_id: String,
    /// Empty to let the registry assign one; when set it must be the id already
    /// registered for the licence number.
    pub holder_id: String,
    pub holder: HolderDetails,
    pub application_json: String,
    pub actor: String,
    /// The card's public keys (from its CSRs). None may be certified on any
    /// other card, whatever its state; they are indexed with the new card.
    pub keys: Vec<CardKey>,
}

/// The outcome of `Store::update_contact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpdate {
    /// The holder as now stored.
    pub holder: HolderRecord,
    /// The contact details before the call.
    pub previous: ContactAddress,
    /// False when the new details equal the stored ones: nothing was written.
    pub changed: bool,
}

/// A holder and every card of theirs, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderCards {
    pub holder: HolderRecord,
    pub cards: Vec<CardView>,
}

/// A card PIN as the issuance service encrypted it (AES-GCM under a key in
/// the HSM). The registry never sees the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPinEscrow {
    pub card_id: String,
    pub key_label: String,
    /// The GCM nonce.
    pub iv: Vec<u8>,
    /// The encrypted PIN followed by the GCM tag.
    pub ciphertext: Vec<u8>,
    pub actor: String,
}

/// A stored PIN escrow and the disclosures made from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinEscrow {
    pub card_id: String,
    pub key_label: String,
    #[serde(with = "hex::serde")]
    pub iv: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
    pub stored_at_unix: i64,
    pub stored_by: String,
    /// Oldest first.
    #[serde(default)]
    pub disclosures: Vec<PinDisclosure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinDisclosure {
    pub request_id: String,
    pub at_unix: i64,
    pub actor: String,
    /// The identity-confirmation record the disclosure was made on.
    pub confirmation_json: String,
}

/// How many disclosures of one card's PIN are allowed within a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisclosureLimit {
    /// At least 1.
    pub max_per_window: u32,
    /// At least 1.
    pub window_seconds: u32,
}

impl DisclosureLimit {
    /// Three disclosures per 30 days.
    pub const DEFAULT: DisclosureLimit = DisclosureLimit { max_per_window: 3, window_seconds: 30 * 24 * 3600 };
}

/// A request to disclose an escrowed PIN to the RA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDisclosureRequest {
    pub card_id: String,
    /// One disclosure per request id and card.
    pub request_id: String,
    pub confirmation_json: String,
    pub actor: String,
    pub limit: DisclosureLimit,
    /// The RA system that asked (its client-certificate identity, as the
    /// issuance service saw it). Its disclosures are counted per day (JST).
    pub ra_identity: String,
    /// Disclosures one RA identity may make per calendar day in Japan (JST);
    /// at least 1.
    pub ra_daily_cap: u32,
}

/// DER blobs as hex in JSON: half the size of serde's array of numbers.
/// Encoded into one buffer and decoded from the borrowed string: these are the
/// largest fields the store writes, several times a card.
mod hex_opt {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                let mut text = vec![0; bytes.len() * 2];
                hex::encode_to_slice(bytes, &mut text).map_err(serde::ser::Error::custom)?;
                s.serialize_some(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptionalBlob)
    }

    struct OptionalBlob;

    impl<'de> Visitor<'de> for OptionalBlob {
        type Value = Option<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("null or a hex string")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Blob).map(Some)
        }
    }

    struct Blob;

    impl Visitor<'_> for Blob {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            if !text.len().is_multiple_of(2) {
                return Err(E::custom(hex::FromHexError::OddLength));
            }
            let mut bytes = vec![0; text.len() / 2];
            hex::decode_to_slice(text, &mut bytes).map_err(E::custom)?;
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER blobs keep their stored form: lowercase hex or null, and upper
    /// case, odd lengths and non-hex are refused or read as before.
    #[test]
    fn certificate_blobs_are_hex_as_before() {
        let mut record: CertificateRecord = serde_json::from_value(serde_json::json!({
            "serial": "0102", "card_id": "c", "kind": "SIGNING", "issuer_label": "l", "state": "PRECERT",
            "tbs_der": "00ABff", "certificate_der": null,
            "not_before_unix": 1, "not_after_unix": 2, "reserved_at_unix": 0
        }))
        .unwrap();
        assert_eq!(record.tbs_der.as_deref(), Some(&[0x00, 0xab, 0xff][..]));
        assert_eq!(record.certificate_der, None);
        record.certificate_der = Some((0..=255).collect());
        let text = serde_json::to_value(&record).unwrap();
        assert_eq!(text["tbs_der"], "00abff");
        assert_eq!(text["certificate_der"], hex::encode((0..=255).collect::<Vec<u8>>()));
        assert_eq!(serde_json::from_value::<CertificateRecord>(text).unwrap(), record);
        for bad in ["abc", "zz", "0g"] {
            let mut text = serde_json::to_value(&record).unwrap();
            text["tbs_der"] = bad.into();
            assert!(serde_json::from_value::<CertificateRecord>(text).is_err(), "{bad}");
        }
    }

    /// A revocation as the store wrote it before the reason moved to `domain`:
    /// it must still decode, and encode to the same bytes.
    #[test]
    fn stored_revocations_keep_their_form() {
        let old =
            r#"{"revoked_at_unix":1750000000,"reason":"CA_COMPROMISE","revoked_by":"op","note":"n","sequence":7}"#;
        let r: Revocation = serde_json::from_str(old).unwrap();
        assert_eq!(r.reason, RevocationReason::CaCompromise);
        assert_eq!(serde_json::to_string(&r).unwrap(), old);
        for (reason, name) in [
            (RevocationReason::KeyCompromise, "KEY_COMPROMISE"),
            (RevocationReason::PrivilegeWithdrawn, "PRIVILEGE_WITHDRAWN"),
            (RevocationReason::Unspecified, "UNSPECIFIED"),
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), serde_json::json!(name));
        }
    }
}
