//! PKCS#11 key storage, signing and PIN-escrow encryption for the CA.
//!
//! Keys are generated inside the token (SoftHSM in development) and never leave it;
//! callers get an [`HsmKey`] that signs through a small pool of PKCS#11 sessions and
//! plugs into rcgen as a [`rcgen::SigningKey`], or an [`AesKey`] that encrypts and
//! decrypts with AES-GCM (CKM_AES_GCM) for the card-PIN escrow.
//!
//! Things callers must know:
//! - SoftHSM reads `SOFTHSM2_CONF` once per process (at `C_Initialize`), so the binary
//!   must set it before the first [`Hsm::open`]; this crate never touches the
//!   environment outside the `testing` module. One process sees one token folder.
//! - Login is per process, not per session: a second [`Hsm::open`] of the same token
//!   reuses it (the PIN must still match; SoftHSM itself would not check it again).
//! - [`HsmKey::sign`] blocks on the token; call it from `spawn_blocking` in async code.
//! - [`HsmError::Unavailable`] means the token or its sessions are gone. The `Hsm`
//!   then reconnects on a later call (re-initialising the library, at most every
//!   200 ms), and keys find their objects again by label, checking they are the same
//!   key; so a caller retries later, it need not reopen anything.
//! - [`AesKey::encrypt_gcm`] returns a fresh random 12-byte IV and ciphertext‖tag;
//!   store both, and pass the same `aad` (the card id) to [`AesKey::decrypt_gcm`].
//!   Any mismatch or altered bit is [`HsmError::Decrypt`]. Both calls block.
//! - Key pairs and AES keys are looked up by label *and* object class, so one label
//!   may name both a key pair and an AES key without confusing either lookup.
//! - Key generation takes a process-wide exclusive lock (SoftHSM's object store
//!   misbehaves when objects are created concurrently with other use), so signing
//!   pauses briefly while a key is being generated.

mod aes;
mod algorithm;
mod ecdsa;
mod error;
mod handle;
mod hsm;
mod key;
mod keystore;
mod library;
mod login;
mod pool;
mod protection;
mod pubkey;
mod signers;
mod store_lock;

#[cfg(test)]
mod outage_tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use aes::{AesKey, GCM_IV_LEN, GCM_TAG_LEN};
pub use algorithm::KeyAlgorithm;
pub use error::HsmError;
pub use hsm::Hsm;
pub use key::HsmKey;
pub use protection::KeyProtection;
pub use signers::{Pending, Signers};
