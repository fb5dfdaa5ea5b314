//! Call reports that survive an API node outage.
//!
//! `call_started`, `call_finished` and `complete` are queued in a buffer and return at once (`complete`
//! once its report is delivered, see [`BufferedReports::complete`]). One background task delivers them,
//! in order for each call, retrying with capped exponential backoff while the API node fails (a 5xx, or
//! unreachable). A report that keeps failing does not hold the others: while it waits for its retry,
//! reports of other calls pass it (a call's own reports stay in order behind it), and a report that
//! failed [`POISON_FAILURES`] times in a row while reports behind it got through is dropped with an error
//! log line, since the API node is up and refuses that one report. Two failures in a row (of any reports)
//! mean the API node is away: delivery then pauses, with capped backoff, rather than trying every buffered
//! report in turn. A report the API node refuses outright
//! (a 4xx: bad token, malformed record, too large) would be refused again, so it is dropped at once with
//! an error log line naming the call.
//!
//! The buffer is bounded in count and in bytes ([`ReportSettings`]). Reports are never dropped for lack of
//! room: once it holds `capacity` reports or `max_bytes` bytes, [`DataAccess::accepts_calls`] is false and
//! the invoke paths answer new calls 503 at once, while calls already running still report. It thus
//! exceeds its bound by at most the reports of the calls in flight.
//!
//! Redelivery is safe: a failure after the API node stored a report but before its answer arrived makes
//! the report go again, and the API node stores call records and logs by call ID (an upsert) and acks a
//! delivery by its token, so the second delivery updates the same record instead of making another.
//!
//! Lookups, `enqueue` and `dequeue` pass straight through: an async call must be stored before it is
//! accepted, so `enqueue` fails with 503 while the API node is down instead of being buffered here.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use crate::data_access::{DataAccess, Delivery};

/// Failures in a row after which a report that others got past is taken as one the API node cannot
/// store, and dropped.
pub const POISON_FAILURES: u32 = 10;

/// Size and retry pacing of a [`BufferedReports`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// Reports held before new calls are refused (at least 1).
    pub capacity: usize,
    /// Bytes of reports (logs and records) held before new calls are refused.
    pub max_bytes: usize,
    /// Wait after the first failed delivery; doubles per failure.
    pub retry_initial: Duration,
    /// Longest wait between deliveries of one report.
    pub retry_max: Duration,
}

/// A report on its way to the API node.
enum Report {
    Started(Call),
    Finished(Call, String),
    /// With whom to tell once it is delivered (or dropped).
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

    fn call_id(&self) -> &str {
        match self {
            Report::Started(call) | Report::Finished(call, _) | Report::Complete(_, call, _) => &call.id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Report::Started(_) => "start",
            Report::Finished(..) => "finish",
            Report::Complete(..) => "complete",
        }
    }

    /// About what the report weighs in memory: its log and its record.
    fn size(&self) -> usize {
        let record = |c: &Call| serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0);
        match self {
            Report::Started(call) => record(call),
            Report::Finished(call, log) => record(call) + log.len(),
            Report::Complete(delivery, call, _) => record(call) + delivery.call.body.len(),
        }
    }
}

/// A report waiting in the buffer.
struct Pending {
    report: Report,
    size: usize,
    failures: u32,
    /// Next delivery attempt no earlier than this.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// [`Buffer::delivered`] at this report's first failure.
    delivered_at_first_failure: u64,
}

/// What the callers and the delivery task share.
#[derive(Default)]
struct Buffer {
    queue: VecDeque<Pending>,
    bytes: usize,
    /// Reports delivered so far.
    delivered: u64,
    /// The [`BufferedReports`] is gone: deliver what is left, then stop.
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// A report was queued, or the buffer closed.
    wake: Notify,
    /// Reports accepted and not yet delivered or dropped.
    pending: watch::Sender<usize>,
    settings: ReportSettings,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // The lock guards no await and no call out, so a poisoned lock only means a panic mid-update of
        // plain counters; the data is still usable.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// [`DataAccess`] whose call reports go through a bounded, retrying buffer in front of `inner`.
pub struct BufferedReports {
    inner: Arc<dyn DataAccess>,
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            wake: Notify::new(),
            pending: watch::Sender::new(0),
            settings,
        });
        tokio::spawn(deliver_all(inner.clone(), shared.clone()));
        BufferedReports { inner, shared }
    }

    /// A handle to wait for the buffer to drain.
    pub fn flusher(&self) -> ReportFlusher {
        ReportFlusher { pending: self.shared.pending.subscribe() }
    }

    /// Queues `report`; never waits (see the module doc for the bound).
    fn push(&self, report: Report) {
        let size = report.size();
        let retry = self.shared.settings.retry_initial;
        let mut b = self.shared.lock();
        b.bytes += size;
        b.queue.push_back(Pending {
            report,
            size,
            failures: 0,
            retry_at: None,
            backoff: retry,
            delivered_at_first_failure: 0,
        });
        drop(b);
        self.shared.pending.send_modify(|n| *n += 1);
        self.shared.wake.notify_one();
    }
}

impl Drop for BufferedReports {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// What the delivery task does next.
enum Next {
    /// Deliver the report taken from this position.
    Deliver(usize, Box<Pending>),
    /// Nothing is due; wait for a new report or until then.
    Wait(Option<Instant>),
    /// Closed and empty.
    Stop,
}

/// The first report that is due and has no earlier report of its call ahead of it.
fn next(shared: &Shared) -> Next {
    let mut b = shared.lock();
    if b.queue.is_empty() {
        return if b.closed { Next::Stop } else { Next::Wait(None) };
    }
    let now = Instant::now();
    let mut earliest: Option<Instant> = None;
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut due = None;
    for (i, p) in b.queue.iter().enumerate() {
        let call = p.report.call_id();
        if !blocked.insert(call) {
            continue; // an earlier report of this call goes first
        }
        match p.retry_at {
            Some(t) if t > now => earliest = Some(earliest.map_or(t, |e| e.min(t))),
            _ => {
                due = Some(i);
                break;
            }
        }
    }
    match due {
        Some(i) => {
            let p = b.queue.remove(i).expect("index from the scan");
            Next::Deliver(i, Box::new(p))
        }
        None => Next::Wait(earliest),
    }
}

/// Delivers queued reports, one at a time, until the buffer is closed and empty.
async fn deliver_all(to: Arc<dyn DataAccess>, shared: Arc<Shared>) {
    // Failed deliveries in a row, of any reports. From the second one on the API node is taken as away
    // rather than refusing one report, and delivery pauses (with capped backoff) instead of trying every
    // buffered report in turn.
    let mut failures_in_a_row = 0u32;
    let mut pause = shared.settings.retry_initial;
    loop {
        let (at, mut p) = match next(&shared) {
            Next::Stop => return,
            Next::Wait(until) => {
                match until {
                    Some(t) => {
                        tokio::select! {
                            _ = shared.wake.notified() => {}
                            _ = tokio::time::sleep_until(t) => {}
                        }
                    }
                    None => shared.wake.notified().await,
                }
                continue;
            }
            Next::Deliver(at, p) => (at, p),
        };
        // A panic delivering one report (a bug) is that report's failure, not the end of delivery.
        let result = std::panic::AssertUnwindSafe(p.report.deliver(&*to))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Error::BadRequest("delivering the report panicked".into())));
        let (kind, call_id) = (p.report.kind(), p.report.call_id().to_string());
        let retry = {
            let mut b = shared.lock();
            match result {
                Ok(()) => {
                    b.delivered += 1;
                    false
                }
                Err(e) if e.status() >= 500 => {
                    if p.failures == 0 {
                        p.delivered_at_first_failure = b.delivered;
                    }
                    p.failures += 1;
                    if p.failures >= POISON_FAILURES && b.delivered > p.delivered_at_first_failure {
                        tracing::error!(error = ?e, kind, call_id,
                            "API node keeps failing a call report while taking others; dropping it");
                        false
                    } else {
                        tracing::warn!(error = ?e, kind, call_id, failures = p.failures, retry_in = ?p.backoff,
                            buffered = b.queue.len() + 1, "API node did not take a call report; retrying");
                        true
                    }
                }
                Err(e) => {
                    tracing::error!(error = ?e, kind, call_id, "API node refused a call report; dropping it");
                    false
                }
            }
        };
        if retry {
            p.retry_at = Some(Instant::now() + p.backoff);
            p.backoff = (p.backoff * 2).min(shared.settings.retry_max);
            {
                // Back in its place (only this task removes reports; others were only added at the
                // back since), so the reports of its call stay behind it.
                let mut b = shared.lock();
                let at = at.min(b.queue.len());
                b.queue.insert(at, *p);
            }
            failures_in_a_row += 1;
            if failures_in_a_row >= 2 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(shared.settings.retry_max);
            }
            continue;
        }
        shared.lock().bytes -= p.size;
        // The API node answered (took the report, or refused it for good).
        failures_in_a_row = 0;
        pause = shared.settings.retry_initial;
        shared.pending.send_modify(|n| *n -= 1);
        if let Report::Complete(_, _, done) = p.report {
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
        self.push(Report::Started(call.clone()));
        Ok(())
    }

    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.push(Report::Finished(call.clone(), log.to_string()));
        Ok(())
    }

    /// Queues the completion behind the call's other reports and waits until the API node took (or
    /// refused) it. The async loop counts a call as running until this returns, so a runner never takes
    /// queued calls faster than their completions reach the API node: otherwise completions waiting in
    /// line outlive the calls' leases, every call is handed out again, and the runner livelocks.
    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        let (done, delivered) = oneshot::channel();
        self.push(Report::Complete(Box::new(delivery.clone()), call.clone(), done));
        delivered.await.map_err(|_| Error::internal("call report buffer closed"))
    }

    /// Not buffered: a heartbeat matters only now, and must not wait behind reports.
    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        self.inner.heartbeat(delivery).await
    }

    fn accepts_calls(&self) -> bool {
        let b = self.shared.lock();
        let full = b.queue.len() >= self.shared.settings.capacity || b.bytes >= self.shared.settings.max_bytes;
        if full {
            // The refused call is logged as a 503 by the invoke path; this says why.
            tracing::debug!(reports = b.queue.len(), bytes = b.bytes, "call report buffer full; refusing new calls");
        }
        !full
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
        /// Reports of this call fail with 503 while everything else is taken.
        failing_call: Mutex<Option<String>>,
    }

    impl FakeApi {
        fn take(&self, what: String) -> Result<(), Error> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.refuse.load(Ordering::SeqCst) {
                return Err(Error::InvalidJson);
            }
            let failed = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            let bad_call = self.failing_call.lock().unwrap().as_deref().is_some_and(|c| what.contains(c));
            if failed || bad_call || self.down.load(Ordering::SeqCst) {
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
        ReportSettings {
            capacity,
            max_bytes: usize::MAX,
            retry_initial: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
        }
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
    async fn full_buffer_refuses_new_calls_at_once_and_loses_nothing() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let buffer = BufferedReports::new(api.clone(), settings(3));
        for i in 0..3 {
            assert!(buffer.accepts_calls(), "room for report {i}");
            buffer.call_started(&call(&format!("c{i}"))).await.unwrap();
        }
        assert!(!buffer.accepts_calls(), "three reports fill a buffer of three");
        // Calls already running still report, at once: nothing waits and nothing is lost.
        tokio::time::timeout(Duration::from_secs(1), buffer.call_finished(&call("c0"), "log"))
            .await
            .expect("a report never waits for room")
            .unwrap();
        api.down.store(false, Ordering::SeqCst);
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert!(buffer.accepts_calls());
        assert_eq!(api.taken(), ["start c0", "start c1", "start c2", "finish c0 log"]);
    }

    #[tokio::test]
    async fn buffer_is_bounded_in_bytes() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let buffer = BufferedReports::new(api.clone(), ReportSettings { max_bytes: 100_000, ..settings(1000) });
        buffer.call_finished(&call("small"), "a few bytes").await.unwrap();
        assert!(buffer.accepts_calls());
        buffer.call_finished(&call("big"), &"x".repeat(100_000)).await.unwrap();
        assert!(!buffer.accepts_calls(), "two reports, but over the byte bound");
        api.down.store(false, Ordering::SeqCst);
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert!(buffer.accepts_calls(), "room again once delivered");
    }

    #[tokio::test]
    async fn a_failing_report_lets_other_calls_pass_and_keeps_its_calls_order() {
        let api = Arc::new(FakeApi::default());
        *api.failing_call.lock().unwrap() = Some("stuck".into());
        let buffer = BufferedReports::new(
            api.clone(),
            ReportSettings {
                retry_initial: Duration::from_millis(20),
                retry_max: Duration::from_millis(20),
                ..settings(100)
            },
        );
        let flusher = buffer.flusher();
        buffer.call_started(&call("stuck")).await.unwrap();
        buffer.call_finished(&call("stuck"), "late").await.unwrap();
        for i in 0..3 {
            buffer.call_started(&call(&format!("ok{i}"))).await.unwrap();
        }
        let mut taken = flusher.pending.clone();
        tokio::time::timeout(Duration::from_secs(5), taken.wait_for(|n| *n == 2))
            .await
            .expect("the other calls' reports got past the failing one")
            .unwrap();
        assert_eq!(api.taken(), ["start ok0", "start ok1", "start ok2"]);
        *api.failing_call.lock().unwrap() = None;
        assert!(flusher.flush(Duration::from_secs(5)).await);
        assert_eq!(api.taken()[3..], ["start stuck", "finish stuck late"], "one call's reports stay in order");
    }

    #[tokio::test]
    async fn a_report_failing_while_others_pass_is_dropped_in_the_end() {
        let api = Arc::new(FakeApi::default());
        *api.failing_call.lock().unwrap() = Some("poison".into());
        let buffer = BufferedReports::new(
            api.clone(),
            ReportSettings {
                retry_initial: Duration::from_millis(1),
                retry_max: Duration::from_millis(2),
                ..settings(100)
            },
        );
        buffer.call_started(&call("poison")).await.unwrap();
        buffer.call_started(&call("fine")).await.unwrap();
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await, "the poisoned report is given up");
        assert_eq!(api.taken(), ["start fine"]);
        assert_eq!(api.attempts.load(Ordering::SeqCst), POISON_FAILURES as usize + 1);
    }

    #[tokio::test]
    async fn an_outage_is_not_retried_report_by_report() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let buffer = BufferedReports::new(
            api.clone(),
            ReportSettings {
                retry_initial: Duration::from_millis(200),
                retry_max: Duration::from_millis(200),
                ..settings(1000)
            },
        );
        for i in 0..100 {
            buffer.call_started(&call(&format!("c{i}"))).await.unwrap();
        }
        let mut pending = buffer.flusher().pending.clone();
        let waited = tokio::time::timeout(Duration::from_millis(300), pending.wait_for(|n| *n == 0)).await;
        assert!(waited.is_err(), "nothing is delivered while the API node is down");
        let attempts = api.attempts.load(Ordering::SeqCst);
        assert!(attempts <= 4, "{attempts} attempts in 300 ms: two failures in a row pause delivery");
        api.down.store(false, Ordering::SeqCst);
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert_eq!(api.taken().len(), 100);
    }

    #[tokio::test]
    async fn an_outage_drops_nothing() {
        let api = Arc::new(FakeApi::default());
        api.down.store(true, Ordering::SeqCst);
        let buffer = BufferedReports::new(
            api.clone(),
            ReportSettings {
                retry_initial: Duration::from_millis(1),
                retry_max: Duration::from_millis(2),
                ..settings(100)
            },
        );
        buffer.call_started(&call("a")).await.unwrap();
        buffer.call_started(&call("b")).await.unwrap();
        let attempts = || api.attempts.load(Ordering::SeqCst);
        while attempts() < 4 * POISON_FAILURES as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(buffer.flusher().pending(), 2, "nothing given up while the API node takes nothing");
        api.down.store(false, Ordering::SeqCst);
        assert!(buffer.flusher().flush(Duration::from_secs(5)).await);
        assert_eq!(api.taken(), ["start a", "start b"]);
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
