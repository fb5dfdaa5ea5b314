//! The durable queue of async calls.
//!
//! A call accepted asynchronously is a message here until a runner has run it and its result is recorded.
//! Runners *reserve* a message for a short lease, *extend* it (heartbeats) while they work on the call,
//! record the result, and only then *ack* it. A reservation that expires (the runner died or hung) makes
//! the message available again, so the call runs elsewhere: delivery is at least once, and call records
//! are keyed by call ID so a second delivery updates the one record instead of making two. Fn
//! acknowledged the message when the call *started*, which lost every call whose runner died mid-run.
//!
//! Each reservation carries a fresh random 128-bit token; ack, extend and release act only for the
//! current token, in every backend, and an empty token never matches (an unreserved message has none).
//!
//! Backends, chosen by `FN_MQ_URL`:
//! - `sqlite3://PATH` (also Fn's `bolt://PATH`): the embedded default, a SQLite file in the data directory
//!   that survives restarts;
//! - `postgres://...`: a table on PostgreSQL, reserved with `FOR UPDATE SKIP LOCKED`;
//! - `redis://host:port[/db]`: sorted sets and hashes updated by Lua scripts;
//! - `memory://`: in-process, lost on exit; for tests only.
//!
//! Ordering: higher `priority` first (0..=2), then oldest call ID first. A message pushed with a delay, or
//! released with one (retry backoff), is invisible until the delay has passed.

mod memory;
mod redis;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryQueue;
pub use self::redis::RedisQueue;
pub use self::sql::SqlQueue;

/// A queued call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The call's ID; unique in the queue.
    pub id: String,
    /// 0 (lowest) to 2 (highest).
    pub priority: u8,
    /// The call as Fn JSON, with everything needed to run it.
    pub payload: String,
}

/// A message held by one consumer until it acks or releases it, or the reservation expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The message.
    pub message: Message,
    /// Proves this reservation is the current one: after an expiry and redelivery, the old holder's ack
    /// or release is refused. 128 random bits; an empty token is refused by every backend.
    pub token: String,
    /// How many times the message has been reserved, this time included.
    pub attempt: u32,
}

/// The token is a credential: `Debug` (and so every log line) shows only whether there is one.
impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("message", &self.message)
            .field("token", &if self.token.is_empty() { "" } else { "***" })
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend does not answer; new async calls must be refused (503), not accepted and lost.
    #[error("queue is unavailable: {0}")]
    Unavailable(String),
    /// The reservation expired and the message went back to the queue (or was already acked).
    #[error("reservation of message {0} is no longer held")]
    NotReserved(String),
    /// `FN_MQ_URL` is not usable.
    #[error("{0}")]
    Config(String),
    /// The backend failed a statement it should have run.
    #[error("queue backend error: {0}")]
    Backend(String),
}

impl From<QueueError> for shared::Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(_) => {
                shared::Error::Unavailable("async calls cannot be accepted now: the queue is unavailable".into())
            }
            other => shared::Error::internal(other),
        }
    }
}

/// Result of a queue operation.
pub type QueueResult<T> = Result<T, QueueError>;

/// A durable queue with reservations.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Stores a message, visible after `delay`. Returns once it is durably stored. Pushing an ID that is
    /// already queued is a no-op, so a retried push cannot duplicate a call.
    async fn push(&self, msg: &Message, delay: Duration) -> QueueResult<()>;
    /// Takes the next visible message for `lease`, or `None` when there is none now.
    async fn reserve(&self, lease: Duration) -> QueueResult<Option<Reservation>>;
    /// Deletes a reserved message: its call is finished and recorded. Refused once another consumer
    /// holds it (the reservation expired and the message was redelivered).
    async fn ack(&self, r: &Reservation) -> QueueResult<()>;
    /// Changes a held reservation to end `lease` from now: the holder's heartbeat while its call waits,
    /// pulls and runs.
    async fn extend(&self, r: &Reservation, lease: Duration) -> QueueResult<()>;
    /// Gives a reserved message back, visible again after `delay` (retry backoff).
    async fn release(&self, r: &Reservation, delay: Duration) -> QueueResult<()>;
    /// Whether the backend answers now.
    async fn ping(&self) -> QueueResult<()>;
}

/// Opens the queue `FN_MQ_URL` names, retrying an unreachable backend `retries` times one second apart.
pub async fn open(url: &str, retries: u32) -> QueueResult<Arc<dyn MessageQueue>> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    Ok(match scheme.as_str() {
        "memory" => Arc::new(MemoryQueue::default()),
        "redis" | "rediss" => Arc::new(RedisQueue::connect(url, retries).await?),
        "sqlite3" | "sqlite" | "bolt" | "postgres" | "postgresql" => Arc::new(SqlQueue::connect(url, retries).await?),
        _ => {
            return Err(QueueError::Config(format!(
                "unsupported FN_MQ_URL {url:?}: use sqlite3://PATH (embedded), postgres://..., redis://HOST:PORT or memory://"
            )))
        }
    })
}

/// Milliseconds since the Unix epoch, the queues' clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A fresh reservation token: 128 random bits from the OS-seeded CSPRNG, as 32 hex digits. Never empty
/// and never guessable from other tokens or IDs, so only the holder can ack, extend or release.
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Refuses a reservation that presents no token before any backend is asked: an unreserved message
/// has no token, and an empty one must never match it.
fn presented(r: &Reservation) -> QueueResult<&str> {
    if r.token.is_empty() {
        return Err(QueueError::NotReserved(r.message.id.clone()));
    }
    Ok(&r.token)
}
