//! Test helpers shared by the workspace's tests and benches, written once:
//! the `openssl` command-line wrappers.
//!
//! A dev-dependency only; nothing here is compiled into a service.

pub mod openssl;
