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
    /// How long a runner holds a call without a heartbeat before the call is handed to another runner.
    /// Runners heartbeat several times per lease while the call waits for room, pulls, starts and runs,
    /// so this only bounds how late a lost runner's call runs elsewhere.
    pub lease: Duration,
    /// Attempts of a call before it is given up (dead-lettered): runs that failed, and hand-outs whose
    /// runner was lost before completing them.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        AsyncPolicy { lease: Duration::from_secs(10), max_attempts: 3, backoff: Duration::from_secs(1) }
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

    fn delivery(&self, r: Reservation) -> Result<Delivery, Error> {
        let call: QueuedCall = serde_json::from_str(&r.message.payload)
            .map_err(|e| Error::internal(format!("queued call {} is unreadable: {e}", r.message.id)))?;
        Ok(Delivery { call, token: r.token, attempt: r.attempt })
    }

    /// Dead-letters a call handed out more often than its attempts allow, each time to a runner that
    /// never completed it (it crashed, or the call killed it): its record ends as an error saying so,
    /// and its message is acked instead of handed out again.
    async fn give_up(&self, r: &Reservation, delivery: &Delivery, max_attempts: u32) -> Result<(), Error> {
        let call = &delivery.call.call;
        let mut record = match self.store.get_call(&call.id).await {
            Ok(stored) => stored,
            Err(e) => match Error::from(e) {
                Error::CallNotFound => call.clone(),
                other => return Err(other),
            },
        };
        let completed: Vec<u32> = record.attempts.iter().map(|a| a.attempt).collect();
        let lost: Vec<u32> = (1..=max_attempts).filter(|n| !completed.contains(n)).collect();
        for &attempt in &lost {
            record.attempts.push(CallAttempt {
                attempt,
                status: CallStatus::Error,
                started_at: None,
                completed_at: None,
                error: "its runner was lost before completing it".into(),
            });
        }
        record.attempts.sort_by_key(|a| a.attempt);
        record.status = CallStatus::Error;
        record.error = format!("gave up after {max_attempts} attempts: runner lost {} times", lost.len());
        record.completed_at = Some(shared::time::DateTime::now());
        record.dead_letter = true;
        tracing::warn!(call_id = %call.id, lost = lost.len(), "queued call dead-lettered: its runners were lost");
        self.store.insert_call(&record).await?;
        self.store.record_attempt(&record).await?;
        match self.queue.ack(r).await {
            Err(QueueError::NotReserved(_)) => Ok(()),
            other => Ok(other?),
        }
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

    fn reservation(d: &Delivery) -> Reservation {
        Reservation {
            message: Message { id: d.call.call.id.clone(), priority: d.call.priority, payload: String::new() },
            token: d.token.clone(),
            attempt: d.attempt,
        }
    }
}

/// The answer to an ack, extension or release whose reservation is not held: a 4xx, so a runner neither
/// retries it nor mistakes it for done, and nothing about the call changes.
fn not_held(call_id: &str) -> Error {
    Error::BadRequest(
        format!(
            "call {call_id} is not held by this reservation: its lease expired and it was handed out again, \
             it was completed, or the token is wrong"
        )
        .into(),
    )
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

    /// Reserves the next call for one lease; the runner keeps it with [`DataAccess::heartbeat`]. A call
    /// handed out more often than its attempts allow, whose runners never completed it, is dead-lettered
    /// here instead of handed out again.
    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = self.queued.notified();
            if let Some(r) = self.queue.reserve(self.policy.lease).await? {
                let delivery = self.delivery(r.clone())?;
                let max_attempts = self.max_attempts(&delivery.call.call).await;
                if delivery.attempt <= max_attempts {
                    return Ok(Some(delivery));
                }
                self.give_up(&r, &delivery, max_attempts).await?;
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), woken).await;
        }
    }

    /// Extends the holder's lease by one lease from now; refused (4xx) unless its token is the current one.
    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        match self.queue.extend(&Self::reservation(delivery), self.policy.lease).await {
            Err(QueueError::NotReserved(id)) => Err(not_held(&id)),
            other => other.map(|()| self.policy.lease).map_err(Error::from),
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
        let reservation = Self::reservation(delivery);
        // Only the current holder completes: a holder whose lease ran out (the call went back to the
        // queue, another run owns it now), or a caller with an empty or wrong token, gets a 4xx, which a
        // runner does not retry, and the record is left as it is. Extending first also keeps the message
        // from being redelivered while the record is written.
        match self.queue.extend(&reservation, self.policy.lease).await {
            Err(QueueError::NotReserved(_)) => {
                tracing::warn!(call_id = %call.id, attempt = delivery.attempt, "completion refused: the reservation is not held");
                return Err(not_held(&call.id));
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
                Err(not_held(&call.id))
            }
            other => Ok(other?),
        }
    }
}
