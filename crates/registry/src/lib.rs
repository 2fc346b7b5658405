//! The registry: the gRPC service (`hpki.registry.v1.Registry`) that is the
//! only writer of the CA database. Handlers validate input and call the
//! `store` crate; every status message names the request field it is about.

mod convert;
mod error;
mod server;
mod service;
mod streams;
mod validate;
mod x509;

pub use error::RegistryError;
pub use server::{serve, serve_store};
pub use service::RegistryService;
