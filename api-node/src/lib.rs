//! The API node: owns the database and serves Fn's management API (v1 and v2) and the hybrid API that
//! runner nodes use. In full mode it also mounts the invoke paths over an in-process agent.
//!
//! Layers, each knowing only the one below: [`http`] (actix handlers, error rendering) → the domain
//! (`shared`: models, validation, errors) → [`datastore`] (traits and the SQL store). [`listeners`] wraps
//! the datastore so extension hooks fire on every write; [`server`] wires settings, store and HTTP server
//! together and is what the binary, the tests and the benchmark start.

pub mod config;
pub mod datastore;
pub mod http;
pub mod listeners;
pub mod queue;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Settings;
pub use server::{run, start, RunningServer, StartError};
