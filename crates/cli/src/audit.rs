//! Operator commands on the registry's hash-chained audit log: export it as
//! JSON lines, verify it (from the live registry or from an export) and anchor
//! its head with a checkpoint signed in the HSM.
//!
//! Verification recomputes every entry's hash with [`store::audit_hash`] and
//! checks that sequences run 1, 2, 3 … without a gap, that each entry names its
//! predecessor's hash and that time never runs backwards. Editing any field of
//! any entry therefore breaks the chain at exactly that entry.
//!
//! The chain alone cannot tell a consistent rewrite (an entry changed and every
//! later hash recomputed) from the real log; checkpoints can. A checkpoint is an
//! ordinary entry, action [`CHECKPOINT_ACTION`], whose detail names a sequence
//! and its hash and carries a signature over
//! `"hpki-audit-checkpoint-v1\0" ‖ sequence (8 bytes, big-endian) ‖ hash (32 bytes)`
//! by the HSM key [`AUDIT_CHECKPOINT_KEY_LABEL`]. The ceremony writes that key's
//! public half to `<cert_dir>/audit-checkpoint.pub.pem`, so `verify` needs no
//! HSM. A checkpoint whose head is not the chain's, or whose signature does not
//! verify, breaks the chain at the checkpoint's own sequence.
//!
//! Export lines carry `detail` (the parsed JSON, for people and `jq`) and
//! `detail_json` (the exact text the hash covers); `verify --file` requires the
//! two to agree, so an edit of either is caught.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use config::Config;
use der::asn1::ObjectIdentifier;
use der::{Decode, Tag, Tagged};
use proto::registry::v1 as pb;
use proto::registry::v1::registry_client::RegistryClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{audit_hash, AuditRecord};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::transport::Channel;

use crate::ceremony::{AUDIT_CHECKPOINT_KEY_LABEL, AUDIT_CHECKPOINT_PUB_FILE};
use crate::error::{io, CliError};

/// Action of checkpoint entries (not one the store reserves for itself).
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";
/// Domain tag of the signed checkpoint message.
const CHECKPOINT_DOMAIN: &[u8] = b"hpki-audit-checkpoint-v1\0";
/// The registry stops a ListAudit reply near 2 MiB, after the entry that
/// crosses it (a detail may be 256 KiB); leave room above tonic's 4 MiB default.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// How often long exports and verifications report progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes every entry as one JSON object per line: sequence, at, actor, action, subject,
    /// detail, detail_json, prev_hash, hash. Progress goes to stderr.
    Export {
        /// Output file (written whole, then renamed into place); stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verifies the hash chain and every signed checkpoint, from the registry or an export;
    /// reports the first bad entry and exits non-zero on a break.
    Verify {
        /// An export made by `hpki-ca audit export` instead of the live registry.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The checkpoint key's public key (SPKI PEM); default <cert_dir>/audit-checkpoint.pub.pem.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Verifies the chain, signs its head with the HSM key "audit-checkpoint" and appends
    /// the signed checkpoint as an "audit.checkpoint" entry.
    Checkpoint {
        /// Who asks, recorded as the entry's actor.
        #[arg(long, env = "HPKI_OPERATOR", default_value = "operator")]
        operator: String,
        /// The checkpoint key's public key (SPKI PEM); default <cert_dir>/audit-checkpoint.pub.pem.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

/// Runs an `audit` subcommand against the registry at `url` (default: the config's registry.listen).
pub fn run(cfg: &Config, url: Option<String>, command: AuditCommand) -> Result<(), CliError> {
    let url = url.unwrap_or_else(|| format!("http://{}", cfg.registry.listen));
    let key_path = |given: Option<PathBuf>| given.unwrap_or_else(|| cfg.cert_dir().join(AUDIT_CHECKPOINT_PUB_FILE));
    match command {
        AuditCommand::Export { out } => crate::runtime()?.block_on(export(&url, out.as_deref())),
        AuditCommand::Verify { file, public_key } => {
            let path = key_path(public_key);
            let verifier = Verifier::new(CheckpointKey::load(&path)?, path);
            let outcome = match file {
                Some(file) => verify_file(&file, verifier)?,
                None => crate::runtime()?.block_on(async {
                    let mut client = registry(&url).await?;
                    verify_live(&mut client, verifier).await
                })?,
            };
            report(outcome)
        }
        AuditCommand::Checkpoint { operator, public_key } => checkpoint(cfg, &url, &operator, &key_path(public_key)),
    }
}

// ---------------------------------------------------------------------------
// Verification

/// The first bad entry: its sequence (where it should be in the chain) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub sequence: u64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit chain BROKEN at sequence {}: {}", self.sequence, self.reason)
    }
}

fn broken(sequence: u64, reason: impl Into<String>) -> Broken {
    Broken { sequence, reason: reason.into() }
}

/// What a whole, unbroken chain looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Hash of the last entry; zeros for an empty log.
    pub head: [u8; 32],
    /// Checkpoints whose head and signature were checked.
    pub checkpoints: u64,
    /// Checkpoints that could not be checked for want of the public key.
    pub unchecked: u64,
    /// The latest checked checkpoint: (its own sequence, the sequence it signs).
    pub latest_checkpoint: Option<(u64, u64)>,
    /// Where the public key was looked for.
    pub key_path: PathBuf,
}

impl Verified {
    /// The last entry is a checkpoint whose signature was checked: the whole
    /// chain is anchored and a new checkpoint would only sign that one.
    pub fn head_is_checkpoint(&self) -> bool {
        self.entries > 0 && self.latest_checkpoint.is_some_and(|(at, _)| at == self.entries)
    }
}

/// Walks a chain entry by entry, in order, keeping 32 bytes per entry (the
/// hashes checkpoints may refer back to).
pub struct Verifier {
    key: Option<CheckpointKey>,
    key_path: PathBuf,
    next_sequence: u64,
    last_hash: [u8; 32],
    last_at: i64,
    hashes: Vec<[u8; 32]>,
    checkpoints: u64,
    unchecked: u64,
    latest_checkpoint: Option<(u64, u64)>,
}

impl Verifier {
    /// `key` is the checkpoint public key if there is one; `key_path` names it in messages.
    pub fn new(key: Option<CheckpointKey>, key_path: PathBuf) -> Verifier {
        Verifier {
            key,
            key_path,
            next_sequence: 1,
            last_hash: [0; 32],
            last_at: i64::MIN,
            hashes: Vec::new(),
            checkpoints: 0,
            unchecked: 0,
            latest_checkpoint: None,
        }
    }

    /// The sequence the next entry must have.
    pub fn expected(&self) -> u64 {
        self.next_sequence
    }

    /// Checks the next entry of the chain.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let seq = self.next_sequence;
        if r.sequence > seq {
            return Err(broken(seq, format!("entry missing (the next one says sequence {})", r.sequence)));
        }
        if r.sequence < seq {
            return Err(broken(seq, format!("entry out of place (it says sequence {})", r.sequence)));
        }
        if r.prev_hash != self.last_hash {
            return Err(broken(seq, "previous hash does not match"));
        }
        if r.at_unix_micros < self.last_at {
            return Err(broken(seq, "time runs backwards"));
        }
        if audit_hash(r) != r.hash {
            return Err(broken(seq, "hash does not match the entry"));
        }
        if r.action == CHECKPOINT_ACTION {
            self.checkpoint(r)?;
        }
        self.hashes.push(r.hash);
        self.next_sequence = seq + 1;
        self.last_hash = r.hash;
        self.last_at = r.at_unix_micros;
        Ok(())
    }

    fn checkpoint(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let seq = r.sequence;
        let d: CheckpointDetail = serde_json::from_str(&r.detail_json)
            .map_err(|e| broken(seq, format!("checkpoint detail unreadable: {e}")))?;
        if d.sequence == 0 || d.sequence >= seq {
            return Err(broken(seq, format!("checkpoint signs sequence {}, not an earlier entry", d.sequence)));
        }
        let head = hash32(&d.head_hash).map_err(|e| broken(seq, format!("checkpoint head_hash {e}")))?;
        let index = usize::try_from(d.sequence - 1).map_err(|_| broken(seq, "checkpoint sequence out of range"))?;
        if self.hashes.get(index) != Some(&head) {
            return Err(broken(
                seq,
                format!("checkpoint head does not match the chain: entry {} has another hash", d.sequence),
            ));
        }
        let signature =
            hex::decode(&d.signature).map_err(|e| broken(seq, format!("checkpoint signature is not hex: {e}")))?;
        let Some(key) = &self.key else {
            self.unchecked += 1;
            return Ok(());
        };
        if d.key_spki_sha256 != key.spki_sha256 {
            return Err(broken(
                seq,
                format!(
                    "checkpoint signed by another key (SPKI SHA-256 {}), not the one in {}",
                    d.key_spki_sha256,
                    self.key_path.display()
                ),
            ));
        }
        if !key.verify(&checkpoint_message(d.sequence, &head), &signature) {
            return Err(broken(seq, "checkpoint signature does not verify"));
        }
        self.checkpoints += 1;
        self.latest_checkpoint = Some((seq, d.sequence));
        Ok(())
    }

    pub fn finish(self) -> Verified {
        Verified {
            entries: self.next_sequence - 1,
            head: self.last_hash,
            checkpoints: self.checkpoints,
            unchecked: self.unchecked,
            latest_checkpoint: self.latest_checkpoint,
            key_path: self.key_path,
        }
    }
}

fn hash32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("is {} bytes, not 32", bytes.len()))
}

/// Prints the outcome; a break or an unchecked checkpoint is an error (non-zero exit).
fn report(outcome: Result<Verified, Broken>) -> Result<(), CliError> {
    let v = match outcome {
        Ok(v) => v,
        Err(b) => {
            println!("{b}");
            return Err(CliError::Client(format!("audit chain broken at sequence {}", b.sequence)));
        }
    };
    println!("audit chain OK: {} entries, head {}", v.entries, hex::encode(v.head));
    match v.latest_checkpoint {
        Some((at, signs)) => println!(
            "checkpoints: {} verified; the latest, at sequence {at}, signs entry {signs}; {} entries after it not yet anchored",
            v.checkpoints,
            v.entries - at
        ),
        None if v.unchecked == 0 => {
            println!("checkpoints: 0 verified (none yet: `hpki-ca audit checkpoint` anchors the head)")
        }
        None => println!("checkpoints: 0 verified, {} not checked", v.unchecked),
    }
    if v.unchecked > 0 {
        return Err(CliError::Client(format!(
            "{} checkpoint(s) not checked: no public key at {} (run `hpki-ca ceremony`, or pass --public-key)",
            v.unchecked,
            v.key_path.display()
        )));
    }
    Ok(())
}

/// Progress lines on stderr, at most one per `PROGRESS_EVERY`.
struct Progress {
    what: &'static str,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        Progress { what, last: Instant::now() }
    }

    fn tick(&mut self, done: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            eprintln!("audit {}: {done} entries so far", self.what);
            self.last = Instant::now();
        }
    }
}

// ---------------------------------------------------------------------------
// The registry

async fn registry(url: &str) -> Result<RegistryClient<Channel>, CliError> {
    let channel = crate::ops::connect(url).await?;
    Ok(tls::limit_client!(RegistryClient::new(channel), at_least = MAX_REPLY_BYTES))
}

fn status(e: tonic::Status) -> CliError {
    CliError::Registry(format!("{:?}: {}", e.code(), e.message()))
}

/// ListAudit page by page: each reply holds up to ~2 MiB; ask again from the
/// last sequence + 1 until a reply is empty.
struct Pages<'a> {
    client: &'a mut RegistryClient<Channel>,
    next: u64,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(client: &'a mut RegistryClient<Channel>) -> Pages<'a> {
        Pages { client, next: 1, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<pb::AuditEntry>>, CliError> {
        if self.done {
            return Ok(None);
        }
        let request = pb::ListAuditRequest { from_sequence: self.next, limit: 0 };
        let entries = self.client.list_audit(request).await.map_err(status)?.into_inner().entries;
        let Some(last) = entries.last() else {
            self.done = true;
            return Ok(None);
        };
        // Entries come in key order from `next` on; an edited `sequence` field must
        // not make us ask for the same page again.
        let len = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        match last.sequence.checked_add(1) {
            Some(after) => self.next = after.max(self.next.saturating_add(len)),
            None => self.done = true,
        }
        Ok(Some(entries))
    }
}

/// An entry as the registry sent it; hashes of the wrong length break the chain there.
fn record_from_entry(e: pb::AuditEntry, expected: u64) -> Result<AuditRecord, Broken> {
    let hash32 = |name: &str, b: &[u8]| {
        <[u8; 32]>::try_from(b).map_err(|_| broken(expected, format!("{name} is {} bytes, not 32", b.len())))
    };
    Ok(AuditRecord {
        prev_hash: hash32("prev_hash", &e.prev_hash)?,
        hash: hash32("hash", &e.hash)?,
        sequence: e.sequence,
        at_unix_micros: e.at_unix_micros,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        detail_json: e.detail_json,
    })
}

async fn verify_live(
    client: &mut RegistryClient<Channel>,
    mut v: Verifier,
) -> Result<Result<Verified, Broken>, CliError> {
    let mut pages = Pages::new(client);
    let mut progress = Progress::new("verify");
    while let Some(page) = pages.next().await? {
        for e in page {
            let checked = record_from_entry(e, v.expected()).and_then(|r| v.push(&r));
            if let Err(b) = checked {
                return Ok(Err(b));
            }
        }
        progress.tick(v.expected() - 1);
    }
    Ok(Ok(v.finish()))
}

// ---------------------------------------------------------------------------
// Export

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportLine {
    pub sequence: u64,
    /// RFC 3339, UTC, with microseconds.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// `detail_json` parsed (null when empty, a string when it is not JSON).
    pub detail: Value,
    /// The exact text the hash covers.
    pub detail_json: String,
    pub prev_hash: String,
    pub hash: String,
}

fn detail_value(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// RFC 3339 in UTC with exactly six fraction digits.
pub fn format_micros(micros: i64) -> Result<String, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|e| format!("time {micros} µs: {e}"))?
        .format(&fmt)
        .map_err(|e| format!("time {micros} µs: {e}"))
}

fn parse_micros(text: &str) -> Result<i64, String> {
    let nanos = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("at {text:?}: {e}"))?.unix_timestamp_nanos();
    if nanos % 1000 != 0 {
        return Err(format!("at {text:?} is finer than a microsecond"));
    }
    i64::try_from(nanos / 1000).map_err(|_| format!("at {text:?} is out of range"))
}

impl ExportLine {
    fn from_entry(e: &pb::AuditEntry) -> Result<ExportLine, CliError> {
        Ok(ExportLine {
            sequence: e.sequence,
            at: format_micros(e.at_unix_micros)
                .map_err(|m| CliError::Registry(format!("audit entry {}: {m}", e.sequence)))?,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            detail: detail_value(&e.detail_json),
            detail_json: e.detail_json.clone(),
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
        })
    }

    /// The record this line stands for, or why it cannot stand for one.
    pub fn to_record(&self) -> Result<AuditRecord, String> {
        if detail_value(&self.detail_json) != self.detail {
            return Err("detail differs from detail_json".into());
        }
        Ok(AuditRecord {
            sequence: self.sequence,
            at_unix_micros: parse_micros(&self.at)?,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            detail_json: self.detail_json.clone(),
            prev_hash: hash32(&self.prev_hash).map_err(|e| format!("prev_hash {e}"))?,
            hash: hash32(&self.hash).map_err(|e| format!("hash {e}"))?,
        })
    }
}

async fn export(url: &str, out: Option<&Path>) -> Result<(), CliError> {
    let mut client = registry(url).await?;
    let (mut sink, tmp): (Box<dyn Write>, Option<PathBuf>) = match out {
        Some(path) => {
            let mut name = path.as_os_str().to_owned();
            name.push(".tmp");
            let tmp = PathBuf::from(name);
            let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            (Box::new(BufWriter::new(file)), Some(tmp))
        }
        None => (Box::new(BufWriter::new(std::io::stdout().lock())), None),
    };
    let shown = out.map_or_else(|| PathBuf::from("stdout"), Path::to_owned);
    let mut pages = Pages::new(&mut client);
    let mut progress = Progress::new("export");
    let mut count = 0u64;
    let mut last = 0u64;
    while let Some(page) = pages.next().await? {
        for e in &page {
            let line = serde_json::to_string(&ExportLine::from_entry(e)?)
                .map_err(|err| CliError::Client(format!("audit entry {}: {err}", e.sequence)))?;
            writeln!(sink, "{line}").map_err(io(&shown))?;
            count += 1;
            last = e.sequence;
        }
        progress.tick(count);
    }
    sink.flush().map_err(io(&shown))?;
    drop(sink);
    if let (Some(tmp), Some(path)) = (tmp, out) {
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    eprintln!("audit export: {count} entries (last sequence {last}) written to {}", shown.display());
    Ok(())
}

fn verify_file(path: &Path, mut v: Verifier) -> Result<Result<Verified, Broken>, CliError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut progress = Progress::new("verify");
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(Err(broken(v.expected(), format!("line {line_no} is not UTF-8"))));
            }
            Err(e) => return Err(io(path)(e)),
        };
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<ExportLine>(&line)
            .map_err(|e| format!("line {line_no} is not an audit entry: {e}"))
            .and_then(|l| l.to_record().map_err(|e| format!("line {line_no}: {e}")));
        let checked = match record {
            Ok(r) => v.push(&r),
            Err(reason) => Err(broken(v.expected(), reason)),
        };
        if let Err(b) = checked {
            return Ok(Err(b));
        }
        progress.tick(v.expected() - 1);
    }
    Ok(Ok(v.finish()))
}

// ---------------------------------------------------------------------------
// Checkpoints

/// The detail of an "audit.checkpoint" entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDetail {
    /// The entry whose hash is signed (the head when the checkpoint was made).
    pub sequence: u64,
    /// Its hash, hex.
    pub head_hash: String,
    /// "rsa-pkcs1-sha256" or "ecdsa-p256-sha256".
    pub algorithm: String,
    pub key_label: String,
    /// SHA-256 of the signing key's SubjectPublicKeyInfo DER, hex.
    pub key_spki_sha256: String,
    /// Over [`checkpoint_message`], hex: PKCS#1 v1.5 for RSA, DER Ecdsa-Sig-Value for P-256.
    pub signature: String,
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(sequence: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcdsaP256,
}

/// A checkpoint verification key, from SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub struct CheckpointKey {
    kind: KeyKind,
    /// RSAPublicKey DER, or the uncompressed P-256 point: what ring takes.
    public: Vec<u8>,
    spki_der: Vec<u8>,
    spki_sha256: String,
}

impl CheckpointKey {
    /// Reads an SPKI PEM file; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<CheckpointKey>, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let bad = |m: String| CliError::Client(format!("{}: {m}", path.display()));
        let block = pem::parse(&text).map_err(|e| bad(e.to_string()))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(bad(format!("a {:?} PEM block, not PUBLIC KEY", block.tag())));
        }
        CheckpointKey::from_spki_der(block.contents()).map(Some).map_err(bad)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<CheckpointKey, String> {
        let spki =
            spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let public = spki.subject_public_key.as_bytes().ok_or("subjectPublicKey has unused bits")?.to_vec();
        let alg = &spki.algorithm;
        let kind = if alg.oid == RSA_ENCRYPTION {
            KeyKind::Rsa
        } else if alg.oid == ID_EC_PUBLIC_KEY {
            let curve = match alg.parameters {
                Some(p) if p.tag() == Tag::ObjectIdentifier => {
                    p.decode_as::<ObjectIdentifier>().map_err(|e| format!("EC parameters: {e}"))?
                }
                _ => return Err("EC key without a named curve".into()),
            };
            if curve != PRIME256V1 {
                return Err(format!("EC curve {curve}: only P-256 is supported"));
            }
            KeyKind::EcdsaP256
        } else {
            return Err(format!("public key algorithm {}: only RSA and EC P-256 are supported", alg.oid));
        };
        Ok(CheckpointKey { kind, public, spki_der: der.to_vec(), spki_sha256: hex::encode(Sha256::digest(der)) })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256,
        };
        let alg: &'static dyn VerificationAlgorithm = match self.kind {
            KeyKind::Rsa => &RSA_PKCS1_2048_8192_SHA256,
            KeyKind::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.public).verify(message, signature).is_ok()
    }

    fn algorithm(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa => "rsa-pkcs1-sha256",
            KeyKind::EcdsaP256 => "ecdsa-p256-sha256",
        }
    }
}

/// What [`Checkpointer::checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// A checkpoint entry was appended at `sequence`, signing entry `signs` (hash `head`).
    Signed { sequence: u64, signs: u64, head: [u8; 32], algorithm: &'static str, key_spki_sha256: String },
    /// The head is itself a verified checkpoint: nothing new to anchor (only
    /// when asked to skip that case).
    AlreadyAnchored { sequence: u64 },
}

/// Why no checkpoint was made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A broken chain is never signed.
    #[error("refusing to checkpoint: {0}")]
    Broken(Broken),
    #[error("the audit log is empty: nothing to checkpoint")]
    Empty,
    #[error(transparent)]
    Failed(#[from] CliError),
}

impl From<hsm::HsmError> for CheckpointError {
    fn from(e: hsm::HsmError) -> CheckpointError {
        CheckpointError::Failed(e.into())
    }
}

/// The HSM key "audit-checkpoint" with its public half on disk, checked to be
/// the same key, so every checkpoint it signs verifies with that file. Both
/// `hpki-ca audit checkpoint` and the launcher's periodic task sign with it.
pub struct Checkpointer {
    key: hsm::HsmKey,
    public: CheckpointKey,
    key_path: PathBuf,
}

impl Checkpointer {
    /// Finds the key in the HSM and loads `key_path`. Blocking (PKCS#11).
    pub fn new(hsm: &hsm::Hsm, key_path: &Path) -> Result<Checkpointer, CliError> {
        let key = hsm.find_key(AUDIT_CHECKPOINT_KEY_LABEL)?.ok_or_else(|| {
            CliError::Client(format!("the HSM has no key {AUDIT_CHECKPOINT_KEY_LABEL:?}: run `hpki-ca ceremony` first"))
        })?;
        let public = CheckpointKey::load(key_path)?.ok_or_else(|| {
            CliError::Client(format!(
                "no {}: run `hpki-ca ceremony` first (it writes the public key)",
                key_path.display()
            ))
        })?;
        if public.spki_der != key.subject_public_key_info_der() {
            return Err(CliError::Client(format!(
                "{} is not the public key of the HSM key {AUDIT_CHECKPOINT_KEY_LABEL:?}: checkpoints would not verify",
                key_path.display()
            )));
        }
        Ok(Checkpointer { key, public, key_path: key_path.to_owned() })
    }

    /// Verifies the live chain (signatures of earlier checkpoints included),
    /// signs its head in the HSM and appends the checkpoint entry as `actor`.
    /// With `skip_anchored`, a head that already is a verified checkpoint is
    /// left alone (a periodic task on a quiet CA would otherwise only sign its
    /// own checkpoints).
    pub async fn checkpoint(
        &self,
        client: &mut RegistryClient<Channel>,
        actor: &str,
        skip_anchored: bool,
    ) -> Result<CheckpointOutcome, CheckpointError> {
        let verifier = Verifier::new(Some(self.public.clone()), self.key_path.clone());
        let head = verify_live(client, verifier).await?.map_err(CheckpointError::Broken)?;
        if head.entries == 0 {
            return Err(CheckpointError::Empty);
        }
        if skip_anchored && head.head_is_checkpoint() {
            return Ok(CheckpointOutcome::AlreadyAnchored { sequence: head.entries });
        }

        let message = checkpoint_message(head.entries, &head.head);
        // PKCS#11 blocks: keep it off the async workers.
        let key = self.key.clone();
        let to_sign = message.clone();
        let signature = tokio::task::spawn_blocking(move || key.sign(&to_sign))
            .await
            .map_err(|e| CliError::Client(format!("the signing task failed: {e}")))??;
        if !self.public.verify(&message, &signature) {
            return Err(CliError::Client(format!(
                "the HSM's checkpoint signature does not verify with {}",
                self.key_path.display()
            ))
            .into());
        }
        let detail = CheckpointDetail {
            sequence: head.entries,
            head_hash: hex::encode(head.head),
            algorithm: self.public.algorithm().to_owned(),
            key_label: AUDIT_CHECKPOINT_KEY_LABEL.to_owned(),
            key_spki_sha256: self.public.spki_sha256.clone(),
            signature: hex::encode(&signature),
        };
        let detail_json = serde_json::to_string(&detail).map_err(|e| CliError::Client(e.to_string()))?;
        let request = pb::AppendAuditRequest {
            actor: actor.to_owned(),
            action: CHECKPOINT_ACTION.to_owned(),
            subject: AUDIT_CHECKPOINT_KEY_LABEL.to_owned(),
            detail_json,
        };
        let entry = client.append_audit(request).await.map_err(status)?.into_inner();
        Ok(CheckpointOutcome::Signed {
            sequence: entry.sequence,
            signs: head.entries,
            head: head.head,
            algorithm: self.public.algorithm(),
            key_spki_sha256: detail.key_spki_sha256,
        })
    }
}

/// One checkpoint against the registry at `url`, as the launcher's periodic
/// task makes it: a fresh HSM lookup and connection each time, so a token or
/// registry that came back is used again.
pub async fn checkpoint_now(
    hsm: &hsm::Hsm,
    url: &str,
    key_path: &Path,
    actor: &str,
) -> Result<CheckpointOutcome, CheckpointError> {
    let (h, path) = (hsm.clone(), key_path.to_owned());
    let checkpointer = tokio::task::spawn_blocking(move || Checkpointer::new(&h, &path))
        .await
        .map_err(|e| CliError::Client(format!("the HSM lookup task failed: {e}")))??;
    let mut client = registry(url).await?;
    checkpointer.checkpoint(&mut client, actor, true).await
}

/// `hpki-ca audit checkpoint`: always signs the head (an operator asked).
fn checkpoint(cfg: &Config, url: &str, operator: &str, key_path: &Path) -> Result<(), CliError> {
    let hsm = crate::open_hsm(cfg)?;
    let checkpointer = Checkpointer::new(&hsm, key_path)?;
    let outcome = crate::runtime()?.block_on(async {
        let mut client = registry(url).await?;
        checkpointer.checkpoint(&mut client, operator, false).await
    });
    match outcome {
        Ok(CheckpointOutcome::Signed { sequence, signs, head, algorithm, key_spki_sha256 }) => {
            println!(
                "audit checkpoint at sequence {sequence}: signs entry {signs} (head {}) with HSM key \
                 {AUDIT_CHECKPOINT_KEY_LABEL:?} ({algorithm}, SPKI SHA-256 {key_spki_sha256})",
                hex::encode(head)
            );
            Ok(())
        }
        Ok(CheckpointOutcome::AlreadyAnchored { sequence }) => {
            println!("audit head {sequence} is already a checkpoint");
            Ok(())
        }
        Err(CheckpointError::Broken(b)) => {
            println!("{b}");
            Err(CliError::Client(format!(
                "refusing to checkpoint: the audit chain is broken at sequence {}",
                b.sequence
            )))
        }
        Err(CheckpointError::Empty) => Err(CliError::Client(CheckpointError::Empty.to_string())),
        Err(CheckpointError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    /// SubjectPublicKeyInfo DER of a P-256 key, up to the 65-byte point.
    const P256_SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    struct Signer {
        pair: EcdsaKeyPair,
        rng: SystemRandom,
        key: CheckpointKey,
    }

    fn signer() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
        let key = CheckpointKey::from_spki_der(&spki).unwrap();
        Signer { pair, rng, key }
    }

    fn append(log: &mut Vec<AuditRecord>, action: &str, detail_json: &str) {
        let (prev_hash, sequence, at) = match log.last() {
            Some(r) => (r.hash, r.sequence + 1, r.at_unix_micros + 7),
            None => ([0; 32], 1, 1_750_000_000_123_456),
        };
        let mut r = AuditRecord {
            sequence,
            at_unix_micros: at,
            actor: "op".into(),
            action: action.into(),
            subject: format!("s{sequence}"),
            detail_json: detail_json.into(),
            prev_hash,
            hash: [0; 32],
        };
        r.hash = audit_hash(&r);
        log.push(r);
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut log = Vec::new();
        for i in 0..n {
            append(&mut log, "test", &format!(r#"{{"i": {i}, "z": [1.5, null], "a": "x"}}"#));
        }
        log
    }

    fn checkpoint_detail(s: &Signer, sequence: u64, hash: &[u8; 32]) -> String {
        let sig = s.pair.sign(&s.rng, &checkpoint_message(sequence, hash)).unwrap();
        serde_json::to_string(&CheckpointDetail {
            sequence,
            head_hash: hex::encode(hash),
            algorithm: s.key.algorithm().into(),
            key_label: AUDIT_CHECKPOINT_KEY_LABEL.into(),
            key_spki_sha256: s.key.spki_sha256.clone(),
            signature: hex::encode(sig.as_ref()),
        })
        .unwrap()
    }

    fn add_checkpoint(log: &mut Vec<AuditRecord>, s: &Signer) {
        let last = log.last().unwrap().clone();
        let detail = checkpoint_detail(s, last.sequence, &last.hash);
        append(log, CHECKPOINT_ACTION, &detail);
    }

    /// Recomputes every hash from `from` on, as someone rewriting the log would.
    fn rechain(log: &mut [AuditRecord], from: usize) {
        for i in from..log.len() {
            if i > 0 {
                log[i].prev_hash = log[i - 1].hash;
            }
            log[i].hash = audit_hash(&log[i]);
        }
    }

    fn verify(log: &[AuditRecord], key: Option<CheckpointKey>) -> Result<Verified, Broken> {
        let mut v = Verifier::new(key, PathBuf::from("test.pub.pem"));
        for r in log {
            v.push(r)?;
        }
        Ok(v.finish())
    }

    fn broken_at(log: &[AuditRecord], key: Option<CheckpointKey>) -> Broken {
        verify(log, key).expect_err("the chain should be broken")
    }

    #[test]
    fn an_intact_chain_verifies() {
        let log = chain(5);
        let v = verify(&log, None).unwrap();
        assert_eq!((v.entries, v.head, v.checkpoints, v.unchecked), (5, log[4].hash, 0, 0));
        assert_eq!(verify(&[], None).unwrap().entries, 0);
    }

    type Edit = (&'static str, fn(&mut AuditRecord));

    #[test]
    fn every_kind_of_edit_breaks_at_that_entry() {
        let edits: [Edit; 8] = [
            ("actor", |r| r.actor.push('x')),
            ("action", |r| r.action = "other".into()),
            ("subject", |r| r.subject.clear()),
            ("detail", |r| r.detail_json = r.detail_json.replace(' ', "")),
            ("time", |r| r.at_unix_micros += 1),
            ("prev_hash", |r| r.prev_hash[0] ^= 1),
            ("hash", |r| r.hash[31] ^= 1),
            ("sequence", |r| r.sequence = 7),
        ];
        for (what, edit) in edits {
            let mut log = chain(5);
            edit(&mut log[2]);
            let b = broken_at(&log, None);
            assert_eq!(b.sequence, 3, "{what}: {b}");
        }
    }

    #[test]
    fn missing_repeated_or_backwards_entries_break_the_chain() {
        let mut gap = chain(5);
        gap.remove(3);
        let b = broken_at(&gap, None);
        assert_eq!(b.sequence, 4);
        assert!(b.reason.contains("missing"), "{b}");

        let mut repeated = chain(3);
        repeated.insert(2, repeated[1].clone());
        assert_eq!(broken_at(&repeated, None).sequence, 3);

        let mut backwards = chain(3);
        backwards[2].at_unix_micros = backwards[1].at_unix_micros - 1;
        rechain(&mut backwards, 2);
        let b = broken_at(&backwards, None);
        assert_eq!((b.sequence, b.reason.as_str()), (3, "time runs backwards"));
    }

    #[test]
    fn a_signed_checkpoint_verifies() {
        let s = signer();
        let mut log = chain(4);
        add_checkpoint(&mut log, &s);
        append(&mut log, "test", "");
        let v = verify(&log, Some(s.key.clone())).unwrap();
        assert_eq!((v.entries, v.checkpoints, v.latest_checkpoint), (6, 1, Some((5, 4))));
        // Without the public key the chain still verifies but the checkpoint is counted as unchecked.
        let v = verify(&log, None).unwrap();
        assert_eq!((v.checkpoints, v.unchecked), (0, 1));
    }

    #[test]
    fn the_head_is_anchored_only_while_a_verified_checkpoint_is_last() {
        let s = signer();
        let mut log = chain(3);
        assert!(!verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        add_checkpoint(&mut log, &s);
        assert!(verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        // Unchecked for want of the key: not anchored as far as we can tell.
        assert!(!verify(&log, None).unwrap().head_is_checkpoint());
        append(&mut log, "test", "{}");
        assert!(!verify(&log, Some(s.key.clone())).unwrap().head_is_checkpoint());
        assert!(!verify(&[], Some(s.key.clone())).unwrap().head_is_checkpoint());
    }

    #[test]
    fn a_consistent_rewrite_is_caught_by_the_next_checkpoint() {
        let s = signer();
        let mut log = chain(4);
        add_checkpoint(&mut log, &s);
        append(&mut log, "test", "{}");
        log[1].actor = "mallory".into();
        rechain(&mut log, 1);
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!(b.sequence, 5, "{b}");
        assert!(b.reason.contains("head does not match"), "{b}");
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_breaks_the_chain_at_the_checkpoint() {
        let s = signer();
        let other = signer();
        // Signed by another key.
        let mut log = chain(3);
        add_checkpoint(&mut log, &other);
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!(b.sequence, 4);
        assert!(b.reason.contains("another key"), "{b}");
        // Claims our key but the signature is someone else's.
        let mut log = chain(3);
        let last = log[2].clone();
        let mut d: CheckpointDetail = serde_json::from_str(&checkpoint_detail(&other, 3, &last.hash)).unwrap();
        d.key_spki_sha256 = s.key.spki_sha256.clone();
        append(&mut log, CHECKPOINT_ACTION, &serde_json::to_string(&d).unwrap());
        let b = broken_at(&log, Some(s.key.clone()));
        assert_eq!((b.sequence, b.reason.as_str()), (4, "checkpoint signature does not verify"));
        // Signs a later entry than exists before it, or nothing readable.
        let mut log = chain(3);
        append(&mut log, CHECKPOINT_ACTION, &checkpoint_detail(&s, 4, &[0; 32]));
        assert_eq!(broken_at(&log, Some(s.key.clone())).sequence, 4);
        let mut log = chain(3);
        append(&mut log, CHECKPOINT_ACTION, "{}");
        assert_eq!(broken_at(&log, Some(s.key.clone())).sequence, 4);
    }

    #[test]
    fn export_lines_round_trip_and_detect_edits() {
        let log = chain(3);
        for r in &log {
            let entry = pb::AuditEntry {
                sequence: r.sequence,
                at_unix_micros: r.at_unix_micros,
                actor: r.actor.clone(),
                action: r.action.clone(),
                subject: r.subject.clone(),
                detail_json: r.detail_json.clone(),
                prev_hash: r.prev_hash.to_vec(),
                hash: r.hash.to_vec(),
            };
            let text = serde_json::to_string(&ExportLine::from_entry(&entry).unwrap()).unwrap();
            let line: ExportLine = serde_json::from_str(&text).unwrap();
            assert_eq!(&line.to_record().unwrap(), r, "{text}");
            assert_eq!(line.detail["i"], serde_json::json!(r.sequence - 1));

            let mut edited = line.clone();
            edited.detail["a"] = "y".into();
            assert_eq!(edited.to_record().unwrap_err(), "detail differs from detail_json");
            let mut finer = line.clone();
            finer.at = finer.at.replace('Z', "1Z");
            assert!(finer.to_record().unwrap_err().contains("finer than a microsecond"));
        }
    }

    #[test]
    fn times_have_six_fraction_digits() {
        assert_eq!(format_micros(1_750_000_000_000_000).unwrap(), "2025-06-15T15:06:40.000000Z");
        assert_eq!(parse_micros("2025-06-15T15:06:40.000001Z").unwrap(), 1_750_000_000_000_001);
        assert_eq!(parse_micros("2025-06-16T00:06:40.5+09:00").unwrap(), 1_750_000_000_500_000);
        assert_eq!(detail_value(""), Value::Null);
        assert_eq!(detail_value("not json"), Value::String("not json".into()));
    }

    #[test]
    fn verify_file_reports_the_line_at_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = chain(4);
        let mut text = String::new();
        for r in &log {
            let line = ExportLine {
                sequence: r.sequence,
                at: format_micros(r.at_unix_micros).unwrap(),
                actor: r.actor.clone(),
                action: r.action.clone(),
                subject: r.subject.clone(),
                detail: detail_value(&r.detail_json),
                detail_json: r.detail_json.clone(),
                prev_hash: hex::encode(r.prev_hash),
                hash: hex::encode(r.hash),
            };
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        let v = verify_file(&path, Verifier::new(None, "k".into())).unwrap().unwrap();
        assert_eq!(v.entries, 4);

        std::fs::write(&path, text.replace("\"subject\":\"s3\"", "\"subject\":\"s9\"")).unwrap();
        let b = verify_file(&path, Verifier::new(None, "k".into())).unwrap().unwrap_err();
        assert_eq!(b.sequence, 3, "{b}");

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{{not json\n{}\n", lines[0], lines[1])).unwrap();
        let b = verify_file(&path, Verifier::new(None, "k".into())).unwrap().unwrap_err();
        assert_eq!(b.sequence, 2, "{b}");
        assert!(b.reason.contains("line 2"), "{b}");
    }
}
