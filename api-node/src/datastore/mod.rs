//! The datastore: where apps, routes, fns, triggers, calls and call logs live.
//!
//! Handlers and the agent see only these traits. One implementation ([`sql::SqlStore`]) serves SQLite,
//! PostgreSQL and MySQL/MariaDB; wrappers (listeners, caching) implement the same traits around it, so
//! every path that changes an object goes through them.
//!
//! Contracts every implementation keeps (the conformance suite in `tests/datastore.rs` checks them):
//! - uniqueness is reported as Fn's 409 errors, absence as its 404 errors;
//! - updates read, merge (see `shared::models`) and write in one transaction, and `updated_at` moves only
//!   when the stored object changes;
//! - deleting an app removes its routes, fns, triggers, calls and logs, deleting a fn its triggers, each in
//!   one transaction;
//! - lists are ordered by their sort key and cursors are opaque: following `next_cursor` returns every
//!   item exactly once; `next_cursor` is set only when another page has items (Fn also set it on a full
//!   last page, which then led to an empty page).

mod error;
pub mod sql;

use async_trait::async_trait;
use shared::time::DateTime;
use shared::{App, AppInput, Call, CallLog, Func, FuncInput, Route, RouteInput, Trigger, TriggerInput};

pub use error::StoreError;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Which apps to list.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Only the app with exactly this name.
    pub name: Option<String>,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size (already clamped by the caller, see `shared::cursor::per_page`).
    pub per_page: u32,
}

/// Which routes of an app to list.
#[derive(Debug, Clone, Default)]
pub struct RouteFilter {
    /// The app.
    pub app_id: String,
    /// Only routes with exactly this image.
    pub image: Option<String>,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub per_page: u32,
}

/// Which fns of an app to list.
#[derive(Debug, Clone, Default)]
pub struct FnFilter {
    /// The app (required by the API).
    pub app_id: String,
    /// Only the fn with exactly this name. Fn's server ignored this filter; we apply it.
    pub name: Option<String>,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub per_page: u32,
}

/// Which triggers of an app to list.
#[derive(Debug, Clone, Default)]
pub struct TriggerFilter {
    /// The app (required by the API).
    pub app_id: String,
    /// Only triggers of this fn.
    pub fn_id: Option<String>,
    /// Only triggers with exactly this name.
    pub name: Option<String>,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub per_page: u32,
}

/// Which calls to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only calls of this app.
    pub app_id: Option<String>,
    /// Only calls of this fn.
    pub fn_id: Option<String>,
    /// Only calls of this route path.
    pub path: Option<String>,
    /// Only calls created at or after this time.
    pub from_time: Option<DateTime>,
    /// Only calls created at or before this time.
    pub to_time: Option<DateTime>,
    /// Only dead-lettered async calls (`true`), or only the others (`false`).
    pub dead_letter: Option<bool>,
    /// Continue after this cursor (the last call ID seen).
    pub cursor: Option<String>,
    /// Page size.
    pub per_page: u32,
}

/// Apps.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Stores a new app; 409 "App already exists" when the name is taken.
    async fn insert_app(&self, app: &App) -> StoreResult<App>;
    /// The app with this ID.
    async fn get_app_by_id(&self, id: &str) -> StoreResult<App>;
    /// The app with this name.
    async fn get_app_by_name(&self, name: &str) -> StoreResult<App>;
    /// Merges `patch` into the app and stores the result.
    async fn update_app(&self, id: &str, patch: AppInput) -> StoreResult<App>;
    /// Removes the app and everything in it.
    async fn remove_app(&self, id: &str) -> StoreResult<()>;
    /// Apps ordered by name.
    async fn list_apps(&self, filter: &AppFilter) -> StoreResult<Page<App>>;
}

/// Routes (v1).
#[async_trait]
pub trait RouteStore: Send + Sync {
    /// Stores a new route; 404 when its app is gone, 409 when the path is taken.
    async fn insert_route(&self, route: &Route) -> StoreResult<Route>;
    /// The route of the app at exactly this (cleaned) path.
    async fn get_route(&self, app_id: &str, path: &str) -> StoreResult<Route>;
    /// Merges `patch` into the route and stores the result.
    async fn update_route(&self, app_id: &str, path: &str, patch: RouteInput) -> StoreResult<Route>;
    /// Removes the route.
    async fn remove_route(&self, app_id: &str, path: &str) -> StoreResult<()>;
    /// Routes of an app ordered by path.
    async fn list_routes(&self, filter: &RouteFilter) -> StoreResult<Page<Route>>;
}

/// Fns (v2).
#[async_trait]
pub trait FnStore: Send + Sync {
    /// Stores a new fn; 404 when its app is gone, 409 when the name is taken in the app.
    async fn insert_fn(&self, f: &Func) -> StoreResult<Func>;
    /// The fn with this ID.
    async fn get_fn(&self, id: &str) -> StoreResult<Func>;
    /// Merges `patch` into the fn and stores the result.
    async fn update_fn(&self, id: &str, patch: FuncInput) -> StoreResult<Func>;
    /// Removes the fn and its triggers.
    async fn remove_fn(&self, id: &str) -> StoreResult<()>;
    /// Fns of an app ordered by name.
    async fn list_fns(&self, filter: &FnFilter) -> StoreResult<Page<Func>>;
}

/// Triggers (v2).
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Stores a new trigger after checking that its app and fn exist and the fn is the app's.
    async fn insert_trigger(&self, t: &Trigger) -> StoreResult<Trigger>;
    /// The trigger with this ID.
    async fn get_trigger(&self, id: &str) -> StoreResult<Trigger>;
    /// The trigger of an app with this type and source (what `/t/{app}{source}` resolves).
    async fn get_trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> StoreResult<Trigger>;
    /// Merges `patch` into the trigger and stores the result.
    async fn update_trigger(&self, id: &str, patch: TriggerInput) -> StoreResult<Trigger>;
    /// Removes the trigger.
    async fn remove_trigger(&self, id: &str) -> StoreResult<()>;
    /// Triggers of an app ordered by name (then ID, as names repeat across fns).
    async fn list_triggers(&self, filter: &TriggerFilter) -> StoreResult<Page<Trigger>>;
}

/// Call records and their logs.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Records a call. A record with the same ID is updated in place, so a call moving from queued to
    /// running to a final status, or a redelivered async call, keeps exactly one record.
    async fn insert_call(&self, call: &Call) -> StoreResult<()>;
    /// Records a call unless a record with its ID exists (then it is left as is, and `false` returned):
    /// the `queued` record of an async call must never overwrite what a runner already reported.
    async fn insert_call_if_absent(&self, call: &Call) -> StoreResult<bool>;
    /// Writes what the queue side knows of an async call: its status, its attempts and whether it was
    /// given up. `insert_call` leaves those two alone, so a runner's report cannot erase them.
    async fn record_attempt(&self, call: &Call) -> StoreResult<()>;
    /// Ends as `error` the calls still `running` that started before `started_before`: their node
    /// stopped before it could record their end (a runner killed mid-call). Returns how many.
    async fn fail_lost_calls(&self, started_before: DateTime, error: &str) -> StoreResult<u64>;
    /// The call with this ID.
    async fn get_call(&self, call_id: &str) -> StoreResult<Call>;
    /// Calls, newest first.
    async fn list_calls(&self, filter: &CallFilter) -> StoreResult<Page<Call>>;
    /// Stores (or replaces) the log of a call.
    async fn insert_log(&self, app_id: &str, call_id: &str, log: &str) -> StoreResult<()>;
    /// The log of a call.
    async fn get_log(&self, call_id: &str) -> StoreResult<CallLog>;
}

/// Everything the API node stores.
#[async_trait]
pub trait Datastore: AppStore + RouteStore + FnStore + TriggerStore + LogStore {
    /// Whether the database answers now (for the readiness endpoint).
    async fn ping(&self) -> StoreResult<()>;
}
