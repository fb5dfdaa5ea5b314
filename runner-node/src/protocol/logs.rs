//! Splits a hot container's output into the logs of the calls it serves.
//!
//! Output reaches the agent on Docker's attach stream, apart from the response, so lines a call
//! wrote before it answered can arrive after the answer, when the container may already serve the
//! next call. Two mechanisms keep every line in its own call's log:
//!
//! - **Log framing** (Fn's FDK contract): the agent gives hot containers `FN_LOGFRAME_NAME` and
//!   `FN_LOGFRAME_HDR`; at the start of each call the FDK writes
//!   `\n<name>=<value of that request header>\n` (the call id) to stderr, and to stdout where
//!   stdout is a log (http-stream). A line belongs to the call whose frame precedes it on the same
//!   stream (a pipe keeps order), so a framed container serves the next call at once; frame lines
//!   are not part of any log.
//! - **Settling**, for output that is not framed: the container is not given to the next call
//!   until its output has been quiet for a moment after the answer (bounded), so a line written
//!   before the answer cannot land in the next call's log.
//!
//! Either way the log is completed off the response path: the caller has its answer while the
//! agent waits for the tail of the log.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::recorder::LogBuffer;

/// `FN_LOGFRAME_NAME` given to framing containers: frame lines read `fn_call_id=<call id>`.
pub const FRAME_NAME: &str = "fn_call_id";
/// `FN_LOGFRAME_HDR`: the request header whose value the FDK writes in the frame.
pub const FRAME_HEADER: &str = "Fn-Call-Id";

/// Longest call id a frame may carry; longer lines are never frames and pass straight through.
const MAX_FRAME_VALUE: usize = 128;

/// Which attached stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// The container's stdout (a log stream only for http-stream).
    Stdout = 0,
    /// The container's stderr.
    Stderr = 1,
}

/// The output demultiplexer of one hot container.
pub(crate) struct CallLogs {
    container: String,
    /// The frame prefix (`<name>=`) if the container was asked to frame its output.
    frame_prefix: Option<Vec<u8>>,
    /// Which streams carry logs (stdout is the protocol channel of the stdio formats).
    log_streams: [bool; 2],
    cap: usize,
    state: Mutex<State>,
    /// Signalled on output (frames included) and when the output ends.
    changed: Notify,
}

struct State {
    /// Logs still collecting, oldest first.
    calls: VecDeque<OpenLog>,
    next_seq: u64,
    streams: [StreamState; 2],
    ended: bool,
    last_output: Option<Instant>,
    /// The last few completed calls, so a frame arriving after its call's log was taken still
    /// switches the stream away from the call before it.
    closed: VecDeque<(u64, String)>,
    /// A call's log was completed: whether this container frames is known from then on.
    completed_one: bool,
    /// Every completed call had output: a call without output yet has its output on the way.
    always_output: bool,
}

struct OpenLog {
    seq: u64,
    call_id: String,
    buf: LogBuffer,
    /// Some output of the call arrived.
    got_output: bool,
}

#[derive(Default)]
struct StreamState {
    /// A frame was seen on this stream: its output follows frames from now on.
    framed: bool,
    /// The call of the last frame seen.
    target: Option<u64>,
    /// The start of a line not yet complete, while it may still be a frame.
    line: Vec<u8>,
    /// The rest of a line that cannot be a frame goes straight to the target.
    passthrough: bool,
    /// An empty line held back: the first half of a frame (`\n<name>=...`), or the function's own.
    blank: bool,
    /// The last line was a frame: an empty line right after it is the frame's too (Python's FDK
    /// prints the frame with a newline of its own).
    after_frame: bool,
}

impl CallLogs {
    /// A demultiplexer for container `container`; `frame` if the container was asked to frame its
    /// output; `stdout_is_log` for http-stream. Each call's log keeps at most `cap` bytes.
    pub fn new(container: &str, frame: bool, stdout_is_log: bool, cap: usize) -> Self {
        CallLogs {
            container: container.to_string(),
            frame_prefix: frame.then(|| format!("{FRAME_NAME}=").into_bytes()),
            log_streams: [stdout_is_log, true],
            cap,
            state: Mutex::new(State {
                calls: VecDeque::new(),
                next_seq: 0,
                streams: Default::default(),
                ended: false,
                last_output: None,
                closed: VecDeque::new(),
                completed_one: false,
                always_output: true,
            }),
            changed: Notify::new(),
        }
    }

    /// Starts the log of a call about to be dispatched; returns its handle for [`Self::finish`].
    pub fn open(&self, call_id: &str) -> u64 {
        let mut st = self.state.lock().expect("logs lock");
        st.next_seq += 1;
        let seq = st.next_seq;
        st.calls.push_back(OpenLog {
            seq,
            call_id: call_id.to_string(),
            buf: LogBuffer::new(self.cap),
            got_output: false,
        });
        seq
    }

    /// Whether every log stream frames its calls, so the container can serve the next call before
    /// this one's log is complete.
    pub fn framed(&self) -> bool {
        let st = self.state.lock().expect("logs lock");
        (0..2).all(|s| !self.log_streams[s] || st.streams[s].framed)
    }

    /// The container's output ended (it exited): every open log is complete.
    pub fn end(&self) {
        self.state.lock().expect("logs lock").ended = true;
        self.changed.notify_waiters();
    }

    /// Output from the container.
    pub fn write(&self, stream: Stream, data: &[u8]) {
        let mut st = self.state.lock().expect("logs lock");
        st.last_output = Some(Instant::now());
        let Some(prefix) = &self.frame_prefix else {
            self.emit(&mut st, stream, data);
            drop(st);
            self.changed.notify_waiters();
            return;
        };
        let s = stream as usize;
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let complete = piece.ends_with(b"\n");
            if st.streams[s].passthrough {
                self.emit(&mut st, stream, piece);
                st.streams[s].passthrough = !complete;
                continue;
            }
            st.streams[s].line.extend_from_slice(piece);
            if complete {
                let line = std::mem::take(&mut st.streams[s].line);
                self.line(&mut st, stream, prefix, &line);
            } else if st.streams[s].line.len() > prefix.len() + MAX_FRAME_VALUE {
                let line = std::mem::take(&mut st.streams[s].line);
                self.emit_blank(&mut st, stream);
                self.emit(&mut st, stream, &line);
                st.streams[s].passthrough = true;
                st.streams[s].after_frame = false;
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// One complete line: a frame, or output.
    fn line(&self, st: &mut State, stream: Stream, prefix: &[u8], line: &[u8]) {
        let s = stream as usize;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            if std::mem::take(&mut st.streams[s].after_frame) {
                return;
            }
            self.emit_blank(st, stream);
            st.streams[s].blank = true;
            return;
        }
        st.streams[s].after_frame = false;
        if let Some(seq) = frame_of(st, s, prefix, text) {
            let ss = &mut st.streams[s];
            ss.blank = false;
            ss.framed = true;
            ss.target = Some(seq);
            ss.after_frame = true;
            return;
        }
        self.emit_blank(st, stream);
        self.emit(st, stream, line);
    }

    /// Writes a held-back empty line, now known not to open a frame.
    fn emit_blank(&self, st: &mut State, stream: Stream) {
        if std::mem::take(&mut st.streams[stream as usize].blank) {
            self.emit(st, stream, b"\n");
        }
    }

    /// Appends output to the log of the call it belongs to, or to the debug log between calls.
    fn emit(&self, st: &mut State, stream: Stream, data: &[u8]) {
        let ss = &st.streams[stream as usize];
        let seq = if ss.framed { ss.target } else { st.calls.back().map(|c| c.seq) };
        match st.calls.iter_mut().find(|c| Some(c.seq) == seq) {
            Some(c) => {
                c.got_output = true;
                c.buf.write(data)
            }
            None => tracing::debug!(
                container = %self.container,
                user_log = %String::from_utf8_lossy(data).trim_end(),
                "container output outside a call"
            ),
        }
    }

    /// Waits until the log of call `seq` is complete, then takes it: when a frame of a later call
    /// has arrived on every log stream, when the output ended, or once the output has been quiet for
    /// `quiet` since `answered` (at most `max` after it). A stream that frames (or, for a container
    /// asked to frame, any stream until its first call is complete) must have shown this call's own
    /// frame before quiet counts: the frame is sure to come. Without frames, a container whose every
    /// call so far had output waits for some of this call's first.
    pub async fn finish(&self, seq: u64, answered: Instant, quiet: Duration, max: Duration) -> Bytes {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let st = self.state.lock().expect("logs lock");
                let reached = |s: usize, after: bool| {
                    let ss = &st.streams[s];
                    !self.log_streams[s]
                        || (ss.framed && ss.target.is_some_and(|t| if after { t > seq } else { t >= seq }))
                };
                let passed = (0..2).all(|s| reached(s, true));
                let expect_frame = self.frame_prefix.is_some()
                    && (0..2).any(|s| self.log_streams[s] && (st.streams[s].framed || !st.completed_one));
                // Without frames, a container whose every call had output has this call's on the way.
                let own_frame = if expect_frame {
                    (0..2).all(|s| reached(s, false))
                } else {
                    !st.always_output || st.calls.iter().any(|c| c.seq == seq && c.got_output)
                };
                let now = Instant::now();
                let last = st.last_output.map_or(answered, |l| l.max(answered));
                if st.ended || passed || (own_frame && now >= last + quiet) || now >= answered + max {
                    break;
                }
                if own_frame {
                    (last + quiet).min(answered + max)
                } else {
                    answered + max
                }
            };
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
        self.take(seq)
    }

    /// Removes call `seq`'s log, with the unfinished line of any stream that still writes to it.
    fn take(&self, seq: u64) -> Bytes {
        let mut st = self.state.lock().expect("logs lock");
        let latest = st.calls.back().map(|c| c.seq);
        let Some(pos) = st.calls.iter().position(|c| c.seq == seq) else {
            return Bytes::new();
        };
        let mut log = st.calls.remove(pos).expect("position");
        st.completed_one = true;
        st.always_output &= log.got_output;
        st.closed.push_back((seq, std::mem::take(&mut log.call_id)));
        if st.closed.len() > 8 {
            st.closed.pop_front();
        }
        for ss in st.streams.iter_mut() {
            let target = if ss.framed { ss.target } else { latest };
            if target == Some(seq) && !ss.line.is_empty() {
                log.buf.write(&std::mem::take(&mut ss.line));
                ss.passthrough = true;
            }
            if target == Some(seq) {
                ss.blank = false;
            }
        }
        log.buf.into_bytes()
    }
}

/// The call a frame line announces: the oldest open or recently completed call with its id that is
/// newer than the stream's last frame (each frame starts the next call on its stream). Newer, not just
/// equal: the attempts of a retried async call share one call id, and the next attempt's frame must not
/// be taken for the previous one's.
fn frame_of(st: &State, s: usize, prefix: &[u8], text: &[u8]) -> Option<u64> {
    let value = text.strip_prefix(prefix)?;
    let after = st.streams[s].target.unwrap_or(0);
    st.calls
        .iter()
        .map(|c| (c.seq, &c.call_id))
        .chain(st.closed.iter().map(|(seq, id)| (*seq, id)))
        .filter(|(seq, id)| *seq > after && id.as_bytes() == value)
        .map(|(seq, _)| seq)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_secs(5);

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn attempts_sharing_a_call_id_keep_their_own_lines() {
        let logs = CallLogs::new("c", true, false, 1 << 20);
        let first = logs.open("A");
        logs.write(Stream::Stderr, b"\nfn_call_id=A\nfirst\n");
        let second = logs.open("A");
        logs.write(Stream::Stderr, b"\nfn_call_id=A\nsecond\n");
        logs.open("B");
        logs.write(Stream::Stderr, b"\nfn_call_id=B\n");
        assert_eq!(text(logs.finish(first, Instant::now(), Q, MAX).await), "first\n");
        assert_eq!(text(logs.finish(second, Instant::now(), Q, MAX).await), "second\n");
    }

    #[tokio::test]
    async fn frames_route_late_lines_to_their_call_and_are_dropped() {
        let logs = CallLogs::new("c", true, true, 1 << 20);
        let a = logs.open("A");
        logs.write(Stream::Stderr, b"\nfn_call_id=A\n\nA one\n");
        logs.write(Stream::Stdout, b"\nfn_call_id=A\nA out\n");
        assert!(logs.framed());
        // B starts before A's last line arrived: A's line precedes B's frame on the stream.
        let b = logs.open("B");
        logs.write(Stream::Stderr, b"A late\n\nfn_call_id=B\nB one\nB partial");
        logs.write(Stream::Stdout, b"\nfn_call_id=B\n");
        let t = Instant::now();
        assert_eq!(text(logs.finish(a, t, Duration::from_secs(60), MAX).await), "A one\nA out\nA late\n");
        assert!(t.elapsed() < Duration::from_secs(1), "a later frame completes the log at once");
        assert_eq!(text(logs.finish(b, Instant::now(), Q, MAX).await), "B one\nB partial");
    }

    #[tokio::test]
    async fn unframed_output_goes_to_the_latest_call_until_quiet() {
        let logs = CallLogs::new("c", true, false, 1 << 20);
        let a = logs.open("A");
        logs.write(Stream::Stderr, b"no frames here\n\nfn_call_id=unknown\n");
        assert!(!logs.framed());
        // Asked to frame, the first call waits for its frame up to the bound...
        let answered = Instant::now();
        let max = Duration::from_millis(150);
        let log = logs.finish(a, answered, Q, max).await;
        assert!(answered.elapsed() >= max);
        assert_eq!(text(log), "no frames here\n\nfn_call_id=unknown\n");
        // ...then the container is known not to frame: quiet is enough. Between calls, output goes
        // nowhere.
        logs.write(Stream::Stderr, b"idle\n");
        let b = logs.open("B");
        logs.write(Stream::Stderr, b"B\n");
        let answered = Instant::now();
        assert_eq!(text(logs.finish(b, answered, Q, MAX).await), "B\n");
        assert!(answered.elapsed() < Duration::from_secs(1));
        // Every call so far had output, so a call without output yet waits for it.
        let logs = std::sync::Arc::new(logs);
        let d = logs.open("D");
        let late = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Q * 3).await;
            late.write(Stream::Stderr, b"D late\n");
        });
        assert_eq!(text(logs.finish(d, Instant::now(), Q, MAX).await), "D late\n");
        let c = logs.open("C");
        logs.end();
        assert_eq!(text(logs.finish(c, Instant::now(), Duration::from_secs(60), MAX).await), "");
    }

    #[tokio::test]
    async fn a_frame_after_its_log_was_taken_still_ends_the_previous_call() {
        let logs = CallLogs::new("c", true, false, 1 << 20);
        let a = logs.open("A");
        logs.write(Stream::Stderr, b"\nfn_call_id=A\nA\n");
        assert_eq!(text(logs.finish(a, Instant::now(), Q, MAX).await), "A\n");
        let b = logs.open("B");
        // B's log is given up before its output arrives (a relay slower than the bound)...
        assert_eq!(text(logs.finish(b, Instant::now(), Q, Duration::from_millis(50)).await), "");
        let c = logs.open("C");
        // ...its lines then go nowhere, never to C.
        logs.write(Stream::Stderr, b"\nfn_call_id=B\nB late\n\nfn_call_id=C\nC\n");
        assert_eq!(text(logs.finish(c, Instant::now(), Q, MAX).await), "C\n");
    }

    #[tokio::test]
    async fn without_framing_bytes_pass_as_they_come_and_logs_are_capped() {
        let logs = CallLogs::new("c", false, false, 5);
        let a = logs.open("A");
        logs.write(Stream::Stderr, b"fn_call_id=A\n");
        assert!(!logs.framed());
        assert_eq!(text(logs.finish(a, Instant::now(), Q, MAX).await), "fn_ca");
    }
}
