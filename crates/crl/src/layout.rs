//! Which CRL files an issuing CA publishes, and which entries go in each.
//!
//! A certificate names its CRL distribution point (and freshestCRL) for life,
//! so the files are those of the current config plus those of every scope
//! (CRL URL, partition count, deltas on or off) that certificates still in
//! their validity, or within the expired-entry retention, were issued under.
//! The registry records each certificate's scope with its to-be-signed bytes.
//! An entry goes into every file that some live scope maps its serial to; two
//! scopes may share a URL (`sign-p3.crl` under 4 and under 8 partitions), and
//! that file then lists the entries of both.

use std::collections::HashMap;

/// How certificates of a CA were issued: full-CRL URL, partitions, deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub crl_url: String,
    pub partitions: u32,
    pub deltas: bool,
}

/// A scope recorded by the registry, with the latest notAfter under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedScope {
    pub scope: Scope,
    pub not_after_unix: i64,
}

/// One full CRL file (and its delta when `deltas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// 1..=n for a partition, 0 for a CA's whole CRL.
    pub partition: u32,
    pub url: String,
    pub deltas: bool,
}

/// The files of one partition count under one URL: `slots[p]` is the target
/// of partition p+1, or of the whole CRL when not partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scheme {
    partitions: u32,
    slots: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub targets: Vec<Target>,
    schemes: Vec<Scheme>,
}

impl Layout {
    /// The files of `current` (the config's scope, always first) and of
    /// every recorded scope still live at `now`: notAfter plus `retention`
    /// (None: expired entries are kept forever, and so are their files).
    pub fn new(current: &Scope, recorded: &[RecordedScope], now: i64, retention: Option<i64>) -> Layout {
        let live = recorded.iter().filter(|r| match retention {
            None => true,
            Some(keep) => r.not_after_unix.saturating_add(keep) >= now,
        });
        let mut layout = Layout { targets: Vec::new(), schemes: Vec::new() };
        let mut by_url: HashMap<String, usize> = HashMap::new();
        for scope in std::iter::once(current).chain(live.map(|r| &r.scope)) {
            let urls: Vec<(u32, String)> = match scope.partitions {
                0 => vec![(0, scope.crl_url.clone())],
                n => (1..=n).map(|p| (p, config::partition_url(&scope.crl_url, p))).collect(),
            };
            let mut slots = Vec::with_capacity(urls.len());
            for (partition, url) in urls {
                let i = *by_url.entry(url.clone()).or_insert_with(|| {
                    layout.targets.push(Target { partition, url, deltas: false });
                    layout.targets.len() - 1
                });
                layout.targets[i].deltas |= scope.deltas;
                slots.push(i);
            }
            let scheme = Scheme { partitions: scope.partitions, slots };
            if !layout.schemes.contains(&scheme) {
                layout.schemes.push(scheme);
            }
        }
        layout
    }

    /// Whether any file has a delta CRL.
    pub fn deltas(&self) -> bool {
        self.targets.iter().any(|t| t.deltas)
    }

    /// The targets an entry with `serial` (magnitude bytes) goes into, each once.
    pub fn route(&self, serial: &[u8], out: &mut Vec<usize>) {
        out.clear();
        for scheme in &self.schemes {
            let p = profile::crl_partition(serial, scheme.partitions);
            let slot = if p == 0 { 0 } else { p as usize - 1 };
            if let Some(&t) = scheme.slots.get(slot) {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://h/crl/sign.crl";

    fn scope(partitions: u32, deltas: bool) -> Scope {
        Scope { crl_url: BASE.into(), partitions, deltas }
    }

    fn recorded(partitions: u32, deltas: bool, not_after_unix: i64) -> RecordedScope {
        RecordedScope { scope: scope(partitions, deltas), not_after_unix }
    }

    fn urls(l: &Layout) -> Vec<(&str, bool)> {
        l.targets.iter().map(|t| (t.url.as_str(), t.deltas)).collect()
    }

    #[test]
    fn the_current_scope_alone_is_todays_files() {
        let l = Layout::new(&scope(2, true), &[recorded(2, true, 100)], 0, None);
        assert_eq!(urls(&l), [("http://h/crl/sign-p1.crl", true), ("http://h/crl/sign-p2.crl", true)]);
        assert_eq!(l.schemes.len(), 1);
    }

    #[test]
    fn old_scopes_keep_their_files_and_deltas() {
        // Issued unpartitioned with deltas, now 2 partitions without.
        let l = Layout::new(&scope(2, false), &[recorded(0, true, 100)], 50, Some(0));
        assert_eq!(urls(&l), [("http://h/crl/sign-p1.crl", false), ("http://h/crl/sign-p2.crl", false), (BASE, true)]);
        assert!(l.deltas());
        // Every entry goes into the whole CRL and into its partition.
        let mut out = Vec::new();
        l.route(&[0x01], &mut out); // 1 % 2 = 1 -> p2
        assert_eq!(out, [1, 2]);
        l.route(&[0x02], &mut out);
        assert_eq!(out, [0, 2]);
    }

    #[test]
    fn a_scope_past_notafter_plus_retention_is_dropped_unless_kept_forever() {
        let old = [recorded(0, false, 100)];
        assert_eq!(Layout::new(&scope(2, false), &old, 200, Some(50)).targets.len(), 2);
        assert_eq!(Layout::new(&scope(2, false), &old, 150, Some(50)).targets.len(), 3);
        assert_eq!(Layout::new(&scope(2, false), &old, i64::MAX, None).targets.len(), 3);
    }

    #[test]
    fn a_url_shared_by_two_partition_counts_lists_both() {
        // sign-p1 under 2 and under 4 partitions is one file.
        let l = Layout::new(&scope(4, false), &[recorded(2, false, 100)], 0, None);
        assert_eq!(l.targets.len(), 4);
        let mut out = Vec::new();
        l.route(&[0x04], &mut out); // 4 % 4 = 0 -> p1; 4 % 2 = 0 -> p1
        assert_eq!(out, [0]);
        l.route(&[0x02], &mut out); // 2 % 4 = 2 -> p3; 2 % 2 = 0 -> p1
        assert_eq!(out, [2, 0]);
    }
}
