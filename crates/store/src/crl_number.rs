//! CRL numbers: one strictly increasing counter per scope (e.g. "sign",
//! "auth", "arl"), shared by the full and delta CRLs of that scope
//! (RFC 5280 5.2.3 and 5.2.4 want one sequence for both).

use serde_json::json;

use crate::audit::{self, actions, Event};
use crate::error::StoreError;
use crate::feed;
use crate::records::CrlNumber;
use crate::Store;

pub const MAX_SCOPE_LEN: usize = 64;

impl Store {
    /// Takes the scope's next CRL number (1, 2, ...) and the feed position in
    /// the same transaction, audited as "crl.number", and flushes before
    /// returning, so a number once returned is never handed out again, even
    /// after a crash. Every feed change up to `feed_sequence` is durable.
    /// The scope must be 1 to 64 characters of `a-z`, `0-9` and `-`.
    pub fn next_crl_number(&self, scope: &str, actor: &str) -> Result<CrlNumber, StoreError> {
        check_scope(scope)?;
        let key = format!("crl_number/{scope}");
        let number = self.trees.transact(|tx| {
            let crl_number = tx.meta.get_json::<u64>(key.as_bytes())?.unwrap_or(0) + 1;
            tx.meta.put_json(key.as_bytes(), &crl_number)?;
            let feed_sequence = feed::last_in_tx(tx)?;
            let detail = json!({ "crl_number": crl_number, "feed_sequence": feed_sequence });
            audit::append(
                tx,
                &Event { actor, action: actions::CRL_NUMBER, subject: scope, detail_json: detail.to_string() },
            )?;
            Ok(CrlNumber { crl_number, feed_sequence })
        })?;
        // The flush covers every change committed before ours, so the feed
        // position read inside the transaction is durable once it returns.
        feed::flush_and_raise(self, Some(number.feed_sequence))?;
        Ok(number)
    }
}

fn check_scope(scope: &str) -> Result<(), StoreError> {
    let bad = |reason| Err(StoreError::CrlScope { scope: scope.to_owned(), reason });
    if scope.is_empty() {
        return bad("is empty");
    }
    if scope.len() > MAX_SCOPE_LEN {
        return bad("is longer than 64 characters");
    }
    if !scope.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return bad("may only contain a-z, 0-9 and -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    #[test]
    fn numbers_increase_per_scope_and_carry_the_feed_position() {
        let (_dir, store) = temp_store();
        let a1 = store.next_crl_number("sign", "crl").unwrap();
        let a2 = store.next_crl_number("sign", "crl").unwrap();
        let b1 = store.next_crl_number("auth", "crl").unwrap();
        assert_eq!((a1.crl_number, a2.crl_number, b1.crl_number), (1, 2, 1));
        assert_eq!(a1.feed_sequence, 0);
        let log = store.list_audit(0, None).unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(log[2].action, "crl.number");
        assert_eq!(log[2].subject, "auth");
    }

    #[test]
    fn numbers_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::test_support::location(&dir);
        let mut last = 0;
        for _ in 0..3 {
            let store = Store::open_at(&path).unwrap();
            for _ in 0..2 {
                let n = store.next_crl_number("sign", "crl").unwrap().crl_number;
                assert!(n > last, "{n} after {last}");
                last = n;
            }
        }
        assert_eq!(last, 6);
        assert_eq!(Store::open_at(&path).unwrap().verify_audit_chain().unwrap(), 6);
    }

    #[test]
    fn scopes_are_checked() {
        let (_dir, store) = temp_store();
        for bad in ["", "Sign", "sign ca", "sign/ca", "s\0", &"a".repeat(65)] {
            let err = store.next_crl_number(bad, "crl").unwrap_err();
            assert!(matches!(err, StoreError::CrlScope { .. }), "{bad:?}: {err}");
        }
        assert!(store.next_crl_number("sign-ca-2", "crl").is_ok());
        assert!(store.next_crl_number(&"a".repeat(64), "crl").is_ok());
        assert_eq!(store.list_audit(0, None).unwrap().len(), 2);
    }
}
