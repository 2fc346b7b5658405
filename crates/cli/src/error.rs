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

impl From<store::audit_verify::LoadError> for CliError {
    fn from(e: store::audit_verify::LoadError) -> CliError {
        match e {
            store::audit_verify::LoadError::Io { path, source } => CliError::Io { path, source },
            store::audit_verify::LoadError::Invalid(m) => CliError::Client(m),
        }
    }
}
