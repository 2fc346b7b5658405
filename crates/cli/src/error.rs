use std::path::PathBuf;

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
    /// A trust domain's token could not be opened (what, and why; never a PIN).
    #[error("HSM token: {0}")]
    Token(String),
    #[error(transparent)]
    Issuance(#[from] issuance::IssuanceError),
    #[error("registry: {0}")]
    Registry(String),
    #[error("{0}")]
    Client(String),
    /// An RA application file that cannot become a request.
    #[error(transparent)]
    Application(#[from] crate::card::ApplicationError),
    #[error("CRL: {0}")]
    Crl(String),
    #[error("OCSP: {0}")]
    Ocsp(String),
    #[error("revocation: {0}")]
    Revocation(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("audit log: {0}")]
    Store(#[from] store::StoreError),
}

pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io { path: path.to_owned(), source }
}

impl From<audit::LoadError> for CliError {
    fn from(e: audit::LoadError) -> CliError {
        match e {
            audit::LoadError::Io { path, source } => CliError::Io { path, source },
            other => CliError::Client(other.to_string()),
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
            audit::Error::Registry(s) => CliError::Registry(format!("{:?}: {}", s.code(), s.message())),
            audit::Error::EntryTime { sequence, source } => {
                CliError::Registry(format!("audit entry {sequence}: {source}"))
            }
            other => CliError::Client(other.to_string()),
        }
    }
}
