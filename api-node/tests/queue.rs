//! Queue conformance: one suite, run against every backend (memory, embedded SQLite, PostgreSQL, Redis).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api_node::queue::{MemoryQueue, Message, MessageQueue, QueueError, RedisQueue, SqlQueue};
use api_node::testing::{fresh_db_url, Backend};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Embedded,
    Postgres,
    Redis,
}

/// A fresh, empty queue, and the URL (plus Redis key prefix) to reopen it.
async fn fresh(kind: Kind) -> (Arc<dyn MessageQueue>, String, String) {
    let prefix = format!("fnt:{}:", shared::id::new_id());
    match kind {
        Kind::Memory => (Arc::new(MemoryQueue::default()), "memory://".into(), prefix),
        Kind::Embedded => {
            let url = fresh_db_url(Backend::Sqlite).await.replace("fn.db", "fn.mq");
            (Arc::new(SqlQueue::connect(&url, 0).await.unwrap()), url, prefix)
        }
        Kind::Postgres => {
            let url = fresh_db_url(Backend::Postgres).await;
            (Arc::new(SqlQueue::connect(&url, 0).await.unwrap()), url, prefix)
        }
        Kind::Redis => {
            let url = std::env::var("FN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let q = RedisQueue::connect_with_prefix(&url, 0, &prefix)
                .await
                .unwrap_or_else(|e| panic!("test Redis at {url} is not reachable: {e}"));
            (Arc::new(q), url, prefix)
        }
    }
}

async fn reopen(kind: Kind, url: &str, prefix: &str) -> Arc<dyn MessageQueue> {
    match kind {
        Kind::Memory => unreachable!("the memory queue does not survive"),
        Kind::Embedded | Kind::Postgres => Arc::new(SqlQueue::connect(url, 0).await.unwrap()),
        Kind::Redis => Arc::new(RedisQueue::connect_with_prefix(url, 0, prefix).await.unwrap()),
    }
}

fn msg(priority: u8) -> Message {
    let id = shared::id::new_id();
    Message { payload: format!("{{\"id\":\"{id}\"}}"), id, priority }
}

const LEASE: Duration = Duration::from_secs(30);

async fn priority_then_fifo(q: Arc<dyn MessageQueue>) {
    let (a, b, c, d) = (msg(0), msg(2), msg(1), msg(0));
    for m in [&a, &b, &c, &d] {
        q.push(m, Duration::ZERO).await.unwrap();
    }
    let mut order = Vec::new();
    while let Some(r) = q.reserve(LEASE).await.unwrap() {
        assert_eq!(r.attempt, 1);
        order.push(r.message.clone());
        q.ack(&r).await.unwrap();
    }
    assert_eq!(order, vec![b, c, a, d]);
}

async fn delays(q: Arc<dyn MessageQueue>) {
    let later = msg(2);
    let now = msg(0);
    q.push(&later, Duration::from_millis(600)).await.unwrap();
    q.push(&now, Duration::ZERO).await.unwrap();
    let r = q.reserve(LEASE).await.unwrap().unwrap();
    assert_eq!(r.message.id, now.id, "a delayed message is invisible, whatever its priority");
    q.ack(&r).await.unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = q.reserve(LEASE).await.unwrap().unwrap();
    assert_eq!(r.message, later);
    q.ack(&r).await.unwrap();
}

async fn expiry_redelivers_and_fences_the_old_holder(q: Arc<dyn MessageQueue>) {
    let m = msg(1);
    q.push(&m, Duration::ZERO).await.unwrap();
    let first = q.reserve(Duration::from_millis(300)).await.unwrap().unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none(), "reserved messages are not handed out twice");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = q.reserve(LEASE).await.unwrap().unwrap();
    assert_eq!((second.message.id.as_str(), second.attempt), (m.id.as_str(), 2));
    assert!(matches!(q.ack(&first).await, Err(QueueError::NotReserved(_))), "the stale holder cannot ack");
    assert!(matches!(q.release(&first, Duration::ZERO).await, Err(QueueError::NotReserved(_))));
    q.ack(&second).await.unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none());
    assert!(matches!(q.ack(&second).await, Err(QueueError::NotReserved(_))), "acked twice");
}

async fn release_with_backoff(q: Arc<dyn MessageQueue>) {
    let m = msg(0);
    q.push(&m, Duration::ZERO).await.unwrap();
    let r = q.reserve(LEASE).await.unwrap().unwrap();
    q.release(&r, Duration::from_millis(400)).await.unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none(), "released with a delay: invisible for now");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = q.reserve(LEASE).await.unwrap().unwrap();
    assert_eq!((again.message.id.as_str(), again.attempt), (m.id.as_str(), 2));
    q.ack(&again).await.unwrap();
}

async fn extend_keeps_a_long_call_held(q: Arc<dyn MessageQueue>) {
    let m = msg(0);
    q.push(&m, Duration::ZERO).await.unwrap();
    let r = q.reserve(Duration::from_millis(300)).await.unwrap().unwrap();
    q.extend(&r, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(q.reserve(LEASE).await.unwrap().is_none(), "an extended lease outlives the first one");
    q.ack(&r).await.unwrap();
    let stale = Message { id: "unknown".into(), priority: 0, payload: String::new() };
    let stale = api_node::queue::Reservation { message: stale, token: "t".into(), attempt: 1 };
    assert!(matches!(q.extend(&stale, LEASE).await, Err(QueueError::NotReserved(_))));
}

async fn duplicate_push_is_a_no_op(q: Arc<dyn MessageQueue>) {
    let m = msg(0);
    q.push(&m, Duration::ZERO).await.unwrap();
    q.push(&m, Duration::ZERO).await.unwrap();
    let r = q.reserve(LEASE).await.unwrap().unwrap();
    q.ack(&r).await.unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none());
}

async fn concurrent_consumers_never_share_a_message(q: Arc<dyn MessageQueue>) {
    let n = 200;
    for i in 0..n {
        q.push(&msg((i % 3) as u8), Duration::ZERO).await.unwrap();
    }
    let consumers: Vec<_> = (0..8)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(r) = q.reserve(LEASE).await.unwrap() {
                    got.push(r.message.id.clone());
                    q.ack(&r).await.unwrap();
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (n, n), "each message delivered exactly once");
}

async fn survives_restart(kind: Kind) {
    let (q, url, prefix) = fresh(kind).await;
    let m = msg(1);
    q.push(&m, Duration::ZERO).await.unwrap();
    let held = q.reserve(Duration::from_millis(200)).await.unwrap().unwrap();
    drop(q);
    let q = reopen(kind, &url, &prefix).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = q.reserve(LEASE).await.unwrap().expect("the message survived the restart");
    assert_eq!((&r.message, r.attempt), (&m, 2));
    assert!(q.ack(&held).await.is_err());
    q.ack(&r).await.unwrap();
}

macro_rules! suite {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn priority_then_fifo() { super::priority_then_fifo(fresh($kind).await.0).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delays() { super::delays(fresh($kind).await.0).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expiry_redelivers_and_fences_the_old_holder() {
                super::expiry_redelivers_and_fences_the_old_holder(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn release_with_backoff() { super::release_with_backoff(fresh($kind).await.0).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extend_keeps_a_long_call_held() { super::extend_keeps_a_long_call_held(fresh($kind).await.0).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicate_push_is_a_no_op() { super::duplicate_push_is_a_no_op(fresh($kind).await.0).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_consumers_never_share_a_message() {
                super::concurrent_consumers_never_share_a_message(fresh($kind).await.0).await
            }
        }
    };
}

suite!(memory, Kind::Memory);
suite!(embedded, Kind::Embedded);
suite!(postgres, Kind::Postgres);
suite!(redis, Kind::Redis);

#[tokio::test]
async fn embedded_survives_restart() {
    survives_restart(Kind::Embedded).await
}

#[tokio::test]
async fn postgres_survives_restart() {
    survives_restart(Kind::Postgres).await
}

#[tokio::test]
async fn redis_survives_restart() {
    survives_restart(Kind::Redis).await
}

#[tokio::test]
async fn unreachable_backends_are_unavailable_and_bad_urls_explained() {
    assert!(matches!(RedisQueue::connect("redis://127.0.0.1:1", 0).await, Err(QueueError::Unavailable(_))));
    assert!(matches!(SqlQueue::connect("postgres://fn:x@127.0.0.1:1/fn", 0).await, Err(QueueError::Unavailable(_))));
    match api_node::queue::open("kafka://x", 0).await {
        Err(QueueError::Config(m)) => assert!(m.contains("sqlite3://") && m.contains("redis://"), "{m}"),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    }
    let e: shared::Error = QueueError::Unavailable("down".into()).into();
    assert_eq!(e.status(), 503);
}
