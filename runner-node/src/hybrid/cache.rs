//! A TTL cache in front of a remote [`DataAccess`], for the lookups on the invoke path.
//!
//! Each lookup is keyed by what it is looked up by: app ID, app name, fn ID, app ID and path, or app ID,
//! type and source. An answer (a value, or a 404) is served from memory for the TTL, so a changed fn is seen
//! in its new form, and a deleted one answers 404, at most one TTL after the change. Concurrent misses of
//! one key share a single request (single-flight). When the API node fails (a 5xx, or unreachable), the
//! last answer for the key is served even past its TTL (stale-if-error), so functions that ran recently
//! keep running while the API node is away.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};

use crate::data_access::{DataAccess, Delivery};

/// Keys above which a new key first sweeps out 404s and failed lookups, so probing for names that do
/// not exist cannot grow the cache without bound.
const SWEEP_ABOVE: usize = 10_000;

/// [`DataAccess`] that caches lookups of `inner` and passes everything else through.
pub struct CachedDataAccess {
    inner: Arc<dyn DataAccess>,
    ttl: Duration,
    apps_by_id: Lookups<String, App>,
    apps_by_name: Lookups<String, App>,
    fns: Lookups<String, Func>,
    routes: Lookups<(String, String), Route>,
    triggers: Lookups<(String, String, String), Trigger>,
}

impl CachedDataAccess {
    /// Caches the lookups of `inner` for `ttl` (zero: every lookup asks `inner`, concurrent ones once).
    pub fn new(inner: Arc<dyn DataAccess>, ttl: Duration) -> Self {
        CachedDataAccess {
            inner,
            ttl,
            apps_by_id: Lookups::default(),
            apps_by_name: Lookups::default(),
            fns: Lookups::default(),
            routes: Lookups::default(),
            triggers: Lookups::default(),
        }
    }
}

#[async_trait]
impl DataAccess for CachedDataAccess {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        self.apps_by_name.get(name.to_string(), self.ttl, || self.inner.app_by_name(name)).await
    }

    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        self.apps_by_id.get(id.to_string(), self.ttl, || self.inner.app_by_id(id)).await
    }

    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        self.fns.get(id.to_string(), self.ttl, || self.inner.fn_by_id(id)).await
    }

    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        let key = (app_id.to_string(), path.to_string());
        self.routes.get(key, self.ttl, || self.inner.route(app_id, path)).await
    }

    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        let key = (app_id.to_string(), trigger_type.to_string(), source.to_string());
        self.triggers.get(key, self.ttl, || self.inner.trigger_by_source(app_id, trigger_type, source)).await
    }

    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        self.inner.enqueue(call).await
    }

    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        self.inner.dequeue(wait).await
    }

    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        self.inner.call_started(call).await
    }

    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.inner.call_finished(call, log).await
    }

    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        self.inner.complete(delivery, call).await
    }

    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        self.inner.heartbeat(delivery).await
    }

    fn accepts_calls(&self) -> bool {
        self.inner.accepts_calls()
    }
}

/// The cached answers of one kind of lookup.
struct Lookups<K, T> {
    slots: Mutex<HashMap<K, Arc<Slot<T>>>>,
}

impl<K, T> Default for Lookups<K, T> {
    fn default() -> Self {
        Lookups { slots: Mutex::new(HashMap::new()) }
    }
}

/// One key: its last answer, and a lock held by the one fetch in flight.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    fetching: tokio::sync::Mutex<()>,
}

struct SlotState<T> {
    /// The last value or 404, and when it was fetched; kept past the TTL for stale-if-error.
    answer: Option<(Result<T, Error>, Instant)>,
    /// What the last fetch answered its caller, for the callers that waited on it.
    outcome: Option<Result<T, Error>>,
    /// Fetches completed so far; a caller that sees it move while waiting shares that fetch's outcome.
    fetches: u64,
}

impl<T: Clone> Slot<T> {
    fn fresh(state: &SlotState<T>, ttl: Duration) -> Option<Result<T, Error>> {
        match &state.answer {
            Some((answer, at)) if at.elapsed() < ttl => Some(answer.clone()),
            _ => None,
        }
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Lookups<K, T> {
    /// The cached answer for `key`, or the one `fetch` gets (at most one fetch per key at a time).
    async fn get<F, Fut>(&self, key: K, ttl: Duration, fetch: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let slot = self.slot(key);
        let seen = {
            let state = slot.state.lock().unwrap();
            if let Some(answer) = Slot::fresh(&state, ttl) {
                return answer;
            }
            state.fetches
        };

        // A fetch in flight holds this lock; if one completes while we wait, its outcome is ours too.
        let _only_fetch = slot.fetching.lock().await;
        {
            let state = slot.state.lock().unwrap();
            if state.fetches != seen {
                if let Some(outcome) = &state.outcome {
                    return outcome.clone();
                }
            }
            if let Some(answer) = Slot::fresh(&state, ttl) {
                return answer;
            }
        }

        let result = fetch().await;
        let mut state = slot.state.lock().unwrap();
        let outcome = match result {
            Err(e) if e.status() >= 500 => match &state.answer {
                Some((stale, at)) => {
                    tracing::warn!(error = ?e, age = ?at.elapsed(), "API node failed; serving a stale lookup");
                    stale.clone()
                }
                None => Err(e),
            },
            Ok(_) | Err(Error::AppNotFound | Error::FnNotFound | Error::RouteNotFound | Error::TriggerNotFound) => {
                state.answer = Some((result.clone(), Instant::now()));
                result
            }
            // Another 404 (a path the API node does not serve: a version mismatch) or a 4xx is not an
            // answer about the object, so it is not kept.
            Err(e) => Err(e),
        };
        state.fetches += 1;
        state.outcome = Some(outcome.clone());
        outcome
    }

    fn slot(&self, key: K) -> Arc<Slot<T>> {
        let mut slots = self.slots.lock().unwrap();
        if let Some(slot) = slots.get(&key) {
            return slot.clone();
        }
        if slots.len() >= SWEEP_ABOVE {
            // Keep values (for stale-if-error) and slots in use; drop 404s and failed lookups.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1 || matches!(slot.state.lock().unwrap().answer, Some((Ok(_), _)))
            });
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState { answer: None, outcome: None, fetches: 0 }),
            fetching: tokio::sync::Mutex::new(()),
        });
        slots.insert(key, slot.clone());
        slot
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use shared::{AppInput, FuncInput};

    use super::*;

    /// A fake API node: one fn whose image and presence the test changes, a switch that makes it
    /// unreachable, and a count of lookups that reached it.
    #[derive(Default)]
    struct FakeApi {
        func: Mutex<Option<Func>>,
        down: std::sync::atomic::AtomicBool,
        lookups: AtomicUsize,
        delay: Duration,
    }

    impl FakeApi {
        fn with_fn(image: &str, delay: Duration) -> Arc<Self> {
            let api = FakeApi { delay, ..FakeApi::default() };
            api.set_image(image);
            Arc::new(api)
        }

        fn set_image(&self, image: &str) {
            let f = Func::new(FuncInput {
                name: Some("f".into()),
                app_id: Some("app".into()),
                image: Some(image.into()),
                ..FuncInput::default()
            })
            .unwrap();
            *self.func.lock().unwrap() = Some(f);
        }

        fn image(answer: Result<Func, Error>) -> Result<String, Error> {
            answer.map(|f| f.image)
        }
    }

    #[async_trait]
    impl DataAccess for FakeApi {
        async fn app_by_name(&self, name: &str) -> Result<App, Error> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            App::new(AppInput { name: Some(name.into()), ..AppInput::default() })
        }
        async fn app_by_id(&self, _: &str) -> Result<App, Error> {
            Err(Error::AppNotFound)
        }
        async fn fn_by_id(&self, _: &str) -> Result<Func, Error> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::Unavailable("API node unavailable".into()));
            }
            self.func.lock().unwrap().clone().ok_or(Error::FnNotFound)
        }
        async fn route(&self, _: &str, _: &str) -> Result<Route, Error> {
            Err(Error::RouteNotFound)
        }
        async fn trigger_by_source(&self, _: &str, _: &str, _: &str) -> Result<Trigger, Error> {
            Err(Error::TriggerNotFound)
        }
        async fn enqueue(&self, _: &QueuedCall) -> Result<(), Error> {
            Ok(())
        }
        async fn dequeue(&self, _: Duration) -> Result<Option<Delivery>, Error> {
            Ok(None)
        }
        async fn call_started(&self, _: &Call) -> Result<(), Error> {
            Ok(())
        }
        async fn call_finished(&self, _: &Call, _: &str) -> Result<(), Error> {
            Ok(())
        }
        async fn complete(&self, _: &Delivery, _: &Call) -> Result<(), Error> {
            Ok(())
        }
        async fn heartbeat(&self, _: &Delivery) -> Result<Duration, Error> {
            Ok(Duration::from_secs(30))
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let api = FakeApi::with_fn("img:1", Duration::from_millis(50));
        let cache = Arc::new(CachedDataAccess::new(api.clone(), Duration::from_secs(60)));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.fn_by_id("f1").await })
            })
            .collect();
        for t in tasks {
            assert_eq!(FakeApi::image(t.await.unwrap()).unwrap(), "img:1");
        }
        assert_eq!(api.lookups.load(Ordering::SeqCst), 1);
        // Another key is another fetch; the first stays cached.
        cache.fn_by_id("f2").await.unwrap();
        cache.fn_by_id("f1").await.unwrap();
        assert_eq!(api.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_misses_share_a_failure_too() {
        // A failure is not cached, so only callers that arrive while the fetch is in flight share it.
        let api = FakeApi::with_fn("img:1", Duration::from_millis(500));
        api.down.store(true, Ordering::SeqCst);
        let cache = Arc::new(CachedDataAccess::new(api.clone(), Duration::from_secs(60)));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.fn_by_id("f").await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap_err().status(), 503);
        }
        assert_eq!(api.lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn changes_show_after_the_ttl() {
        let ttl = Duration::from_millis(400);
        let api = FakeApi::with_fn("img:1", Duration::ZERO);
        let cache = CachedDataAccess::new(api.clone(), ttl);
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:1");

        api.set_image("img:2");
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:1", "served from cache within the TTL");
        tokio::time::sleep(ttl + Duration::from_millis(20)).await;
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:2");
        assert_eq!(api.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_deleted_fn_answers_404_after_the_ttl_and_the_404_expires_too() {
        let ttl = Duration::from_millis(400);
        let api = FakeApi::with_fn("img:1", Duration::ZERO);
        let cache = CachedDataAccess::new(api.clone(), ttl);
        cache.fn_by_id("f").await.unwrap();

        *api.func.lock().unwrap() = None;
        tokio::time::sleep(ttl + Duration::from_millis(20)).await;
        assert_eq!(cache.fn_by_id("f").await.unwrap_err(), Error::FnNotFound);
        assert_eq!(cache.fn_by_id("f").await.unwrap_err(), Error::FnNotFound, "the 404 is cached");
        assert_eq!(api.lookups.load(Ordering::SeqCst), 2);

        api.set_image("img:3");
        tokio::time::sleep(ttl + Duration::from_millis(20)).await;
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:3", "the 404 lasts one TTL only");
    }

    #[tokio::test]
    async fn serves_stale_values_while_the_api_node_is_down() {
        let ttl = Duration::from_millis(50);
        let api = FakeApi::with_fn("img:1", Duration::ZERO);
        let cache = CachedDataAccess::new(api.clone(), ttl);
        cache.fn_by_id("f").await.unwrap();

        api.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(ttl * 3).await;
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:1");
        // Nothing cached for this key: the failure shows.
        assert_eq!(cache.fn_by_id("other").await.unwrap_err().status(), 503);
        assert_eq!(api.lookups.load(Ordering::SeqCst), 3, "each stale serve still asked the API node");

        api.down.store(false, Ordering::SeqCst);
        api.set_image("img:2");
        assert_eq!(FakeApi::image(cache.fn_by_id("f").await).unwrap(), "img:2", "back to fresh answers");
    }

    #[tokio::test]
    async fn other_lookups_are_keyed_by_what_they_look_up() {
        let api = FakeApi::with_fn("img", Duration::ZERO);
        let cache = CachedDataAccess::new(api.clone(), Duration::from_secs(60));
        assert_eq!(cache.app_by_name("a").await.unwrap().name, "a");
        assert_eq!(cache.app_by_name("b").await.unwrap().name, "b");
        assert_eq!(cache.app_by_name("a").await.unwrap().name, "a");
        assert_eq!(api.lookups.load(Ordering::SeqCst), 2);
        assert_eq!(cache.route("app", "/p").await.unwrap_err(), Error::RouteNotFound);
        assert_eq!(cache.trigger_by_source("app", "http", "/t").await.unwrap_err(), Error::TriggerNotFound);
    }
}
