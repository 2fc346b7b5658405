//! `docs/config.example.toml` is the documentation of every config key. This
//! test keeps it honest:
//!
//! - it loads with the crate's own loader (`Config::load`) and passes the
//!   checks the services run at start;
//! - it names every key that `Config` has, so a new key without a line in the
//!   example fails here;
//! - every key in it holds the default value, so the example never drifts
//!   from `crates/config/src/` (one module per section).
//!
//! `Config` derives `Debug` but not `Serialize`, so the keys of the defaults
//! are read from `format!("{:#?}", Config::default())`: derived `Debug` names
//! every field of every struct, nested four spaces a level, which is exactly
//! the set of keys `Deserialize` accepts (every struct has
//! `deny_unknown_fields` and no renames). The example's keys come from parsing
//! it as a TOML table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use config::Config;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.example.toml")
}

fn example_text() -> String {
    let path = example_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (dotted key path, value text) for every line of a pretty-printed `Debug`
/// of a struct: named fields become `a.b.c`, elements of a list `a.b.[]`.
fn debug_entries(debug: &str) -> Vec<(String, String)> {
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    // The first line is the outer struct's name and `{`.
    for line in debug.lines().skip(1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('}') || trimmed.starts_with(']') || trimmed.is_empty() {
            continue;
        }
        let depth = (line.len() - trimmed.len()) / 4;
        assert!(depth >= 1, "unexpected Debug layout: {line:?}");
        stack.truncate(depth - 1);
        let (name, value) = match field_name(trimmed) {
            Some((name, value)) => (name.to_owned(), value),
            None => ("[]".to_owned(), trimmed),
        };
        stack.push(name);
        out.push((stack.join("."), value.trim_end_matches(',').to_owned()));
    }
    out
}

/// `name: value` with a Rust field name, or None (a list element).
fn field_name(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(": ")?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let is_field = (first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_field.then_some((name, value))
}

/// Every key of the default `Config`, as dotted paths (list elements as `[]`).
fn default_keys() -> BTreeSet<String> {
    debug_entries(&format!("{:#?}", Config::default()))
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| !path.ends_with("[]"))
        .collect()
}

/// Every key written in a TOML table, as dotted paths (tables in arrays as `[]`).
fn toml_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(t) => toml_keys(&path, t, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        toml_keys(&format!("{path}.[]"), t, out);
                    }
                }
            }
            _ => {}
        }
        out.insert(path);
    }
}

/// Keys shown commented out (`# key = value`) under their `[section]`: left
/// out on purpose, so that their derived value applies.
fn commented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                out.insert(if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") });
            }
        }
    }
    out
}

/// Keys whose value is derived when absent (from `[public]` or a listener).
const DERIVED: [&str; 16] = [
    "profile.signing_crl_url",
    "profile.authentication_crl_url",
    "profile.ocsp_url",
    "profile.cps_uri",
    "ca.root.crl_url",
    "ca.signing.crl_url",
    "ca.authentication.crl_url",
    "issuance.registry_url",
    "issuance.revocation_url",
    "issuance.crl_url",
    "crl.registry_url",
    "revocation.registry_url",
    "revocation.crl_url",
    "ocsp.registry_url",
    "ocsp.issuance_url",
    "public.repository_base_url",
];

#[test]
fn derived_urls_are_shown_commented_out_so_they_follow_listeners_and_base_urls() {
    let text = example_text();
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("docs/config.example.toml: {e}"));
    let mut set = BTreeSet::new();
    toml_keys("", &table, &mut set);
    let commented = commented_keys(&text);
    for key in DERIVED.iter().filter(|k| **k != "public.repository_base_url") {
        assert!(!set.contains(*key), "{key} is set in the example: it would no longer follow [public] or its listener");
        assert!(commented.contains(*key), "{key} is not shown (commented out) in the example");
    }
}

#[test]
fn the_example_loads_with_the_crate_loader_and_passes_the_start_checks() {
    let path = example_path();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // A relative state_dir follows the file, as the loader documents.
    assert_eq!(cfg.state_dir, path.parent().unwrap().join("state"));
    cfg.limits.validate().unwrap_or_else(|e| panic!("[limits]: {e}"));
    cfg.ocsp.validate().unwrap_or_else(|e| panic!("[ocsp]: {e}"));
    cfg.audit.validate().unwrap_or_else(|e| panic!("[audit]: {e}"));
    // And every other start check, [profile] and [ca.*] built into their typed form.
    cfg.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_example_names_every_key_of_the_config() {
    let table: toml::Table = example_text().parse().unwrap_or_else(|e| panic!("docs/config.example.toml: {e}"));
    let mut documented = BTreeSet::new();
    toml_keys("", &table, &mut documented);
    documented.extend(commented_keys(&example_text()));
    let known = default_keys();
    // Sanity: the Debug reading found the nested tables and the DN lists.
    for probe in ["state_dir", "hsm.module", "ocsp.request_timeout_ms", "ca.signing.subject.[].attr", "audit"] {
        assert!(known.contains(probe), "default keys read from Debug lack {probe:?}: {known:?}");
    }
    let missing: Vec<&String> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys of Config (crates/config/src/) missing from docs/config.example.toml; add each with a \
         one-line comment and its default: {missing:?}"
    );
    // The loader refuses unknown keys, so the other direction holds too; say so plainly if not.
    let unknown: Vec<&String> = documented.difference(&known).collect();
    assert!(unknown.is_empty(), "docs/config.example.toml names keys Config does not have: {unknown:?}");
}

#[test]
fn every_key_in_the_example_holds_its_default() {
    let mut cfg = Config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    let default = Config::default();
    // The loader resolves a relative state_dir against the file's folder.
    assert_eq!(cfg.state_dir, example_path().parent().unwrap().join(&default.state_dir));
    cfg.state_dir = default.state_dir.clone();
    let example = debug_entries(&format!("{cfg:#?}"));
    let defaults = debug_entries(&format!("{default:#?}"));
    assert_eq!(
        example.len(),
        defaults.len(),
        "docs/config.example.toml has lists of another length than the defaults (a DN or authentication_eku)"
    );
    let differing: Vec<String> = example
        .iter()
        .zip(defaults.iter())
        .filter(|(e, d)| e != d)
        .map(|((path, e), (_, d))| format!("{path}: example {e}, default {d}"))
        .collect();
    assert!(differing.is_empty(), "docs/config.example.toml differs from the defaults:\n{}", differing.join("\n"));
}
