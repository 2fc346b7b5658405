//! One signature per cache key at a time: concurrent misses for the same
//! serial wait for the first one's signature instead of making their own.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

pub struct KeyLocks<K> {
    map: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyLocks<K> {
    fn default() -> Self {
        KeyLocks { map: Mutex::new(HashMap::new()) }
    }
}

/// Held while working on a key; forgets the key's lock when the last holder leaves.
pub struct KeyGuard<'a, K: Eq + Hash + Clone> {
    locks: &'a KeyLocks<K>,
    key: K,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl<K: Eq + Hash + Clone> KeyLocks<K> {
    pub async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let lock = self.map.lock().unwrap_or_else(PoisonError::into_inner).entry(key.clone()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        KeyGuard { locks: self, key, lock, _guard: guard }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference, ours, and the guard's: nobody else is waiting.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.key);
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
}
