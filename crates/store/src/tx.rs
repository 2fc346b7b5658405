//! The trees and one way to change them: a transaction over all of them, so a
//! multi-record change (and its audit entry) is all-or-nothing even on a crash.

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional, TransactionalTree,
};
use sled::{Db, Tree};

use crate::error::StoreError;

pub(crate) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

/// Ends the transaction, discarding its writes, with `err`.
pub(crate) fn fail<T>(err: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(err))
}

#[derive(Clone)]
pub(crate) struct Trees {
    pub holders: Tree,
    pub holder_by_licence: Tree,
    pub cards: Tree,
    pub card_by_application: Tree,
    pub certificates: Tree,
    pub audit: Tree,
    pub meta: Tree,
    /// Status feed: sequence (u64 BE) -> StatusChange.
    pub feed: Tree,
    /// issuer_label, 0x00, serial bytes -> compact revoked entry (see `revocation`).
    pub revoked_by_issuer: Tree,
    pub approvals: Tree,
    /// card_id -> PinEscrow (with its disclosures).
    pub pin_escrow: Tree,
    /// SHA-256 of a certified SubjectPublicKeyInfo -> its card and kind (see `keys`).
    pub key_owner: Tree,
}

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

impl Trees {
    pub fn open(db: &Db) -> Result<Trees, StoreError> {
        Ok(Trees {
            holders: db.open_tree("holders")?,
            holder_by_licence: db.open_tree("holder_by_licence")?,
            cards: db.open_tree("cards")?,
            card_by_application: db.open_tree("card_by_application")?,
            certificates: db.open_tree("certificates")?,
            audit: db.open_tree("audit")?,
            meta: db.open_tree("meta")?,
            feed: db.open_tree("feed")?,
            revoked_by_issuer: db.open_tree("revoked_by_issuer")?,
            approvals: db.open_tree("approvals")?,
            pin_escrow: db.open_tree("pin_escrow")?,
            key_owner: db.open_tree("key_owner")?,
        })
    }

    /// Runs `f` atomically over every tree. sled serialises transactions (and
    /// re-runs `f` on conflict), so `f` must have no side effects besides its
    /// writes through `Tx`. Reads-only callers use it too, for a consistent view.
    pub fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, StoreError> {
        let all = (
            &self.holders,
            &self.holder_by_licence,
            &self.cards,
            &self.card_by_application,
            &self.certificates,
            &self.audit,
            &self.meta,
            &self.feed,
            &self.revoked_by_issuer,
            &self.approvals,
            &self.pin_escrow,
            &self.key_owner,
        );
        all.transaction(|(h, hl, c, ca, ce, a, m, fe, ri, ap, pe, ko)| {
            f(&Tx {
                holders: Table { name: "holders", tree: h },
                holder_by_licence: Table { name: "holder_by_licence", tree: hl },
                cards: Table { name: "cards", tree: c },
                card_by_application: Table { name: "card_by_application", tree: ca },
                certificates: Table { name: "certificates", tree: ce },
                audit: Table { name: "audit", tree: a },
                meta: Table { name: "meta", tree: m },
                feed: Table { name: "feed", tree: fe },
                revoked_by_issuer: Table { name: "revoked_by_issuer", tree: ri },
                approvals: Table { name: "approvals", tree: ap },
                pin_escrow: Table { name: "pin_escrow", tree: pe },
                key_owner: Table { name: "key_owner", tree: ko },
            })
        })
        .map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Db(e),
        })
    }
}

pub(crate) struct Table<'a> {
    name: &'static str,
    tree: &'a TransactionalTree,
}

impl Table<'_> {
    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> TxResult<Option<T>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => match decode(self.name, key, &bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => fail(e),
            },
        }
    }

    pub fn put_json<T: Serialize>(&self, key: &[u8], value: &T) -> TxResult<()> {
        match encode(self.name, key, value) {
            Ok(bytes) => {
                self.tree.insert(key, bytes)?;
                Ok(())
            }
            Err(e) => fail(e),
        }
    }

    /// Index values are plain UTF-8 keys of another tree.
    pub fn get_str(&self, key: &[u8]) -> TxResult<Option<String>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(s) => Ok(Some(s)),
                Err(_) => fail(corrupt(self.name, key, "index value is not UTF-8")),
            },
        }
    }

    pub fn put_str(&self, key: &[u8], value: &str) -> TxResult<()> {
        self.tree.insert(key, value.as_bytes())?;
        Ok(())
    }

    pub fn put_raw(&self, key: &[u8], value: &[u8]) -> TxResult<()> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    pub fn contains(&self, key: &[u8]) -> TxResult<bool> {
        Ok(self.tree.get(key)?.is_some())
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
