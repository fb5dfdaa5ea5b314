//! The API node: owns the database and serves Fn's management API (v1 and v2) and the hybrid API that
//! runner nodes use. In full mode it also mounts the invoke paths over an in-process agent.
//!
//! Layers, each knowing only the one below: [`http`] (actix handlers, error rendering) → the domain
//! (`shared`: models, validation, errors) → [`datastore`] (traits and the SQL store). [`listeners`] wraps
//! the datastore so extension hooks fire on every write; [`queue`] holds async calls durably;
//! [`direct`] serves runners' `DataAccess` straight onto the store and the queue, and [`hybrid`] serves it
//! to remote runner nodes over HTTP and gRPC; [`server`] is the HTTP server, and [`node`] assembles a
//! whole node by `FN_NODE_TYPE` (in full mode with the agent, its invoke paths and the async loop).
//!
//! Running: `api-node --help` lists the node's `FN_*` variables with their defaults (the agent's, read in
//! full mode, are on `runner_node::AgentConfig`); `FN_DB_URL` picks SQLite, PostgreSQL or MySQL.
//! Embedding: [`server::start`] takes a store, [`listeners::Listeners`] and [`http::Extensions`] (extra
//! actix routes via `configure`, request filters for `/v1` and `/v2`) and returns the running server;
//! [`http::build`] returns the bare actix `App` for callers that run their own `HttpServer` or want to
//! `.wrap()` more middleware.
//!
//! Secure by default: the runner API is served only when runners can be authenticated (or the operator
//! opts out with `FN_RUNNER_API_INSECURE=true`), secrets in settings print redacted
//! (`shared::secret`), and every server bounds slow clients (`runner_node::slow_clients`).
//!
//! Deliberate differences from Fn's server: nested v1 route paths work for GET too; the v2 fns `name`
//! filter is applied; v2 deletes answer 204; unknown `/v2` paths answer in the v2 error shape; every 503
//! carries `Retry-After: 15`; a panicking handler answers 500 instead of dropping the connection. All of
//! them, and the Fn behaviours kept, are listed in docs/fn-compatibility.md.

#![warn(missing_docs)]

pub mod config;
pub mod datastore;
pub mod direct;
pub mod http;
pub mod hybrid;
pub mod listeners;
pub mod node;
pub mod queue;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Settings;
pub use server::{run, start, RunningServer, StartError};
