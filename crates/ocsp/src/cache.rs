//! The hot path's data: serial → status and pre-signed responses, in shards of
//! `RwLock<HashMap>` so readers on different serials rarely meet.
//!
//! An entry holds the status we know and, per CertID hash algorithm, the last
//! response signed for it. A response is served only while it says the current
//! status and has not reached its nextUpdate; a status change therefore makes
//! the old response unservable at once, without deleting it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::issuers::HashAlg;
use crate::serial::SerialKey;
use crate::signer::ResponderIdentity;
use crate::status::CertState;

const SHARDS: usize = 64;

/// One signed single-certificate response.
pub struct Signed {
    /// tbsResponseData ‖ signatureAlgorithm ‖ signature (see `encode`).
    pub body: Box<[u8]>,
    /// Who signed it; its certificate goes in the `certs` field.
    pub responder: Arc<ResponderIdentity>,
    /// The status this response states.
    pub state: CertState,
    pub this_update: i64,
    pub next_update: i64,
    /// Re-sign in the background from this time on.
    pub refresh_at: i64,
    /// Strong validator of the assembled response.
    pub etag: [u8; 12],
}

impl Signed {
    pub fn assemble(&self) -> Vec<u8> {
        crate::encode::assemble(&self.body, self.responder.tail())
    }
}

pub struct Entry {
    pub state: CertState,
    /// Bumped whenever `state` changes, so a signature made for an older state is not stored.
    pub generation: u64,
    /// For `Unknown`: ask the registry again after this time.
    pub negative_until: i64,
    pub signed: [Option<Arc<Signed>>; 2],
}

/// What a lookup found.
pub enum Found {
    /// A response that states the current status and is not expired.
    Hit(Arc<Signed>),
    /// The status is known (from the feed or a recent registry answer), the response is not.
    Known { state: CertState, generation: u64 },
    /// Nothing usable: ask the registry.
    Absent,
}

pub struct Cache {
    shards: Box<[RwLock<HashMap<SerialKey, Entry>>]>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }
}

impl Cache {
    fn shard(&self, key: &SerialKey) -> &RwLock<HashMap<SerialKey, Entry>> {
        // Serials are random; their last octet spreads keys well enough for locking.
        let s = key.serial();
        let i = usize::from(s[s.len() - 1]) ^ (key.issuer() << 3);
        &self.shards[i % SHARDS]
    }

    pub fn get(&self, key: &SerialKey, alg: HashAlg, now: i64) -> Found {
        let map = self.shard(key).read().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = map.get(key) else { return Found::Absent };
        if let Some(s) = &e.signed[alg.index()] {
            if s.state == e.state && now < s.next_update {
                return Found::Hit(s.clone());
            }
        }
        if e.state == CertState::Unknown && now >= e.negative_until {
            return Found::Absent;
        }
        Found::Known { state: e.state, generation: e.generation }
    }

    /// Merges an observation; returns the entry's state and generation afterwards,
    /// whether the state changed, and which algorithms had a response signed.
    pub fn merge(&self, key: SerialKey, state: CertState, negative_until: i64) -> Merged {
        let mut map = self.shard(&key).write().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(&key) {
            None => {
                map.insert(key, Entry { state, generation: 0, negative_until, signed: [None, None] });
                Merged { state, generation: 0, changed: true, had_signed: [false, false] }
            }
            Some(e) => {
                let merged = e.state.merge(state);
                let changed = merged != e.state;
                if changed {
                    e.state = merged;
                    e.generation += 1;
                }
                if e.state == CertState::Unknown {
                    // A fresh registry answer that it is still unknown.
                    e.negative_until = e.negative_until.max(negative_until);
                }
                Merged {
                    state: e.state,
                    generation: e.generation,
                    changed,
                    had_signed: [e.signed[0].is_some(), e.signed[1].is_some()],
                }
            }
        }
    }

    /// Stores a response signed for `generation`; refused (false) if the status moved on meanwhile.
    pub fn store(&self, key: &SerialKey, alg: HashAlg, generation: u64, signed: Arc<Signed>) -> bool {
        let mut map = self.shard(key).write().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(key) {
            Some(e) if e.generation == generation && e.state == signed.state => {
                e.signed[alg.index()] = Some(signed);
                true
            }
            _ => false,
        }
    }

    /// Current state and generation of a cached entry.
    pub fn state_of(&self, key: &SerialKey) -> Option<(CertState, u64)> {
        let map = self.shard(key).read().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|e| (e.state, e.generation))
    }

    /// Responses that state the current status and are due for re-signing, at most `limit`.
    pub fn due(&self, now: i64, limit: usize) -> Vec<(SerialKey, HashAlg)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            for (k, e) in map.iter() {
                for alg in HashAlg::ALL {
                    if let Some(s) = &e.signed[alg.index()] {
                        if s.state == e.state && e.state != CertState::Unknown && now >= s.refresh_at {
                            out.push((*k, alg));
                            if out.len() >= limit {
                                return out;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Drops every response signed for issuer `issuer` (its responder certificate
    /// was revoked): the next request for each signs afresh. Returns how many.
    pub fn forget_signed(&self, issuer: usize) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            for (_, e) in map.iter_mut().filter(|(k, _)| k.issuer() == issuer) {
                dropped += e.signed.iter().filter(|s| s.is_some()).count();
                e.signed = [None, None];
            }
        }
        dropped
    }

    /// Forgets negative answers whose time is up (a request asks the registry again).
    pub fn purge_negative(&self, now: i64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, e| e.state != CertState::Unknown || now < e.negative_until);
            removed += before - map.len();
        }
        removed
    }

    /// (entries, signed responses)
    pub fn len(&self) -> (usize, usize) {
        let mut entries = 0;
        let mut signed = 0;
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            entries += map.len();
            signed += map.values().map(|e| e.signed.iter().filter(|s| s.is_some()).count()).sum::<usize>();
        }
        (entries, signed)
    }

    #[cfg(feature = "bench")]
    /// Bench loading: puts a response in place whatever the entry's generation.
    pub fn insert_signed(&self, key: SerialKey, alg: HashAlg, signed: Arc<Signed>) {
        let mut map = self.shard(&key).write().unwrap_or_else(PoisonError::into_inner);
        let e = map.entry(key).or_insert_with(|| Entry {
            state: signed.state,
            generation: 0,
            negative_until: i64::MAX,
            signed: [None, None],
        });
        e.state = signed.state;
        e.signed[alg.index()] = Some(signed);
    }

    #[cfg(feature = "bench")]
    /// Reserves room for `n` more entries spread over the shards (bulk loading).
    pub fn reserve(&self, n: usize) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(PoisonError::into_inner).reserve(n / SHARDS + 1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub state: CertState,
    pub generation: u64,
    pub changed: bool,
    pub had_signed: [bool; 2],
}
