//! ocsp
