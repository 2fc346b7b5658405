use std::path::PathBuf;

/// What the operator reads after "hpki-ca: ". Errors of the other crates are
/// kept typed; each variant's message is the one the CLI has always printed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    #[error("certificate profile: {0}")]
    Profile(#[from] profile::ProfileError),
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Ceremony(String),
    /// The config file a ceremony records could not be read (no prefix,
    /// unlike `Registry`, as ceremonies have always reported it).
    #[error(transparent)]
    CeremonyConfig(registry::RegistryError),
    /// The clock could not be read as a certificate time.
    #[error(transparent)]
    Clock(#[from] time::error::ComponentRange),
    #[error(transparent)]
    TimeFormat(#[from] time::error::Format),
    /// `validity_years` does not fit a certificate's notAfter.
    #[error("validity_years {years}: {source}")]
    Validity { years: u32, source: time::error::ComponentRange },
    /// A trust domain's token could not be opened (what, and why; never a PIN).
    #[error("HSM token: {0}")]
    Token(String),
    #[error(transparent)]
    Issuance(#[from] issuance::IssuanceError),
    #[error("registry: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("{0}")]
    Client(String),
    /// A service URL the gRPC kit cannot make an endpoint of.
    #[error("{url}: {source}")]
    Endpoint { url: String, source: tls::TlsError },
    /// A service that did not answer; `url` as dialled.
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: tonic::transport::Error },
    /// `hpki-ca identity`: the local service-identity PKI.
    #[error(transparent)]
    Identity(tls::TlsError),
    /// The gRPC TLS kit of this process.
    #[error("TLS: {0}")]
    Tls(tls::TlsError),
    #[error(transparent)]
    Console(#[from] console::StartError),
    /// An RA application file that cannot become a request.
    #[error(transparent)]
    Application(#[from] crate::card::ApplicationError),
    #[error("CRL: {0}")]
    Crl(#[from] crl::CrlError),
    #[error("OCSP: {0}")]
    Ocsp(#[from] ocsp::OcspError),
    #[error("revocation: {0}")]
    Revocation(#[from] revocation::RevocationError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("audit log: {0}")]
    Store(#[from] store::StoreError),
    /// The audit key file (see `From<audit::LoadError>`).
    #[error(transparent)]
    AuditKey(audit::LoadError),
    /// The `audit` crate's other failures; their messages carry their prefix.
    #[error(transparent)]
    Audit(audit::Error),
}

pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io { path: path.to_owned(), source }
}

impl From<audit::LoadError> for CliError {
    fn from(e: audit::LoadError) -> CliError {
        match e {
            audit::LoadError::Io { path, source } => CliError::Io { path, source },
            other => CliError::AuditKey(other),
        }
    }
}

/// The `audit` crate's failures, as the CLI has always reported them.
impl From<audit::Error> for CliError {
    fn from(e: audit::Error) -> CliError {
        match e {
            audit::Error::Io { path, source } => CliError::Io { path, source },
            audit::Error::Load(e) => e.into(),
            audit::Error::Hsm(e) => CliError::Hsm(e),
            // Registry and EntryTime print "registry: ..." themselves.
            other => CliError::Audit(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CliError;

    // The messages the CLI printed when these variants held strings.
    #[test]
    fn typed_sources_print_as_before() {
        let registry = || registry::RegistryError::InvalidArgument { field: "card_id", reason: "empty".into() };
        let role = || tls::TlsError::Role("boss".into());
        let range = || time::Date::from_calendar_date(2024, time::Month::February, 30).unwrap_err();
        let cases: [(CliError, String); 11] = [
            (crl::CrlError::Config("x".into()).into(), "CRL: invalid configuration: x".into()),
            (ocsp::OcspError::Busy("full").into(), "OCSP: busy: full".into()),
            (revocation::RevocationError::Startup("no".into()).into(), "revocation: no".into()),
            (registry().into(), "registry: card_id: empty".into()),
            (CliError::CeremonyConfig(registry()), "card_id: empty".into()),
            (CliError::Identity(role()), role().to_string()),
            (CliError::Tls(role()), format!("TLS: {}", role())),
            (CliError::Endpoint { url: "u".into(), source: role() }, format!("u: {}", role())),
            (CliError::Validity { years: 9, source: range() }, format!("validity_years 9: {}", range())),
            (console::StartError::Tls("no key".into()).into(), "console TLS: no key".into()),
            (audit::Error::Registry(tonic::Status::unavailable("down")).into(), "registry: Unavailable: down".into()),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }
}
