//! The domain model shared by every node of the platform.
//!
//! This crate knows what an app, route, fn, trigger and call *are*: their exact JSON form (the one Fn's
//! CLI, clients and FDKs expect), the rules a value must pass to exist, how updates merge, how IDs are
//! made, and which errors a caller may see. It knows nothing of HTTP servers, SQL or Docker: transports
//! render [`Error`] and storage persists the models, each in its own crate.
//!
//! Parse, don't validate: what a client sends arrives as an `*Input` and becomes a model only through the
//! constructors (`App::new`, `Func::new`, ...) and merges (`App::apply`, ...), which run every check. Models
//! also have public fields and deserialise, so the store (loading rows it wrote) and the hybrid API
//! (receiving models from the API node) rebuild them without re-checking: they only carry models that
//! passed those checks. Code that builds a model field by field (tests, call records) must keep it valid.

#![warn(missing_docs)]

pub mod config;
pub mod cursor;
pub mod error;
pub mod id;
pub mod models;
pub mod secret;
pub mod time;

pub use error::Error;
pub use models::*;

/// Result type of domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
