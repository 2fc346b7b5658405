//! Checks a new-card application against the rules of `domain.md` before any
//! state is touched. Every rejection names the offending field.

use proto::issuance::v1::{Applicant, DocumentChecks, Membership, NewCardApplication, PhotoIdType};
use time::{Date, Month};

use crate::error::IssuanceError;

/// Driving-history certificates count as photo ID only from this issue date on.
const DRIVING_HISTORY_FROM: Date = time::macros::date!(2012 - 04 - 01);
const MAX_APPLICATION_ID: usize = 128;
const MAX_TEXT: usize = 256;

/// An application whose fields passed every check; CSRs are not looked at here.
#[derive(Debug, Clone)]
pub struct CheckedApplication {
    pub application_date: Date,
    pub membership: Membership,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> IssuanceError {
    IssuanceError::InvalidArgument { field: field.to_owned(), reason: why.to_string() }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(field: &str, value: &str) -> Result<Date, IssuanceError> {
    if value.is_empty() {
        return Err(invalid(field, "is required (YYYY-MM-DD)"));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, &fmt).map_err(|_| invalid(field, format!("{value:?} is not a date (YYYY-MM-DD)")))
}

/// `date` minus `months`, with the day clamped to the target month's length;
/// `Date::MIN` when that is before the calendar (a huge configured age).
pub fn months_before(date: Date, months: u32) -> Date {
    let total = i64::from(date.year()) * 12 + i64::from(date.month() as u8) - 1 - i64::from(months);
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let Ok(year) = i32::try_from(year) else { return Date::MIN };
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    let day = date.day().min(time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
}

pub(crate) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, IssuanceError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if v.chars().count() > MAX_TEXT {
        return Err(invalid(field, format!("is longer than {MAX_TEXT} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(v)
}

/// The institution's Latin name (subject O) is printable ASCII; its kanji
/// name (SAN O) may be any UTF-8 but needs the Latin one beside it.
fn institution(latin: &str, kanji: &str) -> Result<(), IssuanceError> {
    if !latin.is_empty() {
        let v = required("institution", latin)?;
        if let Some(bad) = v.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(invalid(
                "institution",
                format!("{bad:?} is not printable ASCII: give the Latin (English or romaji) name here and the Japanese name in institution_kanji"),
            ));
        }
    }
    if !kanji.is_empty() {
        required("institution_kanji", kanji)?;
        if latin.trim().is_empty() {
            return Err(invalid("institution_kanji", "needs institution too (the Latin name for the subject O)"));
        }
    }
    Ok(())
}

fn latin_name(field: &str, value: &str) -> Result<(), IssuanceError> {
    let v = required(field, value)?;
    let ok = v.chars().all(|c| c.is_ascii_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.'));
    if !ok {
        return Err(invalid(field, "must be written in Latin letters (A-Z, space, hyphen, apostrophe, period)"));
    }
    Ok(())
}

fn kana_name(field: &str, value: &str) -> Result<(), IssuanceError> {
    let v = required(field, value)?;
    let ok = v.chars().all(
        |c| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}' | '\u{3000}' | ' '),
    );
    if !ok {
        return Err(invalid(field, "must be written in kana"));
    }
    Ok(())
}

fn applicant(a: Option<&Applicant>, today: Date) -> Result<(), IssuanceError> {
    let a = a.ok_or_else(|| invalid("applicant", "is required"))?;
    required("applicant.family_name_kanji", &a.family_name_kanji)?;
    required("applicant.given_name_kanji", &a.given_name_kanji)?;
    kana_name("applicant.family_name_kana", &a.family_name_kana)?;
    kana_name("applicant.given_name_kana", &a.given_name_kana)?;
    latin_name("applicant.family_name_latin", &a.family_name_latin)?;
    latin_name("applicant.given_name_latin", &a.given_name_latin)?;
    let dob = parse_date("applicant.date_of_birth", &a.date_of_birth)?;
    if dob >= today {
        return Err(invalid("applicant.date_of_birth", "must be in the past"));
    }
    Ok(())
}

pub(crate) fn within_months(
    field: &str,
    value: &str,
    application_date: Date,
    months: u32,
) -> Result<(), IssuanceError> {
    let d = parse_date(field, value)?;
    if d > application_date {
        return Err(invalid(field, format!("{d} is after the application date {application_date}")));
    }
    let oldest = months_before(application_date, months);
    if d < oldest {
        return Err(invalid(
            field,
            format!("{d} is more than {months} months before the application date {application_date} (oldest accepted: {oldest})"),
        ));
    }
    Ok(())
}

pub(crate) fn documents(
    d: Option<&DocumentChecks>,
    application_date: Date,
    max_age_months: u32,
) -> Result<(), IssuanceError> {
    let d = d.ok_or_else(|| invalid("documents", "is required"))?;
    within_months("documents.photo_taken_on", &d.photo_taken_on, application_date, max_age_months)?;
    within_months(
        "documents.resident_record_issued_on",
        &d.resident_record_issued_on,
        application_date,
        max_age_months,
    )?;
    if !d.licence_copy_checked {
        return Err(invalid("documents.licence_copy_checked", "the RA must check a copy of the medical licence"));
    }
    if d.licence_back_endorsed && !d.licence_back_copied {
        return Err(invalid(
            "documents.licence_back_copied",
            "the licence has an endorsement on the back, so both sides must be copied",
        ));
    }
    let id = d.photo_id.as_ref().ok_or_else(|| invalid("documents.photo_id", "is required"))?;
    let kind = PhotoIdType::try_from(id.r#type).unwrap_or(PhotoIdType::Unspecified);
    let expiry_required = match kind {
        PhotoIdType::Unspecified => return Err(invalid("documents.photo_id.type", "is required")),
        PhotoIdType::MyNumberNotificationCard => {
            return Err(invalid(
                "documents.photo_id.type",
                "the paper My Number notification card is not accepted as photo ID; use the My Number card",
            ))
        }
        PhotoIdType::DrivingHistoryCertificate => {
            let issued = parse_date("documents.photo_id.issued_on", &id.issued_on)?;
            if issued < DRIVING_HISTORY_FROM {
                return Err(invalid(
                    "documents.photo_id.issued_on",
                    format!("a driving-history certificate counts as photo ID only if issued on or after {DRIVING_HISTORY_FROM}"),
                ));
            }
            false
        }
        PhotoIdType::GovernmentEmployeeId => false,
        PhotoIdType::Passport
        | PhotoIdType::DriversLicence
        | PhotoIdType::MyNumberCard
        | PhotoIdType::BasicResidentRegisterCard => true,
    };
    if expiry_required || !id.expires_on.is_empty() {
        let expires = parse_date("documents.photo_id.expires_on", &id.expires_on)?;
        if expires < application_date {
            return Err(invalid("documents.photo_id.expires_on", format!("the photo ID expired on {expires}")));
        }
    }
    Ok(())
}

/// The RA's idempotency key.
pub(crate) fn application_id(id: &str) -> Result<&str, IssuanceError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(invalid("application_id", "is required (an idempotency key chosen by the RA)"));
    }
    if id.len() > MAX_APPLICATION_ID || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("application_id", format!("must be 1 to {MAX_APPLICATION_ID} printable ASCII characters")));
    }
    Ok(id)
}

/// The application date: today (JST) when empty, never in the future.
pub(crate) fn application_date(field: &str, value: &str, today: Date) -> Result<Date, IssuanceError> {
    let d = if value.is_empty() { today } else { parse_date(field, value)? };
    if d > today {
        return Err(invalid(field, format!("{d} is in the future")));
    }
    Ok(d)
}

/// An identity-confirmation record: who, how, when (not in the future). An
/// unspecified or unknown method is refused naming `{field}.method`.
pub(crate) fn confirmation(
    field: &str,
    c: Option<&proto::common::v1::IdentityConfirmation>,
) -> Result<domain::IdentityConfirmation, IssuanceError> {
    let c = c.ok_or_else(|| invalid(field, "is required (who confirmed the holder's identity, how and when)"))?;
    let confirmed_by = required(&format!("{field}.confirmed_by"), &c.confirmed_by)?.to_owned();
    let method = domain::ConfirmationMethod::try_from(c.method).map_err(|n| {
        let why = match n {
            0 => "is required (PHONE, WRITTEN_REPORT or IN_PERSON)".to_owned(),
            n => format!("{n} is not PHONE, WRITTEN_REPORT or IN_PERSON"),
        };
        invalid(&format!("{field}.method"), why)
    })?;
    let at = time::OffsetDateTime::parse(&c.confirmed_at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid(&format!("{field}.confirmed_at"), "must be an RFC 3339 time"))?;
    if at > time::OffsetDateTime::now_utc() + time::Duration::minutes(2) {
        return Err(invalid(&format!("{field}.confirmed_at"), "is in the future"));
    }
    Ok(domain::IdentityConfirmation {
        confirmed_by,
        method,
        confirmed_at: c.confirmed_at.clone(),
        note: c.note.clone(),
    })
}

/// Checks everything but the CSRs. `today` is the JST date of the call.
pub fn check_application(
    app: &NewCardApplication,
    today: Date,
    max_age_months: u32,
) -> Result<CheckedApplication, IssuanceError> {
    application_id(&app.application_id)?;
    let application_date = application_date("application_date", &app.application_date, today)?;
    applicant(app.applicant.as_ref(), today)?;
    let licence = app.licence.as_ref().ok_or_else(|| invalid("licence", "is required"))?;
    let number = licence.licence_number.trim();
    if number.is_empty() {
        return Err(invalid("licence.licence_number", "is required"));
    }
    if number.len() > 10 || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("licence.licence_number", "must be 1 to 10 digits"));
    }
    let registered = parse_date("licence.registered_on", &licence.registered_on)?;
    if registered > today {
        return Err(invalid("licence.registered_on", "is in the future"));
    }
    let membership = Membership::try_from(app.membership).unwrap_or(Membership::Unspecified);
    if membership == Membership::Unspecified {
        return Err(invalid("membership", "is required (MEMBER or NON_MEMBER)"));
    }
    let contact = app.contact.as_ref().ok_or_else(|| invalid("contact", "is required"))?;
    required("contact.address", &contact.address)?;
    institution(&app.institution, &app.institution_kanji)?;
    documents(app.documents.as_ref(), application_date, max_age_months)?;
    if app.signing_csr.is_empty() {
        return Err(invalid("signing_csr", "is required (PKCS#10, DER or PEM)"));
    }
    if app.authentication_csr.is_empty() {
        return Err(invalid("authentication_csr", "is required (PKCS#10, DER or PEM)"));
    }
    Ok(CheckedApplication { application_date, membership })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::issuance::v1::{ContactAddress, MedicalLicence, PhotoId};
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 25);

    #[test]
    fn a_confirmation_method_is_required_and_never_guessed() {
        use proto::common::v1::{ConfirmationMethod as Pb, IdentityConfirmation};
        let c = |method: i32| IdentityConfirmation {
            confirmed_by: "op-kato".into(),
            method,
            confirmed_at: "2026-05-01T11:30:00+09:00".into(),
            note: String::new(),
        };
        let ok = confirmation("confirmation", Some(&c(Pb::InPerson as i32))).unwrap();
        assert_eq!(ok.method, domain::ConfirmationMethod::InPerson);
        // Stored with the proto's name, which the revocation service stores too.
        assert_eq!(serde_json::to_value(&ok).unwrap()["method"], "IN_PERSON");
        let err = confirmation("confirmation", Some(&c(0))).unwrap_err().to_string();
        assert_eq!(err, "confirmation.method: is required (PHONE, WRITTEN_REPORT or IN_PERSON)");
        let err = confirmation("confirmation", Some(&c(7))).unwrap_err();
        assert!(
            matches!(&err, IssuanceError::InvalidArgument { field, .. } if field == "confirmation.method"),
            "{err}"
        );
        assert_eq!(err.to_string(), "confirmation.method: 7 is not PHONE, WRITTEN_REPORT or IN_PERSON");
    }

    pub(crate) fn good() -> NewCardApplication {
        NewCardApplication {
            application_id: "ra-1".into(),
            applicant: Some(Applicant {
                family_name_kanji: "神楽坂".into(),
                given_name_kanji: "三十四".into(),
                family_name_kana: "カグラザカ".into(),
                given_name_kana: "サンジュウシ".into(),
                family_name_latin: "Kagurazaka".into(),
                given_name_latin: "Sanjushi".into(),
                date_of_birth: "1980-04-01".into(),
            }),
            licence: Some(MedicalLicence { licence_number: "123456".into(), registered_on: "2006-05-01".into() }),
            membership: Membership::Member as i32,
            contact: Some(ContactAddress {
                address: "東京都文京区本駒込2-28-16".into(), ..Default::default()
            }),
            documents: Some(DocumentChecks {
                photo_taken_on: "2026-10-01".into(),
                resident_record_issued_on: "2026-09-01".into(),
                photo_id: Some(PhotoId {
                    r#type: PhotoIdType::Passport as i32,
                    expires_on: "2030-01-01".into(),
                    issued_on: String::new(),
                }),
                licence_copy_checked: true,
                licence_back_endorsed: false,
                licence_back_copied: false,
            }),
            signing_csr: vec![1],
            authentication_csr: vec![1],
            application_date: "2026-11-20".into(),
            institution: String::new(),
            institution_kanji: String::new(),
            ra_operator: "ra-op".into(),
            card_pin: String::new(),
        }
    }

    fn field_of(app: &NewCardApplication) -> String {
        match check_application(app, TODAY, 6) {
            Err(IssuanceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_good_application_passes() {
        let c = check_application(&good(), TODAY, 6).unwrap();
        assert_eq!(c.application_date, date!(2026 - 11 - 20));
        assert_eq!(c.membership, Membership::Member);
    }

    #[test]
    fn the_institution_has_a_latin_name_and_may_have_a_kanji_name() {
        let mut a = good();
        a.institution = "MEDIS University Hospital".into();
        a.institution_kanji = "医療情報大学病院".into();
        assert!(check_application(&a, TODAY, 6).is_ok());
        a.institution_kanji.clear();
        assert!(check_application(&a, TODAY, 6).is_ok());
    }

    #[test]
    fn six_months_is_counted_in_calendar_months() {
        assert_eq!(months_before(date!(2026 - 08 - 31), 6), date!(2026 - 02 - 28));
        assert_eq!(months_before(date!(2026 - 03 - 15), 6), date!(2025 - 09 - 15));
        let mut a = good();
        a.documents.as_mut().unwrap().photo_taken_on = "2026-05-20".into(); // exactly 6 months
        assert!(check_application(&a, TODAY, 6).is_ok());
        a.documents.as_mut().unwrap().photo_taken_on = "2026-05-19".into();
        assert_eq!(field_of(&a), "documents.photo_taken_on");
    }

    #[test]
    fn a_huge_configured_age_does_not_overflow() {
        // Found by reading the fuzz report: u32 months used to overflow i32.
        assert_eq!(months_before(date!(2025 - 06 - 10), u32::MAX), Date::MIN);
        assert_eq!(months_before(date!(2025 - 06 - 10), 0x8000_0000), Date::MIN);
        assert_eq!(months_before(date!(2025 - 06 - 10), 12 * 3000).year(), -975);
        assert!(check_application(&good(), TODAY, u32::MAX).is_ok());
    }

    #[test]
    fn each_rule_names_its_field() {
        type Edit = Box<dyn Fn(&mut NewCardApplication)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("application_id", Box::new(|a| a.application_id.clear())),
            ("institution", Box::new(|a| a.institution = "医療情報大学病院".into())),
            ("institution_kanji", Box::new(|a| a.institution_kanji = "医療情報大学病院".into())),
            ("licence.licence_number", Box::new(|a| a.licence.as_mut().unwrap().licence_number.clear())),
            ("licence.licence_number", Box::new(|a| a.licence.as_mut().unwrap().licence_number = "12ab".into())),
            ("licence", Box::new(|a| a.licence = None)),
            (
                "documents.resident_record_issued_on",
                Box::new(|a| a.documents.as_mut().unwrap().resident_record_issued_on = "2025-01-01".into()),
            ),
            (
                "documents.photo_taken_on",
                Box::new(|a| a.documents.as_mut().unwrap().photo_taken_on = "2026-11-21".into()),
            ),
            (
                "documents.photo_id.type",
                Box::new(|a| {
                    a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().r#type =
                        PhotoIdType::MyNumberNotificationCard as i32
                }),
            ),
            (
                "documents.photo_id.type",
                Box::new(|a| a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().r#type = 0),
            ),
            (
                "documents.photo_id.expires_on",
                Box::new(|a| a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().expires_on = "2026-11-19".into()),
            ),
            (
                "documents.photo_id.expires_on",
                Box::new(|a| a.documents.as_mut().unwrap().photo_id.as_mut().unwrap().expires_on.clear()),
            ),
            (
                "documents.photo_id.issued_on",
                Box::new(|a| {
                    let id = a.documents.as_mut().unwrap().photo_id.as_mut().unwrap();
                    id.r#type = PhotoIdType::DrivingHistoryCertificate as i32;
                    id.issued_on = "2012-03-31".into();
                }),
            ),
            (
                "documents.licence_copy_checked",
                Box::new(|a| a.documents.as_mut().unwrap().licence_copy_checked = false),
            ),
            ("documents.licence_back_copied", Box::new(|a| a.documents.as_mut().unwrap().licence_back_endorsed = true)),
            (
                "applicant.family_name_latin",
                Box::new(|a| a.applicant.as_mut().unwrap().family_name_latin = "神楽坂".into()),
            ),
            (
                "applicant.given_name_kana",
                Box::new(|a| a.applicant.as_mut().unwrap().given_name_kana = "Sanjushi".into()),
            ),
            (
                "applicant.date_of_birth",
                Box::new(|a| a.applicant.as_mut().unwrap().date_of_birth = "1980-02-30".into()),
            ),
            ("membership", Box::new(|a| a.membership = 0)),
            ("application_date", Box::new(|a| a.application_date = "2026-12-01".into())),
            ("contact.address", Box::new(|a| a.contact.as_mut().unwrap().address = " ".into())),
            ("signing_csr", Box::new(|a| a.signing_csr.clear())),
            ("authentication_csr", Box::new(|a| a.authentication_csr.clear())),
        ];
        for (want, mutate) in cases {
            let mut a = good();
            mutate(&mut a);
            assert_eq!(field_of(&a), want);
        }
    }

    #[test]
    fn driving_history_certificate_needs_no_expiry() {
        let mut a = good();
        let id = a.documents.as_mut().unwrap().photo_id.as_mut().unwrap();
        id.r#type = PhotoIdType::DrivingHistoryCertificate as i32;
        id.expires_on.clear();
        id.issued_on = "2012-04-01".into();
        assert!(check_application(&a, TODAY, 6).is_ok());
    }
}
