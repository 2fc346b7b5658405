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

/// The trees of either backend, and the way to change them. (Some trees are
/// only ever read inside transactions, outside of tests.)
#[derive(Clone)]
#[allow(dead_code)]
pub(crate) struct Trees {
    pub holders: KvTree,
    pub holder_by_licence: KvTree,
    pub cards: KvTree,
    pub card_by_application: KvTree,
    pub certificates: KvTree,
    pub audit: KvTree,
    pub meta: KvTree,
    /// Status feed: sequence (u64 BE) -> StatusChange.
    pub feed: KvTree,
    /// issuer_label, 0x00, serial bytes -> compact revoked entry (see `revocation`).
    pub revoked_by_issuer: KvTree,
    pub approvals: KvTree,
    /// card_id -> PinEscrow (with its disclosures).
    pub pin_escrow: KvTree,
    /// SHA-256 of a certified SubjectPublicKeyInfo -> its card and kind (see `keys`).
    pub key_owner: KvTree,
    backend: Backend,
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

/// Transactional views of the trees, each knowing its name for error messages.
pub(crate) struct Tx<'a> {
    pub holders: Table<'a>,
    pub holder_by_licence: Table<'a>,
    pub cards: Table<'a>,
    pub card_by_application: Table<'a>,
    pub certificates: Table<'a>,
    pub audit: Table<'a>,
    pub meta: Table<'a>,
    pub feed: Table<'a>,
    pub revoked_by_issuer: Table<'a>,
    pub approvals: Table<'a>,
    pub pin_escrow: Table<'a>,
    pub key_owner: Table<'a>,
}

impl<'a> Tx<'a> {
    fn new(table: impl Fn(&'static str, usize) -> Table<'a>) -> Tx<'a> {
        Tx {
            holders: table(NAMES[0], 0),
            holder_by_licence: table(NAMES[1], 1),
            cards: table(NAMES[2], 2),
            card_by_application: table(NAMES[3], 3),
            certificates: table(NAMES[4], 4),
            audit: table(NAMES[5], 5),
            meta: table(NAMES[6], 6),
            feed: table(NAMES[7], 7),
            revoked_by_issuer: table(NAMES[8], 8),
            approvals: table(NAMES[9], 9),
            pin_escrow: table(NAMES[10], 10),
            key_owner: table(NAMES[11], 11),
        }
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
        Ok(Trees::with(kv, Backend::Sled(Box::new(SledTrees(sled.clone())))))
    }

    pub fn postgres(pg: &Pg) -> Trees {
        let kv = |i: usize| KvTree::Postgres { pg: pg.clone(), name: NAMES[i] };
        Trees::with(kv, Backend::Postgres(pg.clone()))
    }

    fn with(kv: impl Fn(usize) -> KvTree, backend: Backend) -> Trees {
        Trees {
            holders: kv(0),
            holder_by_licence: kv(1),
            cards: kv(2),
            card_by_application: kv(3),
            certificates: kv(4),
            audit: kv(5),
            meta: kv(6),
            feed: kv(7),
            revoked_by_issuer: kv(8),
            approvals: kv(9),
            pin_escrow: kv(10),
            key_owner: kv(11),
            backend,
        }
    }

    /// Runs `f` atomically over every tree. Both backends serialise
    /// transactions and re-run `f` on conflict, so `f` must have no side
    /// effects besides its writes through `Tx`. Reads-only callers use it
    /// too, for a consistent view.
    pub fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                pg.transact(|ptx| f(&Tx::new(|name, _| Table { name, inner: Inner::Postgres(ptx) })))
            }
            Backend::Sled(sled) => {
                let [h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko] = &sled.0;
                (h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko)
                    .transaction(|(h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko)| {
                        let all = [h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko];
                        f(&Tx::new(|name, i| Table { name, inner: Inner::Sled(all[i]) }))
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
