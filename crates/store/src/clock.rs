//! Wall-clock time for records and audit entries.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_unix() -> i64 {
    now_unix_micros() / 1_000_000
}

/// A clock before 1970 reads as 0 rather than failing: the audit chain keeps
/// time monotonic on its own.
pub(crate) fn now_unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
