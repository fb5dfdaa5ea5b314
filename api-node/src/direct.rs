//! The runner's view of storage, served in-process: full mode's agent, and the hybrid API's transports,
//! reach the datastore and the queue through this one implementation of `runner_node::DataAccess`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runner_node::{DataAccess, Delivery};
use shared::{App, Call, CallAttempt, CallStatus, Error, Func, QueuedCall, Route, Trigger};
use tokio::sync::Notify;

use crate::datastore::Datastore;
use crate::queue::{Message, MessageQueue, QueueError, Reservation};

/// Fn or route annotation setting how many times its failing async calls run before they are
/// dead-lettered, e.g. `"fnrs.io/async/maxAttempts": 5` (1 means no retry).
pub const MAX_ATTEMPTS_ANNOTATION: &str = "fnrs.io/async/maxAttempts";

/// How queued calls are held and retried.
#[derive(Debug, Clone, Copy)]
pub struct AsyncPolicy {
    /// How long a runner holds a call beyond its timeout before the call is handed to another runner
    /// (covers image pull and container start, which the timeout does not count).
    pub lease: Duration,
    /// Attempts of a call before it is given up (dead-lettered).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        AsyncPolicy { lease: Duration::from_secs(30), max_attempts: 3, backoff: Duration::from_secs(1) }
    }
}

/// `DataAccess` straight onto a datastore and a queue.
pub struct DirectDataAccess {
    store: Arc<dyn Datastore>,
    queue: Arc<dyn MessageQueue>,
    policy: AsyncPolicy,
    /// Wakes local long-polls when a call is queued, so queue-to-start latency is not a poll interval.
    queued: Notify,
}

impl DirectDataAccess {
    /// Serves `store` and `queue` with `policy`.
    pub fn new(store: Arc<dyn Datastore>, queue: Arc<dyn MessageQueue>, policy: AsyncPolicy) -> Self {
        DirectDataAccess { store, queue, policy, queued: Notify::new() }
    }

    fn delivery(r: Reservation) -> Result<Delivery, Error> {
        let call: QueuedCall = serde_json::from_str(&r.message.payload)
            .map_err(|e| Error::internal(format!("queued call {} is unreadable: {e}", r.message.id)))?;
        Ok(Delivery { call, token: r.token, attempt: r.attempt })
    }

    /// The timeout of the fn or route a call runs, so its lease covers the whole run. A call whose fn
    /// is gone keeps the plain lease: it will fail fast on the runner.
    async fn timeout_of(&self, call: &Call) -> Duration {
        let secs = if !call.fn_id.is_empty() {
            self.store.get_fn(&call.fn_id).await.map(|f| f.timeout).ok()
        } else {
            self.store.get_route(&call.app_id, &call.path).await.map(|r| r.timeout).ok()
        };
        Duration::from_secs(secs.unwrap_or(0).max(0) as u64)
    }

    /// Attempts allowed for a call: its fn's (or route's) [`MAX_ATTEMPTS_ANNOTATION`] when set to a
    /// number from 1 to 100, the node's `FN_ASYNC_MAX_ATTEMPTS` otherwise.
    async fn max_attempts(&self, call: &Call) -> u32 {
        let annotations = if !call.fn_id.is_empty() {
            self.store.get_fn(&call.fn_id).await.map(|f| f.annotations).ok()
        } else {
            self.store.get_route(&call.app_id, &call.path).await.map(|r| r.annotations).ok()
        };
        annotations
            .and_then(|a| a.get(MAX_ATTEMPTS_ANNOTATION).and_then(|v| v.as_u64()))
            .filter(|n| (1..=100).contains(n))
            .map_or(self.policy.max_attempts, |n| n as u32)
    }

    fn reservation(d: &Delivery) -> Result<Reservation, Error> {
        Ok(Reservation {
            message: Message { id: d.call.call.id.clone(), priority: d.call.priority, payload: String::new() },
            token: d.token.clone(),
            attempt: d.attempt,
        })
    }
}

/// Poll interval of a long-poll when no local enqueue wakes it (calls queued by other API nodes).
const POLL: Duration = Duration::from_millis(200);

#[async_trait]
impl DataAccess for DirectDataAccess {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        Ok(self.store.get_app_by_name(name).await?)
    }

    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        Ok(self.store.get_app_by_id(id).await?)
    }

    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        Ok(self.store.get_fn(id).await?)
    }

    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        Ok(self.store.get_route(app_id, path).await?)
    }

    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        Ok(self.store.get_trigger_by_source(app_id, trigger_type, source).await?)
    }

    /// Queues the call, then records it as queued. The queue message is the call: once it is stored the
    /// call will run, so the caller gets its 202 even if the record cannot be written now (runners record
    /// the call when they take it). The record is written only if absent, so it never overwrites what a
    /// runner that was quicker already reported. A queue that refuses means 503 and nothing stored.
    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        let record = Call { status: CallStatus::Queued, ..call.call.clone() };
        let payload = serde_json::to_string(call).map_err(Error::internal)?;
        let message = Message { id: record.id.clone(), priority: call.priority.min(2), payload };
        self.queue.push(&message, Duration::ZERO).await?;
        self.queued.notify_waiters();
        if let Err(e) = self.store.insert_call_if_absent(&record).await {
            tracing::warn!(call_id = %record.id, error = %e, "queued call not recorded yet; its runner will record it");
        }
        Ok(())
    }

    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = self.queued.notified();
            if let Some(r) = self.queue.reserve(self.policy.lease).await? {
                let delivery = Self::delivery(r.clone())?;
                let timeout = self.timeout_of(&delivery.call.call).await;
                self.queue.extend(&r, self.policy.lease + timeout).await?;
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), woken).await;
        }
    }

    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        Ok(self.store.insert_call(call).await?)
    }

    /// The log first, then the record: a client that sees the final status can read the log.
    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.store.insert_log(&call.app_id, &call.id, log).await?;
        Ok(self.store.insert_call(call).await?)
    }

    /// Acks a call that succeeded or has no attempts left (then it is dead-lettered); gives a failed one
    /// back with exponential backoff otherwise. Each run is added to the record's attempts before the
    /// queue is told, and the run's end was recorded before this (`call_finished`), so a crash anywhere
    /// here redelivers the call rather than losing it.
    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        let reservation = Self::reservation(delivery)?;
        // A holder whose lease ran out: the call went back to the queue and another run (or its
        // completion) owns it now. This completion can never be taken, so it is dropped, not failed: an
        // error here would have a hybrid runner retry it forever, holding up every report behind it.
        // Extending first also keeps the message from being redelivered while the record is written.
        match self.queue.extend(&reservation, self.policy.lease).await {
            Err(QueueError::NotReserved(_)) => {
                tracing::warn!(call_id = %call.id, attempt = delivery.attempt, "completion of a call whose lease expired ignored; it runs again");
                return Ok(());
            }
            other => other?,
        }
        let mut record = match self.store.get_call(&call.id).await {
            Ok(stored) => stored,
            Err(e) => match Error::from(e) {
                Error::CallNotFound => call.clone(),
                other => return Err(other),
            },
        };
        record.status = call.status;
        let failed = matches!(call.status, CallStatus::Error | CallStatus::Timeout);
        let attempt = CallAttempt {
            attempt: delivery.attempt,
            status: call.status,
            started_at: record.started_at,
            completed_at: record.completed_at,
            error: if failed { record.error.clone() } else { String::new() },
        };
        record.attempts.retain(|a| a.attempt != delivery.attempt);
        record.attempts.push(attempt);
        let retry = failed && delivery.attempt < self.max_attempts(call).await;
        if retry {
            record.status = CallStatus::Queued;
        }
        record.dead_letter = failed && !retry;
        self.store.record_attempt(&record).await?;
        let done = if retry {
            let backoff = self.policy.backoff * 2u32.saturating_pow(delivery.attempt.saturating_sub(1));
            self.queue.release(&reservation, backoff).await
        } else {
            self.queue.ack(&reservation).await
        };
        match done {
            Err(QueueError::NotReserved(_)) => {
                tracing::warn!(call_id = %call.id, attempt = delivery.attempt, "call's lease expired while it was completed; it runs again");
                Ok(())
            }
            other => Ok(other?),
        }
    }
}
