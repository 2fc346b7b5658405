//! PKCS#11 key storage and signing for the CA.
//!
//! Keys are generated inside the token (SoftHSM in development) and never leave it;
//! callers get an [`HsmKey`] that signs through a small pool of PKCS#11 sessions and
//! plugs into rcgen as a [`rcgen::SigningKey`].
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process (at `C_Initialize`), so the binary
//! must set it before the first [`Hsm::open`]; this crate never touches the
//! environment outside the `testing` module.

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
