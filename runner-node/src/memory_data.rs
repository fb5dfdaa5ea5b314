//! An in-memory [`DataAccess`] for tests and benchmarks (feature `testing`): it stands in for
//! the storage seam so the invoke endpoints can be served without a database. It keeps what
//! was queued and recorded so tests can look, and can be told to fail enqueues. Deliveries put in
//! `deliveries` are handed out by `dequeue`, so the async loop can be driven too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};

use crate::data_access::{DataAccess, Delivery};

/// Apps, fns, routes and triggers in vectors; a queue that is only ever appended to.
#[derive(Default)]
pub struct MemoryDataAccess {
    /// Stored apps.
    pub apps: Mutex<Vec<App>>,
    /// Stored fns.
    pub fns: Mutex<Vec<Func>>,
    /// Stored routes.
    pub routes: Mutex<Vec<Route>>,
    /// Stored triggers.
    pub triggers: Mutex<Vec<Trigger>>,
    /// Everything enqueued, in order.
    pub queued: Mutex<Vec<QueuedCall>>,
    /// Every record reported: ("started" | "finished", call, log).
    pub records: Mutex<Vec<(String, Call, String)>>,
    /// When set, `enqueue` fails with 503 "queue unavailable".
    pub fail_enqueue: AtomicBool,
    /// Milliseconds every `call_started` / `call_finished` takes (a slow store).
    pub record_delay_ms: AtomicU64,
    /// Queued calls `dequeue` hands out, first in first out.
    pub deliveries: Mutex<VecDeque<Delivery>>,
    /// Every completion: (delivery, call as reported).
    pub completed: Mutex<Vec<(Delivery, Call)>>,
    /// Call IDs of every heartbeat, in order.
    pub heartbeats: Mutex<Vec<String>>,
    /// Lease `heartbeat` grants, in milliseconds (0: 30 s).
    pub lease_ms: AtomicU64,
}

impl MemoryDataAccess {
    /// Makes `enqueue` fail (or work again).
    pub fn set_fail_enqueue(&self, fail: bool) {
        self.fail_enqueue.store(fail, Ordering::SeqCst);
    }

    async fn record_delay(&self) {
        let ms = self.record_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

fn find<T: Clone>(items: &Mutex<Vec<T>>, pred: impl Fn(&T) -> bool, missing: Error) -> Result<T, Error> {
    items.lock().expect("memory data lock").iter().find(|x| pred(x)).cloned().ok_or(missing)
}

#[async_trait]
impl DataAccess for MemoryDataAccess {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        find(&self.apps, |a| a.name == name, Error::AppNotFound)
    }
    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        find(&self.apps, |a| a.id == id, Error::AppNotFound)
    }
    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        find(&self.fns, |f| f.id == id, Error::FnNotFound)
    }
    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        find(&self.routes, |r| r.app_id == app_id && r.path == path, Error::RouteNotFound)
    }
    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        find(
            &self.triggers,
            |t| t.app_id == app_id && t.trigger_type.as_str() == trigger_type && t.source == source,
            Error::TriggerNotFound,
        )
    }
    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        if self.fail_enqueue.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("queue unavailable".into()));
        }
        self.queued.lock().expect("memory data lock").push(call.clone());
        Ok(())
    }
    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        let next = self.deliveries.lock().expect("memory data lock").pop_front();
        if next.is_none() {
            tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
        }
        Ok(next)
    }
    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        self.record_delay().await;
        self.records.lock().expect("memory data lock").push(("started".into(), call.clone(), String::new()));
        Ok(())
    }
    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.record_delay().await;
        self.records.lock().expect("memory data lock").push(("finished".into(), call.clone(), log.to_string()));
        Ok(())
    }
    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        self.completed.lock().expect("memory data lock").push((delivery.clone(), call.clone()));
        Ok(())
    }
    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        self.heartbeats.lock().expect("memory data lock").push(delivery.call.call.id.clone());
        match self.lease_ms.load(Ordering::SeqCst) {
            0 => Ok(Duration::from_secs(30)),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}
