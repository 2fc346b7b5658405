//! End to end: cards issued over gRPC fill the audit log; `hpki-ca audit
//! checkpoint` anchors its head with the HSM key, `audit verify` and `audit
//! export` read it through the registry. Then one entry is edited in the sled
//! database itself (and, separately, one line of an export), and verification
//! must fail at exactly that entry.

mod common;

use common::application;

use std::collections::BTreeSet;
use std::path::Path;

use common::Ca;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn issue(ca: &Ca, rt: &tokio::runtime::Runtime, addr: &str, id: &str, licence: &str, dir: &Path) -> String {
    rt.block_on(async { ca.issuance(addr).await.submit_application(application(id, licence, dir)).await })
        .expect("issue card")
        .into_inner()
        .card_id
}

/// Runs the CLI, shows what it printed, returns (success, stdout).
fn audit(ca: &Ca, args: &[&str]) -> (bool, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let out = ca.cli(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("$ hpki-ca {}\n{stdout}{stderr}[exit {}]", all.join(" "), out.status.code().unwrap_or(-1));
    (out.status.success(), stdout)
}

/// N from "audit chain OK: N entries, head ...".
fn entries_ok(stdout: &str) -> u64 {
    let rest = stdout.split("audit chain OK: ").nth(1).unwrap_or_else(|| panic!("no OK line: {stdout}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The record an export line stands for (as the store hashes it).
fn record(line: &Value) -> store::AuditRecord {
    let hash = |name: &str| <[u8; 32]>::try_from(hex_decode(line[name].as_str().unwrap()).as_slice()).unwrap();
    let at = OffsetDateTime::parse(line["at"].as_str().unwrap(), &Rfc3339).unwrap();
    store::AuditRecord {
        sequence: line["sequence"].as_u64().unwrap(),
        at_unix_micros: i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap(),
        actor: line["actor"].as_str().unwrap().into(),
        action: line["action"].as_str().unwrap().into(),
        subject: line["subject"].as_str().unwrap().into(),
        detail_json: line["detail_json"].as_str().unwrap().into(),
        prev_hash: hash("prev_hash"),
        hash: hash("hash"),
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn audit_chain_verifies_with_a_checkpoint_and_an_edited_entry_fails_at_exactly_that_entry() {
    let mut ca = Ca::new("");
    let pub_key =
        std::fs::read_to_string(ca.cert_path("audit-checkpoint.pub.pem")).expect("ceremony writes the checkpoint key");
    assert!(pub_key.contains("BEGIN PUBLIC KEY"), "{pub_key}");

    let addrs = ca.spawn(&["run"], &["registry", "issuance"]);
    let registry = ca.url(&addrs[0]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    issue(&ca, &rt, &addrs[1], "audit-1", "333333", &dir);
    issue(&ca, &rt, &addrs[1], "audit-2", "444444", &dir);

    // Anchor the head, then verify: every entry and the one checkpoint.
    let (ok, out) = audit(&ca, &["checkpoint", "--url", &registry, "--operator", "op-audit"]);
    assert!(ok, "checkpoint: {out}");
    assert!(out.contains("audit checkpoint at sequence"), "{out}");
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(ok, "verify: {out}");
    let n = entries_ok(&out);
    assert!(out.contains("checkpoints: 1 verified"), "{out}");
    assert!(out.contains(&format!("at sequence {n}, signs entry {}", n - 1)), "{out}");

    // Export: N lines, sequences 1..=N, every issuance step logged, the checkpoint last.
    let export = dir.join("audit.jsonl");
    let (ok, out) = audit(&ca, &["export", "--url", &registry, "--out", export.to_str().unwrap()]);
    assert!(ok, "export: {out}");
    let lines = read_lines(&export);
    assert_eq!(lines.len() as u64, n);
    let sequences: Vec<u64> = lines.iter().map(|l| l["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, (1..=n).collect::<Vec<_>>());
    let actions: BTreeSet<&str> = lines.iter().map(|l| l["action"].as_str().unwrap()).collect();
    for want in ["application.begin", "serial.reserve", "tbs.record", "certificate.store", "application.complete"] {
        assert!(actions.contains(want), "no {want} in {actions:?}");
    }
    eprintln!("first line: {}\nlast line:  {}", lines[0], lines[lines.len() - 1]);
    let last = &lines[lines.len() - 1];
    assert_eq!(last["action"], "audit.checkpoint");
    assert_eq!(last["actor"], "op-audit");
    assert_eq!(last["detail"]["sequence"], n - 1);
    assert_eq!(last["detail"]["head_hash"], lines[lines.len() - 2]["hash"]);
    assert!(
        lines[0]["at"].as_str().unwrap().ends_with('Z') && lines[0]["at"].as_str().unwrap().len() == 27,
        "{}",
        lines[0]
    );
    for l in &lines {
        assert_eq!(
            store::audit_hash(&record(l)),
            <[u8; 32]>::try_from(hex_decode(l["hash"].as_str().unwrap()).as_slice()).unwrap()
        );
    }
    let (ok, out) = audit(&ca, &["verify", "--file", export.to_str().unwrap()]);
    assert!(ok && entries_ok(&out) == n && out.contains("checkpoints: 1 verified"), "verify --file: {out}");

    // The entry to tamper with: the first certificate stored.
    let target = lines.iter().find(|l| l["action"] == "certificate.store").unwrap()["sequence"].as_u64().unwrap();
    assert!(target > 1 && target < n - 1);
    let target_index = target as usize - 1;

    // One line of the export edited: broken at that line's sequence.
    let mut edited = lines.clone();
    edited[target_index]["actor"] = "mallory".into();
    let edited_path = dir.join("audit-edited.jsonl");
    write_lines(&edited_path, &edited);
    let (ok, out) = audit(&ca, &["verify", "--file", edited_path.to_str().unwrap()]);
    assert!(!ok, "an edited export must not verify: {out}");
    assert!(out.contains(&format!("audit chain BROKEN at sequence {target}: hash does not match the entry")), "{out}");

    // The same edit with every later hash recomputed passes the chain but not the checkpoint.
    let mut rewritten = edited;
    for i in target_index..rewritten.len() {
        if i > target_index {
            let prev = rewritten[i - 1]["hash"].clone();
            rewritten[i]["prev_hash"] = prev;
        }
        let hash = store::audit_hash(&record(&rewritten[i]));
        rewritten[i]["hash"] = hex_encode(&hash).into();
    }
    write_lines(&edited_path, &rewritten);
    let (ok, out) = audit(&ca, &["verify", "--file", edited_path.to_str().unwrap()]);
    assert!(!ok, "a rewritten chain must not pass its checkpoint: {out}");
    assert!(out.contains(&format!("audit chain BROKEN at sequence {n}: checkpoint head does not match")), "{out}");

    // Now the database itself: stop everything and edit one entry's bytes in the audit tree.
    ca.take_children();
    let db_path = ca.state().join("registry.sled");
    {
        let db = sled::open(&db_path).unwrap();
        let tree = db.open_tree("audit").unwrap();
        let key = target.to_be_bytes();
        let bytes = tree.get(key).unwrap().expect("the entry is in the audit tree");
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let actor = format!("\"actor\":{}", lines[target_index]["actor"]);
        assert!(text.contains(&actor), "{actor} not in {text}");
        tree.insert(key, text.replacen(&actor, "\"actor\":\"mallory\"", 1).as_bytes()).unwrap();
        db.flush().unwrap();
    }
    // The store's own walk agrees on where the chain breaks.
    match store::Store::open(&db_path).unwrap().verify_audit_chain() {
        Err(store::StoreError::AuditChainBroken { sequence, .. }) => assert_eq!(sequence, target),
        other => panic!("the store should find the edit at {target}: {other:?}"),
    }

    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(!ok, "verify must fail on the edited store: {out}");
    assert!(out.contains(&format!("audit chain BROKEN at sequence {target}: hash does not match the entry")), "{out}");
    assert!(!out.contains("audit chain OK"), "{out}");

    // A broken chain is not signed, and an export of it fails at the same entry.
    let (ok, out) = audit(&ca, &["checkpoint", "--url", &registry]);
    assert!(!ok && out.contains(&format!("BROKEN at sequence {target}:")), "checkpoint of a broken chain: {out}");
    let export2 = dir.join("audit-after.jsonl");
    let (ok, _) = audit(&ca, &["export", "--url", &registry, "--out", export2.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(read_lines(&export2)[target_index]["actor"], "mallory");
    let (ok, out) = audit(&ca, &["verify", "--file", export2.to_str().unwrap()]);
    assert!(!ok && out.contains(&format!("audit chain BROKEN at sequence {target}:")), "{out}");
    ca.take_children();
}
