//! The runner agent: turns a function call into work in a Docker container.
//!
//! The embedding node builds a [`CallSpec`] from its models and calls [`Agent::submit`]; the
//! agent picks (or starts) a container, runs the call in the function's format, and answers a
//! [`CallResponse`] or an [`AgentError`] that knows its HTTP status and Fn's message.
//! Records and logs leave through the [`CallRecorder`] trait the node implements.
//!
//! Layout, one job per file:
//! - [`config`]: `FN_*` settings with Fn's defaults;
//! - [`resources`]: memory/CPU tokens against the node's capacity;
//! - [`driver`]: the container seam, with the bollard Docker implementation;
//! - `slots`: hot containers per slot key, LIFO, one call at a time;
//! - `protocol`: the formats (`default`, `http`, `json`, `http-stream`);
//! - [`recorder`]: call records and logs, written off the response path;
//! - [`agent`]: ties it together, plus reaping and graceful shutdown;
//! - [`http`]: the invoke endpoints (`/r/`, `/invoke/`, `/t/`) as actix-web handlers.

#![warn(missing_docs)]

pub mod agent;
pub mod async_loop;
pub mod call;
pub mod config;
pub mod data_access;
pub mod driver;
pub mod error;
mod hot;
pub mod http;
pub mod hybrid;
#[cfg(feature = "testing")]
pub mod memory_data;
pub mod node;
mod protocol;
pub mod recorder;
pub mod resources;
mod slots;
pub mod slow_clients;
#[cfg(feature = "testing")]
pub mod testing;

pub use agent::Agent;
pub use call::{CallResponse, CallSpec, Format};
pub use config::AgentConfig;
pub use data_access::{DataAccess, Delivery};
pub use error::AgentError;
pub use recorder::{CallRecorder, NoopRecorder, RecordError};
pub use resources::ResourceTracker;
pub use slots::SlotStats;
