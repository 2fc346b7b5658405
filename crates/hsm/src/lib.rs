//! PKCS#11 key storage and signing for the CA.
//!
//! Keys are generated inside the token (SoftHSM in development) and never leave it;
//! callers get an [`HsmKey`] that signs through a small pool of PKCS#11 sessions and
//! plugs into rcgen as a [`rcgen::SigningKey`].
//!
//! Things callers must know:
//! - SoftHSM reads `SOFTHSM2_CONF` once per process (at `C_Initialize`), so the binary
//!   must set it before the first [`Hsm::open`]; this crate never touches the
//!   environment outside the `testing` module. One process sees one token folder.
//! - Login is per process, not per session: a second [`Hsm::open`] of the same token
//!   reuses it (the PIN must still match; SoftHSM itself would not check it again).
//! - [`HsmKey::sign`] blocks on the token; call it from `spawn_blocking` in async code.
//! - [`HsmError::Unavailable`] means the token or its sessions are gone; reopening
//!   may recover, retrying the same call will not.
//! - Key generation takes a process-wide exclusive lock (SoftHSM's object store
//!   misbehaves when objects are created concurrently with other use), so signing
//!   pauses briefly while a key is being generated.

mod algorithm;
mod ecdsa;
mod error;
mod hsm;
mod key;
mod keystore;
mod login;
mod pool;
mod protection;
mod pubkey;
mod store_lock;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use algorithm::KeyAlgorithm;
pub use error::HsmError;
pub use hsm::Hsm;
pub use key::HsmKey;
pub use protection::KeyProtection;
