//! The PostgreSQL backend: the same trees as sled, as rows of one table
//! `kv(tree, key, value)` (see `migrations/`), so every rule of the store is
//! written once and holds on both backends.
//!
//! A store transaction is one SERIALIZABLE transaction, re-run from the start
//! when PostgreSQL reports a serialization failure or a deadlock, as sled
//! re-runs a conflicting one. That is what keeps several registry processes
//! on one database correct: the feed, audit and CRL-number counters are rows
//! every writer reads and writes, so their transactions commit one after
//! another, and an insert-if-absent (a serial, an application id) cannot be
//! made twice. A commit is durable (and on a synchronous standby) when it
//! returns, so nothing else needs flushing.
//!
//! Every change appends to the audit chain, so no two can commit in parallel
//! anyway. Left to SERIALIZABLE alone, 64 concurrent writers kept failing
//! each other (a serialization failure on the audit head, then a retry)
//! until some gave up. So each transaction first takes one advisory lock,
//! held by the session from before BEGIN (the snapshot is then taken after
//! the previous writer committed) until after COMMIT: writers of every
//! registry process queue instead of retrying, and SERIALIZABLE stays as the
//! safety net. A connection that dies releases its lock with it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{IsolationLevel, NoTls, Statement};
use r2d2_postgres::PostgresConnectionManager;
use sled::transaction::ConflictableTransactionError;
use sled::IVec;

use crate::error::StoreError;
use crate::tx::TxResult;

/// Versioned schema files, applied in order at start (`schema_migrations`).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/0001_kv.sql"))];

/// One lock for applying migrations, so two registries starting together
/// do not both create the table.
const MIGRATION_LOCK: i64 = 0x4850_4b49_0001;

/// The lock every store transaction holds (see the module documentation).
const WRITE_LOCK: i64 = 0x4850_4b49_0002;

/// How often a transaction is re-run after serialization failures before
/// the error is returned.
const MAX_ATTEMPTS: u32 = 64;

/// Rows fetched per round trip when iterating a tree.
const PAGE: i64 = 512;

/// How long a caller waits for a pooled connection (PostgreSQL down or
/// failing over) before the call fails.
const POOL_WAIT: Duration = Duration::from_secs(5);

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// r2d2_postgres's manager, with each connection's prepared read.
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn { client: self.0.connect()?, get: None })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

/// A pooled connection and the statement transactions read rows with,
/// prepared on its first use (after the migrations), so PostgreSQL parses
/// and plans it once per connection instead of once per read.
struct PgConn {
    client: postgres::Client,
    get: Option<Statement>,
}

impl PgConn {
    fn get_statement(&mut self) -> Result<Statement, postgres::Error> {
        if let Some(statement) = &self.get {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare_typed(GET, &[Type::TEXT, Type::BYTEA])?;
        self.get = Some(statement.clone());
        Ok(statement)
    }
}

impl std::ops::Deref for PgConn {
    type Target = postgres::Client;

    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

/// A pool of connections to one database; cheap to clone.
#[derive(Clone)]
pub(crate) struct Pg {
    pool: Pool,
}

impl Pg {
    /// Connects (`url` is a libpq connection string or URL; it may name
    /// several hosts with `target_session_attrs=read-write`) and applies the
    /// migrations this build knows.
    pub fn connect(url: &str, password: Option<&str>, pool_size: u32) -> Result<Pg, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::PostgresConfig(format!("{e}")))?;
        if let Some(password) = password {
            config.password(password);
        }
        let manager = Manager(PostgresConnectionManager::new(config, NoTls));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(POOL_WAIT)
            // A connection that failed over to a read-only standby, or whose
            // server died, is dropped when handed back broken.
            .test_on_check_out(false)
            .build_unchecked(manager);
        let pg = Pg { pool };
        pg.migrate()?;
        Ok(pg)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| StoreError::PostgresUnavailable(e.to_string()))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let result = (|| {
            conn.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )?;
            for (version, sql) in MIGRATIONS {
                let done = conn.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version])?.is_some();
                if done {
                    continue;
                }
                let mut tx = conn.transaction()?;
                tx.batch_execute(sql)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])?;
                tx.commit()?;
            }
            let newest: Option<i32> = conn.query_one("SELECT max(version) FROM schema_migrations", &[])?.get(0);
            let known = MIGRATIONS.last().map_or(0, |m| m.0);
            match newest {
                Some(v) if v > known => Err(StoreError::PostgresSchemaTooNew { found: v, known }),
                _ => Ok(()),
            }
        })();
        let _ = conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        result
    }

    /// Runs `f` in a SERIALIZABLE transaction, again from the start after a
    /// serialization failure or deadlock (so `f`, as with sled, must have no
    /// side effects besides its writes through the transaction).
    pub fn transact<T>(&self, f: impl Fn(&PgTx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = run_once(&mut conn, &f);
            match outcome {
                Ok(v) => return Ok(v),
                Err(Retry::Again(e)) if attempt < MAX_ATTEMPTS => {
                    // Let the transaction we lost to finish.
                    std::thread::sleep(Duration::from_micros(200 * u64::from(attempt.min(20))));
                    drop(e);
                }
                Err(Retry::Again(e)) | Err(Retry::Fail(e)) => return Err(e),
            }
        }
    }

    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        let mut conn = self.conn()?;
        let get = conn.get_statement()?;
        let row = conn.query_opt(&get, &[&tree, &key])?;
        Ok(row.map(|r| IVec::from(r.get::<_, Vec<u8>>(0))))
    }

    /// Writes outside any transaction: the one-time index backfill and tests.
    pub fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.conn()?.execute(UPSERT, &[&tree, &key, &value])?;
        Ok(())
    }

    #[cfg(test)]
    pub fn remove(&self, tree: &str, key: &[u8]) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM kv WHERE tree = $1 AND key = $2", &[&tree, &key])?;
        Ok(())
    }

    #[cfg(test)]
    pub fn len(&self, tree: &str) -> Result<usize, StoreError> {
        let n: i64 = self.conn()?.query_one("SELECT count(*) FROM kv WHERE tree = $1", &[&tree])?.get(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub fn last(&self, tree: &str) -> Result<Option<(IVec, IVec)>, StoreError> {
        let row =
            self.conn()?.query_opt("SELECT key, value FROM kv WHERE tree = $1 ORDER BY key DESC LIMIT 1", &[&tree])?;
        Ok(row.as_ref().map(key_value))
    }

    pub fn last_at_or_before(&self, tree: &str, key: &[u8]) -> Result<Option<(IVec, IVec)>, StoreError> {
        let row = self.conn()?.query_typed_opt(
            "SELECT key, value FROM kv WHERE tree = $1 AND key <= $2 ORDER BY key DESC LIMIT 1",
            &[(&tree, Type::TEXT), (&key, Type::BYTEA)],
        )?;
        Ok(row.as_ref().map(key_value))
    }

    /// The rows of `tree` with keys within the bounds, in key order, fetched a
    /// page at a time.
    pub fn pages(&self, tree: &'static str, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Pages {
        Pages { pg: self.clone(), tree, lower, upper, buffered: VecDeque::new(), done: false }
    }
}

/// A `SELECT key, value` row.
fn key_value(row: &postgres::Row) -> (IVec, IVec) {
    (IVec::from(row.get::<_, Vec<u8>>(0)), IVec::from(row.get::<_, Vec<u8>>(1)))
}

// `GET` is prepared once per connection (`PgConn::get_statement`); the others
// are sent with their parameter types (`query_typed`): one round trip each, no
// separate prepare.
const GET: &str = "SELECT value FROM kv WHERE tree = $1 AND key = $2";
const UPSERT: &str =
    "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3) ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
/// A transaction's writes, sent at its end in one statement (one row per key:
/// an upsert may not touch a row twice).
const UPSERT_ALL: &str = "INSERT INTO kv (tree, key, value) \
     SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";

enum Retry {
    /// A serialization failure or deadlock: run the transaction again.
    Again(StoreError),
    Fail(StoreError),
}

fn classify(e: StoreError) -> Retry {
    match &e {
        StoreError::Postgres(pg) if is_retryable(pg) => Retry::Again(e),
        _ => Retry::Fail(e),
    }
}

fn is_retryable(e: &postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

fn run_once<T>(conn: &mut Conn, f: &impl Fn(&PgTx<'_>) -> TxResult<T>) -> Result<T, Retry> {
    conn.query_typed("SELECT pg_advisory_lock($1)", &[(&WRITE_LOCK, Type::INT8)]).map_err(|e| classify(e.into()))?;
    let result = run_locked(conn, f);
    // A failure here means the session is gone, and its lock with it.
    let _ = conn.query_typed("SELECT pg_advisory_unlock($1)", &[(&WRITE_LOCK, Type::INT8)]);
    result
}

fn run_locked<T>(conn: &mut Conn, f: &impl Fn(&PgTx<'_>) -> TxResult<T>) -> Result<T, Retry> {
    let get = conn.get_statement().map_err(|e| classify(e.into()))?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .map_err(|e| classify(e.into()))?;
    let cell = PgTx { tx: RefCell::new(tx), get, writes: RefCell::default(), reads: RefCell::default() };
    let value = match f(&cell) {
        Ok(v) => v,
        // Dropping the transaction rolls it back.
        Err(ConflictableTransactionError::Abort(e)) => return Err(classify(e)),
        Err(ConflictableTransactionError::Conflict) => {
            return Err(Retry::Again(StoreError::PostgresUnavailable("serialization conflict".into())))
        }
        Err(ConflictableTransactionError::Storage(e)) => return Err(Retry::Fail(StoreError::Db(e))),
    };
    let PgTx { tx, writes, .. } = cell;
    let mut tx = tx.into_inner();
    write_all(&mut tx, writes.into_inner()).map_err(|e| classify(e.into()))?;
    tx.commit().map_err(|e| classify(e.into()))?;
    Ok(value)
}

fn write_all(tx: &mut postgres::Transaction<'_>, writes: BTreeMap<At, Vec<u8>>) -> Result<(), postgres::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut trees = Vec::with_capacity(writes.len());
    let mut keys = Vec::with_capacity(writes.len());
    let mut values = Vec::with_capacity(writes.len());
    for ((tree, key), value) in writes {
        trees.push(tree);
        keys.push(key);
        values.push(value);
    }
    tx.query_typed(
        UPSERT_ALL,
        &[(&trees, Type::TEXT_ARRAY), (&keys, Type::BYTEA_ARRAY), (&values, Type::BYTEA_ARRAY)],
    )?;
    Ok(())
}

/// A row's place: (tree, key).
type At = (String, Vec<u8>);

/// One open SERIALIZABLE transaction, shared by the tables of a `Tx`. A row is
/// fetched once (the snapshot does not change under the transaction) and the
/// writes are held until its end, so a batch of card steps costs a round trip
/// per distinct row read plus one for all its writes, not one per call.
pub(crate) struct PgTx<'c> {
    tx: RefCell<postgres::Transaction<'c>>,
    /// `GET`, prepared on this connection.
    get: Statement,
    /// (tree, key) -> value, the last written; reads see them.
    writes: RefCell<BTreeMap<At, Vec<u8>>>,
    /// (tree, key) -> the row as read in this transaction.
    reads: RefCell<HashMap<At, Option<IVec>>>,
}

/// What a store table does inside a transaction (a trait so that a `Tx`
/// need not name the connection's lifetime).
pub(crate) trait TxOps {
    fn get(&self, tree: &str, key: &[u8]) -> TxResult<Option<IVec>>;
    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> TxResult<()>;
}

impl TxOps for PgTx<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> TxResult<Option<IVec>> {
        let at = (tree.to_owned(), key.to_vec());
        if let Some(value) = self.writes.borrow().get(&at) {
            return Ok(Some(IVec::from(value.as_slice())));
        }
        if let Some(row) = self.reads.borrow().get(&at) {
            return Ok(row.clone());
        }
        let row = self.tx.borrow_mut().query_opt(&self.get, &[&tree, &key]).map_err(abort)?;
        let row = row.map(|r| IVec::from(r.get::<_, Vec<u8>>(0)));
        self.reads.borrow_mut().insert(at, row.clone());
        Ok(row)
    }

    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> TxResult<()> {
        self.writes.borrow_mut().insert((tree.to_owned(), key.to_vec()), value.to_vec());
        Ok(())
    }
}

fn abort(e: postgres::Error) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(StoreError::Postgres(e))
}

/// An iterator over a key range of one tree, a page per round trip.
pub(crate) struct Pages {
    pg: Pg,
    tree: &'static str,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    buffered: VecDeque<(IVec, IVec)>,
    done: bool,
}

impl Pages {
    fn fetch(&mut self) -> Result<(), StoreError> {
        let (lower_op, lower_key) = match &self.lower {
            Bound::Included(k) => (">=", k.clone()),
            Bound::Excluded(k) => (">", k.clone()),
            Bound::Unbounded => (">=", Vec::new()),
        };
        let (upper_sql, upper_key) = match &self.upper {
            Bound::Included(k) => ("AND key <= $3", Some(k.clone())),
            Bound::Excluded(k) => ("AND key < $3", Some(k.clone())),
            Bound::Unbounded => ("", None),
        };
        let sql = format!(
            "SELECT key, value FROM kv WHERE tree = $1 AND key {lower_op} $2 {upper_sql} ORDER BY key LIMIT {PAGE}"
        );
        let mut conn = self.pg.conn()?;
        let rows = match &upper_key {
            Some(upper) => conn.query_typed(
                sql.as_str(),
                &[(&self.tree, Type::TEXT), (&lower_key, Type::BYTEA), (upper, Type::BYTEA)],
            )?,
            None => conn.query_typed(sql.as_str(), &[(&self.tree, Type::TEXT), (&lower_key, Type::BYTEA)])?,
        };
        if rows.len() < PAGE as usize {
            self.done = true;
        }
        for row in &rows {
            let (key, value) = key_value(row);
            self.lower = Bound::Excluded(key.to_vec());
            self.buffered.push_back((key, value));
        }
        Ok(())
    }
}

impl Iterator for Pages {
    type Item = Result<(IVec, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}
