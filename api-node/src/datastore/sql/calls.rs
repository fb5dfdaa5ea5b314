//! Call records and logs on SQL.

use async_trait::async_trait;
use shared::time::DateTime;
use shared::{Call, CallLog, Error};

use super::rows::{self, to_json, CALL_COLUMNS};
use super::SqlStore;
use crate::datastore::{CallFilter, LogStore, Page, StoreResult};

/// Columns a call is written with, in the order [`SqlStore::write_call`] binds them.
const CALL_WRITE_COLUMNS: [&str; 12] = [
    "id",
    "app_id",
    "fn_id",
    "path",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "error",
    "stats",
    "attempts",
    "dead_letter",
];

impl SqlStore {
    /// Runs an insert of `call` over [`CALL_WRITE_COLUMNS`]; returns the rows it changed.
    async fn write_call(&self, sql: &str, call: &Call) -> StoreResult<u64> {
        if call.id.is_empty() {
            return Err(Error::MissingCallId.into());
        }
        if call.app_id.is_empty() {
            return Err(Error::MissingAppId.into());
        }
        let done = sqlx::query(sql)
            .bind(&call.id)
            .bind(&call.app_id)
            .bind(&call.fn_id)
            .bind(&call.path)
            .bind(call.status.as_str())
            .bind(call.created_at.to_string())
            .bind(call.started_at.map(|t| t.to_string()))
            .bind(call.completed_at.map(|t| t.to_string()))
            .bind(&call.error)
            .bind(to_json(&call.stats))
            .bind(to_json(&call.attempts))
            .bind(call.dead_letter as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl LogStore for SqlStore {
    async fn insert_call(&self, call: &Call) -> StoreResult<()> {
        // A runner's report of one run must not erase the attempts the queue side keeps, nor move the
        // time the call was accepted.
        let sql = self
            .sql(&self.dialect.upsert("calls", &CALL_WRITE_COLUMNS, "id", &["created_at", "attempts", "dead_letter"]))
            .into_owned();
        self.write_call(&sql, call).await.map(|_| ())
    }

    async fn insert_call_if_absent(&self, call: &Call) -> StoreResult<bool> {
        let sql = self.sql(&self.dialect.insert_if_absent("calls", &CALL_WRITE_COLUMNS, "id")).into_owned();
        Ok(self.write_call(&sql, call).await? == 1)
    }

    async fn record_attempt(&self, call: &Call) -> StoreResult<()> {
        let sql = self.sql("UPDATE calls SET status = ?, error = ?, attempts = ?, dead_letter = ? WHERE id = ?");
        let done = sqlx::query(&sql)
            .bind(call.status.as_str())
            .bind(&call.error)
            .bind(to_json(&call.attempts))
            .bind(call.dead_letter as i64)
            .bind(&call.id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 && self.get_call(&call.id).await.is_err() {
            return Err(Error::CallNotFound.into());
        }
        Ok(())
    }

    async fn fail_lost_calls(&self, started_before: DateTime, error: &str) -> StoreResult<u64> {
        let sql = self.sql(
            "UPDATE calls SET status = 'error', error = ?, completed_at = ? WHERE status = 'running' AND started_at < ?",
        );
        let done = sqlx::query(&sql)
            .bind(error)
            .bind(DateTime::now().to_string())
            .bind(started_before.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn get_call(&self, call_id: &str) -> StoreResult<Call> {
        let sql = self.sql(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?")).into_owned();
        let row = sqlx::query(&sql).bind(call_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::call).transpose()?.ok_or_else(|| Error::CallNotFound.into())
    }

    async fn list_calls(&self, filter: &CallFilter) -> StoreResult<Page<Call>> {
        let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut add = |clause: &str, value: String| {
            sql.push_str(clause);
            binds.push(value);
        };
        if let Some(v) = &filter.app_id {
            add(" AND app_id = ?", v.clone());
        }
        if let Some(v) = &filter.fn_id {
            add(" AND fn_id = ?", v.clone());
        }
        if let Some(v) = &filter.path {
            add(" AND path = ?", v.clone());
        }
        if let Some(v) = &filter.from_time {
            add(" AND created_at >= ?", v.to_string());
        }
        if let Some(v) = &filter.to_time {
            add(" AND created_at <= ?", v.to_string());
        }
        if let Some(v) = &filter.cursor {
            add(" AND id < ?", v.clone());
        }
        if let Some(v) = filter.dead_letter {
            sql.push_str(if v { " AND dead_letter = 1" } else { " AND dead_letter = 0" });
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.per_page + 1));
        let sql = self.sql(&sql).into_owned();
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let items = q.fetch_all(&self.pool).await?.iter().map(rows::call).collect::<StoreResult<Vec<_>>>()?;
        Ok(rows::page(items, filter.per_page, |c| c.id.clone()))
    }

    async fn insert_log(&self, app_id: &str, call_id: &str, log: &str) -> StoreResult<()> {
        if call_id.is_empty() {
            return Err(Error::MissingCallId.into());
        }
        if app_id.is_empty() {
            return Err(Error::MissingAppId.into());
        }
        let sql = self.sql(&self.dialect.upsert("logs", &["id", "app_id", "log"], "id", &[])).into_owned();
        sqlx::query(&sql).bind(call_id).bind(app_id).bind(log.as_bytes()).execute(&self.pool).await?;
        Ok(())
    }

    async fn get_log(&self, call_id: &str) -> StoreResult<CallLog> {
        let sql = self.sql("SELECT id, log FROM logs WHERE id = ?");
        let row = sqlx::query(&sql).bind(call_id).fetch_optional(&self.pool).await?.ok_or(Error::CallLogNotFound)?;
        Ok(CallLog { call_id: rows::text(&row, "id")?, log: rows::lossy_text(&row, "log")? })
    }
}
