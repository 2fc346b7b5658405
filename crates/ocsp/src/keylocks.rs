//! One signature per cache key at a time: concurrent misses for the same
//! serial wait for the first one's signature instead of making their own.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

pub struct KeyLocks<K> {
    map: Mutex<HashMap<K, Slot>>,
}

struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Holders and waiters: the slot goes when the last one leaves.
    users: usize,
}

impl<K> Default for KeyLocks<K> {
    fn default() -> Self {
        KeyLocks { map: Mutex::new(HashMap::new()) }
    }
}

/// Held while working on a key; forgets the key's lock when the last holder
/// or waiter leaves.
pub struct KeyGuard<'a, K: Eq + Hash + Clone> {
    locks: &'a KeyLocks<K>,
    key: K,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> KeyLocks<K> {
    pub async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = map.entry(key.clone()).or_insert_with(|| Slot { lock: Arc::default(), users: 0 });
            slot.users += 1;
            slot.lock.clone()
        };
        // Counted before waiting, so a wait cut short (a request past its
        // deadline) is uncounted again when this guard drops.
        let mut held = KeyGuard { locks: self, key, guard: None };
        held.guard = Some(lock.lock_owned().await);
        held
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get_mut(&self.key) {
            slot.users = slot.users.saturating_sub(1);
            if slot.users == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn holders_of_one_key_take_turns_and_the_map_empties() {
        let locks = Arc::new(KeyLocks::<u32>::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (locks, inside) = (locks.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock(7).await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(locks.len(), 0);
        let a = locks.lock(1).await;
        let b = locks.lock(2).await; // other keys do not wait
        assert_eq!(locks.len(), 2);
        drop((a, b));
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_nothing_behind() {
        let locks = KeyLocks::<u32>::default();
        let held = locks.lock(3).await;
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(3)).await;
        assert!(waited.is_err(), "the key is held");
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0, "the abandoned waiter does not keep the key's lock alive");
        // And the key can be taken again at once.
        let again = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(3)).await;
        assert!(again.is_ok());
    }
}
