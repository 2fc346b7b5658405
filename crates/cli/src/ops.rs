//! Operator commands that call the running services over gRPC: revocation,
//! emergency revocation, approval, CRL publication and status.

use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};
use domain::{ConfirmationMethod, RevocationReason};
use proto::crl::v1 as crlpb;
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;
use tonic::transport::Channel;

use crate::error::CliError;

/// A revocation reason as the CLI takes it (`--reason key-compromise`): the
/// domain's, spelt by [`RevocationReason::cli_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub RevocationReason);

impl Reason {
    const VARIANTS: [Reason; RevocationReason::ALL.len()] = {
        let mut out = [Reason(RevocationReason::Unspecified); RevocationReason::ALL.len()];
        let mut i = 0;
        while i < out.len() {
            out[i] = Reason(RevocationReason::ALL[i]);
            i += 1;
        }
        out
    };

    /// For the ARL (the ceremony's `--reason`).
    pub fn crl_reason(self) -> RevocationReason {
        self.0
    }
}

impl ValueEnum for Reason {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::VARIANTS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.cli_name()))
    }
}

/// How the holder's identity was confirmed, as the CLI takes it
/// (`--method written-report`): the domain's, spelt by
/// [`ConfirmationMethod::cli_name`]. `written` is kept as an alias, the
/// spelling `emergency-revoke` took before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method(pub ConfirmationMethod);

impl ValueEnum for Method {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Method(ConfirmationMethod::Phone),
            Method(ConfirmationMethod::WrittenReport),
            Method(ConfirmationMethod::InPerson),
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let v = PossibleValue::new(self.0.cli_name());
        Some(match self.0 {
            ConfirmationMethod::WrittenReport => v.alias("written"),
            _ => v,
        })
    }
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
    /// The operator: the identity of the client certificate (its default). A
    /// certificate of this name in `[tls] dir` is the one presented; a name that
    /// differs from the certificate's identity is refused.
    #[arg(long, env = "HPKI_OPERATOR")]
    pub operator: Option<String>,
    /// Free text kept with the revocation in the audit log.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Revocation time (RFC 3339); now when absent. At most `[revocation]
    /// max_backdate_seconds` in the past: an earlier compromise goes in
    /// --compromised-at.
    #[arg(long, default_value = "")]
    pub revoked_at: String,
    /// When the key was (or is suspected to have been) compromised, RFC 3339:
    /// the invalidityDate of the CRL entry and the OCSP answer. It may be
    /// before the revocation, not before the certificate's notBefore.
    #[arg(long, default_value = "")]
    pub compromised_at: String,
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
    /// The operator who revokes: the identity of the client certificate (its
    /// default). A certificate of this name in `[tls] dir` is the one presented;
    /// a name that differs from the certificate's identity is refused.
    #[arg(long, env = "HPKI_OPERATOR")]
    pub operator: Option<String>,
    /// Free text kept with the revocation in the audit log.
    #[arg(long, default_value = "")]
    pub note: String,
    /// When the card was lost (the compromise), RFC 3339: the invalidityDate
    /// of the CRL entries and OCSP answers.
    #[arg(long, default_value = "")]
    pub compromised_at: String,
}

pub async fn connect(kit: &tls::GrpcKit, url: &str) -> Result<Channel, CliError> {
    let endpoint = kit.endpoint(url).map_err(|source| CliError::Endpoint { url: url.to_owned(), source })?;
    // The URL as dialled: its scheme follows [tls] enabled.
    let url = endpoint.uri().to_string();
    endpoint.connect().await.map_err(|source| CliError::Connect { url, source })
}

async fn revocation_client(
    kit: &tls::GrpcKit,
    url: &str,
) -> Result<rev::revocation_client::RevocationClient<Channel>, CliError> {
    Ok(kit.client(rev::revocation_client::RevocationClient::new(connect(kit, url).await?)))
}

/// A service's refusal, as the operator reads it: code and message.
pub(crate) fn status(e: tonic::Status) -> CliError {
    CliError::Client(format!("{:?}: {}", e.code(), e.message()))
}

/// Now, as an RFC 3339 time.
pub(crate) fn now_rfc3339() -> Result<String, CliError> {
    timefmt::format_rfc3339(time::OffsetDateTime::now_utc()).map_err(CliError::TimeFormat)
}

fn print_certificates(certs: &[rev::RevokedCertificate]) {
    for c in certs {
        let reason = reg::RevocationReason::try_from(c.reason).map(|r| r.as_str_name()).unwrap_or("?");
        let note = if c.already_revoked { " (already revoked; the first revocation stands)" } else { "" };
        let compromised =
            if c.compromised_at.is_empty() { String::new() } else { format!("  compromised {}", c.compromised_at) };
        crate::launcher::say(format_args!(
            "revoked {:<15} {}  {}  {}{}{}",
            c.kind, c.serial, reason, c.revoked_at, compromised, note
        ));
    }
}

pub async fn revoke(kit: &tls::GrpcKit, url: &str, a: RevokeArgs) -> Result<(), CliError> {
    let mut client = revocation_client(kit, url).await?;
    // The same revocation either way; only what it names differs.
    let RevokeArgs { target, reason, operator, note, revoked_at, compromised_at } = a;
    let reason = reg::RevocationReason::from(reason.0) as i32;
    let operator = operator.unwrap_or_default();
    let resp = match (target.serial, target.card, target.licence) {
        (Some(serial), _, _) => {
            let req = rev::RevokeCertificateRequest { serial, reason, operator, note, revoked_at, compromised_at };
            client.revoke_certificate(req).await
        }
        (_, Some(card_id), _) => {
            let req = rev::RevokeCardRequest { card_id, reason, operator, note, revoked_at, compromised_at };
            client.revoke_card(req).await
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
            crate::launcher::say(format_args!("card {} revoked; {}", r.card_id, crl_summary(r)));
        }
    }
}

/// Which CA each CRL number belongs to, e.g. `delta CRL published: signing CA
/// number 7, authentication CA number 5; full CRLs: signing CA number 8, ...`.
fn crl_summary(r: &rev::EmergencyRevokeResponse) -> String {
    if r.crls.is_empty() {
        // A revocation service that predates per-CA numbers.
        let numbers: Vec<String> = r.crl_numbers.iter().map(u64::to_string).collect();
        return match numbers.is_empty() {
            true => "no CRL published (no certificates)".into(),
            false => format!("{} CRL published, number {}", r.crl_kind, numbers.join(", ")),
        };
    }
    let ca = |c: &rev::IssuerCrls, n: u64| match n {
        0 => format!("{} CA number pending", c.issuer),
        n => format!("{} CA number {n}", c.issuer),
    };
    let fulls: Vec<String> = r.crls.iter().map(|c| ca(c, c.full_crl_number)).collect();
    let deltas: Vec<String> =
        r.crls.iter().filter(|c| c.delta_crl_number > 0).map(|c| ca(c, c.delta_crl_number)).collect();
    if deltas.is_empty() {
        return format!("full CRL published: {}", fulls.join(", "));
    }
    let pending = match r.crls.iter().any(|c| c.full_pending) {
        true => " (being published)",
        false => "",
    };
    format!("delta CRL published: {}; full CRLs: {}{pending}", deltas.join(", "), fulls.join(", "))
}

pub async fn emergency(kit: &tls::GrpcKit, url: &str, a: EmergencyArgs) -> Result<(), CliError> {
    let mut client = revocation_client(kit, url).await?;
    let card = match (a.card, a.licence) {
        (Some(c), _) => Some(rev::emergency_revoke_request::Card::CardId(c)),
        (_, Some(l)) => Some(rev::emergency_revoke_request::Card::LicenceNumber(l)),
        _ => None,
    };
    let confirmed_at = match a.confirmed_at {
        Some(t) => t,
        None => now_rfc3339()?,
    };
    let resp = client
        .emergency_revoke(rev::EmergencyRevokeRequest {
            card,
            confirmation: Some(rev::IdentityConfirmation {
                confirmed_by: a.confirmed_by,
                method: rev::ConfirmationMethod::from(a.method.0) as i32,
                confirmed_at,
                note: String::new(),
            }),
            operator: a.operator.clone().unwrap_or_default(),
            note: a.note,
            compromised_at: a.compromised_at,
        })
        .await
        .map_err(status)?
        .into_inner();
    print_emergency(&resp);
    Ok(())
}

pub async fn approve(
    kit: &tls::GrpcKit,
    url: &str,
    approval_id: String,
    operator: Option<String>,
) -> Result<(), CliError> {
    let operator = operator.unwrap_or_default();
    let mut client = revocation_client(kit, url).await?;
    let resp = client
        .approve_emergency_revocation(rev::ApproveEmergencyRequest { approval_id, operator })
        .await
        .map_err(status)?
        .into_inner();
    print_emergency(&resp);
    Ok(())
}

pub async fn publish(
    kit: &tls::GrpcKit,
    url: &str,
    issuer: String,
    kind: Option<String>,
    actor: String,
) -> Result<(), CliError> {
    let mut client = kit.client(crlpb::crl_publisher_client::CrlPublisherClient::new(connect(kit, url).await?));
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

pub async fn status_of(kit: &tls::GrpcKit, url: &str, target: CardOrSerial) -> Result<(), CliError> {
    let mut client = revocation_client(kit, url).await?;
    let key = match (target.serial, target.card, target.licence) {
        (Some(s), _, _) => rev::status_request::Key::Serial(s),
        (_, Some(c), _) => rev::status_request::Key::CardId(c),
        (_, _, Some(l)) => rev::status_request::Key::LicenceNumber(l),
        _ => return Err(CliError::Client("status takes --serial, --card or --licence".into())),
    };
    let s = client.get_status(rev::StatusRequest { key: Some(key) }).await.map_err(status)?.into_inner();
    if s.card_id.is_empty() {
        crate::launcher::say(format_args!("no card (a CA service certificate)"));
    } else {
        crate::launcher::say(format_args!("card {}  holder {}  state {}", s.card_id, s.holder_id, s.card_state));
    }
    for c in s.certificates {
        let reason = reg::RevocationReason::try_from(c.reason).map(|r| r.as_str_name()).unwrap_or("?");
        let revoked = if c.status == "revoked" {
            let compromised =
                if c.compromised_at.is_empty() { String::new() } else { format!(" compromised {}", c.compromised_at) };
            format!("  revoked {} {} by {}{}", c.revoked_at, reason, c.revoked_by, compromised)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `--reason` has always accepted (clap's kebab-case of the old
    /// derived enum), and what they mean.
    #[test]
    fn reason_names_are_unchanged() {
        let names: Vec<String> =
            Reason::value_variants().iter().map(|r| r.to_possible_value().unwrap().get_name().to_string()).collect();
        assert_eq!(
            names,
            [
                "unspecified",
                "key-compromise",
                "ca-compromise",
                "affiliation-changed",
                "superseded",
                "cessation-of-operation",
                "privilege-withdrawn"
            ]
        );
        assert_eq!(Reason::from_str("ca-compromise", false), Ok(Reason(RevocationReason::CaCompromise)));
        assert!(Reason::from_str("CA-COMPROMISE", false).is_err());
        assert!(Reason::from_str("keyCompromise", false).is_err());
    }

    fn done(crls: Vec<rev::IssuerCrls>) -> rev::EmergencyRevokeResponse {
        rev::EmergencyRevokeResponse { state: rev::EmergencyState::Done as i32, crls, ..Default::default() }
    }

    fn ca(issuer: &str, delta: u64, full: u64, pending: bool) -> rev::IssuerCrls {
        rev::IssuerCrls { issuer: issuer.into(), delta_crl_number: delta, full_crl_number: full, full_pending: pending }
    }

    #[test]
    fn the_summary_names_the_ca_of_each_crl_number() {
        let both = done(vec![ca("signing", 7, 8, true), ca("authentication", 5, 6, true)]);
        assert_eq!(
            crl_summary(&both),
            "delta CRL published: signing CA number 7, authentication CA number 5; \
             full CRLs: signing CA number 8, authentication CA number 6 (being published)"
        );
        let no_number = done(vec![ca("authentication", 5, 0, true)]);
        assert_eq!(
            crl_summary(&no_number),
            "delta CRL published: authentication CA number 5; full CRLs: authentication CA number pending (being published)"
        );
        let deltas_off = done(vec![ca("signing", 0, 4, false), ca("authentication", 0, 3, false)]);
        assert_eq!(crl_summary(&deltas_off), "full CRL published: signing CA number 4, authentication CA number 3");
        let old_server =
            rev::EmergencyRevokeResponse { crl_numbers: vec![7, 5], crl_kind: "delta".into(), ..done(vec![]) };
        assert_eq!(crl_summary(&old_server), "delta CRL published, number 7, 5");
        assert_eq!(crl_summary(&done(vec![])), "no CRL published (no certificates)");
    }
}
