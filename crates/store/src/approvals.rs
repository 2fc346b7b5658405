//! Two-person control: a change that needs a second operator is recorded as
//! an approval (AWAITING), approved by someone other than the requester
//! (APPROVED), and marked EXECUTED by whoever carries it out. Every step is
//! audited; repeating a step that already happened is a no-op.

use serde_json::json;

use crate::audit::{self, actions, Event};
use crate::error::StoreError;
use crate::records::{ApprovalRecord, ApprovalState, NewApproval};
use crate::tx::{decode, fail, Tx, TxResult};
use crate::Store;

impl Store {
    /// Records a request for approval; its id is random ("A" and 32 hex digits).
    pub fn create_approval(&self, new: &NewApproval) -> Result<ApprovalRecord, StoreError> {
        let record = self.trees.transact(|tx| {
            let approval_id = loop {
                let id = format!("A{}", hex::encode(rand::random::<[u8; 16]>()));
                if !tx.approvals.contains(id.as_bytes())? {
                    break id;
                }
            };
            let record = ApprovalRecord {
                approval_id: approval_id.clone(),
                kind: new.kind.clone(),
                subject: new.subject.clone(),
                payload_json: new.payload_json.clone(),
                requested_by: new.requested_by.clone(),
                approved_by: String::new(),
                state: ApprovalState::Awaiting,
                created_at_unix: crate::clock::now_unix(),
                approved_at_unix: 0,
                executed_at_unix: 0,
            };
            let detail = json!({ "kind": new.kind, "subject": new.subject, "payload": new.payload_json });
            save(tx, &approval_id, &record, &new.requested_by, actions::APPROVAL_CREATE, detail)?;
            Ok(record)
        })?;
        self.flush()?;
        Ok(record)
    }

    /// AWAITING -> APPROVED by `approver`, who must not be the requester
    /// (compared ignoring ASCII case). The same approver again is a no-op;
    /// another approver of an approved request is refused.
    pub fn approve(&self, approval_id: &str, approver: &str) -> Result<ApprovalRecord, StoreError> {
        self.transact_and_flush(Store::flush, |tx| {
            let mut record = require_approval(tx, approval_id)?;
            let refuse = |reason: &str| {
                fail(StoreError::Approver { approval_id: approval_id.to_owned(), reason: reason.to_owned() })
            };
            if approver.is_empty() {
                return refuse("is required");
            }
            if approver.eq_ignore_ascii_case(&record.requested_by) {
                return refuse("must differ from the requesting operator");
            }
            match record.state {
                ApprovalState::Awaiting => {}
                _ if record.approved_by == approver => return Ok((record, false)),
                state => {
                    return fail(StoreError::ApprovalState {
                        approval_id: approval_id.to_owned(),
                        state,
                        reason: format!("already approved by {}", record.approved_by),
                    })
                }
            }
            record.state = ApprovalState::Approved;
            record.approved_by = approver.to_owned();
            record.approved_at_unix = crate::clock::now_unix();
            let detail = json!({ "kind": record.kind, "subject": record.subject, "requested_by": record.requested_by });
            save(tx, approval_id, &record, approver, actions::APPROVAL_APPROVE, detail)?;
            Ok((record, true))
        })
    }

    /// APPROVED -> EXECUTED; EXECUTED again is a no-op; AWAITING is refused.
    pub fn mark_approval_executed(&self, approval_id: &str, actor: &str) -> Result<ApprovalRecord, StoreError> {
        self.transact_and_flush(Store::flush, |tx| {
            let mut record = require_approval(tx, approval_id)?;
            match record.state {
                ApprovalState::Executed => return Ok((record, false)),
                ApprovalState::Awaiting => {
                    return fail(StoreError::ApprovalState {
                        approval_id: approval_id.to_owned(),
                        state: record.state,
                        reason: "it must be approved before it is executed".into(),
                    })
                }
                ApprovalState::Approved => {}
            }
            record.state = ApprovalState::Executed;
            record.executed_at_unix = crate::clock::now_unix();
            let detail = json!({ "kind": record.kind, "subject": record.subject, "approved_by": record.approved_by });
            save(tx, approval_id, &record, actor, actions::APPROVAL_EXECUTE, detail)?;
            Ok((record, true))
        })
    }

    /// Every approval in `state` (all of them with `None`), oldest first.
    pub fn list_approvals(&self, state: Option<ApprovalState>) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.trees.approvals.iter() {
            let (k, v) = item?;
            let record: ApprovalRecord = decode("approvals", &k, &v)?;
            if state.is_none_or(|s| s == record.state) {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.created_at_unix.cmp(&b.created_at_unix).then(a.approval_id.cmp(&b.approval_id)));
        Ok(out)
    }

    pub fn get_approval(&self, approval_id: &str) -> Result<ApprovalRecord, StoreError> {
        match self.trees.approvals.get(approval_id.as_bytes())? {
            Some(bytes) => decode("approvals", approval_id.as_bytes(), &bytes),
            None => Err(StoreError::NoSuchApproval { approval_id: approval_id.to_owned() }),
        }
    }
}

/// Writes the approval as a step left it, with that step's audit entry.
fn save(
    tx: &Tx<'_>,
    approval_id: &str,
    record: &ApprovalRecord,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
) -> TxResult<()> {
    tx.approvals.put_json(approval_id.as_bytes(), record)?;
    audit::append(tx, &Event { actor, action, subject: approval_id, detail_json: detail.to_string() })?;
    Ok(())
}

fn require_approval(tx: &Tx<'_>, approval_id: &str) -> TxResult<ApprovalRecord> {
    match tx.approvals.get_json(approval_id.as_bytes())? {
        Some(r) => Ok(r),
        None => fail(StoreError::NoSuchApproval { approval_id: approval_id.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    fn request(store: &Store) -> ApprovalRecord {
        store
            .create_approval(&NewApproval {
                kind: "emergency-revocation".into(),
                subject: "C0123456789abcdef".into(),
                payload_json: r#"{"reason":"KEY_COMPROMISE"}"#.into(),
                requested_by: "op-alice".into(),
            })
            .unwrap()
    }

    #[test]
    fn an_approval_goes_from_awaiting_to_executed_with_a_second_operator() {
        let (_dir, store) = temp_store();
        let created = request(&store);
        assert_eq!(created.state, ApprovalState::Awaiting);
        assert!(created.approval_id.starts_with('A') && created.approval_id.len() == 33);
        assert_eq!(store.get_approval(&created.approval_id).unwrap(), created);

        let err = store.mark_approval_executed(&created.approval_id, "op-bob").unwrap_err();
        assert!(matches!(err, StoreError::ApprovalState { state: ApprovalState::Awaiting, .. }), "{err}");

        let approved = store.approve(&created.approval_id, "op-bob").unwrap();
        assert_eq!((approved.state, approved.approved_by.as_str()), (ApprovalState::Approved, "op-bob"));
        assert_eq!(store.approve(&created.approval_id, "op-bob").unwrap(), approved, "idempotent");
        let err = store.approve(&created.approval_id, "op-carol").unwrap_err();
        assert!(err.to_string().contains("already approved by op-bob"), "{err}");

        let executed = store.mark_approval_executed(&created.approval_id, "revocation").unwrap();
        assert_eq!(executed.state, ApprovalState::Executed);
        assert_eq!(store.mark_approval_executed(&created.approval_id, "revocation").unwrap(), executed);
        assert_eq!(store.approve(&created.approval_id, "op-bob").unwrap(), executed);

        let actions: Vec<_> = store.list_audit(0, None).unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["approval.create", "approval.approve", "approval.execute"]);
        assert_eq!(store.verify_audit_chain().unwrap(), 3);
    }

    #[test]
    fn the_requester_cannot_approve_their_own_request() {
        let (_dir, store) = temp_store();
        let created = request(&store);
        for same in ["op-alice", "OP-Alice"] {
            let err = store.approve(&created.approval_id, same).unwrap_err();
            assert!(matches!(err, StoreError::Approver { .. }), "{err}");
            assert_eq!(err.to_string(), "must differ from the requesting operator");
        }
        assert!(matches!(store.approve(&created.approval_id, ""), Err(StoreError::Approver { .. })));
        assert_eq!(store.get_approval(&created.approval_id).unwrap(), created, "unchanged");
        assert_eq!(store.list_audit(0, None).unwrap().len(), 1);
    }

    #[test]
    fn unknown_approvals_are_not_found() {
        let (_dir, store) = temp_store();
        assert!(matches!(store.get_approval("Anope"), Err(StoreError::NoSuchApproval { .. })));
        assert!(matches!(store.approve("Anope", "op-bob"), Err(StoreError::NoSuchApproval { .. })));
        assert!(matches!(store.mark_approval_executed("Anope", "x"), Err(StoreError::NoSuchApproval { .. })));
    }
}
