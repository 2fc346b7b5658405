//! revocation
