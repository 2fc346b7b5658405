//! What can go wrong exporting, verifying or checkpointing, apart from the
//! verdicts themselves ([`crate::Broken`], [`crate::RecordBroken`]). Each
//! message reads as the operator has always read it from `hpki-ca audit`.

use std::path::PathBuf;

use crate::key::LoadError;
use crate::record::TimeError;
use crate::CHECKPOINT_KEY_LABEL;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The checkpoint key or the checkpoint record cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The registry refused or failed a call.
    #[error("registry: {:?}: {}", .0.code(), .0.message())]
    Registry(tonic::Status),
    /// The registry's URL makes no endpoint.
    #[error("{url}: {source}")]
    Endpoint { url: String, source: tls::TlsError },
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: tonic::transport::Error },
    /// An entry the registry sent whose time RFC 3339 cannot show.
    #[error("registry: audit entry {sequence}: {source}")]
    EntryTime { sequence: u64, source: TimeError },
    #[error("audit entry {sequence}: {source}")]
    EntryJson { sequence: u64, source: serde_json::Error },
    #[error("checkpoint record: {0}")]
    RecordJson(serde_json::Error),
    /// A checkpoint's record time.
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("{0}")]
    DetailJson(serde_json::Error),
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    #[error("the HSM has no key {CHECKPOINT_KEY_LABEL:?}: run `hpki-ca ceremony` first")]
    NoHsmKey,
    #[error("no {}: run `hpki-ca ceremony` first (it writes the public key)", .0.display())]
    NoPublicKey(PathBuf),
    #[error(
        "{} is not the public key of the HSM key {CHECKPOINT_KEY_LABEL:?}: checkpoints would not verify",
        .0.display()
    )]
    NotTheHsmKey(PathBuf),
    #[error("the HSM's checkpoint signature does not verify with {}", .0.display())]
    SignatureDoesNotVerify(PathBuf),
    /// A blocking task (the HSM lookup, signing, writing the record) died.
    #[error("the {what} task failed: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        Error::Registry(s)
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}
