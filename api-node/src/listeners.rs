//! Extension hooks: listeners told before and after every change to an app, route, fn or trigger.
//!
//! Fn lets extensions veto or observe changes (auditing, quotas, provisioning). The hooks fire from
//! [`ListeningStore`], a datastore wrapper, so every write path fires them: the HTTP handlers, the v1
//! route auto-create, and anything else holding the store. A before-hook error aborts the operation with
//! that error; an after-hook error is returned to the caller too (the change has already happened, as in
//! Fn). Unlike Fn, the wrapped store validates before the after-hooks, and the after-hooks receive the
//! stored object (with its ID), not the input.

use std::sync::Arc;

use async_trait::async_trait;
use shared::{App, AppInput, Call, CallLog, Error, Func, FuncInput, Route, RouteInput, Trigger, TriggerInput};

use crate::datastore::{
    AppFilter, AppStore, CallFilter, Datastore, FnFilter, FnStore, LogStore, Page, RouteFilter, RouteStore, StoreError,
    StoreResult, TriggerFilter, TriggerStore,
};

/// Hooks around app changes. Every method defaults to doing nothing.
#[async_trait]
pub trait AppListener: Send + Sync {
    /// Before an app is stored; an error aborts the create.
    async fn before_app_create(&self, _app: &App) -> Result<(), Error> {
        Ok(())
    }
    /// After an app was stored.
    async fn after_app_create(&self, _app: &App) -> Result<(), Error> {
        Ok(())
    }
    /// Before an update of app `id` with `patch`; an error aborts it.
    async fn before_app_update(&self, _id: &str, _patch: &AppInput) -> Result<(), Error> {
        Ok(())
    }
    /// After an update, with the stored result.
    async fn after_app_update(&self, _app: &App) -> Result<(), Error> {
        Ok(())
    }
    /// Before app `id` (and everything in it) is removed; an error aborts it.
    async fn before_app_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
    /// After app `id` was removed.
    async fn after_app_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Hooks around route changes (v1).
#[async_trait]
pub trait RouteListener: Send + Sync {
    /// Before a route is stored; an error aborts the create.
    async fn before_route_create(&self, _route: &Route) -> Result<(), Error> {
        Ok(())
    }
    /// After a route was stored.
    async fn after_route_create(&self, _route: &Route) -> Result<(), Error> {
        Ok(())
    }
    /// Before the route at `path` of app `app_id` is updated with `patch`.
    async fn before_route_update(&self, _app_id: &str, _path: &str, _patch: &RouteInput) -> Result<(), Error> {
        Ok(())
    }
    /// After an update, with the stored result.
    async fn after_route_update(&self, _route: &Route) -> Result<(), Error> {
        Ok(())
    }
    /// Before the route at `path` of app `app_id` is removed.
    async fn before_route_delete(&self, _app_id: &str, _path: &str) -> Result<(), Error> {
        Ok(())
    }
    /// After the route was removed.
    async fn after_route_delete(&self, _app_id: &str, _path: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Hooks around fn changes (v2).
#[async_trait]
pub trait FnListener: Send + Sync {
    /// Before a fn is stored; an error aborts the create.
    async fn before_fn_create(&self, _f: &Func) -> Result<(), Error> {
        Ok(())
    }
    /// After a fn was stored.
    async fn after_fn_create(&self, _f: &Func) -> Result<(), Error> {
        Ok(())
    }
    /// Before fn `id` is updated with `patch`.
    async fn before_fn_update(&self, _id: &str, _patch: &FuncInput) -> Result<(), Error> {
        Ok(())
    }
    /// After an update, with the stored result.
    async fn after_fn_update(&self, _f: &Func) -> Result<(), Error> {
        Ok(())
    }
    /// Before fn `id` (and its triggers) is removed.
    async fn before_fn_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
    /// After fn `id` was removed.
    async fn after_fn_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Hooks around trigger changes (v2).
#[async_trait]
pub trait TriggerListener: Send + Sync {
    /// Before a trigger is stored; an error aborts the create.
    async fn before_trigger_create(&self, _t: &Trigger) -> Result<(), Error> {
        Ok(())
    }
    /// After a trigger was stored.
    async fn after_trigger_create(&self, _t: &Trigger) -> Result<(), Error> {
        Ok(())
    }
    /// Before trigger `id` is updated with `patch`.
    async fn before_trigger_update(&self, _id: &str, _patch: &TriggerInput) -> Result<(), Error> {
        Ok(())
    }
    /// After an update, with the stored result.
    async fn after_trigger_update(&self, _t: &Trigger) -> Result<(), Error> {
        Ok(())
    }
    /// Before trigger `id` is removed.
    async fn before_trigger_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
    /// After trigger `id` was removed.
    async fn after_trigger_delete(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Hooks around one invocation, fired by [`ListeningStore`] as the call is recorded: `before_call` when it
/// is recorded as running (an error refuses that record), `after_call` once its final status is stored
/// (for an async call that failed, once it is given up after its last attempt).
/// Calls are recorded off the response path, so unlike Fn's `BeforeCall` these hooks observe calls (audit,
/// billing, metering) rather than veto them.
#[async_trait]
pub trait CallListener: Send + Sync {
    /// The call is about to run.
    async fn before_call(&self, _call: &Call) -> Result<(), Error> {
        Ok(())
    }
    /// The call finished (any final status).
    async fn after_call(&self, _call: &Call) -> Result<(), Error> {
        Ok(())
    }
}

/// The listeners registered with a server; cheap to clone.
#[derive(Clone, Default)]
pub struct Listeners {
    /// App hooks, fired in order.
    pub apps: Vec<Arc<dyn AppListener>>,
    /// Route hooks.
    pub routes: Vec<Arc<dyn RouteListener>>,
    /// Fn hooks.
    pub fns: Vec<Arc<dyn FnListener>>,
    /// Trigger hooks.
    pub triggers: Vec<Arc<dyn TriggerListener>>,
    /// Call hooks, for the agent.
    pub calls: Vec<Arc<dyn CallListener>>,
}

impl Listeners {
    /// Whether no listener is registered (the wrapper can then be skipped).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.routes.is_empty()
            && self.fns.is_empty()
            && self.triggers.is_empty()
            && self.calls.is_empty()
    }
}

/// A datastore that fires [`Listeners`] around every change and delegates to another datastore.
pub struct ListeningStore {
    inner: Arc<dyn Datastore>,
    listeners: Listeners,
}

impl ListeningStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Datastore>, listeners: Listeners) -> Self {
        ListeningStore { inner, listeners }
    }

    /// `inner` wrapped when there are listeners, `inner` itself otherwise.
    pub fn wrap(inner: Arc<dyn Datastore>, listeners: Listeners) -> Arc<dyn Datastore> {
        if listeners.is_empty() {
            inner
        } else {
            Arc::new(ListeningStore::new(inner, listeners))
        }
    }
}

/// Runs one hook over every listener, stopping at the first error.
macro_rules! fire {
    ($list:expr, $method:ident ( $($arg:expr),* )) => {
        for l in &$list {
            l.$method($($arg),*).await.map_err(StoreError::Domain)?;
        }
    };
}

#[async_trait]
impl AppStore for ListeningStore {
    async fn insert_app(&self, app: &App) -> StoreResult<App> {
        fire!(self.listeners.apps, before_app_create(app));
        let stored = self.inner.insert_app(app).await?;
        fire!(self.listeners.apps, after_app_create(&stored));
        Ok(stored)
    }
    async fn get_app_by_id(&self, id: &str) -> StoreResult<App> {
        self.inner.get_app_by_id(id).await
    }
    async fn get_app_by_name(&self, name: &str) -> StoreResult<App> {
        self.inner.get_app_by_name(name).await
    }
    async fn update_app(&self, id: &str, patch: AppInput) -> StoreResult<App> {
        fire!(self.listeners.apps, before_app_update(id, &patch));
        let stored = self.inner.update_app(id, patch).await?;
        fire!(self.listeners.apps, after_app_update(&stored));
        Ok(stored)
    }
    async fn remove_app(&self, id: &str) -> StoreResult<()> {
        fire!(self.listeners.apps, before_app_delete(id));
        self.inner.remove_app(id).await?;
        fire!(self.listeners.apps, after_app_delete(id));
        Ok(())
    }
    async fn list_apps(&self, filter: &AppFilter) -> StoreResult<Page<App>> {
        self.inner.list_apps(filter).await
    }
}

#[async_trait]
impl RouteStore for ListeningStore {
    async fn insert_route(&self, route: &Route) -> StoreResult<Route> {
        fire!(self.listeners.routes, before_route_create(route));
        let stored = self.inner.insert_route(route).await?;
        fire!(self.listeners.routes, after_route_create(&stored));
        Ok(stored)
    }
    async fn get_route(&self, app_id: &str, path: &str) -> StoreResult<Route> {
        self.inner.get_route(app_id, path).await
    }
    async fn update_route(&self, app_id: &str, path: &str, patch: RouteInput) -> StoreResult<Route> {
        fire!(self.listeners.routes, before_route_update(app_id, path, &patch));
        let stored = self.inner.update_route(app_id, path, patch).await?;
        fire!(self.listeners.routes, after_route_update(&stored));
        Ok(stored)
    }
    async fn remove_route(&self, app_id: &str, path: &str) -> StoreResult<()> {
        fire!(self.listeners.routes, before_route_delete(app_id, path));
        self.inner.remove_route(app_id, path).await?;
        fire!(self.listeners.routes, after_route_delete(app_id, path));
        Ok(())
    }
    async fn list_routes(&self, filter: &RouteFilter) -> StoreResult<Page<Route>> {
        self.inner.list_routes(filter).await
    }
}

#[async_trait]
impl FnStore for ListeningStore {
    async fn insert_fn(&self, f: &Func) -> StoreResult<Func> {
        fire!(self.listeners.fns, before_fn_create(f));
        let stored = self.inner.insert_fn(f).await?;
        fire!(self.listeners.fns, after_fn_create(&stored));
        Ok(stored)
    }
    async fn get_fn(&self, id: &str) -> StoreResult<Func> {
        self.inner.get_fn(id).await
    }
    async fn update_fn(&self, id: &str, patch: FuncInput) -> StoreResult<Func> {
        fire!(self.listeners.fns, before_fn_update(id, &patch));
        let stored = self.inner.update_fn(id, patch).await?;
        fire!(self.listeners.fns, after_fn_update(&stored));
        Ok(stored)
    }
    async fn remove_fn(&self, id: &str) -> StoreResult<()> {
        fire!(self.listeners.fns, before_fn_delete(id));
        self.inner.remove_fn(id).await?;
        fire!(self.listeners.fns, after_fn_delete(id));
        Ok(())
    }
    async fn list_fns(&self, filter: &FnFilter) -> StoreResult<Page<Func>> {
        self.inner.list_fns(filter).await
    }
}

#[async_trait]
impl TriggerStore for ListeningStore {
    async fn insert_trigger(&self, t: &Trigger) -> StoreResult<Trigger> {
        fire!(self.listeners.triggers, before_trigger_create(t));
        let stored = self.inner.insert_trigger(t).await?;
        fire!(self.listeners.triggers, after_trigger_create(&stored));
        Ok(stored)
    }
    async fn get_trigger(&self, id: &str) -> StoreResult<Trigger> {
        self.inner.get_trigger(id).await
    }
    async fn get_trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> StoreResult<Trigger> {
        self.inner.get_trigger_by_source(app_id, trigger_type, source).await
    }
    async fn update_trigger(&self, id: &str, patch: TriggerInput) -> StoreResult<Trigger> {
        fire!(self.listeners.triggers, before_trigger_update(id, &patch));
        let stored = self.inner.update_trigger(id, patch).await?;
        fire!(self.listeners.triggers, after_trigger_update(&stored));
        Ok(stored)
    }
    async fn remove_trigger(&self, id: &str) -> StoreResult<()> {
        fire!(self.listeners.triggers, before_trigger_delete(id));
        self.inner.remove_trigger(id).await?;
        fire!(self.listeners.triggers, after_trigger_delete(id));
        Ok(())
    }
    async fn list_triggers(&self, filter: &TriggerFilter) -> StoreResult<Page<Trigger>> {
        self.inner.list_triggers(filter).await
    }
}

#[async_trait]
impl LogStore for ListeningStore {
    /// Fires `before_call` when a call is recorded as running (an error refuses the record) and
    /// `after_call` once its final status is stored.
    async fn insert_call(&self, call: &Call) -> StoreResult<()> {
        if call.status == shared::CallStatus::Running {
            fire!(self.listeners.calls, before_call(call));
        }
        self.inner.insert_call(call).await?;
        if call.status.is_final() {
            fire!(self.listeners.calls, after_call(call));
        }
        Ok(())
    }
    async fn insert_call_if_absent(&self, call: &Call) -> StoreResult<bool> {
        self.inner.insert_call_if_absent(call).await
    }
    /// Fires `after_call` when an async call is given up: its failure is final only then.
    async fn record_attempt(&self, call: &Call) -> StoreResult<()> {
        self.inner.record_attempt(call).await?;
        if call.dead_letter {
            fire!(self.listeners.calls, after_call(call));
        }
        Ok(())
    }
    async fn fail_lost_calls(&self, started_before: shared::time::DateTime, error: &str) -> StoreResult<u64> {
        self.inner.fail_lost_calls(started_before, error).await
    }
    async fn get_call(&self, call_id: &str) -> StoreResult<Call> {
        self.inner.get_call(call_id).await
    }
    async fn list_calls(&self, filter: &CallFilter) -> StoreResult<Page<Call>> {
        self.inner.list_calls(filter).await
    }
    async fn insert_log(&self, app_id: &str, call_id: &str, log: &str) -> StoreResult<()> {
        self.inner.insert_log(app_id, call_id, log).await
    }
    async fn get_log(&self, call_id: &str) -> StoreResult<CallLog> {
        self.inner.get_log(call_id).await
    }
}

#[async_trait]
impl Datastore for ListeningStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}
