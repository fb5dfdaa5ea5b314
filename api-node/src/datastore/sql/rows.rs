//! Reading models back from rows, and the text forms of their map columns.

use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::time::DateTime;
use shared::{
    Annotations, App, Call, CallStatus, Config, Format, Func, Headers, MilliCpus, Route, RouteType, Trigger,
    TriggerType,
};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::datastore::{StoreError, StoreResult};

/// Column lists, in the order the readers below expect them.
pub const APP_COLUMNS: &str = "id, name, config, annotations, syslog_url, created_at, updated_at";
pub const ROUTE_COLUMNS: &str = "app_id, path, image, format, memory, cpus, timeout, idle_timeout, tmpfs_size, type, \
     headers, config, annotations, created_at, updated_at";
pub const FN_COLUMNS: &str =
    "id, name, app_id, image, format, memory, timeout, idle_timeout, config, annotations, created_at, updated_at";
pub const TRIGGER_COLUMNS: &str = "id, name, app_id, fn_id, type, source, annotations, created_at, updated_at";
pub const CALL_COLUMNS: &str =
    "id, app_id, fn_id, path, status, created_at, started_at, completed_at, error, stats, attempts, dead_letter";

/// A map as JSON text (Fn stores maps this way too).
pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string())
}

fn from_json<T: DeserializeOwned + Default>(s: &str) -> StoreResult<T> {
    if s.is_empty() {
        return Ok(T::default());
    }
    Ok(serde_json::from_str(s)?)
}

/// A text column. MySQL's TEXT types reach sqlx's `Any` driver as blobs, so bytes are accepted too.
pub fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    opt_text(row, col)?.ok_or_else(|| StoreError::Corrupt(format!("{col} is NULL")))
}

/// A nullable text column.
pub fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(s) => Ok(s),
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>(col)?
            .map(|b| String::from_utf8(b).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
            .transpose(),
    }
}

/// A column of bytes that hold text (a call's log): bytes that are not UTF-8 become U+FFFD rather
/// than failing the read, since a log keeps whatever a function wrote. Rows written as text before
/// the column held bytes are read as text.
pub fn lossy_text(row: &AnyRow, col: &str) -> StoreResult<String> {
    match row.try_get::<Vec<u8>, _>(col) {
        Ok(b) => Ok(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Err(_) => text(row, col),
    }
}

fn time(row: &AnyRow, col: &str) -> StoreResult<DateTime> {
    let s = text(row, col)?;
    DateTime::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{col} {s:?} is not a timestamp")))
}

fn opt_time(row: &AnyRow, col: &str) -> StoreResult<Option<DateTime>> {
    let s = opt_text(row, col)?;
    s.filter(|s| !s.is_empty())
        .map(|s| DateTime::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{col} {s:?}"))))
        .transpose()
}

fn int(row: &AnyRow, col: &str) -> StoreResult<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

fn format(row: &AnyRow) -> StoreResult<Format> {
    let s = text(row, "format")?;
    Format::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("format {s:?}")))
}

/// An app row.
pub fn app(row: &AnyRow) -> StoreResult<App> {
    Ok(App {
        id: text(row, "id")?,
        name: text(row, "name")?,
        config: Config(from_json(&text(row, "config")?)?),
        annotations: Annotations::from_stored(from_json(&text(row, "annotations")?)?),
        syslog_url: opt_text(row, "syslog_url")?.filter(|s| !s.is_empty()),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A route row.
pub fn route(row: &AnyRow) -> StoreResult<Route> {
    let route_type = text(row, "type")?;
    Ok(Route {
        app_id: text(row, "app_id")?,
        path: text(row, "path")?,
        image: text(row, "image")?,
        memory: int(row, "memory")? as u64,
        cpus: MilliCpus(int(row, "cpus")? as u64),
        headers: Headers(from_json(&text(row, "headers")?)?),
        route_type: RouteType::parse(&route_type).ok_or_else(|| StoreError::Corrupt(format!("type {route_type:?}")))?,
        format: format(row)?,
        timeout: int(row, "timeout")? as i32,
        idle_timeout: int(row, "idle_timeout")? as i32,
        tmpfs_size: int(row, "tmpfs_size")? as u32,
        config: Config(from_json(&text(row, "config")?)?),
        annotations: Annotations::from_stored(from_json(&text(row, "annotations")?)?),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A fn row.
pub fn func(row: &AnyRow) -> StoreResult<Func> {
    Ok(Func {
        id: text(row, "id")?,
        name: text(row, "name")?,
        app_id: text(row, "app_id")?,
        image: text(row, "image")?,
        memory: int(row, "memory")? as u64,
        timeout: int(row, "timeout")? as i32,
        idle_timeout: int(row, "idle_timeout")? as i32,
        format: format(row)?,
        config: Config(from_json(&text(row, "config")?)?),
        annotations: Annotations::from_stored(from_json(&text(row, "annotations")?)?),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A trigger row.
pub fn trigger(row: &AnyRow) -> StoreResult<Trigger> {
    let t = text(row, "type")?;
    if t != TriggerType::Http.as_str() {
        return Err(StoreError::Corrupt(format!("trigger type {t:?}")));
    }
    Ok(Trigger {
        id: text(row, "id")?,
        name: text(row, "name")?,
        app_id: text(row, "app_id")?,
        fn_id: text(row, "fn_id")?,
        trigger_type: TriggerType::Http,
        source: text(row, "source")?,
        annotations: Annotations::from_stored(from_json(&text(row, "annotations")?)?),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A call row.
pub fn call(row: &AnyRow) -> StoreResult<Call> {
    let status = text(row, "status")?;
    Ok(Call {
        id: text(row, "id")?,
        status: CallStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        app_id: text(row, "app_id")?,
        fn_id: text(row, "fn_id")?,
        path: text(row, "path")?,
        created_at: time(row, "created_at")?,
        started_at: opt_time(row, "started_at")?,
        completed_at: opt_time(row, "completed_at")?,
        error: text(row, "error")?,
        stats: from_json(&text(row, "stats")?)?,
        attempts: from_json(&opt_text(row, "attempts")?.unwrap_or_default())?,
        dead_letter: int(row, "dead_letter")? != 0,
    })
}

/// Whether a failed statement broke a unique constraint, and its message (to tell constraints apart).
pub fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(db.message().to_string()),
        _ => None,
    }
}

/// Builds a page from `per_page + 1` fetched rows: the extra row only tells that another page exists.
pub fn page<T>(mut items: Vec<T>, per_page: u32, cursor_of: impl Fn(&T) -> String) -> crate::datastore::Page<T> {
    let more = items.len() > per_page as usize;
    items.truncate(per_page as usize);
    let next_cursor = if more { items.last().map(cursor_of) } else { None };
    crate::datastore::Page { items, next_cursor }
}
