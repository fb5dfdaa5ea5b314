//! Hot slots: per slot key, a LIFO stack of idle containers and the counters that decide when
//! to start another one (docs/fn-compatibility.md, "Agent").
//!
//! A waiting call takes the most recently idle container. If there is none, it asks for a
//! launch only while waiting calls outnumber idle plus starting containers; the container it
//! launched is handed straight to it (or pushed on the stack if it gave up meanwhile). The
//! queue is generic over the container type so its logic is tested without Docker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::error::AgentError;

/// Where a launch reports its container (or why it failed).
pub(crate) type LaunchReply<C> = oneshot::Sender<Result<Arc<C>, AgentError>>;

/// Idle containers and counters for one slot key.
pub(crate) struct SlotQueue<C> {
    state: Mutex<QueueState<C>>,
    /// Signalled when a container becomes idle or a launch ends.
    changed: Notify,
}

struct QueueState<C> {
    idle: Vec<IdleEntry<C>>,
    waiting: usize,
    starting: usize,
    busy: usize,
    /// Busy containers that answered and wait for the tail of their call's log before they are
    /// released: about to be idle, so nobody launches another for them.
    settling: usize,
    next_gen: u64,
}

struct IdleEntry<C> {
    item: Arc<C>,
    gen: u64,
    /// Dropped when the entry leaves the stack, which tells the idle watcher to stop.
    _claimed: oneshot::Sender<()>,
}

/// A snapshot of the queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotStats {
    /// Calls waiting for a container.
    pub waiting: usize,
    /// Containers being started (including waiting for resources).
    pub starting: usize,
    /// Idle containers on the stack.
    pub idle: usize,
    /// Containers running a call.
    pub busy: usize,
}

/// Why a waiting call woke up.
enum Wake<C> {
    Changed,
    Deadline,
    Launched(Result<Result<Arc<C>, AgentError>, oneshot::error::RecvError>),
}

/// Counts a waiting call for as long as it waits.
struct WaitGuard<'a, C>(&'a SlotQueue<C>);

impl<C> Drop for WaitGuard<'_, C> {
    fn drop(&mut self) {
        self.0.state.lock().expect("slot lock").waiting -= 1;
    }
}

impl<C: Send + Sync + 'static> SlotQueue<C> {
    pub fn new() -> Self {
        SlotQueue {
            state: Mutex::new(QueueState {
                idle: Vec::new(),
                waiting: 0,
                starting: 0,
                busy: 0,
                settling: 0,
                next_gen: 0,
            }),
            changed: Notify::new(),
        }
    }

    pub fn stats(&self) -> SlotStats {
        let s = self.state.lock().expect("slot lock");
        SlotStats { waiting: s.waiting, starting: s.starting, idle: s.idle.len(), busy: s.busy }
    }

    /// Gets a container for one call. `launch` is called (at most once per wait) to start a
    /// container in the background; it must eventually answer through the reply and call
    /// [`SlotQueue::launch_ended`]. Waiting for others' containers ends at `deadline` with
    /// "too busy"; the wait for one's own launch is bounded by the launch itself, so image
    /// pulls and container starts are not charged to the call.
    pub async fn acquire(
        &self,
        deadline: Instant,
        poll: Duration,
        mut launch: impl FnMut(LaunchReply<C>),
    ) -> Result<Arc<C>, AgentError> {
        self.state.lock().expect("slot lock").waiting += 1;
        let _guard = WaitGuard(self);
        let mut own_launch: Option<oneshot::Receiver<Result<Arc<C>, AgentError>>> = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut s = self.state.lock().expect("slot lock");
                if let Some(entry) = s.idle.pop() {
                    s.busy += 1;
                    return Ok(entry.item);
                }
                if own_launch.is_none() && s.waiting > s.idle.len() + s.starting + s.settling {
                    s.starting += 1;
                    drop(s);
                    let (tx, rx) = oneshot::channel();
                    own_launch = Some(rx);
                    launch(tx);
                    continue;
                }
            }
            let launching = own_launch.is_some();
            let wake = tokio::select! {
                _ = &mut changed => Wake::Changed,
                reply = async { own_launch.as_mut().expect("launching").await }, if launching => Wake::Launched(reply),
                _ = tokio::time::sleep(poll) => Wake::Changed,
                _ = tokio::time::sleep_until(deadline), if !launching => Wake::Deadline,
            };
            match wake {
                Wake::Changed => {}
                Wake::Deadline => return Err(AgentError::TooBusy),
                Wake::Launched(reply) => {
                    own_launch = None;
                    match reply {
                        Ok(Ok(item)) => {
                            self.state.lock().expect("slot lock").busy += 1;
                            return Ok(item);
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {} // the launcher vanished; look again
                    }
                }
            }
        }
    }

    /// A launch finished (either way); call before replying.
    pub fn launch_ended(&self) {
        self.state.lock().expect("slot lock").starting -= 1;
        self.changed.notify_waiters();
    }

    /// Pushes a container that was launched but whose caller left.
    pub fn push_launched(&self, item: Arc<C>) -> (u64, oneshot::Receiver<()>) {
        self.push(item, false)
    }

    /// A call is done with its container, which goes back on top of the stack.
    pub fn release(&self, item: Arc<C>) -> (u64, oneshot::Receiver<()>) {
        self.push(item, true)
    }

    fn push(&self, item: Arc<C>, was_busy: bool) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let gen = {
            let mut s = self.state.lock().expect("slot lock");
            if was_busy {
                s.busy -= 1;
            }
            s.next_gen += 1;
            let gen = s.next_gen;
            s.idle.push(IdleEntry { item, gen, _claimed: tx });
            gen
        };
        self.changed.notify_waiters();
        (gen, rx)
    }

    /// A busy container starts (`true`) or stops (`false`) settling: it answered and is released
    /// (or retired) once its call's log is complete.
    pub fn settling(&self, on: bool) {
        let mut s = self.state.lock().expect("slot lock");
        if on {
            s.settling += 1;
        } else {
            s.settling -= 1;
        }
    }

    /// A call is done with its container, which is being retired.
    pub fn retire_busy(&self) {
        self.state.lock().expect("slot lock").busy -= 1;
        self.changed.notify_waiters();
    }

    /// Takes an idle container off the stack if it is still there (idle timeout, eviction).
    pub fn take_idle(&self, gen: u64) -> Option<Arc<C>> {
        let mut s = self.state.lock().expect("slot lock");
        let pos = s.idle.iter().position(|e| e.gen == gen)?;
        Some(s.idle.remove(pos).item)
    }

    /// Whether the idle entry `gen` is still on the stack.
    pub fn is_idle(&self, gen: u64) -> bool {
        self.state.lock().expect("slot lock").idle.iter().any(|e| e.gen == gen)
    }

    /// Takes every idle container (shutdown).
    pub fn drain_idle(&self) -> Vec<Arc<C>> {
        let mut s = self.state.lock().expect("slot lock");
        s.idle.drain(..).map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const POLL: Duration = Duration::from_millis(20);

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// A launcher that "starts" a container (a number) after `delay`.
    fn launcher(
        q: &Arc<SlotQueue<usize>>,
        count: &Arc<AtomicUsize>,
        delay: Duration,
    ) -> impl FnMut(LaunchReply<usize>) {
        let q = q.clone();
        let count = count.clone();
        move |reply| {
            let q = q.clone();
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                q.launch_ended();
                if let Err(Ok(item)) = reply.send(Ok(Arc::new(n))) {
                    q.push_launched(item);
                }
            });
        }
    }

    #[tokio::test]
    async fn reuses_the_most_recently_idle_container() {
        let q = Arc::new(SlotQueue::<usize>::new());
        let launched = Arc::new(AtomicUsize::new(0));
        let a = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        let b = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        assert_eq!(launched.load(Ordering::SeqCst), 2);
        q.release(a);
        q.release(b.clone());
        let c = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        assert!(Arc::ptr_eq(&b, &c), "LIFO: the last released comes first");
        assert_eq!(launched.load(Ordering::SeqCst), 2, "no launch while a container is idle");
        assert_eq!(q.stats(), SlotStats { waiting: 0, starting: 0, idle: 1, busy: 1 });
    }

    #[tokio::test]
    async fn launches_only_while_waiters_outnumber_idle_and_starting() {
        let q = Arc::new(SlotQueue::<usize>::new());
        let launched = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let q2 = q.clone();
            let l = launcher(&q, &launched, Duration::from_millis(50));
            tasks.push(tokio::spawn(async move { q2.acquire(far(), POLL, l).await }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(q.stats().starting, 5);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(launched.load(Ordering::SeqCst), 5);
        assert_eq!(q.stats().busy, 5);
    }

    #[tokio::test]
    async fn a_waiter_takes_a_released_container_and_times_out_otherwise() {
        let q = Arc::new(SlotQueue::<usize>::new());
        let launched = Arc::new(AtomicUsize::new(0));
        let held = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        // A launcher that never finishes its launch (no capacity) until the caller leaves.
        let stuck = |mut reply: LaunchReply<usize>| {
            let q = q.clone();
            tokio::spawn(async move {
                reply.closed().await;
                q.launch_ended();
            });
        };
        let q2 = q.clone();
        let h2 = held.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            q2.release(h2);
        });
        let got = q.acquire(far(), POLL, stuck).await.unwrap();
        assert!(Arc::ptr_eq(&got, &held));
        // With nothing released, a waiter whose launch fails gets the launch's error.
        let failing = |reply: LaunchReply<usize>| {
            let q = q.clone();
            tokio::spawn(async move {
                q.launch_ended();
                let _ = reply.send(Err(AgentError::TooBusy));
            });
        };
        assert!(matches!(q.acquire(far(), POLL, failing).await, Err(AgentError::TooBusy)));
    }

    #[tokio::test]
    async fn a_settling_container_is_waited_for_rather_than_launched_for() {
        let q = Arc::new(SlotQueue::<usize>::new());
        let launched = Arc::new(AtomicUsize::new(0));
        let held = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        q.settling(true);
        let (q2, h2) = (q.clone(), held.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            q2.settling(false);
            q2.release(h2);
        });
        let got = q.acquire(far(), POLL, launcher(&q, &launched, Duration::ZERO)).await.unwrap();
        assert!(Arc::ptr_eq(&got, &held), "the settled container serves the next call");
        assert_eq!(launched.load(Ordering::SeqCst), 1, "no launch while one settles");
    }

    #[tokio::test]
    async fn idle_entries_can_be_taken_by_generation_once() {
        let q = SlotQueue::<usize>::new();
        let (gen, mut claimed) = q.push_launched(Arc::new(7));
        assert!(q.is_idle(gen));
        assert!(claimed.try_recv().is_err());
        assert_eq!(*q.take_idle(gen).unwrap(), 7);
        assert!(q.take_idle(gen).is_none());
        assert!(matches!(claimed.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
}
