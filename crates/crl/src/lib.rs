//! crl
