//! Call records ([`shared::Call`]) and logs leave the agent through [`CallRecorder`], implemented
//! by the embedding node (straight to the datastore in full mode, over the hybrid API on runner
//! nodes; [`crate::http::DataAccessRecorder`] adapts any [`crate::DataAccess`]).
//!
//! Recording never sits on the response path: events go through a bounded queue to one
//! background writer. When the queue is full, submitting waits (backpressure) instead of
//! dropping records.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use shared::Call;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Error type recorders return; it is logged, never shown to callers.
pub type RecordError = Box<dyn std::error::Error + Send + Sync>;

/// Storage for call records and logs, implemented by the node that embeds the agent.
#[async_trait]
pub trait CallRecorder: Send + Sync + 'static {
    /// The call got a container and is running.
    async fn call_started(&self, call: &Call) -> Result<(), RecordError>;
    /// The call ended; `log` is its stderr, capped at `FN_MAX_LOG_SIZE_BYTES`.
    async fn call_finished(&self, call: &Call, log: Bytes) -> Result<(), RecordError>;
}

/// A recorder that keeps nothing (pure runners, benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopRecorder;

#[async_trait]
impl CallRecorder for NoopRecorder {
    async fn call_started(&self, _call: &Call) -> Result<(), RecordError> {
        Ok(())
    }
    async fn call_finished(&self, _call: &Call, _log: Bytes) -> Result<(), RecordError> {
        Ok(())
    }
}

enum Event {
    Started(Call),
    Finished(Call, Bytes),
    /// Answered once every event queued before it was written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The bounded background writer in front of a [`CallRecorder`].
pub(crate) struct RecordWriter {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RecordWriter {
    /// Starts the writer task with a queue of `capacity` events.
    pub fn start(recorder: std::sync::Arc<dyn CallRecorder>, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(capacity.max(1));
        let task = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let (kind, call_id, res) = match ev {
                    Event::Started(c) => ("start", c.id.clone(), guarded(recorder.call_started(&c)).await),
                    Event::Finished(c, log) => ("finish", c.id.clone(), guarded(recorder.call_finished(&c, log)).await),
                    Event::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                if let Err(e) = res {
                    tracing::error!(error = %e, kind, call_id, "failed to record call");
                }
            }
        });
        RecordWriter { tx: Mutex::new(Some(tx)), task: Mutex::new(Some(task)) }
    }

    /// A writer that drops everything (unit tests without a runtime).
    #[cfg(test)]
    pub fn inert() -> Self {
        RecordWriter { tx: Mutex::new(None), task: Mutex::new(None) }
    }

    async fn send(&self, ev: Event) {
        let tx = self.tx.lock().expect("recorder lock").clone();
        if let Some(tx) = tx {
            // Waits only when the queue is full: backpressure, not loss.
            let _ = tx.send(ev).await;
        }
    }

    /// Queues a "started" record.
    pub async fn started(&self, call: Call) {
        self.send(Event::Started(call)).await
    }

    /// Queues a "finished" record with its log.
    pub async fn finished(&self, call: Call, log: Bytes) {
        self.send(Event::Finished(call, log)).await
    }

    /// Waits until every record queued so far has been written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        self.send(Event::Flush(done)).await;
        let _ = written.await;
    }

    /// Stops accepting events and waits until everything queued is written.
    pub async fn close(&self) {
        self.tx.lock().expect("recorder lock").take();
        let task = self.task.lock().expect("recorder lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Runs one recording; a panic in it becomes that record's error, so one bad record (or a buggy
/// recorder) never stops the writer and every later record still gets written.
async fn guarded(record: impl std::future::Future<Output = Result<(), RecordError>>) -> Result<(), RecordError> {
    match std::panic::AssertUnwindSafe(record).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("the recorder panicked: {what}").into())
        }
    }
}

/// A byte buffer that keeps the first `cap` bytes and silently drops the rest (the call log).
#[derive(Debug)]
pub(crate) struct LogBuffer {
    buf: Vec<u8>,
    cap: usize,
}

impl LogBuffer {
    pub fn new(cap: usize) -> Self {
        LogBuffer { buf: Vec::new(), cap }
    }

    pub fn write(&mut self, data: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn log_buffer_is_capped() {
        let mut l = LogBuffer::new(5);
        l.write(b"abc");
        l.write(b"defgh");
        assert_eq!(&l.into_bytes()[..], b"abcde");
    }

    struct Slow(Mutex<Vec<String>>);

    #[async_trait]
    impl CallRecorder for Slow {
        async fn call_started(&self, c: &Call) -> Result<(), RecordError> {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            self.0.lock().unwrap().push(format!("start {}", c.id));
            Ok(())
        }
        async fn call_finished(&self, c: &Call, log: Bytes) -> Result<(), RecordError> {
            self.0.lock().unwrap().push(format!("end {} {}", c.id, String::from_utf8_lossy(&log)));
            Ok(())
        }
    }

    #[tokio::test]
    async fn writer_keeps_order_and_flushes_on_close() {
        let rec = Arc::new(Slow(Mutex::new(Vec::new())));
        let w = RecordWriter::start(rec.clone(), 1);
        let call = Call::new("c1", "", shared::CallStatus::Running);
        for i in 0..5 {
            let mut c = call.clone();
            c.id = format!("c{i}");
            w.started(c.clone()).await;
            w.finished(c, Bytes::from("log")).await;
        }
        w.close().await;
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[0], "start c0");
        assert_eq!(seen[9], "end c4 log");
    }

    /// Panics on the call with id `boom`, records the others.
    struct Panicky(Mutex<Vec<String>>);

    #[async_trait]
    impl CallRecorder for Panicky {
        async fn call_started(&self, c: &Call) -> Result<(), RecordError> {
            if c.id == "boom" {
                panic!("cannot record {}", c.id);
            }
            self.0.lock().unwrap().push(format!("start {}", c.id));
            Ok(())
        }
        async fn call_finished(&self, c: &Call, _log: Bytes) -> Result<(), RecordError> {
            if c.id == "boom" {
                panic!("cannot record {}", c.id);
            }
            self.0.lock().unwrap().push(format!("end {}", c.id));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panic_recording_one_call_does_not_stop_the_writer() {
        let rec = Arc::new(Panicky(Mutex::new(Vec::new())));
        let w = RecordWriter::start(rec.clone(), 1);
        for id in ["a", "boom", "b"] {
            let c = Call::new(id, "app", shared::CallStatus::Running);
            w.started(c.clone()).await;
            w.finished(c, Bytes::from("log")).await;
        }
        w.flush().await;
        w.close().await;
        assert_eq!(*rec.0.lock().unwrap(), ["start a", "end a", "start b", "end b"]);
    }
}
