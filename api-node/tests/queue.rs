//! Queue conformance: one suite, run against every backend (memory, embedded SQLite, PostgreSQL, Redis).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api_node::datastore::Datastore;
use api_node::direct::{AsyncPolicy, DirectDataAccess};
use api_node::queue::{MemoryQueue, Message, MessageQueue, QueueError, RedisQueue, Reservation, SqlQueue};
use api_node::testing::{fresh_db_url, fresh_store, Backend};
use runner_node::{DataAccess, Delivery};
use shared::time::DateTime;
use shared::{App, Call, CallStatus, QueuedCall};

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

fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, QueueError>) {
    assert!(matches!(r, Err(QueueError::NotReserved(_))), "{what} must be refused, got {r:?}");
}

/// Only the current holder's token acts on a message: no empty token (which an unreserved or released
/// message used to match), no made-up one, no stale one. Tokens are 128 random bits.
async fn only_the_current_token_acts(q: Arc<dyn MessageQueue>) {
    let m = msg(1);
    q.push(&m, Duration::ZERO).await.unwrap();
    let empty = Reservation { message: m.clone(), token: String::new(), attempt: 1 };
    refused("an empty-token ack of a message never handed out", q.ack(&empty).await);
    refused("an empty-token extend", q.extend(&empty, LEASE).await);
    refused("an empty-token release", q.release(&empty, Duration::ZERO).await);

    let r = q.reserve(LEASE).await.unwrap().expect("the refused ack left the message queued");
    assert_eq!((&r.message, r.attempt), (&m, 1));
    assert!(r.token.len() == 32 && r.token.chars().all(|c| c.is_ascii_hexdigit()), "128-bit token: {:?}", r.token);
    assert!(!format!("{r:?}").contains(&r.token), "the token is kept out of Debug output");
    for token in [String::new(), "0".repeat(32), m.id.clone(), shared::id::new_id()] {
        let wrong = Reservation { token, ..r.clone() };
        refused("a wrong-token ack", q.ack(&wrong).await);
        refused("a wrong-token extend", q.extend(&wrong, LEASE).await);
        refused("a wrong-token release", q.release(&wrong, Duration::ZERO).await);
    }

    // Released: nobody holds it, and the empty token still matches nothing.
    q.release(&r, Duration::ZERO).await.unwrap();
    refused("an empty-token ack of a released message", q.ack(&empty).await);
    refused("the old holder's ack", q.ack(&r).await);
    let again = q.reserve(LEASE).await.unwrap().expect("released message back");
    assert_eq!(again.attempt, 2);
    assert_ne!(again.token, r.token, "each reservation gets a fresh token");
    q.ack(&again).await.unwrap();
    assert!(q.reserve(LEASE).await.unwrap().is_none());

    let mut tokens = HashSet::new();
    for _ in 0..20 {
        q.push(&msg(0), Duration::ZERO).await.unwrap();
        let r = q.reserve(LEASE).await.unwrap().unwrap();
        q.ack(&r).await.unwrap();
        tokens.insert(r.token);
    }
    assert_eq!(tokens.len(), 20, "tokens never repeat");
}

/// A `DirectDataAccess` over `queue`, a fresh SQLite store with one app, and `policy`.
async fn direct(
    queue: Arc<dyn MessageQueue>,
    policy: AsyncPolicy,
) -> (DirectDataAccess, Arc<dyn Datastore>, QueuedCall) {
    let (store, _) = fresh_store(Backend::Sqlite).await;
    let store: Arc<dyn Datastore> = Arc::new(store);
    let app = store
        .insert_app(&App::new(serde_json::from_value(serde_json::json!({"name": "a"})).unwrap()).unwrap())
        .await
        .unwrap();
    let call = Call { path: "/p".into(), ..Call::new(shared::id::new_id(), &app.id, CallStatus::Queued) };
    let queued = QueuedCall {
        call,
        method: "POST".into(),
        url: "http://x/r/a/p".into(),
        headers: Default::default(),
        body: String::new(),
        priority: 0,
    };
    (DirectDataAccess::new(store.clone(), queue, policy), store, queued)
}

fn done(call: &Call) -> Call {
    Call { status: CallStatus::Success, completed_at: Some(DateTime::now()), ..call.clone() }
}

/// Fn's hole: a completion with an empty token acked a queued call that never ran and marked it a
/// success. Now an empty or wrong token is refused with a 4xx, the record is untouched and the call
/// still runs; heartbeats are fenced the same way.
async fn forged_completions_are_refused(q: Arc<dyn MessageQueue>) {
    let policy = AsyncPolicy { lease: Duration::from_secs(30), max_attempts: 3, backoff: Duration::ZERO };
    let (data, store, queued) = direct(q, policy).await;
    data.enqueue(&queued).await.unwrap();
    let id = queued.call.id.clone();
    let forged = Delivery { call: queued.clone(), token: String::new(), attempt: 1 };
    let e = data.complete(&forged, &done(&queued.call)).await.expect_err("an empty-token completion");
    assert_eq!(e.status(), 400, "{e:?}");
    assert!(e.message().contains("not held"), "{}", e.message());
    let e = data.heartbeat(&forged).await.expect_err("an empty-token heartbeat");
    assert_eq!(e.status(), 400, "{e:?}");
    let record = store.get_call(&id).await.unwrap();
    assert_eq!((record.status, record.attempts.len()), (CallStatus::Queued, 0), "untouched: {record:?}");

    let held = data.dequeue(Duration::ZERO).await.unwrap().expect("the call is still queued");
    assert_eq!(held.attempt, 1);
    for token in [String::new(), "f".repeat(32), id.clone()] {
        let wrong = Delivery { token, ..held.clone() };
        assert_eq!(data.complete(&wrong, &done(&queued.call)).await.unwrap_err().status(), 400);
        assert_eq!(data.heartbeat(&wrong).await.unwrap_err().status(), 400);
    }
    let record = store.get_call(&id).await.unwrap();
    assert_eq!((record.status, record.attempts.len()), (CallStatus::Queued, 0), "untouched: {record:?}");
    assert_eq!(data.heartbeat(&held).await.unwrap(), Duration::from_secs(30));
    data.complete(&held, &done(&queued.call)).await.unwrap();
    assert_eq!(store.get_call(&id).await.unwrap().status, CallStatus::Success);
    assert_eq!(data.heartbeat(&held).await.unwrap_err().status(), 400, "completed: the hold is gone");
}

/// A holder that beats keeps its call for as long as it works on it, many leases long; once it stops
/// (a lost runner), the call is handed out again one lease later.
async fn heartbeats_hold_a_call_past_its_lease(q: Arc<dyn MessageQueue>) {
    let lease = Duration::from_millis(400);
    let policy = AsyncPolicy { lease, max_attempts: 3, backoff: Duration::ZERO };
    let (data, _, queued) = direct(q, policy).await;
    data.enqueue(&queued).await.unwrap();
    let held = data.dequeue(Duration::ZERO).await.unwrap().unwrap();
    let until = tokio::time::Instant::now() + lease * 4;
    while tokio::time::Instant::now() < until {
        assert_eq!(data.heartbeat(&held).await.unwrap(), lease);
        assert!(data.dequeue(Duration::ZERO).await.unwrap().is_none(), "held: not handed out again");
        tokio::time::sleep(lease / 4).await;
    }
    let again = data.dequeue(lease * 3).await.unwrap().expect("handed out again once the beats stop");
    assert_eq!((again.call.call.id.as_str(), again.attempt), (queued.call.id.as_str(), 2));
    assert_eq!(data.heartbeat(&held).await.unwrap_err().status(), 400, "the lost holder's beat is refused");
}

/// A call handed out `max_attempts` times whose runners never completed it is dead-lettered with the
/// reason on the next hand-out, and acked, not handed out for ever.
async fn lost_calls_are_dead_lettered_after_max_attempts(q: Arc<dyn MessageQueue>) {
    let lease = Duration::from_millis(200);
    let policy = AsyncPolicy { lease, max_attempts: 2, backoff: Duration::ZERO };
    let (data, store, queued) = direct(q, policy).await;
    data.enqueue(&queued).await.unwrap();
    let first = data.dequeue(Duration::ZERO).await.unwrap().expect("first hand-out");
    let second = data.dequeue(lease * 5).await.unwrap().expect("second hand-out after the lease");
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert!(data.dequeue(lease * 3).await.unwrap().is_none(), "not handed out a third time");
    let record = store.get_call(&queued.call.id).await.unwrap();
    assert_eq!((record.status, record.dead_letter), (CallStatus::Error, true), "{record:?}");
    assert!(record.error.contains("runner lost 2 times"), "{}", record.error);
    assert!(record.completed_at.is_some());
    assert_eq!(
        record.attempts.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(),
        vec![(1, CallStatus::Error), (2, CallStatus::Error)]
    );
    assert!(data.dequeue(lease * 2).await.unwrap().is_none(), "acked, gone from the queue");
    assert_eq!(data.complete(&second, &done(&queued.call)).await.unwrap_err().status(), 400, "too late");
    assert_eq!(store.get_call(&queued.call.id).await.unwrap().status, CallStatus::Error);
}

/// A call that failed once (completed, released for a retry) and was then lost once counts both
/// attempts: only the lost one is reported lost.
async fn failed_then_lost_counts_both_attempts(q: Arc<dyn MessageQueue>) {
    let lease = Duration::from_millis(200);
    let policy = AsyncPolicy { lease, max_attempts: 2, backoff: Duration::ZERO };
    let (data, store, queued) = direct(q, policy).await;
    data.enqueue(&queued).await.unwrap();
    let first = data.dequeue(Duration::ZERO).await.unwrap().unwrap();
    let failed = Call { status: CallStatus::Error, error: "boom".into(), ..done(&queued.call) };
    data.call_finished(&failed, "").await.unwrap();
    data.complete(&first, &failed).await.unwrap();
    let second = data.dequeue(lease * 5).await.unwrap().expect("retried");
    assert_eq!(second.attempt, 2);
    assert!(data.dequeue(lease * 3).await.unwrap().is_none());
    let record = store.get_call(&queued.call.id).await.unwrap();
    assert!(record.dead_letter && record.error.contains("runner lost 1 times"), "{record:?}");
    assert_eq!(record.attempts.len(), 2);
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
            async fn priority_then_fifo() {
                super::priority_then_fifo(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delays() {
                super::delays(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expiry_redelivers_and_fences_the_old_holder() {
                super::expiry_redelivers_and_fences_the_old_holder(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn release_with_backoff() {
                super::release_with_backoff(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extend_keeps_a_long_call_held() {
                super::extend_keeps_a_long_call_held(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicate_push_is_a_no_op() {
                super::duplicate_push_is_a_no_op(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_consumers_never_share_a_message() {
                super::concurrent_consumers_never_share_a_message(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn only_the_current_token_acts() {
                super::only_the_current_token_acts(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forged_completions_are_refused() {
                super::forged_completions_are_refused(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn heartbeats_hold_a_call_past_its_lease() {
                super::heartbeats_hold_a_call_past_its_lease(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lost_calls_are_dead_lettered_after_max_attempts() {
                super::lost_calls_are_dead_lettered_after_max_attempts(fresh($kind).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_then_lost_counts_both_attempts() {
                super::failed_then_lost_counts_both_attempts(fresh($kind).await.0).await
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
