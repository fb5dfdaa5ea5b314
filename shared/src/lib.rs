//! The domain model shared by every node of the platform.
//!
//! This crate knows what an app, route, fn, trigger and call *are*: their exact JSON form (the one Fn's
//! CLI, clients and FDKs expect), the rules a value must pass to exist, how updates merge, how IDs are
//! made, and which errors a caller may see. It knows nothing of HTTP servers, SQL or Docker: transports
//! render [`Error`] and storage persists the models, each in its own crate.
//!
//! Parse, don't validate: the constructors (`App::new`, `Fn::new`, ...) and merges (`App::apply`, ...)
//! are the only ways to obtain a model, and they run every check, so a model in hand is a valid one.

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
