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
//! Checkpoints inside the log cannot show that its tail was cut off, the
//! latest checkpoints with it: what is left still verifies. So every checkpoint
//! the CA signs is also appended to a record outside the database,
//! `<state_dir>/audit/checkpoints.jsonl` ([`CheckpointRecord`], one JSON line
//! each), and `verify` requires every checkpoint recorded there to be in the
//! chain, unchanged, at its sequence.
//!
//! Export lines carry `detail` (the parsed JSON, for people and `jq`) and
//! `detail_json` (the exact text the hash covers); `verify --file` requires the
//! two to agree, so an edit of either is caught.

use const_oid::db::rfc5912;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Read, Seek, SeekFrom, Write};
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
        /// The record of signed checkpoints to hold the log to, e.g. a copy shipped off-host
        /// (it must exist); default <state_dir>/audit/checkpoints.jsonl, if there is one.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Accept a verification with no checkpoint record to hold the log to (a fresh CA, or
        /// one whose record is elsewhere); without it, no record is an error: a log whose end
        /// was cut off would still verify.
        #[arg(long, conflicts_with = "checkpoints")]
        without_record: bool,
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
        AuditCommand::Verify { file, public_key, checkpoints, without_record } => {
            let path = key_path(public_key);
            let key = CheckpointKey::load(&path)?;
            // Read before the log: a checkpoint is recorded only once the registry
            // has it, so each record read now is in the log listed next; one signed
            // meanwhile cannot look missing.
            let recorded = match checkpoints {
                Some(named) => {
                    let recorded = Recorded::load(&named)?;
                    if !recorded.exists() {
                        return Err(CliError::Client(format!("{}: no such checkpoint record", named.display())));
                    }
                    recorded
                }
                None => Recorded::load(&cfg.audit_checkpoints_path())?,
            };
            let source = if file.is_some() { LogSource::Export } else { LogSource::Live };
            let verifier = Verifier::new(key.clone(), path);
            let outcome = match file {
                Some(file) => verify_file(&file, verifier)?,
                None => crate::runtime()?.block_on(async {
                    let mut client = registry(&url).await?;
                    verify_live(&mut client, verifier).await
                })?,
            };
            report(outcome, &recorded, key.as_ref(), source)?;
            if !recorded.exists() && !without_record {
                return Err(CliError::Client(format!(
                    "no checkpoint record at {}: a log cut off at its end would verify too. Name a copy with \
                     --checkpoints FILE, or pass --without-record to accept this",
                    recorded.path.display()
                )));
            }
            Ok(())
        }
        AuditCommand::Checkpoint { operator, public_key } => {
            let files = CheckpointFiles { public_key: key_path(public_key), records: cfg.audit_checkpoints_path() };
            checkpoint(cfg, &url, &operator, &files)
        }
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
    /// Every checkpoint entry whose head matched the chain, by its own sequence
    /// (signature checked or not): what recorded checkpoints are held against.
    pub checkpoint_entries: BTreeMap<u64, SeenCheckpoint>,
    /// Where the public key was looked for.
    pub key_path: PathBuf,
}

/// A checkpoint entry as the chain holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenCheckpoint {
    /// The entry it signs and that entry's hash.
    pub signs: u64,
    pub head: [u8; 32],
    /// The checkpoint entry's own hash.
    pub entry_hash: [u8; 32],
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
    seen: BTreeMap<u64, SeenCheckpoint>,
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
            seen: BTreeMap::new(),
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
        self.seen.insert(seq, SeenCheckpoint { signs: d.sequence, head, entry_hash: r.hash });
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
            checkpoint_entries: self.seen,
            key_path: self.key_path,
        }
    }
}

fn hash32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("is {} bytes, not 32", bytes.len()))
}

/// Prints the outcome; a break, a recorded checkpoint the chain lacks or an
/// unchecked checkpoint is an error (non-zero exit).
fn report(
    outcome: Result<Verified, Broken>,
    recorded: &Recorded,
    key: Option<&CheckpointKey>,
    source: LogSource,
) -> Result<(), CliError> {
    let v = match outcome {
        Ok(v) => v,
        Err(b) => {
            println!("{b}");
            return Err(CliError::Client(format!("audit chain broken at sequence {}", b.sequence)));
        }
    };
    let matched = match recorded.check(&v, key, source) {
        Ok(m) => m,
        Err(b) => {
            println!("{b}");
            return Err(CliError::Client(b.summary()));
        }
    };
    // No "checkpoints: " here: scripts read the count from the line below.
    let anchors = if recorded.exists() {
        let s = if matched.matched == 1 { "" } else { "s" };
        format!("{} recorded checkpoint{s} matched in {}", matched.matched, recorded.path.display())
    } else {
        format!("no checkpoint record at {} (a cut-off tail would not show)", recorded.path.display())
    };
    println!("audit chain OK: {} entries, head {}; {anchors}", v.entries, hex::encode(v.head));
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
    let unchecked = v.unchecked + matched.unchecked;
    if unchecked > 0 {
        return Err(CliError::Client(format!(
            "{unchecked} checkpoint(s) not checked: no public key at {} (run `hpki-ca ceremony`, or pass --public-key)",
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

/// The identity that signs checkpoints: the crl process's, the only one
/// allowed AppendCheckpoint (also for `hpki-ca audit checkpoint`).
pub const CHECKPOINTER_IDENTITY: &str = "crl";

/// The registry as the checkpointer calls it (identity [`CHECKPOINTER_IDENTITY`]).
async fn checkpointer_registry(url: &str) -> Result<RegistryClient<Channel>, CliError> {
    let endpoint = tls::endpoint_as(CHECKPOINTER_IDENTITY, url).map_err(|e| CliError::Client(format!("{url}: {e}")))?;
    let tried = endpoint.uri().to_string();
    let channel = endpoint.connect().await.map_err(|e| CliError::Client(format!("cannot reach {tried}: {e}")))?;
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

// ---------------------------------------------------------------------------
// The checkpoint record outside the database

/// Where checkpoints are signed from and recorded: the public key that must
/// belong to the HSM key, and the append-only record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFiles {
    pub public_key: PathBuf,
    pub records: PathBuf,
}

impl CheckpointFiles {
    /// `<cert_dir>/audit-checkpoint.pub.pem` and `<state_dir>/audit/checkpoints.jsonl`.
    pub fn of(cfg: &Config) -> CheckpointFiles {
        CheckpointFiles {
            public_key: cfg.cert_dir().join(AUDIT_CHECKPOINT_PUB_FILE),
            records: cfg.audit_checkpoints_path(),
        }
    }
}

/// One line of the checkpoint record: a signed checkpoint as the registry took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The "audit.checkpoint" entry's own sequence and hash (hex) in the log.
    pub checkpoint_sequence: u64,
    pub checkpoint_hash: String,
    /// When it was appended (RFC 3339, UTC, microseconds) and by whom.
    pub at: String,
    pub actor: String,
    /// The entry it signs and that entry's hash, hex (the detail's `sequence` and `head_hash`).
    pub signs_sequence: u64,
    pub head_hash: String,
    pub algorithm: String,
    pub key_label: String,
    pub key_spki_sha256: String,
    /// Over [`checkpoint_message`], hex.
    pub signature: String,
}

impl CheckpointRecord {
    /// The record of the checkpoint entry `sequence` (hash `hash`) with `detail`.
    pub fn new(
        sequence: u64,
        hash: &[u8],
        at_unix_micros: i64,
        actor: &str,
        detail: &CheckpointDetail,
    ) -> Result<CheckpointRecord, String> {
        Ok(CheckpointRecord {
            checkpoint_sequence: sequence,
            checkpoint_hash: hex::encode(hash),
            at: format_micros(at_unix_micros)?,
            actor: actor.to_owned(),
            signs_sequence: detail.sequence,
            head_hash: detail.head_hash.clone(),
            algorithm: detail.algorithm.clone(),
            key_label: detail.key_label.clone(),
            key_spki_sha256: detail.key_spki_sha256.clone(),
            signature: detail.signature.clone(),
        })
    }
}

/// Appends `record` as one line to `path` and syncs it to disk. The folder is
/// made owner-only, the file owner-read/write; an existing file is only ever
/// appended to.
pub fn append_record(path: &Path, record: &CheckpointRecord) -> Result<(), CliError> {
    let mut line = serde_json::to_vec(record).map_err(|e| CliError::Client(format!("checkpoint record: {e}")))?;
    line.push(b'\n');
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len > 0 {
        // A line cut short by a crash must not swallow this one: it stays a bad line of its own.
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).map_err(io(path))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    // One write on an O_APPEND file: a manual and an automatic checkpoint cannot interleave.
    file.write_all(&line).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    if let (0, Some(dir)) = (len, dir) {
        // A new file: its name must survive a crash too.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

/// Where the chain being verified came from (for the wording of a missing checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Live,
    Export,
}

/// The checkpoint record as read for `verify`: each non-blank line, parsed or
/// why not, with its line number.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: PathBuf,
    /// `None`: there is no such file.
    lines: Option<Vec<(usize, Result<CheckpointRecord, String>)>>,
}

/// How many recorded checkpoints the chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordsMatched {
    /// Distinct checkpoint sequences found in the chain as recorded.
    pub matched: u64,
    /// Record lines whose signature could not be checked for want of the public key.
    pub unchecked: u64,
}

/// A recorded checkpoint the chain does not hold as recorded, or a record that is not genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBroken {
    /// The recorded checkpoint's sequence; `None` when its line is unreadable.
    pub sequence: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for RecordBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit chain BROKEN: {}", self.reason)
    }
}

impl RecordBroken {
    /// For the exit message, after the full line was printed.
    fn summary(&self) -> String {
        match self.sequence {
            Some(s) => format!("audit chain broken: the recorded checkpoint at sequence {s} does not match the log"),
            None => "audit chain broken: the checkpoint record is unreadable".to_owned(),
        }
    }
}

/// A record line with its hex fields decoded.
struct RecordLine<'a> {
    line: usize,
    record: &'a CheckpointRecord,
    head: [u8; 32],
    entry_hash: [u8; 32],
    signature: Vec<u8>,
}

impl Recorded {
    /// Reads `path`; a missing file is an empty, absent record.
    pub fn load(path: &Path) -> Result<Recorded, CliError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Recorded { path: path.to_owned(), lines: None })
            }
            Err(e) => return Err(io(path)(e)),
        };
        let lines = bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| (i + 1, serde_json::from_slice::<CheckpointRecord>(l).map_err(|e| e.to_string())))
            .collect();
        Ok(Recorded { path: path.to_owned(), lines: Some(lines) })
    }

    pub fn exists(&self) -> bool {
        self.lines.is_some()
    }

    /// Holds the verified chain `v` to every record: each must be signed by
    /// `key` and be in the chain at its sequence with the same signed head and
    /// the same entry hash. An unreadable line fails first; otherwise the
    /// failing record with the lowest sequence is named.
    pub fn check(
        &self,
        v: &Verified,
        key: Option<&CheckpointKey>,
        source: LogSource,
    ) -> Result<RecordsMatched, RecordBroken> {
        let Some(lines) = &self.lines else {
            return Ok(RecordsMatched::default());
        };
        let file = self.path.display();
        let mut decoded = Vec::with_capacity(lines.len());
        for (line, parsed) in lines {
            let unreadable = |why: String| RecordBroken {
                sequence: None,
                reason: format!("{file} line {line} is not a checkpoint record: {why}"),
            };
            let record = parsed.as_ref().map_err(|e| unreadable(e.clone()))?;
            decoded.push(RecordLine {
                line: *line,
                record,
                head: hash32(&record.head_hash).map_err(|e| unreadable(format!("head_hash {e}")))?,
                entry_hash: hash32(&record.checkpoint_hash).map_err(|e| unreadable(format!("checkpoint_hash {e}")))?,
                signature: hex::decode(&record.signature)
                    .map_err(|e| unreadable(format!("signature is not hex: {e}")))?,
            });
        }
        decoded.sort_by_key(|d| (d.record.checkpoint_sequence, d.line));
        let mut matched = BTreeSet::new();
        let mut unchecked = 0;
        for d in &decoded {
            let seq = d.record.checkpoint_sequence;
            let fail = |why: String| RecordBroken {
                sequence: Some(seq),
                reason: format!("checkpoint at sequence {seq} recorded in {file} {why}"),
            };
            // Not signed by our key: a forged or corrupted record, whatever the chain says.
            match key {
                None => unchecked += 1,
                Some(k) if d.record.key_spki_sha256 != k.spki_sha256 => {
                    return Err(fail(format!(
                        "(line {}) is signed by another key (SPKI SHA-256 {}), not the one in {}",
                        d.line,
                        d.record.key_spki_sha256,
                        v.key_path.display()
                    )))
                }
                Some(k) if !k.verify(&checkpoint_message(d.record.signs_sequence, &d.head), &d.signature) => {
                    return Err(fail(format!(
                        "(line {}) has a signature that does not verify with {}: the record is forged or corrupted",
                        d.line,
                        v.key_path.display()
                    )))
                }
                Some(_) => {}
            }
            let Some(seen) = v.checkpoint_entries.get(&seq) else {
                return Err(fail(if seq > v.entries {
                    match source {
                        LogSource::Live => format!(
                            "is missing from the log (the log ends at {}): entries were removed from its end",
                            v.entries
                        ),
                        LogSource::Export => format!(
                            "is missing from the export (it ends at {}): entries were removed from the log's end, \
                             or the export was made before the checkpoint",
                            v.entries
                        ),
                    }
                } else {
                    format!(
                        "differs from the log: entry {seq} there is not a checkpoint (entries were removed from \
                         the log's end and others appended, or the record is another log's)"
                    )
                }));
            };
            if (seen.signs, seen.head) != (d.record.signs_sequence, d.head) {
                return Err(fail(format!(
                    "differs from the log: the entry there signs entry {} (hash {}), the record entry {} (hash {})",
                    seen.signs,
                    hex::encode(seen.head),
                    d.record.signs_sequence,
                    d.record.head_hash
                )));
            }
            if seen.entry_hash != d.entry_hash {
                return Err(fail(
                    "differs from the log: the checkpoint entry there has another hash (its time, actor or \
                     detail differ)"
                        .to_owned(),
                ));
            }
            matched.insert(seq);
        }
        Ok(RecordsMatched { matched: u64::try_from(matched.len()).unwrap_or(u64::MAX), unchecked })
    }
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
        let kind = if alg.oid == rfc5912::RSA_ENCRYPTION {
            KeyKind::Rsa
        } else if alg.oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve = match alg.parameters {
                Some(p) if p.tag() == Tag::ObjectIdentifier => {
                    p.decode_as::<ObjectIdentifier>().map_err(|e| format!("EC parameters: {e}"))?
                }
                _ => return Err("EC key without a named curve".into()),
            };
            if curve != rfc5912::SECP_256_R_1 {
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
    /// A checkpoint entry was appended at `sequence`, signing entry `signs` (hash
    /// `head`). `record_error`: why it is not in the record outside the database
    /// (already logged as an error; the checkpoint stands in the log).
    Signed {
        sequence: u64,
        signs: u64,
        head: [u8; 32],
        algorithm: &'static str,
        key_spki_sha256: String,
        record_error: Option<String>,
    },
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
    /// A log that lost checkpoints the record holds is not re-anchored: signing
    /// its head would vouch for the cut.
    #[error("refusing to checkpoint: {0}")]
    Unrecorded(RecordBroken),
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
/// `hpki-ca audit checkpoint` and the launcher's periodic task sign with it,
/// and both record what they signed outside the database.
pub struct Checkpointer {
    key: hsm::HsmKey,
    public: CheckpointKey,
    key_path: PathBuf,
    records: PathBuf,
}

impl Checkpointer {
    /// Finds the key in the HSM and loads the public key file. Blocking (PKCS#11).
    pub fn new(hsm: &hsm::Hsm, files: &CheckpointFiles) -> Result<Checkpointer, CliError> {
        let key_path = files.public_key.as_path();
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
        Ok(Checkpointer { key, public, key_path: key_path.to_owned(), records: files.records.clone() })
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
        // Read before the log, as `verify` does.
        let recorded = Recorded::load(&self.records)?;
        let verifier = Verifier::new(Some(self.public.clone()), self.key_path.clone());
        let head = verify_live(client, verifier).await?.map_err(CheckpointError::Broken)?;
        recorded.check(&head, Some(&self.public), LogSource::Live).map_err(CheckpointError::Unrecorded)?;
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
        // Not AppendAudit, which refuses this action: the dedicated RPC only
        // the checkpointer's identity (`crl`) may call.
        let request = pb::AppendCheckpointRequest {
            actor: actor.to_owned(),
            subject: AUDIT_CHECKPOINT_KEY_LABEL.to_owned(),
            detail_json,
        };
        let entry = client.append_checkpoint(request).await.map_err(status)?.into_inner();
        // The log has it now; the record is a second copy, so failing to write it
        // is reported loudly but undoes nothing.
        let record_error = self.record(&entry, &detail).await.err();
        if let Some(error) = &record_error {
            tracing::error!(
                sequence = entry.sequence,
                file = %self.records.display(),
                %error,
                "audit checkpoint signed and in the log, but NOT recorded outside the database: \
                 a cut-off log tail would not be detected up to it"
            );
        }
        Ok(CheckpointOutcome::Signed {
            sequence: entry.sequence,
            signs: head.entries,
            head: head.head,
            algorithm: self.public.algorithm(),
            key_spki_sha256: detail.key_spki_sha256,
            record_error,
        })
    }

    /// Appends the checkpoint the registry returned as `entry` to the record.
    async fn record(&self, entry: &pb::AuditEntry, detail: &CheckpointDetail) -> Result<(), String> {
        let record = CheckpointRecord::new(entry.sequence, &entry.hash, entry.at_unix_micros, &entry.actor, detail)?;
        let path = self.records.clone();
        // Blocking file I/O and fsync: off the async workers.
        tokio::task::spawn_blocking(move || append_record(&path, &record))
            .await
            .map_err(|e| format!("the writing task failed: {e}"))?
            .map_err(|e| e.to_string())
    }
}

/// One checkpoint against the registry at `url`, as the launcher's periodic
/// task makes it: a fresh HSM lookup and connection each time, so a token or
/// registry that came back is used again.
pub async fn checkpoint_now(
    hsm: &hsm::Hsm,
    url: &str,
    files: &CheckpointFiles,
    actor: &str,
) -> Result<CheckpointOutcome, CheckpointError> {
    let (h, files) = (hsm.clone(), files.clone());
    let checkpointer = tokio::task::spawn_blocking(move || Checkpointer::new(&h, &files))
        .await
        .map_err(|e| CliError::Client(format!("the HSM lookup task failed: {e}")))??;
    let mut client = checkpointer_registry(url).await?;
    checkpointer.checkpoint(&mut client, actor, true).await
}

/// `hpki-ca audit checkpoint`: always signs the head (an operator asked).
fn checkpoint(cfg: &Config, url: &str, operator: &str, files: &CheckpointFiles) -> Result<(), CliError> {
    let tokens = crate::tokens::Tokens::open(cfg, crate::tokens::domains::CHECKPOINTS)?;
    let checkpointer = Checkpointer::new(tokens.get(config::TrustDomain::Audit)?, files)?;
    let outcome = crate::runtime()?.block_on(async {
        let mut client = checkpointer_registry(url).await?;
        checkpointer.checkpoint(&mut client, operator, false).await
    });
    match outcome {
        Ok(CheckpointOutcome::Signed { sequence, signs, head, algorithm, key_spki_sha256, record_error }) => {
            println!(
                "audit checkpoint at sequence {sequence}: signs entry {signs} (head {}) with HSM key \
                 {AUDIT_CHECKPOINT_KEY_LABEL:?} ({algorithm}, SPKI SHA-256 {key_spki_sha256})",
                hex::encode(head)
            );
            match record_error {
                None => {
                    println!("recorded in {}", files.records.display());
                    Ok(())
                }
                // Non-zero exit so a script notices; the checkpoint itself is in the log.
                Some(e) => Err(CliError::Client(format!(
                    "the checkpoint at sequence {sequence} is in the audit log, but recording it in {} failed: {e}",
                    files.records.display()
                ))),
            }
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
        Err(CheckpointError::Unrecorded(b)) => {
            println!("{b}");
            Err(CliError::Client(format!("refusing to checkpoint: {}", b.summary())))
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

    /// The record line the CA would have written for the checkpoint entry `r`.
    fn record_of(r: &AuditRecord) -> CheckpointRecord {
        let d: CheckpointDetail = serde_json::from_str(&r.detail_json).unwrap();
        CheckpointRecord::new(r.sequence, &r.hash, r.at_unix_micros, &r.actor, &d).unwrap()
    }

    fn recorded(records: &[CheckpointRecord]) -> Recorded {
        let lines = records.iter().cloned().enumerate().map(|(i, r)| (i + 1, Ok(r))).collect();
        Recorded { path: "cp.jsonl".into(), lines: Some(lines) }
    }

    /// 1-3, a checkpoint at 4 (signs 3), 5-6, a checkpoint at 7 (signs 6), 8; and the records of 4 and 7.
    fn checkpointed_log(s: &Signer) -> (Vec<AuditRecord>, Vec<CheckpointRecord>) {
        let mut log = chain(3);
        add_checkpoint(&mut log, s);
        append(&mut log, "test", "{}");
        append(&mut log, "test", "{}");
        add_checkpoint(&mut log, s);
        append(&mut log, "test", "{}");
        let records = vec![record_of(&log[3]), record_of(&log[6])];
        (log, records)
    }

    fn check(
        log: &[AuditRecord],
        records: &[CheckpointRecord],
        key: Option<&CheckpointKey>,
        source: LogSource,
    ) -> Result<RecordsMatched, RecordBroken> {
        let v = verify(log, key.cloned()).expect("the chain itself verifies");
        recorded(records).check(&v, key, source)
    }

    #[test]
    fn recorded_checkpoints_the_chain_holds_match() {
        let s = signer();
        let (log, mut records) = checkpointed_log(&s);
        let m = check(&log, &records, Some(&s.key), LogSource::Live).unwrap();
        assert_eq!(m, RecordsMatched { matched: 2, unchecked: 0 });
        // The same checkpoint recorded twice (two copies concatenated) is one match.
        records.push(records[0].clone());
        assert_eq!(check(&log, &records, Some(&s.key), LogSource::Live).unwrap().matched, 2);
        // Without the public key the records still match the chain, but their signatures are unchecked.
        assert_eq!(check(&log, &records, None, LogSource::Live).unwrap(), RecordsMatched { matched: 2, unchecked: 3 });
        // No record file: nothing to hold the chain to.
        let v = verify(&log, Some(s.key.clone())).unwrap();
        let absent = Recorded { path: "none.jsonl".into(), lines: None };
        assert!(!absent.exists());
        assert_eq!(absent.check(&v, Some(&s.key), LogSource::Live).unwrap(), RecordsMatched::default());
    }

    #[test]
    fn a_cut_off_tail_is_named_by_the_first_recorded_checkpoint_it_lost() {
        let s = signer();
        let (mut log, records) = checkpointed_log(&s);
        log.truncate(6);
        // What is left is a valid chain with a valid checkpoint: only the record shows the cut.
        assert_eq!(verify(&log, Some(s.key.clone())).unwrap().checkpoints, 1);
        let b = check(&log, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert_eq!(
            b.to_string(),
            "audit chain BROKEN: checkpoint at sequence 7 recorded in cp.jsonl is missing from the log \
             (the log ends at 6): entries were removed from its end"
        );
        let b = check(&log, &records, Some(&s.key), LogSource::Export).unwrap_err();
        assert!(b.reason.contains("missing from the export (it ends at 6)"), "{b}");
        // Cut deeper: the lower of the two lost checkpoints is named.
        log.truncate(3);
        let b = check(&log, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(4), "{b}");
        assert!(b.reason.contains("(the log ends at 3)"), "{b}");
    }

    #[test]
    fn a_log_cut_and_grown_again_differs_from_the_record() {
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        // Other entries where the checkpoint was.
        let mut regrown = log[..6].to_vec();
        append(&mut regrown, "test", "{}");
        append(&mut regrown, "test", "{}");
        let b = check(&regrown, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("differs from the log: entry 7 there is not a checkpoint"), "{b}");
        // A new, genuine checkpoint at 7 over another entry 6.
        let mut other_head = log[..5].to_vec();
        append(&mut other_head, "test", r#"{"other": true}"#);
        add_checkpoint(&mut other_head, &s);
        let b = check(&other_head, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("the entry there signs entry 6 (hash"), "{b}");
        // A checkpoint at 7 over the same entry 6, signed again: same head, another entry.
        let mut resigned = log[..6].to_vec();
        add_checkpoint(&mut resigned, &s);
        let b = check(&resigned, &records, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("the checkpoint entry there has another hash"), "{b}");
    }

    #[test]
    fn a_record_not_signed_by_the_key_is_reported_before_the_chain_is_consulted() {
        let s = signer();
        let other = signer();
        let (log, records) = checkpointed_log(&s);
        // One bit of the signature flipped, on a checkpoint the chain does hold.
        let mut flipped = records.clone();
        let mut sig = hex::decode(&flipped[1].signature).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        flipped[1].signature = hex::encode(sig);
        let b = check(&log, &flipped, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(7));
        assert!(b.reason.contains("(line 2) has a signature that does not verify with test.pub.pem"), "{b}");
        // A record of a checkpoint the log never had, made with another key: forged, not "missing".
        let mut forged = records.clone();
        let mut fake = records[1].clone();
        fake.checkpoint_sequence = 9;
        fake.key_spki_sha256 = other.key.spki_sha256.clone();
        forged.push(fake);
        let b = check(&log, &forged, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, Some(9));
        assert!(b.reason.contains("(line 3) is signed by another key"), "{b}");
        // An unreadable line fails, naming the line.
        let mut unreadable = recorded(&records);
        if let Some(lines) = unreadable.lines.as_mut() {
            lines.insert(1, (2, Err("expected value at line 1 column 1".into())));
        }
        let v = verify(&log, Some(s.key.clone())).unwrap();
        let b = unreadable.check(&v, Some(&s.key), LogSource::Live).unwrap_err();
        assert_eq!(b.sequence, None);
        assert!(b.reason.starts_with("cp.jsonl line 2 is not a checkpoint record"), "{b}");
    }

    #[cfg(unix)]
    #[test]
    fn records_are_appended_owner_only_and_a_torn_line_stays_on_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let s = signer();
        let (log, records) = checkpointed_log(&s);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit/checkpoints.jsonl");
        assert!(!Recorded::load(&path).unwrap().exists());
        append_record(&path, &records[0]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A write cut short by a crash, then the next checkpoint.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"checkpoint_seq").unwrap();
        append_record(&path, &records[1]).unwrap();
        let loaded = Recorded::load(&path).unwrap();
        let lines = loaded.lines.as_ref().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!((lines[0].0, lines[0].1.as_ref().unwrap()), (1, &records[0]));
        assert!(lines[1].1.is_err());
        assert_eq!((lines[2].0, lines[2].1.as_ref().unwrap()), (3, &records[1]));
        let v = verify(&log, Some(s.key.clone())).unwrap();
        assert_eq!(loaded.check(&v, Some(&s.key), LogSource::Live).unwrap_err().sequence, None);
        // Without the torn line both records match.
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().filter(|l| l.ends_with('}')).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        assert_eq!(Recorded::load(&path).unwrap().check(&v, Some(&s.key), LogSource::Live).unwrap().matched, 2);
    }
}
