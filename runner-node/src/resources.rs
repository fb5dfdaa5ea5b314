//! Memory and CPU tokens (one pool, no sync/async split: docs/fn-compatibility.md, "Agent").
//!
//! Every container holds a token for its whole life: memory + tmpfs bytes and mCPU. Capacity is
//! what the node has (meminfo, cgroup limits, minus headroom) capped by the configured maxima.
//! Counters live under one small lock that is never held across I/O.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::AgentError;

/// Counts memory and CPU in use against the node's capacity.
#[derive(Debug)]
pub struct ResourceTracker {
    total_memory: u64,
    total_cpu: u64,
    non_blocking: bool,
    state: Mutex<Usage>,
    /// Signalled whenever a token is released.
    released: Notify,
    /// Signalled while someone waits for capacity, so idle containers can step aside.
    pressure: Notify,
}

#[derive(Debug, Default)]
struct Usage {
    memory: u64,
    cpu: u64,
    waiters: usize,
}

/// A reservation; dropping it gives the resources back.
#[derive(Debug)]
pub struct ResourceToken {
    tracker: Arc<ResourceTracker>,
    memory: u64,
    cpu: u64,
}

impl Drop for ResourceToken {
    fn drop(&mut self) {
        {
            let mut s = self.tracker.state.lock().expect("resource lock");
            s.memory -= self.memory;
            s.cpu -= self.cpu;
        }
        self.tracker.released.notify_waiters();
    }
}

impl ResourceTracker {
    /// A tracker with explicit capacity (bytes, mCPU).
    pub fn with_capacity(total_memory: u64, total_cpu: u64, non_blocking: bool) -> Arc<Self> {
        Arc::new(ResourceTracker {
            total_memory,
            total_cpu,
            non_blocking,
            state: Mutex::new(Usage::default()),
            released: Notify::new(),
            pressure: Notify::new(),
        })
    }

    /// A tracker sized from the machine, capped by `max_memory`/`max_cpu` when non-zero.
    pub fn detect(max_memory: u64, max_cpu: u64, non_blocking: bool) -> Arc<Self> {
        let mut memory = detect_memory();
        if max_memory > 0 {
            memory = memory.min(max_memory);
        }
        let mut cpu = detect_cpu();
        if max_cpu > 0 {
            cpu = cpu.min(max_cpu);
        }
        tracing::info!(memory, cpu, "agent capacity");
        Self::with_capacity(memory, cpu, non_blocking)
    }

    /// Total memory in bytes.
    pub fn total_memory(&self) -> u64 {
        self.total_memory
    }

    /// Total CPU in mCPU.
    pub fn total_cpu(&self) -> u64 {
        self.total_cpu
    }

    /// Memory and CPU currently reserved.
    pub fn used(&self) -> (u64, u64) {
        let s = self.state.lock().expect("resource lock");
        (s.memory, s.cpu)
    }

    /// Whether the request could ever be granted; if not, the call fails at once with 400.
    pub fn is_possible(&self, memory: u64, cpu: u64) -> bool {
        memory <= self.total_memory && cpu <= self.total_cpu
    }

    /// Number of reservations waiting for capacity.
    pub fn waiters(&self) -> usize {
        self.state.lock().expect("resource lock").waiters
    }

    /// Resolves when someone starts (or keeps) waiting for capacity.
    pub async fn pressure(&self) {
        self.pressure.notified().await
    }

    /// Takes `memory` bytes and `cpu` mCPU, waiting until `deadline` for them to be free.
    pub async fn acquire(
        self: &Arc<Self>,
        memory: u64,
        cpu: u64,
        deadline: Instant,
    ) -> Result<ResourceToken, AgentError> {
        if !self.is_possible(memory, cpu) {
            return Err(AgentError::CannotAllocate);
        }
        let mut waiting = false;
        let result = loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut s = self.state.lock().expect("resource lock");
                if s.memory + memory <= self.total_memory && s.cpu + cpu <= self.total_cpu {
                    s.memory += memory;
                    s.cpu += cpu;
                    if waiting {
                        s.waiters -= 1;
                    }
                    return Ok(ResourceToken { tracker: self.clone(), memory, cpu });
                }
                if self.non_blocking {
                    break Err(AgentError::TooBusy);
                }
                if !waiting {
                    s.waiters += 1;
                    waiting = true;
                }
            }
            self.pressure.notify_waiters();
            // Re-announce pressure now and then: containers that went idle after the first
            // announcement must hear it too.
            let nudge = Instant::now() + Duration::from_millis(100);
            tokio::select! {
                _ = released => {}
                _ = tokio::time::sleep_until(nudge.min(deadline)) => {
                    if Instant::now() >= deadline {
                        break Err(AgentError::TooBusy);
                    }
                }
            }
        };
        if waiting {
            self.state.lock().expect("resource lock").waiters -= 1;
        }
        result
    }
}

/// Memory available to containers: MemAvailable, min cgroup limit, minus 10% headroom
/// clamped to [256 MiB, 5 GiB].
fn detect_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(2 << 30);
    let cgroup = ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .min()
        .unwrap_or(u64::MAX);
    let avail = available.min(cgroup);
    let headroom = (avail / 10).clamp(256 << 20, 5 << 30);
    avail.saturating_sub(headroom)
}

/// CPU in mCPU: processors × 1000, min the cgroup CFS quota.
fn detect_cpu() -> u64 {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1) * 1000;
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let quota = match (read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")) {
        (Some(q), Some(p)) => match (q.parse::<i64>(), p.parse::<i64>()) {
            (Ok(q), Ok(p)) if q > 0 && p > 0 => Some(q as u64 * 1000 / p as u64),
            _ => None,
        },
        _ => read("/sys/fs/cgroup/cpu.max").and_then(|s| {
            let mut it = s.split_whitespace();
            let q = it.next()?.parse::<u64>().ok()?;
            let p = it.next()?.parse::<u64>().ok()?;
            Some(q * 1000 / p)
        }),
    };
    quota.map_or(cpus, |q| cpus.min(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_counted_and_released() {
        let t = ResourceTracker::with_capacity(300 << 20, 1000, false);
        let deadline = Instant::now() + Duration::from_millis(50);
        let a = t.acquire(128 << 20, 500, deadline).await.unwrap();
        let _b = t.acquire(128 << 20, 500, deadline).await.unwrap();
        assert_eq!(t.used(), (256 << 20, 1000));
        // No CPU left: waits until the deadline, then "too busy".
        assert!(matches!(t.acquire(1, 1, deadline).await, Err(AgentError::TooBusy)));
        // Releasing wakes a waiter.
        let t2 = t.clone();
        let waiter =
            tokio::spawn(async move { t2.acquire(10 << 20, 100, Instant::now() + Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(t.waiters(), 1);
        drop(a);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(t.waiters(), 0);
    }

    #[tokio::test]
    async fn impossible_requests_fail_at_once() {
        let t = ResourceTracker::with_capacity(100, 100, false);
        let far = Instant::now() + Duration::from_secs(60);
        assert!(matches!(t.acquire(101, 1, far).await, Err(AgentError::CannotAllocate)));
        let nb = ResourceTracker::with_capacity(100, 100, true);
        let _held = nb.acquire(100, 1, far).await.unwrap();
        assert!(matches!(nb.acquire(1, 1, far).await, Err(AgentError::TooBusy)));
    }

    #[test]
    fn detection_leaves_headroom() {
        let m = detect_memory();
        assert!(m > 0 && m < 1 << 50);
        assert!(detect_cpu() >= 1000);
    }
}
