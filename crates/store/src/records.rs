//! Stored records: serde structs mirroring the proto messages. The registry
//! converts them to and from proto; the store never sees proto types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::serial::Serial;

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
}

impl CertificateKind {
    pub const ALL: [CertificateKind; 2] = [CertificateKind::Signing, CertificateKind::Authentication];

    pub fn name(self) -> &'static str {
        match self {
            CertificateKind::Signing => "signing",
            CertificateKind::Authentication => "authentication",
        }
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
}

impl fmt::Display for CertificateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateState::Reserved => "RESERVED",
            CertificateState::Precert => "PRECERT",
            CertificateState::Issued => "ISSUED",
            CertificateState::Revoked => "CERT_REVOKED",
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
}

impl CardRecord {
    pub fn serial(&self, kind: CertificateKind) -> Option<&Serial> {
        match kind {
            CertificateKind::Signing => self.signing_serial.as_ref(),
            CertificateKind::Authentication => self.authentication_serial.as_ref(),
        }
    }

    pub(crate) fn set_serial(&mut self, kind: CertificateKind, serial: Serial) {
        match kind {
            CertificateKind::Signing => self.signing_serial = Some(serial),
            CertificateKind::Authentication => self.authentication_serial = Some(serial),
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
    #[serde(with = "hex_opt")]
    pub tbs_der: Option<Vec<u8>>,
    #[serde(with = "hex_opt")]
    pub certificate_der: Option<Vec<u8>>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub reserved_at_unix: i64,
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
}

/// DER blobs as hex in JSON: half the size of serde's array of numbers.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .transpose()
    }
}
