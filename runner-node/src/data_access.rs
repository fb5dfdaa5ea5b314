//! What a runner needs from the outside world, behind one trait.
//!
//! The invoke handlers and the async loop never reach a database or a queue: they look up apps, fns,
//! routes and triggers, queue async calls, take queued calls and report calls through [`DataAccess`].
//! Full mode implements it straight onto the API node's datastore and queue; runner nodes implement it
//! with the hybrid HTTP or gRPC client, behind a cache.

use std::time::Duration;

use async_trait::async_trait;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};

/// A queued call handed to this runner, held until it is completed or its lease runs out. The runner
/// keeps the lease with [`DataAccess::heartbeat`] while it works on the call.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// The call to run.
    pub call: QueuedCall,
    /// Proves this runner's hold on the call (128 random bits); an expired hold, an empty or a wrong
    /// token is refused on heartbeat and completion.
    pub token: String,
    /// How many times the call has been handed out, this time included.
    pub attempt: u32,
}

/// The token is a credential: `Debug` (and so every log line) shows only whether there is one.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("call", &self.call)
            .field("token", &if self.token.is_empty() { "" } else { "***" })
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// The runner's view of storage.
#[async_trait]
pub trait DataAccess: Send + Sync + 'static {
    /// The app with this name (for `/r/{app}` and `/t/{app}`).
    async fn app_by_name(&self, name: &str) -> Result<App, Error>;
    /// The app with this ID.
    async fn app_by_id(&self, id: &str) -> Result<App, Error>;
    /// The fn with this ID.
    async fn fn_by_id(&self, id: &str) -> Result<Func, Error>;
    /// The route of an app at this cleaned path.
    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error>;
    /// The trigger of an app with this type and source.
    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error>;
    /// Durably queues an async call, then records it as `queued` unless a record exists; returns once the
    /// queue message is stored (a record that cannot be written then is written by the runner).
    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error>;
    /// Takes the next queued call, waiting up to `wait` for one.
    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error>;
    /// Keeps a delivered call held: extends its lease to one lease from now and returns that lease, so
    /// the caller knows how often to beat. Refused with a 4xx once the hold is lost (the lease expired
    /// and the call was handed out again, or it was completed), or for a token that is not the holder's.
    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error>;
    /// Records that a call started running.
    async fn call_started(&self, call: &Call) -> Result<(), Error>;
    /// Records a call's end and its log.
    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error>;
    /// Completes a queued call whose end was recorded: removes it from the queue, or, when `call` failed
    /// in a way worth retrying and attempts remain, gives it back with backoff.
    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error>;
    /// Whether a new call may start: `false` while the call reports waiting for storage are past their
    /// bound (a runner's API node is away), so the invoke paths answer 503 at once instead of piling up
    /// more. In-process storage always takes them.
    fn accepts_calls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_token() {
        let call = serde_json::from_value(serde_json::json!({
            "call": {"id": "c", "status": "queued", "app_id": "a", "created_at": "2026-01-01T00:00:00.000Z"},
            "method": "POST", "url": "http://x/invoke/f"
        }))
        .unwrap();
        let d = Delivery { call, token: "0123456789abcdef0123456789abcdef".into(), attempt: 2 };
        let shown = format!("{d:?}");
        assert!(!shown.contains(&d.token) && shown.contains("***") && shown.contains("attempt: 2"), "{shown}");
    }
}
