//! Test helpers shared by the workspace's tests and benches, written once:
//! the `openssl` command-line wrappers, pkilint, and (feature `registry`) an in-process
//! registry with request builders, and (feature `grpc`) the health and
//! reflection checks of a gRPC server.
//!
//! A dev-dependency only; nothing here is compiled into a service.

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod openssl;
pub mod pkilint;
#[cfg(feature = "registry")]
pub mod registry;
