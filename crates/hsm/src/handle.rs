//! An object handle remembered per library epoch.
//!
//! Handles are only valid in the epoch (see `library`) they were found in; after a
//! reconnect the same number may name another object. So a key re-finds its object by
//! label the first time it is used in a new epoch, and checks it is the same key.

use std::sync::{Mutex, PoisonError};

use cryptoki::object::ObjectHandle;

use crate::error::HsmError;

pub(crate) struct HandleCache {
    cached: Mutex<(u64, ObjectHandle)>,
}

impl HandleCache {
    pub(crate) fn new(epoch: u64, handle: ObjectHandle) -> Self {
        HandleCache { cached: Mutex::new((epoch, handle)) }
    }

    /// The handle for `epoch`, from the cache or from `find` (then remembered).
    pub(crate) fn resolve(
        &self,
        epoch: u64,
        find: impl FnOnce() -> Result<ObjectHandle, HsmError>,
    ) -> Result<ObjectHandle, HsmError> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.0 == epoch {
            return Ok(cached.1);
        }
        let handle = find()?;
        *cached = (epoch, handle);
        Ok(handle)
    }

    #[cfg(test)]
    pub(crate) fn current(&self) -> ObjectHandle {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}
