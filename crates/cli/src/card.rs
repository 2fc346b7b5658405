//! RA-side commands against the issuance service: card queries, renewal,
//! reissue, contact change, cessation, PIN disclosure, fees and bulk import.
//! Output is for people by default and JSON with `--json`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use proto::issuance::v1 as iss;
use proto::issuance::v1::issuance_client::IssuanceClient;
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::error::CliError;
use crate::launcher::say;
use crate::ops::{connect, now_rfc3339, status, Method};
use crate::render::{print, Render};

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// A card with its certificates and fees.
    Show {
        /// Card id.
        #[arg(long, conflicts_with = "licence", required_unless_present = "licence")]
        card: Option<String>,
        /// Or the holder's medical licence number: their current card.
        #[arg(long)]
        licence: Option<String>,
    },
    /// Every card a holder has had, oldest first.
    History {
        /// The holder's medical licence number.
        #[arg(long, conflicts_with = "holder", required_unless_present = "holder")]
        licence: Option<String>,
        /// Or the holder id (subject serialNumber, e.g. JMA0000123456).
        #[arg(long)]
        holder: Option<String>,
    },
    /// Submits a new-card application from a JSON file (the import format, one object).
    Apply {
        /// The application, one JSON object.
        file: PathBuf,
    },
    /// Renewal from a JSON file: {"application_id", "card_id", "documents", "signing_csr", "authentication_csr", ...}.
    Renew {
        /// The renewal application, one JSON object.
        file: PathBuf,
    },
    /// Reissue from a JSON file: {"application_id", "card_id", "reason": "LOSS|DAMAGE|NAME_CHANGE|MEMBERSHIP_CHANGE", "applicant", "membership", "documents", CSRs, "confirmation"}.
    Reissue {
        /// The reissue application, one JSON object.
        file: PathBuf,
    },
    /// Changes the holder's contact details.
    Contact {
        /// Card id.
        #[arg(long)]
        card: String,
        /// New postal address.
        #[arg(long)]
        address: String,
        /// New postal code, e.g. 113-8621.
        #[arg(long, default_value = "")]
        postal_code: String,
        /// New phone number.
        #[arg(long, default_value = "")]
        phone: String,
        /// New e-mail address.
        #[arg(long, default_value = "")]
        email: String,
        /// Issue date of the new resident record (YYYY-MM-DD); needed when the address changes.
        #[arg(long, default_value = "")]
        resident_record_issued_on: String,
        /// RA operator, recorded in the audit log.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "")]
        operator: String,
    },
    /// Cessation of use (利用中止): revokes the card's certificates (cessationOfOperation).
    Cease {
        /// Card id.
        #[arg(long)]
        card: String,
        /// Free text kept with the cessation in the audit log.
        #[arg(long, default_value = "")]
        note: String,
        /// RA operator, recorded in the audit log.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "")]
        operator: String,
    },
    /// Discloses the escrowed card PIN for one identity-checked request.
    DisclosePin {
        /// Card id.
        #[arg(long)]
        card: String,
        /// The RA's id of this request; a PIN is disclosed once per request id.
        #[arg(long)]
        request_id: String,
        /// Operator who confirmed the holder's identity.
        #[arg(long)]
        confirmed_by: String,
        /// How the holder's identity was confirmed.
        #[arg(long, value_enum)]
        method: Method,
        /// When the identity was confirmed (RFC 3339); now when absent.
        #[arg(long)]
        confirmed_at: Option<String>,
        /// RA operator, recorded in the audit log.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "")]
        operator: String,
    },
    /// The fee table for a membership.
    Fee {
        /// Medical association membership, which sets the yearly fee.
        #[arg(long, value_enum)]
        membership: MembershipArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MembershipArg {
    Member,
    NonMember,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON-lines file (one application per line) or CSV with a header row.
    pub file: PathBuf,
    /// Stop at the first failure instead of carrying on.
    #[arg(long)]
    pub stop_on_error: bool,
}

// ---- the JSON forms an RA writes (snake_case, dates as YYYY-MM-DD, CSRs as PEM, base64 DER or a file path) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplicantJson {
    family_name_kanji: String,
    given_name_kanji: String,
    family_name_kana: String,
    given_name_kana: String,
    family_name_latin: String,
    given_name_latin: String,
    date_of_birth: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactJson {
    postal_code: String,
    address: String,
    phone: String,
    email: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsJson {
    photo_taken_on: String,
    resident_record_issued_on: String,
    photo_id_type: String,
    photo_id_expires_on: String,
    photo_id_issued_on: String,
    licence_copy_checked: bool,
    licence_back_endorsed: bool,
    licence_back_copied: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmationJson {
    confirmed_by: String,
    method: String,
    confirmed_at: String,
    note: String,
}

/// One application: a new card, a renewal or a reissue, by which fields are set.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplicationJson {
    application_id: String,
    card_id: String,
    reason: String,
    applicant: ApplicantJson,
    licence_number: String,
    licence_registered_on: String,
    membership: String,
    contact: Option<ContactJson>,
    documents: DocumentsJson,
    signing_csr: String,
    authentication_csr: String,
    application_date: String,
    institution: String,
    institution_kanji: String,
    ra_operator: String,
    card_pin: String,
    confirmation: Option<ConfirmationJson>,
}

/// Why an application (a file, or one line of an import) cannot become a
/// request, or was refused; each names the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// The line or file is not an application (bad JSON, unknown field).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("{field}: {}: {source}", path.display())]
    Read { field: &'static str, path: PathBuf, source: std::io::Error },
    /// The issuance service refused it.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
}

fn field(field: &'static str, reason: impl Into<String>) -> ApplicationError {
    ApplicationError::Field { field, reason: reason.into() }
}

fn csr_bytes(field_name: &'static str, v: &str, base: &Path) -> Result<Vec<u8>, ApplicationError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(field(field_name, "is required"));
    }
    if v.starts_with("-----BEGIN") {
        return Ok(v.as_bytes().to_vec());
    }
    let path = base.join(v);
    if path.is_file() {
        return std::fs::read(&path).map_err(|source| ApplicationError::Read { field: field_name, path, source });
    }
    base64_decode(v).ok_or_else(|| field(field_name, "neither PEM, a readable file nor base64"))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn membership(v: &str) -> Result<i32, ApplicationError> {
    match v.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "MEMBER" => Ok(iss::Membership::Member as i32),
        "NON_MEMBER" | "NONMEMBER" => Ok(iss::Membership::NonMember as i32),
        "" => Ok(iss::Membership::Unspecified as i32),
        other => Err(field("membership", format!("{other:?} is neither MEMBER nor NON_MEMBER"))),
    }
}

fn photo_id_type(v: &str) -> Result<i32, ApplicationError> {
    let name = v.trim().to_ascii_uppercase().replace('-', "_");
    if name.is_empty() {
        return Ok(0);
    }
    iss::PhotoIdType::from_str_name(&name)
        .map(|t| t as i32)
        .ok_or_else(|| field("documents.photo_id_type", format!("{v:?} is not a photo ID type")))
}

impl ApplicationJson {
    fn applicant(&self) -> iss::Applicant {
        let a = &self.applicant;
        iss::Applicant {
            family_name_kanji: a.family_name_kanji.clone(),
            given_name_kanji: a.given_name_kanji.clone(),
            family_name_kana: a.family_name_kana.clone(),
            given_name_kana: a.given_name_kana.clone(),
            family_name_latin: a.family_name_latin.clone(),
            given_name_latin: a.given_name_latin.clone(),
            date_of_birth: a.date_of_birth.clone(),
        }
    }

    fn contact(&self) -> Option<iss::ContactAddress> {
        self.contact.as_ref().map(|c| iss::ContactAddress {
            postal_code: c.postal_code.clone(),
            address: c.address.clone(),
            phone: c.phone.clone(),
            email: c.email.clone(),
        })
    }

    fn documents(&self) -> Result<iss::DocumentChecks, ApplicationError> {
        let d = &self.documents;
        Ok(iss::DocumentChecks {
            photo_taken_on: d.photo_taken_on.clone(),
            resident_record_issued_on: d.resident_record_issued_on.clone(),
            photo_id: Some(iss::PhotoId {
                r#type: photo_id_type(&d.photo_id_type)?,
                expires_on: d.photo_id_expires_on.clone(),
                issued_on: d.photo_id_issued_on.clone(),
            }),
            licence_copy_checked: d.licence_copy_checked,
            licence_back_endorsed: d.licence_back_endorsed,
            licence_back_copied: d.licence_back_copied,
        })
    }

    /// An empty method is sent as unspecified, for the service to name as
    /// missing; one that is no method is refused here, naming the field.
    fn confirmation(&self) -> Result<Option<iss::IdentityConfirmation>, ApplicationError> {
        let Some(c) = &self.confirmation else { return Ok(None) };
        let method = match c.method.trim() {
            "" => iss::ConfirmationMethod::Unspecified,
            m => {
                m.parse::<domain::ConfirmationMethod>().map_err(|e| field("confirmation.method", e.to_string()))?.into()
            }
        };
        Ok(Some(iss::IdentityConfirmation {
            confirmed_by: c.confirmed_by.clone(),
            method: method as i32,
            confirmed_at: c.confirmed_at.clone(),
            note: c.note.clone(),
        }))
    }

    pub fn new_card(&self, base: &Path) -> Result<iss::NewCardApplication, ApplicationError> {
        Ok(iss::NewCardApplication {
            application_id: self.application_id.clone(),
            applicant: Some(self.applicant()),
            licence: Some(iss::MedicalLicence {
                licence_number: self.licence_number.clone(),
                registered_on: self.licence_registered_on.clone(),
            }),
            membership: membership(&self.membership)?,
            contact: self.contact(),
            documents: Some(self.documents()?),
            signing_csr: csr_bytes("signing_csr", &self.signing_csr, base)?,
            authentication_csr: csr_bytes("authentication_csr", &self.authentication_csr, base)?,
            application_date: self.application_date.clone(),
            institution: self.institution.clone(),
            institution_kanji: self.institution_kanji.clone(),
            ra_operator: self.ra_operator.clone(),
            card_pin: self.card_pin.clone(),
        })
    }

    fn renewal(&self, base: &Path) -> Result<iss::RenewalApplication, ApplicationError> {
        Ok(iss::RenewalApplication {
            application_id: self.application_id.clone(),
            card_id: self.card_id.clone(),
            documents: Some(self.documents()?),
            signing_csr: csr_bytes("signing_csr", &self.signing_csr, base)?,
            authentication_csr: csr_bytes("authentication_csr", &self.authentication_csr, base)?,
            application_date: self.application_date.clone(),
            ra_operator: self.ra_operator.clone(),
            card_pin: self.card_pin.clone(),
            contact: self.contact(),
        })
    }

    fn reissue(&self, base: &Path) -> Result<iss::ReissueApplication, ApplicationError> {
        let reason = iss::ReissueReason::from_str_name(&self.reason.trim().to_ascii_uppercase()).ok_or_else(|| {
            field("reason", format!("{:?} is not LOSS, DAMAGE, NAME_CHANGE or MEMBERSHIP_CHANGE", self.reason))
        })?;
        Ok(iss::ReissueApplication {
            application_id: self.application_id.clone(),
            card_id: self.card_id.clone(),
            reason: reason as i32,
            applicant: Some(self.applicant()),
            membership: membership(&self.membership)?,
            documents: Some(self.documents()?),
            signing_csr: csr_bytes("signing_csr", &self.signing_csr, base)?,
            authentication_csr: csr_bytes("authentication_csr", &self.authentication_csr, base)?,
            confirmation: self.confirmation()?,
            application_date: self.application_date.clone(),
            ra_operator: self.ra_operator.clone(),
            card_pin: self.card_pin.clone(),
            institution: self.institution.clone(),
            institution_kanji: self.institution_kanji.clone(),
            contact: self.contact(),
        })
    }
}

fn read_json(file: &Path) -> Result<(ApplicationJson, PathBuf), CliError> {
    let text = std::fs::read_to_string(file).map_err(crate::error::io(file))?;
    let app: ApplicationJson =
        serde_json::from_str(&text).map_err(|e| CliError::Client(format!("{}: {e}", file.display())))?;
    Ok((app, file.parent().map(Path::to_owned).unwrap_or_default()))
}

// ---- output ----

fn fee_json(f: &iss::Fee) -> Value {
    json!({"issuance_fee": f.issuance_fee, "yearly_fee": f.yearly_fee, "renewal_fee": f.renewal_fee,
           "due_now": f.due_now, "currency": f.currency, "note": f.note})
}

impl Render for iss::Fee {
    fn human(&self) -> Vec<String> {
        vec![format!(
            "issuance {}  yearly {} (years 1-5)  renewal {}  due at issuance {} {}",
            self.issuance_fee, self.yearly_fee, self.renewal_fee, self.due_now, self.currency
        )]
    }

    fn json(&self) -> Value {
        fee_json(self)
    }
}

impl Render for iss::IssuedCard {
    fn human(&self) -> Vec<String> {
        let c = self;
        let mut out = vec![format!(
            "card {}  holder {}{}",
            c.card_id,
            c.holder_id,
            if c.replayed { "  (same application id: the card issued before)" } else { "" }
        )];
        if !c.replaces_card_id.is_empty() {
            out.push(format!("replaces card {}", c.replaces_card_id));
        }
        out.push(format!("signing         {}", c.signing_serial));
        out.push(format!("authentication  {}", c.authentication_serial));
        out.push(format!("valid           {} .. {}", c.not_before, c.not_after));
        if let Some(f) = &c.fee {
            out.push(format!("fee due now     {} {} ({})", f.due_now, f.currency, f.note));
        }
        if !c.generated_pin.is_empty() {
            out.push(format!("generated PIN   {}  (shown once; hand it to the holder)", c.generated_pin));
        }
        out
    }

    fn json(&self) -> Value {
        let c = self;
        let mut v = json!({
            "card_id": c.card_id, "holder_id": c.holder_id,
            "signing_serial": c.signing_serial, "authentication_serial": c.authentication_serial,
            "not_before": c.not_before, "not_after": c.not_after, "replayed": c.replayed,
            "replaces_card_id": c.replaces_card_id, "crl_numbers": c.crl_numbers,
            "fee": c.fee.as_ref().map(fee_json),
            "signing_certificate_pem": pem::encode(&pem::Pem::new("CERTIFICATE", c.signing_certificate.clone())),
            "authentication_certificate_pem": pem::encode(&pem::Pem::new("CERTIFICATE", c.authentication_certificate.clone())),
        });
        if !c.generated_pin.is_empty() {
            v["generated_pin"] = json!(c.generated_pin);
        }
        v
    }
}

impl Render for iss::CardDetails {
    fn human(&self) -> Vec<String> {
        let d = self;
        let name = d.holder_name.clone().unwrap_or_default();
        let mut out = vec![format!(
            "card {}  {}  ({})  holder {}  {} {}  licence {}",
            d.card_id,
            d.state,
            d.procedure,
            d.holder_id,
            name.family_name_kanji,
            name.given_name_kanji,
            d.licence_number
        )];
        if !d.replaces_card_id.is_empty() {
            out.push(format!("  replaces {}", d.replaces_card_id));
        }
        if !d.superseded_by.is_empty() {
            out.push(format!("  superseded by {}", d.superseded_by));
        }
        for c in &d.certificates {
            let revoked = if c.status == "revoked" {
                format!("  {} {}", c.revoked_at, c.revocation_reason)
            } else {
                String::new()
            };
            out.push(format!("  {:<15} {}  {:<8} until {}{}", c.kind, c.serial, c.status, c.not_after, revoked));
        }
        out
    }

    fn json(&self) -> Value {
        let d = self;
        let name = d.holder_name.clone().unwrap_or_default();
        json!({
            "card_id": d.card_id, "holder_id": d.holder_id, "state": d.state, "procedure": d.procedure,
            "replaces_card_id": d.replaces_card_id, "superseded_by": d.superseded_by,
            "application_id": d.application_id, "created_at": d.created_at,
            "name": {"kanji": format!("{}\u{3000}{}", name.family_name_kanji, name.given_name_kanji),
                     "latin": format!("{} {}", name.given_name_latin, name.family_name_latin)},
            "membership": iss::Membership::try_from(d.membership).map(|m| m.as_str_name()).unwrap_or("?"),
            "licence_number": d.licence_number,
            "certificates": d.certificates.iter().map(|c| json!({
                "serial": c.serial, "kind": c.kind, "status": c.status, "not_before": c.not_before,
                "not_after": c.not_after, "revoked_at": c.revoked_at, "revocation_reason": c.revocation_reason,
            })).collect::<Vec<_>>(),
            "fee": d.fee.as_ref().map(fee_json),
        })
    }
}

impl Render for iss::HolderHistory {
    fn human(&self) -> Vec<String> {
        let mut out = vec![format!("holder {}: {} card(s)", self.holder_id, self.cards.len())];
        out.extend(self.cards.iter().flat_map(Render::human));
        out
    }

    fn json(&self) -> Value {
        json!({"holder_id": self.holder_id, "cards": self.cards.iter().map(Render::json).collect::<Vec<_>>()})
    }
}

fn address(c: &Option<iss::ContactAddress>) -> String {
    c.as_ref().map(|c| c.address.clone()).unwrap_or_default()
}

impl Render for iss::ContactChangeResult {
    fn human(&self) -> Vec<String> {
        vec![if self.changed {
            format!("holder {}: address {:?} -> {:?}", self.holder_id, address(&self.previous), address(&self.current))
        } else {
            format!("holder {}: nothing changed", self.holder_id)
        }]
    }

    fn json(&self) -> Value {
        json!({"holder_id": self.holder_id, "changed": self.changed, "previous_address": address(&self.previous), "address": address(&self.current)})
    }
}

impl Render for iss::CessationResult {
    fn human(&self) -> Vec<String> {
        vec![format!(
            "card {}: {} certificate(s) revoked (cessationOfOperation){}",
            self.card_id,
            self.revoked_serials.len(),
            if self.already_revoked { ", already before" } else { "" }
        )]
    }

    fn json(&self) -> Value {
        json!({"card_id": self.card_id, "revoked_serials": self.revoked_serials, "already_revoked": self.already_revoked, "crl_numbers": self.crl_numbers})
    }
}

impl Render for iss::PinDisclosure {
    fn human(&self) -> Vec<String> {
        vec![format!("card {}: PIN {} (disclosed {})", self.card_id, self.pin, self.disclosed_at)]
    }

    fn json(&self) -> Value {
        json!({"card_id": self.card_id, "pin": self.pin, "disclosed_at": self.disclosed_at})
    }
}

async fn client(kit: &tls::GrpcKit, url: &str) -> Result<IssuanceClient<Channel>, CliError> {
    Ok(kit.client(IssuanceClient::new(connect(kit, url).await?)))
}

pub async fn run(kit: &tls::GrpcKit, url: &str, cmd: CardCommand, as_json: bool) -> Result<(), CliError> {
    let mut c = client(kit, url).await?;
    match cmd {
        CardCommand::Show { card, licence } => {
            let key = match (card, licence) {
                (Some(id), _) => iss::card_ref::Key::CardId(id),
                (_, Some(l)) => iss::card_ref::Key::LicenceNumber(l),
                _ => return Err(CliError::Client("--card or --licence".into())),
            };
            print(&c.get_card(iss::CardRef { key: Some(key) }).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::History { licence, holder } => {
            let key = match (licence, holder) {
                (Some(l), _) => iss::holder_ref::Key::LicenceNumber(l),
                (_, Some(h)) => iss::holder_ref::Key::HolderId(h),
                _ => return Err(CliError::Client("--licence or --holder".into())),
            };
            let h = c.get_holder_history(iss::HolderRef { key: Some(key) }).await.map_err(status)?.into_inner();
            print(&h, as_json);
        }
        CardCommand::Apply { file } => {
            let (app, base) = read_json(&file)?;
            let req = app.new_card(&base)?;
            print(&c.submit_application(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::Renew { file } => {
            let (app, base) = read_json(&file)?;
            let req = app.renewal(&base)?;
            print(&c.renew(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::Reissue { file } => {
            let (app, base) = read_json(&file)?;
            let req = app.reissue(&base)?;
            print(&c.reissue(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::Contact { card, address, postal_code, phone, email, resident_record_issued_on, operator } => {
            let req = iss::ContactChange {
                card_id: card,
                contact: Some(iss::ContactAddress { postal_code, address, phone, email }),
                resident_record_issued_on,
                ra_operator: operator,
                change_date: String::new(),
            };
            print(&c.change_contact(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::Cease { card, note, operator } => {
            let req = iss::CessationRequest { card_id: card, ra_operator: operator, note };
            print(&c.cease_use(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::DisclosePin { card, request_id, confirmed_by, method, confirmed_at, operator } => {
            let req = iss::PinDisclosureRequest {
                request_id,
                card_id: card,
                confirmation: Some(iss::IdentityConfirmation {
                    confirmed_by,
                    method: iss::ConfirmationMethod::from(method.0) as i32,
                    confirmed_at: match confirmed_at {
                        Some(t) => t,
                        None => now_rfc3339()?,
                    },
                    note: String::new(),
                }),
                ra_operator: operator,
            };
            print(&c.disclose_pin(req).await.map_err(status)?.into_inner(), as_json);
        }
        CardCommand::Fee { membership } => {
            let m = match membership {
                MembershipArg::Member => iss::Membership::Member,
                MembershipArg::NonMember => iss::Membership::NonMember,
            };
            print(&c.get_fee(iss::GetFeeRequest { membership: m as i32 }).await.map_err(status)?.into_inner(), as_json);
        }
    }
    Ok(())
}

// ---- bulk import ----

/// Reads applications from JSON lines, or CSV with a header whose columns are
/// the JSON field names (nested ones as `applicant.family_name_kanji`, ...).
/// A line number of the input file and what that line held.
type NumberedLine = (usize, Result<ApplicationJson, ApplicationError>);

fn read_lines(file: &Path) -> Result<Vec<NumberedLine>, CliError> {
    let f = std::fs::File::open(file).map_err(crate::error::io(file))?;
    let lines: Vec<String> =
        std::io::BufReader::new(f).lines().collect::<Result<_, _>>().map_err(crate::error::io(file))?;
    let is_csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut out = Vec::new();
    if is_csv {
        let mut rows = lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = rows.next() else { return Ok(out) };
        let columns: Vec<String> = split_csv(header);
        for (i, line) in rows {
            let values = split_csv(line);
            let mut obj = serde_json::Map::new();
            for (k, v) in columns.iter().zip(values) {
                insert_path(&mut obj, k, v);
            }
            let parsed = serde_json::from_value::<ApplicationJson>(Value::Object(obj)).map_err(ApplicationError::from);
            out.push((i + 1, parsed));
        }
    } else {
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            out.push((i + 1, serde_json::from_str::<ApplicationJson>(line).map_err(ApplicationError::from)));
        }
    }
    Ok(out)
}

fn insert_path(obj: &mut serde_json::Map<String, Value>, key: &str, value: String) {
    let value = match value.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(value),
    };
    match key.split_once('.') {
        Some((head, rest)) => {
            let inner = obj.entry(head.to_owned()).or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = inner {
                insert_path(m, rest, value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()));
            }
        }
        None => {
            obj.insert(key.to_owned(), value);
        }
    }
}

/// Comma-separated values with "double quotes" for fields holding commas.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

fn progress(done: usize, total: usize, failed: usize) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r[{}{}] {done}/{total}  failed {failed}", "=".repeat(filled), " ".repeat(width - filled));
    let _ = err.flush();
}

pub async fn import(kit: &tls::GrpcKit, url: &str, args: ImportArgs, as_json: bool) -> Result<(), CliError> {
    let mut c = client(kit, url).await?;
    let base = args.file.parent().map(Path::to_owned).unwrap_or_default();
    let lines = read_lines(&args.file)?;
    let total = lines.len();
    let (mut ok, mut failed) = (0usize, 0usize);
    for (done, (line_no, parsed)) in lines.into_iter().enumerate() {
        let result = match parsed.and_then(|a| a.new_card(&base)) {
            Err(e) => Err(e),
            Ok(req) => c.submit_application(req).await.map(|r| r.into_inner()).map_err(ApplicationError::Refused),
        };
        match result {
            Ok(card) => {
                ok += 1;
                if as_json {
                    say(format_args!(
                        "{}",
                        json!({"line": line_no, "ok": true, "card_id": card.card_id, "holder_id": card.holder_id})
                    ));
                }
            }
            Err(reason) => {
                failed += 1;
                if as_json {
                    say(format_args!("{}", json!({"line": line_no, "ok": false, "error": reason.to_string()})));
                } else {
                    eprintln!("\rline {line_no}: {reason}");
                }
                if args.stop_on_error {
                    progress(done + 1, total, failed);
                    eprintln!();
                    return Err(CliError::Client(format!("stopped at line {line_no}")));
                }
            }
        }
        progress(done + 1, total, failed);
    }
    eprintln!();
    if !as_json {
        say(format_args!("imported {ok} of {total}; {failed} failed"));
    }
    if failed > 0 {
        return Err(CliError::Client(format!("{failed} of {total} applications failed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_applications_with_nested_fields() {
        let cols =
            split_csv("application_id,applicant.family_name_kanji,documents.licence_copy_checked,contact.address");
        let vals = split_csv("a-1,山田,true,\"東京都, 千代田区\"");
        let mut obj = serde_json::Map::new();
        for (k, v) in cols.iter().zip(vals) {
            insert_path(&mut obj, k, v);
        }
        let app: ApplicationJson = serde_json::from_value(Value::Object(obj)).unwrap();
        assert_eq!(app.application_id, "a-1");
        assert_eq!(app.applicant.family_name_kanji, "山田");
        assert!(app.documents.licence_copy_checked);
        assert_eq!(app.contact.unwrap().address, "東京都, 千代田区");
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_reported() {
        assert!(serde_json::from_str::<ApplicationJson>(r#"{"application_idd":"x"}"#).is_err());
        assert!(membership("gold").unwrap_err().to_string().starts_with("membership:"));
        assert!(photo_id_type("paper").unwrap_err().to_string().starts_with("documents.photo_id_type:"));
        assert_eq!(base64_decode("AQID").unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn results_print_the_same_lines_for_people_and_json() {
        let card = iss::CardDetails { card_id: "c-1".into(), state: "active".into(), ..Default::default() };
        let history = iss::HolderHistory { holder_id: "JMA1".into(), cards: vec![card.clone(), card] };
        let lines = history.human();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "holder JMA1: 2 card(s)");
        assert!(lines[1].starts_with("card c-1  active  ()"), "{}", lines[1]);
        assert_eq!(history.json()["cards"][1]["card_id"], "c-1");

        let moved = iss::ContactChangeResult {
            holder_id: "JMA1".into(),
            changed: true,
            current: Some(iss::ContactAddress { address: "福岡".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(moved.human(), ["holder JMA1: address \"\" -> \"福岡\""]);
        assert_eq!(moved.json()["address"], "福岡");
        let same = iss::ContactChangeResult { holder_id: "JMA1".into(), ..Default::default() };
        assert_eq!(same.human(), ["holder JMA1: nothing changed"]);
    }
}
