//! End to end: cards issued over gRPC fill the audit log; `hpki-ca audit
//! checkpoint` anchors its head with the HSM key, `audit verify` and `audit
//! export` read it through the registry. Then one entry is edited in the sled
//! database itself (and, separately, one line of an export), and verification
//! must fail at exactly that entry.
//!
//! Also: the ceremony's entries (keys, certificates, who ran it), the
//! registry's "config.start" on every start (digest, changed since the last
//! start), and the checkpoints `hpki-ca run` signs by itself.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Ca;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn issue(ca: &Ca, rt: &tokio::runtime::Runtime, addr: &str, id: &str, licence: &str, dir: &Path) -> String {
    common::submit(ca, rt, addr, id, licence, dir).expect("issue card").card_id
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
    number_after(stdout, "audit chain OK: ")
}

/// The number that follows the first `marker` in the CLI's `out`.
fn number_after(out: &str, marker: &str) -> u64 {
    out.split(marker)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?}: {out}"))
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
    // Automatic checkpoints off: the only checkpoint is the one this test asks for.
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
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
    assert!(!lines.iter().any(|l| l["actor"] == "audit-checkpointer"), "interval 0 turns the checkpointer off");
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
        // The record that holds the entry: its own, or its transaction's group (an array).
        let (key, bytes) =
            tree.range(..=target.to_be_bytes()).next_back().unwrap().expect("the entry is in the audit tree");
        let mut entries: Vec<Value> = match bytes.first() {
            Some(b'[') => serde_json::from_slice(&bytes).unwrap(),
            _ => vec![serde_json::from_slice(&bytes).unwrap()],
        };
        let entry = entries.iter_mut().find(|e| e["sequence"] == target).expect("the entry is in its record");
        assert_eq!(entry["actor"], lines[target_index]["actor"]);
        entry["actor"] = "mallory".into();
        let edited = match entries.len() {
            1 => serde_json::to_vec(&entries[0]).unwrap(),
            _ => serde_json::to_vec(&entries).unwrap(),
        };
        tree.insert(key, edited).unwrap();
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

/// The live log, exported through the CLI (quietly: callers poll it).
fn export(ca: &Ca, registry: &str, name: &str) -> Vec<Value> {
    let path = ca.dir.path().join(name);
    let out = ca.cli(&["audit", "export", "--url", registry, "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    read_lines(&path)
}

fn with_action<'a>(lines: &'a [Value], action: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["action"] == action).collect()
}

/// SHA-256 of a file, hex, as openssl computes it.
fn sha256_file(path: &Path) -> String {
    let (ok, out) = common::openssl(&["dgst", "-sha256", "-r", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    out.split_whitespace().next().unwrap().to_owned()
}

/// (serial, SHA-256 fingerprint) of a PEM certificate, lower-case hex, as openssl reads it.
fn openssl_serial_and_fingerprint(path: &Path) -> (String, String) {
    let (ok, out) =
        common::openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-serial", "-fingerprint", "-sha256"]);
    assert!(ok, "{out}");
    let value = |prefix: &str| {
        let line = out.lines().find(|l| l.to_lowercase().starts_with(prefix)).unwrap_or_else(|| panic!("{out}"));
        line.split_once('=').unwrap().1.replace(':', "").to_lowercase()
    };
    (value("serial="), value("sha256 fingerprint="))
}

#[test]
fn the_ceremony_and_every_start_are_audited_and_a_changed_config_is_flagged() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    // A second ceremony, by a named operator: every key found, every certificate kept.
    let out = ca.cli(&["ceremony", "--operator", "op-ito"]);
    assert!(out.status.success(), "second ceremony: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("audit log") && stdout.contains("(operator op-ito)"), "{stdout}");
    let config_path = std::fs::canonicalize(&ca.config).unwrap();
    let first_digest = sha256_file(&ca.config);

    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    // `run` announces its listeners before the registry opens the database:
    // once the registry answers, it holds it.
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok, "verify: {out}");
    // While the registry holds the database, the ceremony refuses before touching the HSM.
    let out = ca.cli(&["ceremony", "--operator", "op-while-running"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a ceremony while the registry runs must fail");
    assert!(stderr.contains("is in use") && stderr.contains("registry.sled"), "{stderr}");

    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok, "verify: {out}");
    let lines = export(&ca, &registry, "start-1.jsonl");
    assert!(!lines.iter().any(|l| l["actor"] == "op-while-running"), "the refused ceremony wrote nothing");

    // Two ceremonies: start, keys, certificates, (the first one's ARL), end.
    let starts = with_action(&lines, "ceremony.start");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(lines[0]["action"], "ceremony.start", "the ceremony's entries come first");
    assert_eq!(starts[1]["actor"], "op-ito");
    assert_eq!(starts[1]["detail"]["operator"], "op-ito");
    assert_eq!(starts[1]["detail"]["config_sha256"], first_digest.as_str());
    assert_eq!(starts[1]["detail"]["config_path"], config_path.to_str().unwrap());
    // The responder keys are not the ceremony's: the ocsp process makes them in its own token.
    let labels = ["root-ca", "sign-ca", "auth-ca", "pin-escrow", "audit-checkpoint"];
    let keys = with_action(&lines, "ceremony.key");
    for (run, outcome) in [(0, "generated"), (1, "found")] {
        let seq = |i: usize| starts[i]["sequence"].as_u64().unwrap();
        let in_run = |l: &Value| {
            let s = l["sequence"].as_u64().unwrap();
            s > seq(run) && (run == 1 || s < seq(1))
        };
        let mut named: Vec<&str> =
            keys.iter().copied().filter(|l| in_run(l)).map(|k| k["subject"].as_str().unwrap()).collect();
        named.sort_unstable();
        let mut want = labels.to_vec();
        want.sort_unstable();
        assert_eq!(named, want, "keys of ceremony {run}");
        for k in keys.iter().copied().filter(|l| in_run(l)) {
            assert_eq!(k["detail"]["outcome"], outcome, "{k}");
            assert_eq!(k["detail"]["label"], k["subject"], "{k}");
            let alg = k["detail"]["algorithm"].as_str().unwrap();
            let want_alg = if k["subject"] == "pin-escrow" { "aes-256" } else { "rsa-2048" };
            assert_eq!(alg, want_alg, "{k}");
        }
    }
    let certificates = with_action(&lines, "ceremony.certificate");
    assert_eq!(certificates.len(), 6, "three CA certificates, written then kept: {certificates:?}");
    for file in ["root-ca.pem", "sign-ca.pem", "auth-ca.pem"] {
        let (serial, fingerprint) = openssl_serial_and_fingerprint(&ca.cert_path(file));
        let of_file: Vec<&&Value> =
            certificates.iter().filter(|c| c["detail"]["file"].as_str().unwrap().ends_with(file)).collect();
        let outcomes: Vec<&str> = of_file.iter().map(|c| c["detail"]["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["written", "kept"], "{file}");
        for c in of_file {
            assert_eq!(c["subject"].as_str().unwrap().trim_start_matches('0'), serial.trim_start_matches('0'), "{c}");
            assert_eq!(c["detail"]["sha256"], fingerprint.as_str(), "{c}");
        }
    }
    assert_eq!(with_action(&lines, "ceremony.arl").len(), 1, "the root's first ARL comes with the first ceremony");
    let ends = with_action(&lines, "ceremony.end");
    assert_eq!(ends.len(), 2);
    assert_eq!(
        (ends[0]["detail"]["outcome"].as_str(), ends[0]["detail"]["keys_generated"].as_u64()),
        (Some("ok"), Some(5))
    );
    assert_eq!(ends[0]["detail"]["certificates_written"], 3);
    assert_eq!(
        (ends[1]["detail"]["keys_found"].as_u64(), ends[1]["detail"]["certificates_kept"].as_u64()),
        (Some(5), Some(3))
    );

    // The registry's start.
    let first = with_action(&lines, "config.start");
    assert_eq!(first.len(), 1);
    let first = first[0].clone();
    eprintln!("config.start: {first}");
    assert_eq!(first["actor"], "registry");
    assert_eq!(first["subject"], config_path.to_str().unwrap());
    assert_eq!(first["detail"]["config_sha256"], first_digest.as_str());
    assert_eq!((first["detail"]["changed"].as_bool(), first["detail"]["previous"].is_null()), (Some(true), true));
    let settings = &first["detail"]["settings"];
    assert_eq!(settings["listen"]["registry"], "127.0.0.1:0");
    assert_eq!(settings["tls"]["enabled"], true);
    assert_eq!(settings["limits"]["request_timeout_seconds"], 60);
    assert_eq!(settings["audit"]["checkpoint_interval_seconds"], 0);
    assert!(settings["crl"]["interval_minutes"].is_u64() && settings["ocsp"]["next_update_hours"].is_u64());
    let text = first["detail_json"].as_str().unwrap();
    assert!(!text.contains(".pin") && !text.to_lowercase().contains("pin_file"), "no PIN file in {text}");

    // Start again with the same file: not changed, and the previous start named.
    ca.take_children();
    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    let lines = export(&ca, &registry, "start-2.jsonl");
    let second = with_action(&lines, "config.start")[1].clone();
    assert_eq!(second["detail"]["changed"], false, "{second}");
    assert_eq!(second["detail"]["previous"]["sequence"], first["sequence"]);
    assert_eq!(second["detail"]["previous"]["config_sha256"], first_digest.as_str());

    // An edited config: changed, with the previous digest.
    ca.take_children();
    let mut text = std::fs::read_to_string(&ca.config).unwrap();
    text.push_str("\n[limits]\nrequest_timeout_seconds = 30\n");
    std::fs::write(&ca.config, text).unwrap();
    let edited_digest = sha256_file(&ca.config);
    assert_ne!(edited_digest, first_digest);
    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    let lines = export(&ca, &registry, "start-3.jsonl");
    let third = with_action(&lines, "config.start")[2].clone();
    eprintln!("config.start after the edit: {third}");
    assert_eq!(third["detail"]["changed"], true, "{third}");
    assert_eq!(third["detail"]["config_sha256"], edited_digest.as_str());
    assert_eq!(third["detail"]["previous"]["config_sha256"], first_digest.as_str());
    assert_eq!(third["detail"]["previous"]["sequence"], second["sequence"]);
    assert_eq!(third["detail"]["settings"]["limits"]["request_timeout_seconds"], 30);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok, "verify after three starts: {out}");
    ca.take_children();
}

#[test]
fn the_running_ca_signs_checkpoints_by_itself() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 1\n");
    let addrs = ca.spawn(&["run"], &["registry", "issuance"]);
    let registry = ca.url(&addrs[0]);
    let automatic = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["action"] == "audit.checkpoint" && l["actor"] == "audit-checkpointer")
            .cloned()
            .collect()
    };
    let wait_for = |what: &str, done: &dyn Fn(&[Value]) -> bool| -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = export(&ca, &registry, "auto.jsonl");
            if done(&lines) {
                return lines;
            }
            assert!(Instant::now() < deadline, "no {what} within 60 s: {lines:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };

    // A fresh CA gets its first checkpoint shortly after start, over the ceremony and config.start.
    let lines = wait_for("first automatic checkpoint", &|l| !automatic(l).is_empty());
    let first = &automatic(&lines)[0];
    let config_start = with_action(&lines, "config.start")[0]["sequence"].as_u64().unwrap();
    assert!(first["detail"]["sequence"].as_u64().unwrap() >= config_start, "{first}");
    assert_eq!(first["detail"]["key_label"], "audit-checkpoint");

    // New entries get anchored by a later one.
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    issue(&ca, &rt, &addrs[1], "auto-1", "555555", &dir);
    let lines = export(&ca, &registry, "auto.jsonl");
    let completed = with_action(&lines, "application.complete")[0]["sequence"].as_u64().unwrap();
    let lines = wait_for("checkpoint over the new card", &|l| {
        automatic(l).iter().any(|c| c["detail"]["sequence"].as_u64().unwrap() >= completed)
    });
    assert!(automatic(&lines).len() >= 2);

    // A checkpoint never just signs another one: a quiet CA's head stays anchored as it is.
    std::thread::sleep(Duration::from_secs(3));
    let lines = export(&ca, &registry, "auto.jsonl");
    for pair in lines.windows(2) {
        if pair[1]["actor"] == "audit-checkpointer" {
            assert_ne!(pair[0]["action"], "audit.checkpoint", "a checkpoint signed a checkpoint: {}", pair[1]);
        }
    }

    // `audit verify` checks every one of their signatures with the public key.
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(ok, "verify: {out}");
    let verified = number_after(&out, "checkpoints: ");
    assert!(verified >= automatic(&lines).len() as u64 && verified >= 2, "{out}");
    assert!(out.contains(&format!("checkpoints: {verified} verified")), "{out}");
    ca.take_children();
}

/// `hpki-ca <args>`, shown; returns (success, stdout, stderr).
fn hpki(ca: &Ca, args: &[&str]) -> (bool, String, String) {
    let out = ca.cli(args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    eprintln!("$ hpki-ca {}\n{stdout}{stderr}[exit {}]", args.join(" "), out.status.code().unwrap_or(-1));
    (out.status.success(), stdout, stderr)
}

/// The entries of the last audited operation `operation` run by `operator`:
/// its "ceremony.start" and every entry after it up to its "ceremony.end".
fn operation_entries<'a>(lines: &'a [Value], operation: &str, operator: &str) -> Vec<&'a Value> {
    let start = lines
        .iter()
        .rposition(|l| {
            l["action"] == "ceremony.start" && l["detail"]["operation"] == operation && l["actor"] == operator
        })
        .unwrap_or_else(|| panic!("no ceremony.start of {operation} by {operator}"));
    let len = lines[start..].iter().position(|l| l["action"] == "ceremony.end").expect("its ceremony.end") + 1;
    lines[start..start + len].iter().collect()
}

fn same_serial(a: &str, b: &str) -> bool {
    a.trim_start_matches('0').eq_ignore_ascii_case(b.trim_start_matches('0'))
}

#[test]
fn revoking_an_issuing_ca_on_the_arl_is_audited_and_refused_while_the_ca_runs() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let (sign_serial, _) = openssl_serial_and_fingerprint(&ca.cert_path("sign-ca.pem"));
    let arl_state = ca.cert_path("arl.json");
    let revoke = ["arl", "--revoke-serial", &sign_serial, "--reason", "key-compromise", "--operator", "op-x"];

    // While the CA runs: refused before the root key is touched; nothing written anywhere.
    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    let state_before = std::fs::read(&arl_state).expect("the ceremony's ARL state");
    let before = export(&ca, &registry, "arl-before.jsonl");
    let (ok, _, stderr) = hpki(&ca, &revoke);
    assert!(!ok, "an ARL while the registry runs must be refused");
    assert!(stderr.contains("is in use") && stderr.contains("`hpki-ca arl`"), "{stderr}");
    assert_eq!(std::fs::read(&arl_state).unwrap(), state_before, "no ARL number used, no serial listed");
    // (The running CA may log its own work meanwhile, e.g. its first CRLs.)
    let after = export(&ca, &registry, "arl-refused.jsonl");
    let new = &after[before.len()..];
    assert!(
        !new.iter().any(|l| l["action"].as_str().unwrap().starts_with("ceremony.") || l["actor"] == "op-x"),
        "{new:?}"
    );
    ca.take_children();

    // Services stopped: the signing CA is revoked on ARL number 2.
    let (ok, stdout, _) = hpki(&ca, &revoke);
    assert!(ok, "arl --revoke-serial: {stdout}");
    assert!(stdout.contains("ARL number 2  entries 1") && stdout.contains("(operator op-x)"), "{stdout}");
    // Again, with another reason: listed already, the first reason stands; recorded as such.
    let (ok, stdout, _) =
        hpki(&ca, &["arl", "--revoke-serial", &sign_serial, "--reason", "superseded", "--operator", "op-x2"]);
    assert!(ok && stdout.contains("already revoked"), "{stdout}");
    // A serial that is not hex: refused, and the failure is in the log too.
    let (ok, _, stderr) = hpki(&ca, &["arl", "--revoke-serial", "zz", "--reason", "superseded", "--operator", "op-x3"]);
    assert!(!ok && stderr.contains("not hex"), "{stderr}");

    let addrs = ca.spawn(&["run"], &["registry"]);
    let registry = ca.url(&addrs[0]);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok, "verify: {out}");
    let lines = export(&ca, &registry, "arl.jsonl");

    let ops = operation_entries(&lines, "arl", "op-x");
    let actions: Vec<&str> = ops.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["ceremony.start", "ceremony.arl", "ceremony.end"]);
    assert!(ops.iter().all(|l| l["actor"] == "op-x"), "{ops:?}");
    let (start, arl, end) = (&ops[0]["detail"], &ops[1]["detail"], &ops[2]["detail"]);
    eprintln!("ceremony.arl: {}", ops[1]);
    assert_eq!((start["operator"].as_str(), start["reason"].as_str()), (Some("op-x"), Some("keyCompromise")));
    assert!(same_serial(start["revoke_serial"].as_str().unwrap(), &sign_serial), "{start}");
    assert_eq!((arl["crl_number"].as_u64(), arl["entries"].as_u64()), (Some(2), Some(1)));
    assert!(same_serial(arl["revocation"]["serial"].as_str().unwrap(), &sign_serial), "{arl}");
    assert_eq!(arl["revocation"]["reason"], "keyCompromise");
    assert_eq!(arl["revocation"]["newly_revoked"], true);
    assert_eq!(arl["url"], "http://127.0.0.1:8081/crl/arl.crl");
    assert_eq!(
        (end["outcome"].as_str(), end["operation"].as_str(), end["error"].is_null()),
        (Some("ok"), Some("arl"), true)
    );

    // The ARL the entry names: its digest, signed by the root, listing the signing CA.
    let arl_file = Path::new(arl["file"].as_str().unwrap()).to_owned();
    let arl_file = if arl_file.is_absolute() { arl_file } else { ca.dir.path().join(arl_file) };
    let (ok, text) = testkit::openssl::crl_text(&arl_file, true, &ca.cert_path("root-ca.pem"));
    assert!(ok && text.contains("verify OK"), "{text}");
    let listed = text.split("Serial Number: ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
    assert!(same_serial(listed, &sign_serial), "the ARL lists {listed:?}, not {sign_serial}: {text}");
    assert!(text.contains("Key Compromise") && text.contains("X509v3 CRL Number: \n                3"), "{text}");

    // The repeat: the ARL after it (number 3), and what stands.
    let again = operation_entries(&lines, "arl", "op-x2");
    let arl3 = &again[1]["detail"];
    assert_eq!(again[0]["detail"]["reason"], "superseded");
    assert_eq!((arl3["crl_number"].as_u64(), arl3["entries"].as_u64()), (Some(3), Some(1)));
    assert_eq!(
        (arl3["revocation"]["newly_revoked"].as_bool(), arl3["revocation"]["reason"].as_str()),
        (Some(false), Some("keyCompromise"))
    );
    assert_eq!(arl3["sha256"], sha256_file(&arl_file).as_str(), "the digest of the ARL on disk");
    // The failure: start and end, no ARL.
    let failed = operation_entries(&lines, "arl", "op-x3");
    let actions: Vec<&str> = failed.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["ceremony.start", "ceremony.end"]);
    assert_eq!(failed[1]["detail"]["outcome"], "failed");
    assert!(failed[1]["detail"]["error"].as_str().unwrap().contains("not hex"), "{}", failed[1]);
    ca.take_children();
}

#[test]
fn responder_certificates_come_from_issuance_and_are_in_the_audit_log_and_ocsp_certs_renews_them() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "ocsp"]);
    let (registry, issuance) = (ca.url(&addrs[0]), ca.url(&addrs[1]));
    // The running responder asked issuance for both at its start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(ca.cert_path("ocsp-sign.pem").exists() && ca.cert_path("ocsp-auth.pem").exists()) {
        assert!(std::time::Instant::now() < deadline, "no responder certificates from the running CA");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (first, _) = openssl_serial_and_fingerprint(&ca.cert_path("ocsp-sign.pem"));

    // `hpki-ca ocsp-certs` renews both now, through issuance, with the keys in the ocsp token.
    let (ok, stdout, stderr) = hpki(&ca, &["ocsp-certs", "--issuance-url", &issuance, "--registry-url", &registry]);
    assert!(ok && stdout.matches("certificate renewed").count() == 2, "{stdout}{stderr}");
    let (second, fingerprint) = openssl_serial_and_fingerprint(&ca.cert_path("ocsp-sign.pem"));
    assert!(!same_serial(&first, &second), "a new certificate");
    let (ok, text) = common::verify_responder_cert(&ca, &ca.cert_path("ocsp-sign.pem"));
    assert!(ok, "the new responder certificate chains to the root: {text}");

    // Issued as a card's are: reserved, recorded, stored, each in the hash-chained log.
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok, "verify: {out}");
    let lines = export(&ca, &registry, "responders.jsonl");
    for serial in [&first, &second] {
        let of: Vec<&str> = lines
            .iter()
            .filter(|l| same_serial(l["subject"].as_str().unwrap_or(""), serial))
            .map(|l| l["action"].as_str().unwrap())
            .collect();
        assert_eq!(of, ["serial.reserve", "tbs.record", "certificate.store"], "serial {serial}");
    }
    let stored = lines
        .iter()
        .find(|l| l["action"] == "certificate.store" && same_serial(l["subject"].as_str().unwrap(), &second))
        .unwrap();
    assert_eq!(stored["detail"]["certificate_sha256"], fingerprint.as_str(), "{stored}");
    assert_eq!(stored["detail"]["kind"], "OCSP_RESPONDER", "{stored}");
    assert!(!lines
        .iter()
        .any(|l| l["action"].as_str().unwrap().starts_with("ceremony.") && l["detail"]["operation"] == "ocsp-certs"));
    ca.take_children();
}

/// The checkpoint record outside the database, where the config's state folder puts it.
fn checkpoint_record(ca: &Ca) -> std::path::PathBuf {
    ca.state().join("audit").join("checkpoints.jsonl")
}

/// `hpki-ca audit checkpoint`; the sequence of the entry it appended.
fn checkpoint_as(ca: &Ca, registry: &str, operator: &str) -> u64 {
    let (ok, out) = audit(ca, &["checkpoint", "--url", registry, "--operator", operator]);
    assert!(ok, "checkpoint: {out}");
    let record = checkpoint_record(ca);
    assert!(out.contains(&format!("recorded in {}", record.display())), "{out}");
    out.split("audit checkpoint at sequence ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint sequence: {out}"))
}

#[test]
fn a_log_cut_off_before_its_latest_checkpoint_fails_against_the_record_outside_the_database() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let addrs = ca.spawn(&["run"], &["registry", "issuance"]);
    let registry = ca.url(&addrs[0]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    issue(&ca, &rt, &addrs[1], "cut-1", "610001", &dir);
    let first = checkpoint_as(&ca, &registry, "op-cut");
    issue(&ca, &rt, &addrs[1], "cut-2", "610002", &dir);
    let latest = checkpoint_as(&ca, &registry, "op-cut");
    assert!(latest > first + 3, "a card's entries lie between the checkpoints: {first}, {latest}");

    // Each checkpoint is a line of the record, as the log has it, in an owner-only folder.
    let record = checkpoint_record(&ca);
    let recorded = read_lines(&record);
    let exported = export(&ca, &registry, "before-cut.jsonl");
    let sequences: Vec<u64> = recorded.iter().map(|l| l["checkpoint_sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, [first, latest]);
    for line in &recorded {
        let entry = &exported[line["checkpoint_sequence"].as_u64().unwrap() as usize - 1];
        assert_eq!(entry["action"], "audit.checkpoint");
        assert_eq!(line["checkpoint_hash"], entry["hash"], "{line}");
        assert_eq!(line["at"], entry["at"], "{line}");
        assert_eq!((line["actor"].as_str(), entry["actor"].as_str()), (Some("op-cut"), Some("op-cut")));
        assert_eq!(line["signs_sequence"], entry["detail"]["sequence"], "{line}");
        assert_eq!(line["head_hash"], entry["detail"]["head_hash"], "{line}");
        assert_eq!(line["signature"], entry["detail"]["signature"], "{line}");
        assert_eq!(line["key_label"], "audit-checkpoint");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(record.parent().unwrap()), 0o700);
        assert_eq!(mode(&record), 0o600);
    }

    // Before the cut: live and export verify, both recorded checkpoints matched.
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(ok && out.contains("checkpoints: 2 verified"), "verify: {out}");
    assert!(out.contains(&format!("; 2 recorded checkpoints matched in {}", record.display())), "{out}");
    let before = dir.join("before-cut.jsonl");
    let (ok, out) = audit(&ca, &["verify", "--file", before.to_str().unwrap()]);
    assert!(ok && out.contains("2 recorded checkpoints matched"), "verify --file: {out}");
    // The operator ships a copy off-host.
    let offsite = dir.join("offsite-checkpoints.jsonl");
    std::fs::copy(&record, &offsite).unwrap();

    // Someone with the database cuts its tail: every entry after `cut` (the latest
    // checkpoint among them), and the head pointer moved back to match.
    ca.take_children();
    let cut = latest - 2;
    let db_path = ca.state().join("registry.sled");
    {
        let db = sled::open(&db_path).unwrap();
        let tree = db.open_tree("audit").unwrap();
        // A record holds one transaction's entries: an object, or an array of several.
        let (mut removed, mut last) = (0u64, None);
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            let mut entries: Vec<store::AuditRecord> = match value.first() {
                Some(b'[') => serde_json::from_slice(&value).unwrap(),
                _ => vec![serde_json::from_slice(&value).unwrap()],
            };
            let stored = entries.len();
            entries.retain(|e| e.sequence <= cut);
            removed += (stored - entries.len()) as u64;
            last = entries.last().cloned().or(last);
            match entries.len() {
                0 => drop(tree.remove(key).unwrap()),
                n if n == stored => {}
                1 => drop(tree.insert(key, serde_json::to_vec(&entries[0]).unwrap()).unwrap()),
                _ => drop(tree.insert(key, serde_json::to_vec(&entries).unwrap()).unwrap()),
            }
        }
        assert!(removed >= latest - cut, "the tail holds the latest checkpoint");
        let last: store::AuditRecord = last.unwrap();
        assert_eq!(last.sequence, cut);
        let meta = db.open_tree("meta").unwrap();
        let mut head: Value = serde_json::from_slice(&meta.get(b"audit_head").unwrap().unwrap()).unwrap();
        for field in ["next_sequence", "last_hash", "last_at_unix_micros"] {
            assert!(head.get(field).is_some(), "no {field} in the head {head}");
        }
        head["next_sequence"] = (cut + 1).into();
        head["last_hash"] = hex_encode(&last.hash).into();
        head["last_at_unix_micros"] = last.at_unix_micros.into();
        meta.insert(b"audit_head", serde_json::to_vec(&head).unwrap()).unwrap();
        db.flush().unwrap();
    }
    // The chain alone cannot tell: the store's own walk finds nothing wrong.
    assert_eq!(store::Store::open(&db_path).unwrap().verify_audit_chain().unwrap(), cut);

    // The registry alone (nothing else logs meanwhile): its start is entry cut + 1.
    let addr = ca.spawn(&["registry"], &["registry"]).remove(0);
    let registry = ca.url(&addr);
    let ends = cut + 1;
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(!ok, "a log cut before its latest recorded checkpoint must not verify: {out}");
    assert!(
        out.contains(&format!(
            "audit chain BROKEN: checkpoint at sequence {latest} recorded in {} is missing from the log (the log ends \
             at {ends}): entries were removed from its end",
            record.display()
        )),
        "{out}"
    );
    assert!(!out.contains("audit chain OK"), "{out}");
    let after = export(&ca, &registry, "after-cut.jsonl");
    assert_eq!(after.len() as u64, ends);
    let after_path = dir.join("after-cut.jsonl");
    let (ok, out) = audit(&ca, &["verify", "--file", after_path.to_str().unwrap()]);
    assert!(!ok, "an export of the cut log must not verify: {out}");
    assert!(
        out.contains(&format!(
            "checkpoint at sequence {latest} recorded in {} is missing from the export",
            record.display()
        )),
        "{out}"
    );

    // Nor is the cut log anchored anew: a checkpoint is refused and nothing is appended.
    let records_before = std::fs::read(&record).unwrap();
    let (ok, out) = audit(&ca, &["checkpoint", "--url", &registry, "--operator", "op-cut"]);
    assert!(!ok, "a cut log must not be checkpointed: {out}");
    assert!(out.contains(&format!("checkpoint at sequence {latest} recorded in")), "{out}");
    assert_eq!(export(&ca, &registry, "after-refusal.jsonl").len() as u64, ends, "nothing appended");
    assert_eq!(std::fs::read(&record).unwrap(), records_before, "nothing recorded");

    // Removing the local record as well hides the cut from it, not from the off-host copy.
    std::fs::remove_file(&record).unwrap();
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(!ok, "no record to hold the log to is an error unless accepted: {out}");
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--without-record"]);
    assert!(ok && out.contains(&format!("no checkpoint record at {}", record.display())), "{out}");
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--checkpoints", offsite.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "checkpoint at sequence {latest} recorded in {} is missing from the log",
            offsite.display()
        )),
        "{out}"
    );
    ca.take_children();
}

#[test]
fn a_forged_checkpoint_record_is_reported_and_a_named_copy_must_exist() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 0\n");
    let addr = ca.spawn(&["registry"], &["registry"]).remove(0);
    let registry = ca.url(&addr);
    let first = checkpoint_as(&ca, &registry, "op-rec");
    let second = checkpoint_as(&ca, &registry, "op-rec");
    assert_eq!(second, first + 1, "a manual checkpoint signs even a checkpoint head");
    let dir = ca.dir.path().to_owned();

    // A copy elsewhere, named with --checkpoints, is what the log is held to.
    let copy = dir.join("copy.jsonl");
    std::fs::copy(checkpoint_record(&ca), &copy).unwrap();
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--checkpoints", copy.to_str().unwrap()]);
    assert!(ok, "verify against a copy: {out}");
    assert!(out.contains(&format!("; 2 recorded checkpoints matched in {}", copy.display())), "{out}");
    assert!(out.contains("checkpoints: 2 verified"), "{out}");
    // Named but not there: an error, not a silent "no record".
    let gone = dir.join("not-there.jsonl");
    let (ok, stdout, stderr) =
        hpki(&ca, &["audit", "verify", "--url", &registry, "--checkpoints", gone.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains(&format!("{}: no such checkpoint record", gone.display())), "{stderr}");
    assert!(!stdout.contains("audit chain OK"), "{stdout}");

    // One signature digit changed in the second line: reported as that record, by line.
    let mut lines = read_lines(&copy);
    let signature = lines[1]["signature"].as_str().unwrap().to_owned();
    let flipped = if signature.ends_with('0') { "1" } else { "0" };
    lines[1]["signature"] = format!("{}{flipped}", &signature[..signature.len() - 1]).into();
    write_lines(&copy, &lines);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry, "--checkpoints", copy.to_str().unwrap()]);
    assert!(!ok, "a forged record must fail: {out}");
    let key = ca.cert_path("audit-checkpoint.pub.pem");
    assert!(
        out.contains(&format!(
            "audit chain BROKEN: checkpoint at sequence {second} recorded in {} (line 2) has a signature that does not \
             verify with {}",
            copy.display(),
            key.display()
        )),
        "{out}"
    );
    // The same in the CA's own record is found without naming it.
    write_lines(&checkpoint_record(&ca), &lines);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(!ok && out.contains(&format!("checkpoint at sequence {second} recorded in")), "{out}");
    ca.take_children();
}

#[test]
fn automatic_checkpoints_are_recorded_outside_the_database_too() {
    let mut ca = Ca::new("[audit]\ncheckpoint_interval_seconds = 1\n");
    let addr = ca.spawn(&["run"], &["registry"]).remove(0);
    let registry = ca.url(&addr);
    let record = checkpoint_record(&ca);
    let deadline = Instant::now() + Duration::from_secs(60);
    let recorded = loop {
        let lines = if record.exists() { read_lines(&record) } else { Vec::new() };
        if lines.iter().any(|l| l["actor"] == "audit-checkpointer") {
            break lines;
        }
        assert!(Instant::now() < deadline, "no automatic checkpoint recorded in {} within 60 s", record.display());
        std::thread::sleep(Duration::from_millis(300));
    };
    let lines = export(&ca, &registry, "auto-recorded.jsonl");
    let first = &recorded[0];
    let entry = &lines[first["checkpoint_sequence"].as_u64().unwrap() as usize - 1];
    assert_eq!(
        (entry["action"].as_str(), entry["actor"].as_str()),
        (Some("audit.checkpoint"), Some("audit-checkpointer"))
    );
    assert_eq!(first["checkpoint_hash"], entry["hash"]);
    let (ok, out) = audit(&ca, &["verify", "--url", &registry]);
    assert!(ok, "verify: {out}");
    let matched = number_after(&out, "; ");
    assert!(matched >= 1 && out.contains(&format!("{matched} recorded checkpoint")), "{out}");
    ca.take_children();
}
