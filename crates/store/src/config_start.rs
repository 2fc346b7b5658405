//! The "config.start" entry the registry writes once per start: which config
//! file, its SHA-256, the effective settings, and whether the digest differs
//! from the previous start's. The previous start is found through a small
//! index in `meta` written in the same transaction as the entry, so a start
//! costs no scan of the log, and the entry names the sequence it compares with
//! so an auditor can check that against the log itself.

use serde::{Deserialize, Serialize};

use crate::audit::{self, actions, Event};
use crate::records::AuditRecord;
use crate::tx::{Tx, TxResult};

const LAST_KEY: &[u8] = b"config_start_last";

/// The start a new one is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousConfigStart {
    /// Sequence of its "config.start" entry.
    pub sequence: u64,
    /// Its config digest (SHA-256 hex).
    pub config_sha256: String,
}

/// What the registry knows about the configuration it starts with.
#[derive(Debug, Clone)]
pub struct ConfigStart {
    pub actor: String,
    /// The config file; `None` when the built-in defaults are used.
    pub config_path: Option<String>,
    /// SHA-256 (hex) of the config file's bytes (of no bytes for the defaults:
    /// an empty file means the same).
    pub config_sha256: String,
    /// The effective non-secret settings, as the registry summarises them.
    pub settings: serde_json::Value,
}

/// The entry written, and how it compares with the previous start.
#[derive(Debug, Clone)]
pub struct ConfigStartOutcome {
    pub record: AuditRecord,
    pub changed: bool,
    pub previous: Option<PreviousConfigStart>,
}

/// True when there is no previous start on record, or its digest differs.
pub fn config_changed(previous: Option<&PreviousConfigStart>, config_sha256: &str) -> bool {
    previous.is_none_or(|p| p.config_sha256 != config_sha256)
}

/// The entry's detail JSON.
pub(crate) fn detail(start: &ConfigStart, previous: Option<&PreviousConfigStart>) -> String {
    serde_json::json!({
        "config_path": start.config_path,
        "config_sha256": start.config_sha256,
        "changed": config_changed(previous, &start.config_sha256),
        "previous": previous,
        "settings": start.settings,
    })
    .to_string()
}

/// Appends the entry and moves the index on, in the caller's transaction.
pub(crate) fn record(tx: &Tx<'_>, start: &ConfigStart) -> TxResult<ConfigStartOutcome> {
    let previous = tx.meta.get_json::<PreviousConfigStart>(LAST_KEY)?;
    let subject = start.config_path.as_deref().unwrap_or("(built-in defaults)");
    let event = Event {
        actor: &start.actor,
        action: actions::CONFIG_START,
        subject,
        detail_json: detail(start, previous.as_ref()),
    };
    let record = audit::append(tx, &event)?;
    let last = PreviousConfigStart { sequence: record.sequence, config_sha256: start.config_sha256.clone() };
    tx.meta.put_json(LAST_KEY, &last)?;
    let changed = config_changed(previous.as_ref(), &start.config_sha256);
    Ok(ConfigStartOutcome { record, changed, previous })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store;

    fn start(sha: &str) -> ConfigStart {
        ConfigStart {
            actor: "registry".into(),
            config_path: Some("/etc/hpki/ca.toml".into()),
            config_sha256: sha.into(),
            settings: serde_json::json!({"registry": {"listen": "127.0.0.1:50051"}}),
        }
    }

    #[test]
    fn changed_means_no_previous_start_or_another_digest() {
        let prev = PreviousConfigStart { sequence: 4, config_sha256: "aa".into() };
        assert!(config_changed(None, "aa"));
        assert!(!config_changed(Some(&prev), "aa"));
        assert!(config_changed(Some(&prev), "ab"));
    }

    #[test]
    fn each_start_names_the_previous_one_and_whether_the_digest_changed() {
        let (_dir, store) = temp_store();
        let first = store.record_config_start(&start("aa")).unwrap();
        assert_eq!((first.changed, first.previous.clone()), (true, None));
        assert_eq!(first.record.action, "config.start");
        assert_eq!(first.record.subject, "/etc/hpki/ca.toml");
        let d: serde_json::Value = serde_json::from_str(&first.record.detail_json).unwrap();
        assert_eq!(d["config_sha256"], "aa");
        assert_eq!(d["previous"], serde_json::Value::Null);
        assert_eq!(d["settings"]["registry"]["listen"], "127.0.0.1:50051");

        store.append_audit("op", "ra.note", "", "{}").unwrap();
        let same = store.record_config_start(&start("aa")).unwrap();
        assert!(!same.changed);
        assert_eq!(same.previous, Some(PreviousConfigStart { sequence: 1, config_sha256: "aa".into() }));

        let edited = store.record_config_start(&start("bb")).unwrap();
        assert!(edited.changed);
        let d: serde_json::Value = serde_json::from_str(&edited.record.detail_json).unwrap();
        assert_eq!(d["changed"], true);
        assert_eq!(d["previous"]["sequence"], same.record.sequence);
        assert_eq!(d["previous"]["config_sha256"], "aa");
        assert_eq!(store.verify_audit_chain().unwrap(), 4);
    }

    #[test]
    fn a_client_cannot_append_a_config_start() {
        let (_dir, store) = temp_store();
        assert!(store.append_audit("op", actions::CONFIG_START, "x", "{}").is_err());
        assert!(store.list_audit(0, None).unwrap().is_empty());
    }
}
