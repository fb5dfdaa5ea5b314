//! The invoke endpoints as actix-web handlers over the [`Agent`] and [`DataAccess`]:
//!
//! - `/r/{app}/{route...}` (any method): v1 routes, sync or async (`route.rs`);
//! - `POST /invoke/{fn_id}`: v2 fns, sync or detached (`invoke.rs`);
//! - `/t/{app}/{source...}` (any method): HTTP triggers with Fn's gateway mapping (`trigger.rs`).
//!
//! [`configure`] mounts them into any actix `App`; the API node does so in full mode, a runner
//! node on its own. Every answer carries `Fn-Call-Id`; errors carry Fn's status and message in
//! the path's body shape ([`error`]).

use std::sync::Arc;

use actix_web::web;

use crate::agent::Agent;
use crate::call::{CallResponse, CallSpec};
use crate::data_access::DataAccess;
use crate::error::AgentError;

pub mod error;
pub mod gateway;
mod invoke;
mod recorder;
pub mod request;
mod route;
mod trigger;

pub use error::{InvokeError, Shape};
pub use recorder::DataAccessRecorder;
pub use trigger::ASYNC_ANNOTATION;

/// Response header carrying the call's id.
pub const CALL_ID_HEADER: &str = "Fn-Call-Id";

/// Limits the handlers enforce before the agent sees a call.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvokeLimits {
    /// Largest request body in bytes, 0 = unlimited (`FN_MAX_REQUEST_SIZE`): 413 beyond.
    pub max_request_size: u64,
}

/// What the invoke handlers share.
#[derive(Clone)]
pub struct InvokeState {
    /// Runs the calls.
    pub agent: Arc<Agent>,
    /// Apps, routes, fns, triggers and the queue.
    pub data: Arc<dyn DataAccess>,
    /// Request limits.
    pub limits: InvokeLimits,
    /// Runtime the calls run on. actix workers are single-threaded runtimes that end with the
    /// HTTP server; running calls on the node's main runtime keeps the agent's background work
    /// (container connections, idle watchers, launches) there instead. `None`: the worker's.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl InvokeState {
    /// State with the limits of the agent's configuration (`FN_MAX_REQUEST_SIZE`).
    pub fn new(agent: Arc<Agent>, data: Arc<dyn DataAccess>) -> Self {
        let limits = InvokeLimits { max_request_size: agent.config().max_request_size };
        InvokeState { agent, data, limits, runtime: tokio::runtime::Handle::try_current().ok() }
    }

    /// Runs a call on [`Self::runtime`]. Dropping the future (the client went away) cancels
    /// the call, as when it runs inline.
    pub(crate) async fn submit(&self, spec: CallSpec) -> Result<CallResponse, AgentError> {
        if !self.data.accepts_calls() {
            return Err(AgentError::TooBusy);
        }
        let Some(rt) = &self.runtime else {
            return self.agent.submit(spec).await;
        };
        let agent = self.agent.clone();
        let mut task = AbortOnDrop(rt.spawn(async move { agent.submit(spec).await }));
        (&mut task.0).await.unwrap_or_else(|e| Err(AgentError::Internal(format!("call task: {e}"))))
    }
}

/// Aborts a spawned call when the request handling it is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The invoke paths as (methods, OpenAPI path), for the API document; `/r/` and `/t/` take any method.
pub const ROUTES: &[(&[&str], &str)] = &[
    (ANY, "/r/{app}"),
    (ANY, "/r/{app}/{route}"),
    (&["POST"], "/invoke/{fn_id}"),
    (ANY, "/t/{app}"),
    (ANY, "/t/{app}/{source}"),
];

/// The methods documented for paths that take any method.
const ANY: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Mounts `/r/`, `/invoke/` and `/t/` with `state` into an actix app or scope:
/// `App::new().configure(|cfg| runner_node::http::configure(cfg, state))`.
pub fn configure(cfg: &mut web::ServiceConfig, state: InvokeState) {
    let data = web::Data::new(state);
    cfg.service(
        web::resource(["/r/{app}", "/r/{app}/{route:.*}"]).app_data(data.clone()).route(web::route().to(route::handle)),
    );
    cfg.service(
        web::resource("/invoke/{fn_id}")
            .app_data(data.clone())
            .route(web::post().to(invoke::handle))
            .default_service(web::to(invoke::method_not_allowed)),
    );
    cfg.service(
        web::resource(["/t/{app}", "/t/{app}/{source:.*}"]).app_data(data).route(web::route().to(trigger::handle)),
    );
}
