//! The registry's data layer: holders, cards (new, renewed, reissued),
//! certificates, revocations, the status feed, CRL numbers, approvals, PIN
//! escrows and the hash-chained audit log. Only the registry service writes
//! through it.
//!
//! Two backends hold the same trees: sled (embedded, the default) and
//! PostgreSQL (`postgres`: one table of the same records, for a replicated
//! cluster and several registry processes). Every change runs in one
//! transaction over all trees together with the audit entry that describes
//! it, and is durable before the call returns (a sled flush; a PostgreSQL
//! commit), so an acknowledged change survives a crash and a crash never
//! leaves half of one.

mod application;
mod approvals;
mod audit;
#[cfg(feature = "bench")]
mod bench;
mod card_batch;
mod certificates;
mod clock;
mod config_start;
mod crl_number;
mod crl_scopes;
mod error;
mod feed;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
mod group_commit;
mod holders;
mod keys;
mod kv;
mod pin;
mod postgres;
mod records;
mod revocation;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tx;

use std::path::Path;

pub use audit::{actions, audit_hash};
#[cfg(feature = "bench")]
pub use bench::{BenchImport, BenchImportReport};
pub use card_batch::{CardApplication, CardCompletion, CardPreparation, CardStep, CardStepDone};
pub use certificates::Reservation;
pub use certificates::{PreparedCertificate, SignedCertificate};
pub use config_start::{config_changed, ConfigStart, ConfigStartOutcome, PreviousConfigStart};
pub use crl_number::MAX_SCOPE_LEN;
pub use crl_scopes::{CrlScope, CrlScopeRecord, MAX_SCOPE_PARTITIONS};
pub use domain::{Serial, SerialParseError, MAX_SERIAL_LEN, SERIAL_LEN};
pub use error::StoreError;
pub use keys::spki_sha256_of;
pub use records::{
    ApplicationProcedure, ApprovalRecord, ApprovalState, AuditRecord, BeginOutcome, CardKey, CardRecord,
    CardRevokeOutcome, CardState, CardView, CertificateKind, CertificateRecord, CertificateState, CertificateStatus,
    ContactAddress, ContactUpdate, CrlNumber, DisclosureLimit, HolderCards, HolderDetails, HolderRecord, Membership,
    NewApplication, NewApproval, NewPinEscrow, PinDisclosure, PinDisclosureRequest, PinEscrow, Procedure, Revocation,
    RevocationReason, RevocationRequest, RevokeOutcome, RevokedEntry, RevokedQuery, StatusChange,
};
pub use revocation::{RevokedEntries, MAX_CLOCK_SKEW_SECS};

/// How long `Store::open` waits for a held lock, and how often it asks.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Where the records live.
#[derive(Clone)]
pub enum Location {
    /// A sled folder, with sled's page cache bounded to `cache_bytes`.
    Sled { path: std::path::PathBuf, cache_bytes: u64 },
    /// A PostgreSQL database: a libpq connection string or URL, which may name
    /// several hosts (`target_session_attrs=read-write` finds the primary),
    /// and a password given apart from it.
    Postgres { url: String, password: Option<String>, pool_size: u32 },
}

impl std::fmt::Debug for Location {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sled { path, .. } => write!(f, "sled {}", path.display()),
            Location::Postgres { .. } => write!(f, "postgres"),
        }
    }
}

/// sled's cache when nothing else is configured (sled's own default is 1 GiB).
pub const DEFAULT_SLED_CACHE_BYTES: u64 = 64 << 20;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
    trees: tx::Trees,
    durable: feed::Durable,
    /// Concurrent writers share sled flushes (see `group_commit`).
    group: std::sync::Arc<group_commit::GroupCommit>,
}

#[derive(Clone)]
enum Engine {
    Sled(sled::Db),
    Postgres,
}

impl Store {
    /// Opens (creating if needed) the sled folder at `path`, with the default cache.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_at(&Location::Sled { path: path.to_owned(), cache_bytes: DEFAULT_SLED_CACHE_BYTES })
    }

    /// Opens the database at `location`. On PostgreSQL this applies the
    /// schema migrations first, and the feed position then follows the
    /// commits of every registry process on the database.
    pub fn open_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sled { path, cache_bytes } => Store::open_sled(path, *cache_bytes),
            Location::Postgres { url, password, pool_size } => {
                let pg = postgres::Pg::connect(url, password.as_deref(), *pool_size)?;
                let trees = tx::Trees::postgres(&pg);
                keys::backfill(&trees)?;
                let durable = feed::Durable::new(feed::last_stored(&trees)?);
                feed::follow_commits(&trees, &durable);
                Ok(Store { engine: Engine::Postgres, trees, durable, group: Default::default() })
            }
        }
    }

    /// sled locks the folder, so a second process opening it fails rather
    /// than corrupting it.
    ///
    /// A lock still held is asked again for up to a second: when this process has
    /// just dropped its own handle, sled's background thread closes the file a
    /// moment later (seen as a rare `Locked` on close-and-reopen in the tests).
    fn open_sled(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
                Ok(db) => break db,
                // sled reports its file lock held elsewhere only as this I/O error text.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if waited >= LOCK_PATIENCE {
                        return Err(StoreError::Locked { path: path.to_owned() });
                    }
                    std::thread::sleep(LOCK_RETRY);
                    waited += LOCK_RETRY;
                }
                Err(other) => return Err(StoreError::Db(other)),
            }
        };
        let trees = tx::Trees::open(&db)?;
        if keys::backfill(&trees)? {
            db.flush()?;
        }
        // What sled recovered is on disk, so all of it counts as durable.
        let durable = feed::Durable::new(feed::last_stored(&trees)?);
        Ok(Store { engine: Engine::Sled(db), trees, durable, group: Default::default() })
    }

    /// Appends an entry for something that happened outside the store (e.g.
    /// a PIN disclosure), durable when this returns. The store's own actions
    /// (`actions::ALL`) are refused with `ReservedAction`.
    pub fn append_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail_json: &str,
    ) -> Result<AuditRecord, StoreError> {
        if actions::is_system(action) {
            return Err(StoreError::ReservedAction { action: action.to_owned() });
        }
        self.append_event(audit::Event { actor, action, subject, detail_json: detail_json.to_owned() })
    }

    /// Appends an "audit.checkpoint" entry (`actions::AUDIT_CHECKPOINT`),
    /// durable when this returns: the registry's AppendCheckpoint.
    pub fn append_checkpoint_audit(
        &self,
        actor: &str,
        subject: &str,
        detail_json: &str,
    ) -> Result<AuditRecord, StoreError> {
        let action = actions::AUDIT_CHECKPOINT;
        self.append_event(audit::Event { actor, action, subject, detail_json: detail_json.to_owned() })
    }

    /// Appends an entry of the key ceremony (`actions::CEREMONY` only), durable
    /// when this returns. The ceremony opens the database itself while no
    /// registry runs; these actions are reserved, so no gRPC client can forge
    /// them through AppendAudit.
    pub fn append_ceremony_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail_json: &str,
    ) -> Result<AuditRecord, StoreError> {
        if !actions::CEREMONY.contains(&action) {
            return Err(StoreError::NotCeremonyAction { action: action.to_owned() });
        }
        self.append_event(audit::Event { actor, action, subject, detail_json: detail_json.to_owned() })
    }

    /// Appends the registry's "config.start" entry, compared with the previous
    /// start's config digest; durable when this returns.
    pub fn record_config_start(&self, start: &ConfigStart) -> Result<ConfigStartOutcome, StoreError> {
        let outcome = self.trees.transact(|tx| config_start::record(tx, start))?;
        self.flush()?;
        Ok(outcome)
    }

    /// Audit entries with sequence >= `from` (sequences start at 1), at most
    /// `limit` of them, or all with `None`.
    pub fn list_audit(&self, from: u64, limit: Option<usize>) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list(&self.trees, from, limit)
    }

    /// Up to `limit` audit entries at or before sequence `to` (`u64::MAX`: the
    /// newest), newest first.
    pub fn list_audit_back(&self, to: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list_back(&self.trees, to, limit)
    }

    /// Checks every entry's hash and link; returns how many entries there are,
    /// or `AuditChainBroken` at the first bad sequence.
    pub fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        audit::verify(&self.trees)
    }

    /// Appends one audit entry, durable when this returns; the callers decide
    /// which actions they may append.
    fn append_event(&self, event: audit::Event<'_>) -> Result<AuditRecord, StoreError> {
        let record = self.trees.transact(|tx| audit::append(tx, &event))?;
        self.flush()?;
        Ok(record)
    }

    /// Runs a transaction that says whether it wrote anything (the bool) and,
    /// when it did, makes that durable with `flush` (`Store::flush`, or
    /// `Store::flush_grouped` to share it) before the caller acknowledges it.
    pub(crate) fn transact_and_flush<T>(
        &self,
        flush: fn(&Store) -> Result<(), StoreError>,
        f: impl Fn(&tx::Tx<'_>) -> tx::TxResult<(T, bool)>,
    ) -> Result<T, StoreError> {
        let (value, changed) = self.trees.transact(f)?;
        if changed {
            flush(self)?;
        }
        Ok(value)
    }

    /// Makes everything written so far durable; called before acknowledging
    /// a change. sled: an fsync. PostgreSQL: nothing, the commit was.
    fn flush(&self) -> Result<(), StoreError> {
        if let Engine::Sled(db) = &self.engine {
            db.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test_support;
