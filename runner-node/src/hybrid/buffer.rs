//! Call reports that survive an API node outage.
//!
//! `call_started`, `call_finished` and `complete` are queued in a bounded buffer; the first two return at
//! once, `complete` once its report is delivered (see [`BufferedReports::complete`]). One
//! background task delivers them in order, retrying with capped exponential backoff for as long as the
//! API node fails (a 5xx, or unreachable). When the buffer is full, callers wait for room: reports are
//! never dropped for lack of space. A report the API node refuses (a 4xx: bad token, malformed record)
//! would be refused again, so it is logged and dropped rather than blocking the reports behind it.
//!
//! Redelivery is safe: a failure after the API node stored a report but before its answer arrived makes
//! the report go again, and the API node stores call records and logs by call ID (an upsert) and acks a
//! delivery by its token, so the second delivery updates the same record instead of making another.
//!
//! Lookups, `enqueue` and `dequeue` pass straight through: an async call must be stored before it is
//! accepted, so `enqueue` fails with 503 while the API node is down instead of being buffered here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};
use tokio::sync::{mpsc, oneshot, watch};

use crate::data_access::{DataAccess, Delivery};

/// Size and retry pacing of a [`BufferedReports`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// Reports held before callers wait for room (at least 1).
    pub capacity: usize,
    /// Wait after the first failed delivery; doubles per failure.
    pub retry_initial: Duration,
    /// Longest wait between deliveries of one report.
    pub retry_max: Duration,
}

/// A report on its way to the API node.
enum Report {
    Started(Call),
    Finished(Call, String),
    /// With whom to tell once it is delivered (or refused).
    Complete(Box<Delivery>, Call, oneshot::Sender<()>),
}

impl Report {
    async fn deliver(&self, to: &dyn DataAccess) -> Result<(), Error> {
        match self {
            Report::Started(call) => to.call_started(call).await,
            Report::Finished(call, log) => to.call_finished(call, log).await,
            Report::Complete(delivery, call, _) => to.complete(delivery, call).await,
        }
    }

    fn describe(&self) -> (&'static str, &str) {
        match self {
            Report::Started(call) => ("start", &call.id),
            Report::Finished(call, _) => ("finish", &call.id),
            Report::Complete(_, call, _) => ("complete", &call.id),
        }
    }
}

/// [`DataAccess`] whose call reports go through a bounded, in-order, retrying buffer in front of `inner`.
pub struct BufferedReports {
    inner: Arc<dyn DataAccess>,
    reports: mpsc::Sender<Report>,
    pending: Arc<watch::Sender<usize>>,
}

/// Waits for buffered reports to reach the API node, for a graceful shutdown.
#[derive(Clone)]
pub struct ReportFlusher {
    pending: watch::Receiver<usize>,
}

impl ReportFlusher {
    /// Reports accepted but not yet delivered (or dropped as refused).
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Waits until every report accepted so far is delivered, or `limit` passes; `true` when none is left.
    pub async fn flush(&self, limit: Duration) -> bool {
        let mut pending = self.pending.clone();
        tokio::time::timeout(limit, pending.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }
}

impl BufferedReports {
    /// Buffers the reports for `inner` and starts the task that delivers them. Must be called inside a
    /// Tokio runtime. The task ends once this value is dropped and the buffer is empty.
    pub fn new(inner: Arc<dyn DataAccess>, settings: ReportSettings) -> Self {
        let (reports, queue) = mpsc::channel(settings.capacity.max(1));
        let pending = Arc::new(watch::Sender::new(0));
        tokio::spawn(deliver_all(inner.clone(), queue, pending.clone(), settings));
        BufferedReports { inner, reports, pending }
    }

    /// A handle to wait for the buffer to drain.
    pub fn flusher(&self) -> ReportFlusher {
        ReportFlusher { pending: self.pending.subscribe() }
    }

    /// Queues `report`, waiting for room while the buffer is full.
    async fn push(&self, report: Report) -> Result<(), Error> {
        // Reserve first: a caller that gives up while waiting for room leaves no count behind.
        let Ok(room) = self.reports.reserve().await else {
            // Only if the delivery task died (a panic): nothing would deliver it.
            return Err(Error::internal("call report buffer closed"));
        };
        self.pending.send_modify(|n| *n += 1);
        room.send(report);
        Ok(())
    }
}

/// Delivers queued reports one at a time, in order, each until the API node takes or refuses it.
async fn deliver_all(
    to: Arc<dyn DataAccess>,
    mut queue: mpsc::Receiver<Report>,
    pending: Arc<watch::Sender<usize>>,
    settings: ReportSettings,
) {
    while let Some(report) = queue.recv().await {
        let mut backoff = settings.retry_initial;
        let mut failures = 0u32;
        loop {
            match report.deliver(&*to).await {
                Ok(()) => break,
                Err(e) if e.status() >= 500 => {
                    failures += 1;
                    let (kind, call_id) = report.describe();
                    tracing::warn!(error = ?e, kind, call_id, failures, retry_in = ?backoff,
                        buffered = queue.len(), "API node did not take a call report; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(settings.retry_max);
                }
                Err(e) => {
                    let (kind, call_id) = report.describe();
                    tracing::error!(error = ?e, kind, call_id, "API node refused a call report; dropping it");
                    break;
                }
            }
        }
        pending.send_modify(|n| *n -= 1);
        if let Report::Complete(_, _, done) = report {
            let _ = done.send(());
        }
    }
}

#[async_trait]
impl DataAccess for BufferedReports {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        self.inner.app_by_name(name).await
    }

    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        self.inner.app_by_id(id).await
    }

    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        self.inner.fn_by_id(id).await
    }

    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        self.inner.route(app_id, path).await
    }

    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        self.inner.trigger_by_source(app_id, trigger_type, source).await
    }

    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        self.inner.enqueue(call).await
    }

    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        self.inner.dequeue(wait).await
    }

    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        self.push(Report::Started(call.clone())).await
    }

    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.push(Report::Finished(call.clone(), log.to_string())).await
    }

    /// Queues the completion behind the call's other reports and waits until the API node took (or
    /// refused) it. The async loop counts a call as running until this returns, so a runner never takes
    /// queued calls faster than their completions reach the API node: otherwise completions waiting in
    /// line outlive the calls' leases, every call is handed out again, and the runner livelocks.
    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        let (done, delivered) = oneshot::channel();
        self.push(Report::Complete(Box::new(delivery.clone()), call.clone(), done)).await?;
        delivered.await.map_err(|_| Error::internal("call report buffer closed"))
    }

    /// Not buffered: a heartbeat matters only now, and must not wait behind reports.
    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        self.inner.heartbeat(delivery).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// A fake API node that records what it took, fails the first `failures` deliveries with 503, and
    /// refuses everything with 400 or fails everything with 503 while told to.
    #[derive(Default)]
    struct FakeApi {
        taken: Mutex<Vec<String>>,
        failures: AtomicUsize,
        down: AtomicBool,
        refuse: AtomicBool,
        attempts: AtomicUsize,
    }

    impl FakeApi {
        fn take(&self, what: String) -> Result<(), Error> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.refuse.load(Ordering::SeqCst) {
                return Err(Error::InvalidJson);
            }
            let failed = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            if failed || self.down.load(Ordering::SeqCst) {
                return Err(Error::Unavailable("API node unavailable".into()));
            }
            self.taken.lock().unwrap().push(what);
            Ok(())
        }

        fn taken(&self) -> Vec<String> {
            self.taken.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl DataAccess for FakeApi {
        async fn app_by_name(&self, _: &str) -> Result<App, Error> {
            Err(Error::AppNotFound)
        }
        async fn app_by_id(&self, _: &str) -> Result<App, Error> {
            Err(Error::AppNotFound)
        }
        async fn fn_by_id(&self, _: &str) -> Result<Func, Error> {
            Err(Error::FnNotFound)
        }
        async fn route(&self, _: &str, _: &str) -> Result<Route, Error> {
            Err(Error::RouteNotFound)
        }
        async fn trigger_by_source(&self, _: &str, _: &str, _: &str) -> Result<Trigger, Error> {
            Err(Error::TriggerNotFound)
        }
        async fn enqueue(&self, _: &QueuedCall) -> Result<(), Error> {
            Err(Error::Unavailable("API node unavailable".into()))
        }
        async fn dequeue(&self, _: Duration) -> Result<Option<Delivery>, Error> {
            Ok(None)
        }
        async fn call_started(&self, call: &Call) -> Result<(), Error> {
            self.take(format!("start {}", call.id))
        }
        async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
            self.take(format!("finish {} {log}", call.id))
        }
        async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
            self.take(format!("complete {} {}", call.id, delivery.token))
        }
        async fn heartbeat(&self, _: &Delivery) -> Result<Duration, Error> {
            Ok(Duration::from_secs(30))
        }
    }

    fn call(id: &str) -> Call {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": "running", "app_id": "app", "created_at": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap()
    }

    fn settings(capacity: usize) -> ReportSettings {
        ReportSettings { capacity, retry_initial: Duration::from_millis(5), retry_max: Duration::from_millis(20) }
    }

    #[tokio::test]
    async fn delivers_in_order_after_failures() {
        let api = Arc::new(FakeApi::default());
        api.failures.store(4, Ordering::SeqCst);
        let buffer = BufferedReports::new(api.clone(), settings(100));
        let flusher = buffer.flusher();

        let c1 = call("c1");
        let delivery = Delivery {
            call: serde_json::from_value(serde_json::json!({"call": c1, "method": "POST", "url": "http://x/"}))
                .unwrap(),
            token: "tok".into(),
            attempt: 1,
        };
        buffer.call_started(&c1).await.unwrap();
        buffer.call_finished(&c1, "log line").await.unwrap();
        buffer.complete(&delivery, &c1).await.unwrap();
        buffer.call_started(&call("c2")).await.unwrap();
        assert!(flusher.pending() > 0);

        assert!(flusher.flush(Duration::from_secs(5)).await, "buffer drained");
        assert_eq!(api.taken(), ["start c1", "finish c1 log line", "complete c1 tok", "start c2"]);
        assert_eq!(api.attempts.load(Ordering::SeqCst), 4 + 4, "every failure was retried");
        assert_eq!(flusher.pending(), 0);
    }

    #[tokio::test]
    async fn full_buffer_makes_callers_wait_and_loses_nothing() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let capacity = 3;
        let buffer = Arc::new(BufferedReports::new(api.clone(), settings(capacity)));

        // Fill until a report has to wait: at most the buffer plus the one being retried fit.
        let mut accepted = 0;
        let blocked = loop {
            let buffer = buffer.clone();
            let id = format!("c{accepted}");
            let mut push = tokio::spawn(async move { buffer.call_started(&call(&id)).await });
            match tokio::time::timeout(Duration::from_millis(500), &mut push).await {
                Ok(done) => {
                    done.unwrap().unwrap();
                    accepted += 1;
                    assert!(accepted <= capacity + 1, "a full buffer must not take more");
                }
                Err(_) => break push,
            }
        };
        assert!(accepted >= capacity, "the buffer takes `capacity` reports before anyone waits");
        assert!(api.taken().is_empty());

        api.down.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("the waiting caller got room")
            .unwrap()
            .unwrap();
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        let expected: Vec<String> = (0..=accepted).map(|i| format!("start c{i}")).collect();
        assert_eq!(api.taken(), expected);
    }

    #[tokio::test]
    async fn refused_reports_do_not_block_the_rest() {
        let api = Arc::new(FakeApi::default());
        api.refuse.store(true, Ordering::SeqCst);
        let buffer = BufferedReports::new(api.clone(), settings(10));
        buffer.call_started(&call("bad")).await.unwrap();
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert_eq!(api.attempts.load(Ordering::SeqCst), 1, "a 4xx is not retried");

        api.refuse.store(false, Ordering::SeqCst);
        buffer.call_started(&call("good")).await.unwrap();
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert_eq!(api.taken(), ["start good"]);
    }

    #[tokio::test]
    async fn complete_returns_once_delivered() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let buffer = Arc::new(BufferedReports::new(api.clone(), settings(10)));
        let c1 = call("c1");
        let delivery = Delivery {
            call: serde_json::from_value(serde_json::json!({"call": c1, "method": "POST", "url": "http://x/"}))
                .unwrap(),
            token: "tok".into(),
            attempt: 1,
        };
        buffer.call_started(&c1).await.unwrap();
        let b = buffer.clone();
        let mut done = tokio::spawn(async move { b.complete(&delivery, &c1).await });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut done).await.is_err(),
            "complete waits while the API node is away"
        );
        api.down.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), done).await.expect("complete returns").unwrap().unwrap();
        assert_eq!(api.taken(), ["start c1", "complete c1 tok"]);
    }

    #[tokio::test]
    async fn enqueue_is_not_buffered() {
        let api = Arc::new(FakeApi::default());
        let buffer = BufferedReports::new(api.clone(), settings(10));
        let queued: QueuedCall =
            serde_json::from_value(serde_json::json!({"call": call("q"), "method": "POST", "url": "http://x/"}))
                .unwrap();
        assert_eq!(buffer.enqueue(&queued).await.unwrap_err().status(), 503);
    }
}
