//! A tree read outside a transaction (lookups, scans, the feed and audit
//! ranges), on either backend. Values are sled's `IVec` on both.

use std::ops::{Bound, RangeBounds};

use sled::IVec;

use crate::error::StoreError;
use crate::postgres::{Pages, Pg};

#[derive(Clone)]
pub(crate) enum KvTree {
    Sled(sled::Tree),
    Postgres { pg: Pg, name: &'static str },
}

/// The entries of a scan, in key order.
pub(crate) enum KvIter {
    Sled(sled::Iter),
    Postgres(Pages),
}

impl Iterator for KvIter {
    type Item = Result<(IVec, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            KvIter::Sled(it) => it.next().map(|r| r.map_err(StoreError::Db)),
            KvIter::Postgres(pages) => pages.next(),
        }
    }
}

impl KvTree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, StoreError> {
        match self {
            KvTree::Sled(t) => Ok(t.get(key)?),
            KvTree::Postgres { pg, name } => pg.get(name, key.as_ref()),
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// A write outside any transaction: only for the one-time index backfill
    /// and for tests that damage records on purpose.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match self {
            KvTree::Sled(t) => {
                t.insert(key.as_ref(), value.as_ref())?;
                Ok(())
            }
            KvTree::Postgres { pg, name } => pg.insert(name, key.as_ref(), value.as_ref()),
        }
    }

    /// Removal outside any transaction: only tests use it, to damage the log.
    #[cfg(test)]
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match self {
            KvTree::Sled(t) => {
                t.remove(key)?;
                Ok(())
            }
            KvTree::Postgres { pg, name } => pg.remove(name, key.as_ref()),
        }
    }

    #[cfg(test)]
    pub fn clear(&self) -> Result<(), StoreError> {
        for item in self.iter() {
            self.remove(item?.0)?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            KvTree::Sled(t) => t.len(),
            KvTree::Postgres { pg, name } => pg.len(name).unwrap_or(0),
        }
    }

    pub fn last(&self) -> Result<Option<(IVec, IVec)>, StoreError> {
        match self {
            KvTree::Sled(t) => Ok(t.last()?),
            KvTree::Postgres { pg, name } => pg.last(name),
        }
    }

    /// The entry with the greatest key at or before `key`.
    pub fn last_at_or_before(&self, key: impl AsRef<[u8]>) -> Result<Option<(IVec, IVec)>, StoreError> {
        match self {
            KvTree::Sled(t) => t.range(..=key.as_ref()).next_back().transpose().map_err(StoreError::Db),
            KvTree::Postgres { pg, name } => pg.last_at_or_before(name, key.as_ref()),
        }
    }

    pub fn iter(&self) -> KvIter {
        self.range::<&[u8], _>(..)
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> KvIter {
        let prefix = prefix.as_ref();
        match self {
            KvTree::Sled(t) => KvIter::Sled(t.scan_prefix(prefix)),
            KvTree::Postgres { pg, name } => {
                KvIter::Postgres(pg.pages(name, Bound::Included(prefix.to_vec()), successor(prefix)))
            }
        }
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> KvIter {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (lower, upper) = (own(range.start_bound()), own(range.end_bound()));
        match self {
            KvTree::Sled(t) => KvIter::Sled(t.range::<Vec<u8>, _>((lower, upper))),
            KvTree::Postgres { pg, name } => KvIter::Postgres(pg.pages(name, lower, upper)),
        }
    }
}

/// The first key after every key that starts with `prefix`.
fn successor(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_scan() {
        assert_eq!(successor(b"ab"), Bound::Excluded(b"ac".to_vec()));
        assert_eq!(successor(&[1, 0xff]), Bound::Excluded(vec![2]));
        assert_eq!(successor(&[0xff, 0xff]), Bound::Unbounded);
        assert_eq!(successor(b""), Bound::Unbounded);
    }
}
