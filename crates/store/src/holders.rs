//! Holders: contact changes and a holder's card history.

use serde_json::json;

use crate::application::{load_view, require_holder};
use crate::audit::{self, actions, Event};
use crate::error::StoreError;
use crate::records::{ContactAddress, ContactUpdate, HolderCards, HolderRecord};
use crate::tx::{fail, Tx, TxResult};
use crate::Store;

impl Store {
    /// Replaces the holder's contact details, audited ("holder.contact") with
    /// the old and new values and the resident record's date of issue, which
    /// is only recorded here (the issuance service decides when one is
    /// needed). Equal details write nothing and answer `changed = false`.
    pub fn update_contact(
        &self,
        holder_id: &str,
        contact: &ContactAddress,
        resident_record_issued_on: &str,
        actor: &str,
    ) -> Result<ContactUpdate, StoreError> {
        let update = self.trees.transact(|tx| {
            let mut holder = find_holder(tx, holder_id)?;
            let previous = holder.details.contact.clone();
            if previous == *contact {
                return Ok(ContactUpdate { holder, previous, changed: false });
            }
            holder.details.contact = contact.clone();
            tx.holders.put_json(holder_id.as_bytes(), &holder)?;
            let detail = json!({
                "old": previous,
                "new": contact,
                "resident_record_issued_on": resident_record_issued_on,
            });
            audit::append(
                tx,
                &Event { actor, action: actions::HOLDER_CONTACT, subject: holder_id, detail_json: detail.to_string() },
            )?;
            Ok(ContactUpdate { holder, previous, changed: true })
        })?;
        if update.changed {
            self.flush()?;
        }
        Ok(update)
    }

    /// The holder and every card of theirs with its certificates, oldest first.
    pub fn list_holder_cards(&self, holder_id: &str) -> Result<HolderCards, StoreError> {
        self.trees.transact(|tx| holder_cards(tx, find_holder(tx, holder_id)?))
    }

    /// As `list_holder_cards`, for the holder with this licence number.
    pub fn list_holder_cards_by_licence(&self, licence_number: &str) -> Result<HolderCards, StoreError> {
        self.trees.transact(|tx| {
            let Some(holder_id) = tx.holder_by_licence.get_str(licence_number.as_bytes())? else {
                return fail(StoreError::NoSuchLicence { licence_number: licence_number.to_owned() });
            };
            holder_cards(tx, require_holder(tx, &holder_id, "holder_by_licence", licence_number)?)
        })
    }
    /// The operator console's search: the holders (with their cards) that
    /// `query` names, at most `limit`. A card id, holder id or licence number
    /// matches exactly; otherwise the query, spaces ignored and hiragana read
    /// as katakana, is looked for in the family+given name in kanji and in kana.
    pub fn find_holders(&self, query: &str, limit: usize) -> Result<Vec<HolderCards>, StoreError> {
        let query = query.trim();
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let key = query.as_bytes();
        let exact = self.trees.transact(|tx| {
            if let Some(card) = tx.cards.get_json::<crate::records::CardRecord>(key)? {
                return Ok(Some(card.holder_id));
            }
            if tx.holders.get_json::<HolderRecord>(key)?.is_some() {
                return Ok(Some(query.to_owned()));
            }
            tx.holder_by_licence.get_str(key)
        })?;
        let ids: Vec<String> = match exact {
            Some(id) => vec![id],
            None => {
                let wanted = name_key(query);
                let mut ids = Vec::new();
                for item in self.trees.holders.iter() {
                    let (k, v) = item?;
                    let holder: HolderRecord = crate::tx::decode("holders", &k, &v)?;
                    let d = &holder.details;
                    let kanji = name_key(&format!("{}{}", d.family_name_kanji, d.given_name_kanji));
                    let kana = name_key(&format!("{}{}", d.family_name_kana, d.given_name_kana));
                    if kanji.contains(&wanted) || kana.contains(&wanted) {
                        ids.push(holder.holder_id);
                        if ids.len() >= limit {
                            break;
                        }
                    }
                }
                ids
            }
        };
        ids.iter().map(|id| self.list_holder_cards(id)).collect()
    }
}

/// A name as the search compares it: no spaces (ASCII or ideographic),
/// hiragana as katakana.
fn name_key(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            c => c,
        })
        .collect()
}

fn find_holder(tx: &Tx<'_>, holder_id: &str) -> TxResult<HolderRecord> {
    match tx.holders.get_json(holder_id.as_bytes())? {
        Some(holder) => Ok(holder),
        None => fail(StoreError::NoSuchHolder { holder_id: holder_id.to_owned() }),
    }
}

fn holder_cards(tx: &Tx<'_>, holder: HolderRecord) -> TxResult<HolderCards> {
    let mut cards = Vec::with_capacity(holder.card_ids.len());
    for card_id in &holder.card_ids {
        cards.push(load_view(tx, card_id)?);
    }
    Ok(HolderCards { holder, cards })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::test_support::{application, revocation, temp_store};
    use crate::{ApplicationProcedure, RevocationReason};

    fn new_contact() -> ContactAddress {
        ContactAddress {
            postal_code: "530-0001".into(),
            address: "大阪府大阪市北区梅田1-1".into(),
            phone: "06-1234-5678".into(),
            email: "taro@example.jp".into(),
        }
    }

    #[test]
    fn a_contact_change_is_stored_and_audited_with_old_and_new_values() {
        let (_dir, store) = temp_store();
        let view = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view;
        let holder_id = view.holder.holder_id.clone();
        let old = view.holder.details.contact.clone();

        let update = store.update_contact(&holder_id, &new_contact(), "2026-01-05", "ra-1").unwrap();
        assert!(update.changed);
        assert_eq!(update.previous, old);
        assert_eq!(update.holder.details.contact, new_contact());
        assert_eq!(store.get_card(&view.card.card_id).unwrap().holder.details.contact, new_contact());

        let entry = store.list_audit(0, None).unwrap().pop().unwrap();
        assert_eq!(
            (entry.action.as_str(), entry.subject.as_str(), entry.actor.as_str()),
            ("holder.contact", holder_id.as_str(), "ra-1")
        );
        let detail: Value = serde_json::from_str(&entry.detail_json).unwrap();
        assert_eq!(detail["old"]["address"], old.address.as_str());
        assert_eq!(detail["new"]["address"], "大阪府大阪市北区梅田1-1");
        assert_eq!(detail["new"]["postal_code"], "530-0001");
        assert_eq!(detail["resident_record_issued_on"], "2026-01-05");
        assert_eq!(store.verify_audit_chain().unwrap(), 2);
    }

    #[test]
    fn an_unchanged_contact_writes_nothing() {
        let (_dir, store) = temp_store();
        let view = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view;
        let same = view.holder.details.contact.clone();
        let update = store.update_contact(&view.holder.holder_id, &same, "2026-01-05", "ra-1").unwrap();
        assert!(!update.changed);
        assert_eq!(update.previous, same);
        assert_eq!(update.holder, view.holder);
        assert_eq!(store.list_audit(0, None).unwrap().len(), 1);
    }

    #[test]
    fn unknown_holders_are_not_found() {
        let (_dir, store) = temp_store();
        let err = store.update_contact("JMA0000000001", &new_contact(), "", "ra-1").unwrap_err();
        assert!(matches!(err, StoreError::NoSuchHolder { ref holder_id } if holder_id == "JMA0000000001"));
        assert!(matches!(store.list_holder_cards("JMA0000000001"), Err(StoreError::NoSuchHolder { .. })));
        assert!(matches!(store.list_holder_cards_by_licence("L1"), Err(StoreError::NoSuchLicence { .. })));
        assert_eq!(store.list_audit(0, None).unwrap().len(), 0);
    }

    #[test]
    fn a_holders_cards_are_listed_oldest_first() {
        let (_dir, store) = temp_store();
        let first = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view;
        store.begin_application(&application("app-x", "L2"), "JMA").unwrap();
        store.revoke_card(&first.card.card_id, &revocation(RevocationReason::KeyCompromise), "").unwrap();
        let reissue = ApplicationProcedure::Reissue { replaces_card_id: first.card.card_id.clone() };
        let second = store.begin_procedure(&application("app-2", "L1"), &reissue, "JMA").unwrap().view;

        let listed = store.list_holder_cards(&first.holder.holder_id).unwrap();
        assert_eq!(listed.holder.holder_id, first.holder.holder_id);
        let ids: Vec<_> = listed.cards.iter().map(|v| v.card.card_id.as_str()).collect();
        assert_eq!(ids, [first.card.card_id.as_str(), second.card.card_id.as_str()]);
        assert_eq!(listed.cards[0].card.state, crate::CardState::Revoked);
        assert_eq!(listed.cards[0].card.superseded_by.as_deref(), Some(second.card.card_id.as_str()));
        assert_eq!(store.list_holder_cards_by_licence("L1").unwrap(), listed);
    }

    #[test]
    fn the_console_search_finds_by_id_licence_and_name() {
        let (_dir, store) = temp_store();
        let view = store.begin_application(&application("app-1", "L1"), "JMA").unwrap().view;
        let (card_id, holder_id) = (view.card.card_id.clone(), view.holder.holder_id.clone());
        let found = |q: &str| -> Vec<String> {
            store.find_holders(q, 10).unwrap().into_iter().map(|h| h.holder.holder_id).collect()
        };
        for q in [card_id.as_str(), holder_id.as_str(), "L1", "医師 太郎", "イシタロウ", "いし", " タロウ "]
        {
            assert_eq!(found(q), vec![holder_id.clone()], "{q:?}");
        }
        for q in ["", "山田", "L2", "イシジロウ"] {
            assert!(found(q).is_empty(), "{q:?}");
        }
        let listed = store.find_holders("L1", 10).unwrap();
        assert_eq!(listed[0].cards[0].card.card_id, card_id);
        assert!(store.find_holders("イシ", 0).unwrap().is_empty());
    }

    #[test]
    fn approvals_are_listed_by_state() {
        use crate::records::{ApprovalState, NewApproval};
        let (_dir, store) = temp_store();
        let new = |subject: &str| NewApproval {
            kind: "emergency-revocation".into(),
            subject: subject.into(),
            payload_json: "{}".into(),
            requested_by: "op-sato".into(),
        };
        let a = store.create_approval(&new("C1")).unwrap();
        let b = store.create_approval(&new("C2")).unwrap();
        store.approve(&b.approval_id, "op-ito").unwrap();
        let ids = |state| -> Vec<String> {
            store.list_approvals(state).unwrap().into_iter().map(|r| r.approval_id).collect()
        };
        assert_eq!(ids(Some(ApprovalState::Awaiting)), vec![a.approval_id.clone()]);
        assert_eq!(ids(Some(ApprovalState::Approved)), vec![b.approval_id.clone()]);
        assert_eq!(ids(None).len(), 2);
        assert!(ids(Some(ApprovalState::Executed)).is_empty());
    }
}
