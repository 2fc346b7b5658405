//! The trees and one way to change them: a transaction over all of them, so a
//! multi-record change (and its audit entry) is all-or-nothing even on a crash.

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional, TransactionalTree,
};
use sled::{Db, IVec, Tree};

use crate::kv::KvTree;
use crate::postgres::{Pg, TxOps};

use crate::error::StoreError;

pub(crate) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

/// Ends the transaction, discarding its writes, with `err`.
pub(crate) fn fail<T>(err: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(err))
}

/// One `T` per tree: the trees of either backend (`Trees`) and their
/// transactional views (`Tx`) go by the same twelve names. (Some trees are
/// only ever read inside transactions, outside of tests.)
#[derive(Clone)]
#[allow(dead_code)]
pub(crate) struct Each<T> {
    pub holders: T,
    pub holder_by_licence: T,
    pub cards: T,
    pub card_by_application: T,
    pub certificates: T,
    pub audit: T,
    pub meta: T,
    /// Status feed: sequence (u64 BE) -> StatusChange.
    pub feed: T,
    /// issuer_label, 0x00, serial bytes -> compact revoked entry (see `revocation`).
    pub revoked_by_issuer: T,
    pub approvals: T,
    /// card_id -> PinEscrow (with its disclosures).
    pub pin_escrow: T,
    /// SHA-256 of a certified SubjectPublicKeyInfo -> its card and kind (see `keys`).
    pub key_owner: T,
}

impl<T> Each<T> {
    /// `tree(i)` for the tree named `NAMES[i]`, each in turn.
    fn from_fn(mut tree: impl FnMut(usize) -> T) -> Each<T> {
        Each {
            holders: tree(0),
            holder_by_licence: tree(1),
            cards: tree(2),
            card_by_application: tree(3),
            certificates: tree(4),
            audit: tree(5),
            meta: tree(6),
            feed: tree(7),
            revoked_by_issuer: tree(8),
            approvals: tree(9),
            pin_escrow: tree(10),
            key_owner: tree(11),
        }
    }
}

/// The trees of either backend (read through `Deref`), and the way to change them.
#[derive(Clone)]
pub(crate) struct Trees {
    each: Each<KvTree>,
    backend: Backend,
}

impl std::ops::Deref for Trees {
    type Target = Each<KvTree>;

    fn deref(&self) -> &Each<KvTree> {
        &self.each
    }
}

#[derive(Clone)]
enum Backend {
    Sled(Box<SledTrees>),
    Postgres(Pg),
}

/// sled's handles, in the order `transact` names them.
#[derive(Clone)]
struct SledTrees([Tree; 12]);

/// Every tree's name, in one order for both backends.
const NAMES: [&str; 12] = [
    "holders",
    "holder_by_licence",
    "cards",
    "card_by_application",
    "certificates",
    "audit",
    "meta",
    "feed",
    "revoked_by_issuer",
    "approvals",
    "pin_escrow",
    "key_owner",
];

/// Transactional views of the trees, each knowing its name for error
/// messages, and the audit entries appended so far (written as one group
/// when the transaction's work is done: `audit::write_group`).
pub(crate) struct Tx<'a> {
    tables: Each<Table<'a>>,
    pub(crate) audit_group: std::cell::RefCell<crate::audit::Group>,
}

impl<'a> Tx<'a> {
    fn from_fn(table: impl FnMut(usize) -> Table<'a>) -> Tx<'a> {
        Tx { tables: Each::from_fn(table), audit_group: Default::default() }
    }

    /// `f`, then the audit entries it appended.
    fn run<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> TxResult<T> {
        let out = f(self)?;
        crate::audit::write_group(self)?;
        Ok(out)
    }
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Each<Table<'a>>;

    fn deref(&self) -> &Each<Table<'a>> {
        &self.tables
    }
}

impl Trees {
    pub fn open(db: &Db) -> Result<Trees, StoreError> {
        let mut trees = Vec::with_capacity(NAMES.len());
        for name in NAMES {
            trees.push(db.open_tree(name)?);
        }
        let sled: [Tree; 12] = trees.try_into().map_err(|_| corrupt("meta", b"", "tree count"))?;
        let kv = |i: usize| KvTree::Sled(sled[i].clone());
        Ok(Trees { each: Each::from_fn(kv), backend: Backend::Sled(Box::new(SledTrees(sled.clone()))) })
    }

    pub fn postgres(pg: &Pg) -> Trees {
        let kv = |i: usize| KvTree::Postgres { pg: pg.clone(), name: NAMES[i] };
        Trees { each: Each::from_fn(kv), backend: Backend::Postgres(pg.clone()) }
    }

    /// Runs `f` atomically over every tree. Both backends serialise
    /// transactions and re-run `f` on conflict, so `f` must have no side
    /// effects besides its writes through `Tx`. Reads-only callers use it
    /// too, for a consistent view.
    pub fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                pg.transact(|ptx| Tx::from_fn(|i| Table { name: NAMES[i], inner: Inner::Postgres(ptx) }).run(&f))
            }
            Backend::Sled(sled) => {
                let [h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko] = &sled.0;
                (h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko)
                    .transaction(|(h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko)| {
                        let all = [h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko];
                        Tx::from_fn(|i| Table { name: NAMES[i], inner: Inner::Sled(all[i]) }).run(&f)
                    })
                    .map_err(|e| match e {
                        TransactionError::Abort(e) => e,
                        TransactionError::Storage(e) => StoreError::Db(e),
                    })
            }
        }
    }
}

pub(crate) struct Table<'a> {
    name: &'static str,
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sled(&'a TransactionalTree),
    Postgres(&'a dyn TxOps),
}

impl Table<'_> {
    fn get(&self, key: &[u8]) -> TxResult<Option<IVec>> {
        match &self.inner {
            Inner::Sled(t) => Ok(t.get(key)?),
            Inner::Postgres(t) => t.get(self.name, key),
        }
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> TxResult<()> {
        match &self.inner {
            Inner::Sled(t) => {
                t.insert(key, value)?;
                Ok(())
            }
            Inner::Postgres(t) => t.insert(self.name, key, value),
        }
    }
}

impl Table<'_> {
    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> TxResult<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => match decode(self.name, key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => fail(e),
            },
        }
    }

    pub fn put_json<T: Serialize>(&self, key: &[u8], value: &T) -> TxResult<()> {
        match encode(self.name, key, value) {
            Ok(bytes) => self.insert(key, &bytes),
            Err(e) => fail(e),
        }
    }

    /// Index values are plain UTF-8 keys of another tree.
    pub fn get_str(&self, key: &[u8]) -> TxResult<Option<String>> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(s) => Ok(Some(s)),
                Err(_) => fail(corrupt(self.name, key, "index value is not UTF-8")),
            },
        }
    }

    pub fn put_str(&self, key: &[u8], value: &str) -> TxResult<()> {
        self.insert(key, value.as_bytes())
    }

    pub fn put_raw(&self, key: &[u8], value: &[u8]) -> TxResult<()> {
        self.insert(key, value)
    }

    pub fn contains(&self, key: &[u8]) -> TxResult<bool> {
        Ok(self.get(key)?.is_some())
    }
}

pub(crate) fn decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, key, &e.to_string()))
}

fn encode<T: Serialize>(tree: &'static str, key: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
    // Our records always serialise; this only guards against a future type that does not.
    serde_json::to_vec(value).map_err(|e| corrupt(tree, key, &format!("cannot encode: {e}")))
}

pub(crate) fn corrupt(tree: &'static str, key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt { tree, key: show_key(key), reason: reason.to_owned() }
}

/// Text keys as text, binary keys (serials, sequence numbers) as hex.
pub(crate) fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
        _ => hex::encode(key),
    }
}
