//! Operator commands that call the running services over gRPC: revocation,
//! emergency revocation, approval, CRL publication and status.

use clap::{Args, ValueEnum};
use proto::crl::v1 as crlpb;
use proto::registry::v1::RevocationReason;
use proto::revocation::v1 as rev;
use tonic::transport::Channel;

use crate::error::CliError;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl From<Reason> for RevocationReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::CaCompromise => RevocationReason::CaCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl Reason {
    pub fn crl_reason(self) -> crl::CrlReason {
        match self {
            Reason::Unspecified => crl::CrlReason::Unspecified,
            Reason::KeyCompromise => crl::CrlReason::KeyCompromise,
            Reason::CaCompromise => crl::CrlReason::CaCompromise,
            Reason::AffiliationChanged => crl::CrlReason::AffiliationChanged,
            Reason::Superseded => crl::CrlReason::Superseded,
            Reason::CessationOfOperation => crl::CrlReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => crl::CrlReason::PrivilegeWithdrawn,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Method {
    Phone,
    Written,
    InPerson,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CardOrSerial {
    /// Certificate serial number (hex).
    #[arg(long)]
    pub serial: Option<String>,
    /// Card id.
    #[arg(long)]
    pub card: Option<String>,
    /// Holder's medical licence number.
    #[arg(long)]
    pub licence: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub target: CardOrSerial,
    /// Revocation reason (CRL reasonCode).
    #[arg(long, value_enum)]
    pub reason: Reason,
    /// Operator id, recorded in the audit log.
    #[arg(long, env = "HPKI_OPERATOR")]
    pub operator: String,
    /// Free text kept with the revocation in the audit log.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Revocation time (RFC 3339); now when absent.
    #[arg(long, default_value = "")]
    pub revoked_at: String,
}

#[derive(Debug, Args)]
pub struct EmergencyArgs {
    /// The lost card's id.
    #[arg(long, conflicts_with = "licence", required_unless_present = "licence")]
    pub card: Option<String>,
    /// Or the holder's medical licence number: their active card.
    #[arg(long)]
    pub licence: Option<String>,
    /// Operator who confirmed the holder's identity.
    #[arg(long)]
    pub confirmed_by: String,
    /// How the holder's identity was confirmed.
    #[arg(long, value_enum)]
    pub method: Method,
    /// When the identity was confirmed (RFC 3339); now when absent.
    #[arg(long)]
    pub confirmed_at: Option<String>,
    /// Operator who revokes, recorded in the audit log.
    #[arg(long, env = "HPKI_OPERATOR")]
    pub operator: String,
    /// Free text kept with the revocation in the audit log.
    #[arg(long, default_value = "")]
    pub note: String,
}

pub async fn connect(url: &str) -> Result<Channel, CliError> {
    tls::endpoint(url)
        .map_err(|e| CliError::Client(format!("{url}: {e}")))?
        .connect()
        .await
        .map_err(|e| CliError::Client(format!("cannot reach {url}: {e}")))
}

/// A service's refusal, as the operator reads it: code and message.
pub(crate) fn status(e: tonic::Status) -> CliError {
    CliError::Client(format!("{:?}: {}", e.code(), e.message()))
}

/// Now, as an RFC 3339 time.
pub(crate) fn now_rfc3339() -> Result<String, CliError> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CliError::Client(e.to_string()))
}

fn print_certificates(certs: &[rev::RevokedCertificate]) {
    for c in certs {
        let reason = RevocationReason::try_from(c.reason).map(|r| r.as_str_name()).unwrap_or("?");
        let note = if c.already_revoked { " (already revoked; the first revocation stands)" } else { "" };
        crate::launcher::say(format_args!("revoked {:<15} {}  {}  {}{}", c.kind, c.serial, reason, c.revoked_at, note));
    }
}

pub async fn revoke(url: &str, a: RevokeArgs) -> Result<(), CliError> {
    let mut client = tls::limit_client!(rev::revocation_client::RevocationClient::new(connect(url).await?));
    let reason = RevocationReason::from(a.reason) as i32;
    let resp = match (a.target.serial, a.target.card, a.target.licence) {
        (Some(serial), _, _) => {
            client
                .revoke_certificate(rev::RevokeCertificateRequest {
                    serial,
                    reason,
                    operator: a.operator,
                    note: a.note,
                    revoked_at: a.revoked_at,
                })
                .await
        }
        (_, Some(card_id), _) => {
            client
                .revoke_card(rev::RevokeCardRequest {
                    card_id,
                    reason,
                    operator: a.operator,
                    note: a.note,
                    revoked_at: a.revoked_at,
                })
                .await
        }
        _ => return Err(CliError::Client("revoke takes --serial or --card".into())),
    }
    .map_err(status)?
    .into_inner();
    print_certificates(&resp.certificates);
    Ok(())
}

fn print_emergency(r: &rev::EmergencyRevokeResponse) {
    match rev::EmergencyState::try_from(r.state) {
        Ok(rev::EmergencyState::AwaitingApproval) => crate::launcher::say(format_args!(
            "emergency revocation of card {} awaits a second operator: hpki-ca approve --approval {}",
            r.card_id, r.approval_id
        )),
        _ => {
            print_certificates(&r.certificates);
            let numbers: Vec<String> = r.crl_numbers.iter().map(u64::to_string).collect();
            crate::launcher::say(format_args!(
                "card {} revoked; {} CRL published, number {}",
                r.card_id,
                r.crl_kind,
                numbers.join(", ")
            ));
        }
    }
}

pub async fn emergency(url: &str, a: EmergencyArgs) -> Result<(), CliError> {
    let mut client = tls::limit_client!(rev::revocation_client::RevocationClient::new(connect(url).await?));
    let card = match (a.card, a.licence) {
        (Some(c), _) => Some(rev::emergency_revoke_request::Card::CardId(c)),
        (_, Some(l)) => Some(rev::emergency_revoke_request::Card::LicenceNumber(l)),
        _ => None,
    };
    let confirmed_at = match a.confirmed_at {
        Some(t) => t,
        None => now_rfc3339()?,
    };
    let method = match a.method {
        Method::Phone => rev::ConfirmationMethod::Phone,
        Method::Written => rev::ConfirmationMethod::WrittenReport,
        Method::InPerson => rev::ConfirmationMethod::InPerson,
    };
    let resp = client
        .emergency_revoke(rev::EmergencyRevokeRequest {
            card,
            confirmation: Some(rev::IdentityConfirmation {
                confirmed_by: a.confirmed_by,
                method: method as i32,
                confirmed_at,
                note: String::new(),
            }),
            operator: a.operator,
            note: a.note,
        })
        .await
        .map_err(status)?
        .into_inner();
    print_emergency(&resp);
    Ok(())
}

pub async fn approve(url: &str, approval_id: String, operator: String) -> Result<(), CliError> {
    let mut client = tls::limit_client!(rev::revocation_client::RevocationClient::new(connect(url).await?));
    let resp = client
        .approve_emergency_revocation(rev::ApproveEmergencyRequest { approval_id, operator })
        .await
        .map_err(status)?
        .into_inner();
    print_emergency(&resp);
    Ok(())
}

pub async fn publish(url: &str, issuer: String, kind: Option<String>, actor: String) -> Result<(), CliError> {
    let mut client = tls::limit_client!(crlpb::crl_publisher_client::CrlPublisherClient::new(connect(url).await?));
    let kind = match kind.as_deref() {
        None => crlpb::CrlKind::Unspecified,
        Some("full") => crlpb::CrlKind::Full,
        Some("delta") => crlpb::CrlKind::Delta,
        Some(other) => return Err(CliError::Client(format!("--kind {other:?}: use full or delta"))),
    };
    let resp = client
        .publish(crlpb::PublishRequest {
            issuer,
            kind: kind as i32,
            actor,
            reason: "operator request".into(),
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner();
    for c in resp.crls {
        let kind = crlpb::CrlKind::try_from(c.kind).map(|k| k.as_str_name()).unwrap_or("?");
        crate::launcher::say(format_args!(
            "{:<15} {:<5} number {:<6} entries {:<8} next update {}  {}",
            c.issuer, kind, c.crl_number, c.entries, c.next_update, c.url
        ));
    }
    Ok(())
}

pub async fn status_of(url: &str, target: CardOrSerial) -> Result<(), CliError> {
    let mut client = tls::limit_client!(rev::revocation_client::RevocationClient::new(connect(url).await?));
    let key = match (target.serial, target.card, target.licence) {
        (Some(s), _, _) => rev::status_request::Key::Serial(s),
        (_, Some(c), _) => rev::status_request::Key::CardId(c),
        (_, _, Some(l)) => rev::status_request::Key::LicenceNumber(l),
        _ => return Err(CliError::Client("status takes --serial, --card or --licence".into())),
    };
    let s = client.get_status(rev::StatusRequest { key: Some(key) }).await.map_err(status)?.into_inner();
    crate::launcher::say(format_args!("card {}  holder {}  state {}", s.card_id, s.holder_id, s.card_state));
    for c in s.certificates {
        let reason = RevocationReason::try_from(c.reason).map(|r| r.as_str_name()).unwrap_or("?");
        let revoked = if c.status == "revoked" {
            format!("  revoked {} {} by {}", c.revoked_at, reason, c.revoked_by)
        } else {
            String::new()
        };
        crate::launcher::say(format_args!(
            "{:<15} {}  {:<8} not after {}{}",
            c.kind, c.serial, c.status, c.not_after, revoked
        ));
    }
    Ok(())
}
