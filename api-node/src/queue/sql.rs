//! The queue on SQL: the embedded default (a SQLite file) and PostgreSQL (`FOR UPDATE SKIP LOCKED`).
//!
//! One table; a message's `visible_at` is when it may next be reserved: the push time plus its delay,
//! then, while reserved, the end of the lease. An expired lease therefore needs no sweeper: the message
//! is simply visible again. The reservation token makes a stale holder's ack or release fail.
//!
//! On SQLite the queue's connections run in WAL mode with `synchronous = FULL`: a push is synced to the
//! disk before it returns, so a call accepted with 202 survives a power loss.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyPool, Executor};

use super::{new_token, now_ms, presented, Message, MessageQueue, QueueError, QueueResult, Reservation};
use crate::datastore::sql::{connect::open_pool_with, migrations, text, DbUrl, Dialect};
use crate::datastore::StoreError;

/// A queue in a SQLite file or a PostgreSQL database.
#[derive(Clone)]
pub struct SqlQueue {
    pool: AnyPool,
    dialect: Dialect,
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        match StoreError::from(e) {
            e if e.is_unavailable() => QueueError::Unavailable(e.to_string()),
            e => QueueError::Backend(e.to_string()),
        }
    }
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            QueueError::Unavailable(e.to_string())
        } else {
            QueueError::Backend(e.to_string())
        }
    }
}

impl SqlQueue {
    /// Opens the queue at `url` (`sqlite3://PATH`, Fn's `bolt://PATH`, or `postgres://...`) and creates its
    /// table if missing.
    pub async fn connect(url: &str, retries: u32) -> QueueResult<SqlQueue> {
        let url = match url.split_once("://") {
            Some(("bolt", path)) => format!("sqlite3://{path}"),
            _ => url.to_string(),
        };
        let db: DbUrl =
            url.parse().map_err(|e: crate::datastore::sql::DbUrlError| QueueError::Config(e.to_string()))?;
        if db.dialect() == Dialect::Mysql {
            return Err(QueueError::Config(
                "FN_MQ_URL: MySQL is not a supported queue; use sqlite3://, postgres:// or redis://".into(),
            ));
        }
        // Durable once pushed: a 202 promises the call survives power loss, so every commit is synced.
        let pool = open_pool_with(&db, retries, true).await?;
        let queue = SqlQueue { pool, dialect: db.dialect() };
        queue.create_table().await?;
        Ok(queue)
    }

    async fn create_table(&self) -> QueueResult<()> {
        let mut conn = self.pool.acquire().await?;
        migrations::lock(&mut conn, self.dialect).await?;
        let ddl = self.dialect.ddl(
            "CREATE TABLE IF NOT EXISTS fn_queue (
                id {key} NOT NULL PRIMARY KEY,
                priority {int} NOT NULL,
                visible_at {int} NOT NULL,
                token {key} NOT NULL,
                attempts {int} NOT NULL,
                payload {text} NOT NULL
            )",
        );
        let created = async {
            conn.execute(ddl.as_str()).await?;
            conn.execute("CREATE INDEX IF NOT EXISTS ix_fn_queue_visible ON fn_queue (visible_at)").await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        migrations::unlock(&mut conn, self.dialect, created.is_ok()).await?;
        Ok(created?)
    }

    fn sql<'q>(&self, q: &'q str) -> std::borrow::Cow<'q, str> {
        self.dialect.rebind(q)
    }
}

#[async_trait]
impl MessageQueue for SqlQueue {
    async fn push(&self, msg: &Message, delay: Duration) -> QueueResult<()> {
        let sql = self.sql(
            "INSERT INTO fn_queue (id, priority, visible_at, token, attempts, payload) VALUES (?, ?, ?, '', 0, ?) \
             ON CONFLICT (id) DO NOTHING",
        );
        sqlx::query(&sql)
            .bind(&msg.id)
            .bind(msg.priority as i64)
            .bind(now_ms() + delay.as_millis() as i64)
            .bind(&msg.payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserve(&self, lease: Duration) -> QueueResult<Option<Reservation>> {
        let now = now_ms();
        let token = new_token();
        let skip_locked = if self.dialect == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = self.sql(&format!(
            "UPDATE fn_queue SET visible_at = ?, token = ?, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM fn_queue WHERE visible_at <= ? ORDER BY priority DESC, id ASC LIMIT 1{skip_locked}) \
             RETURNING id, priority, attempts, payload"
        ))
        .into_owned();
        let row = sqlx::query(&sql)
            .bind(now + lease.as_millis() as i64)
            .bind(&token)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::Row;
        Ok(Some(Reservation {
            message: Message {
                id: text(&row, "id")?,
                priority: row.try_get::<i64, _>("priority")? as u8,
                payload: text(&row, "payload")?,
            },
            token,
            attempt: row.try_get::<i64, _>("attempts")? as u32,
        }))
    }

    async fn ack(&self, r: &Reservation) -> QueueResult<()> {
        let sql = self.sql("DELETE FROM fn_queue WHERE id = ? AND token = ?");
        let done = sqlx::query(&sql).bind(&r.message.id).bind(presented(r)?).execute(&self.pool).await?.rows_affected();
        if done == 0 {
            return Err(QueueError::NotReserved(r.message.id.clone()));
        }
        Ok(())
    }

    async fn extend(&self, r: &Reservation, lease: Duration) -> QueueResult<()> {
        self.set_visible(r, lease, "token").await
    }

    async fn release(&self, r: &Reservation, delay: Duration) -> QueueResult<()> {
        self.set_visible(r, delay, "''").await
    }

    async fn ping(&self) -> QueueResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

impl SqlQueue {
    /// Moves a held message's visibility to `after` from now, setting its token to `token_expr` (the
    /// column itself to keep holding it, `''` to let it go).
    async fn set_visible(&self, r: &Reservation, after: Duration, token_expr: &str) -> QueueResult<()> {
        let sql = self
            .sql(&format!("UPDATE fn_queue SET token = {token_expr}, visible_at = ? WHERE id = ? AND token = ?"))
            .into_owned();
        let done = sqlx::query(&sql)
            .bind(now_ms() + after.as_millis() as i64)
            .bind(&r.message.id)
            .bind(presented(r)?)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if done == 0 {
            return Err(QueueError::NotReserved(r.message.id.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_queue_syncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqlQueue::connect(&format!("sqlite3://{}/fn.mq", dir.path().display()), 0).await.unwrap();
        use sqlx::Row;
        let row = sqlx::query("PRAGMA synchronous").fetch_one(&q.pool).await.unwrap();
        assert_eq!(row.try_get::<i64, _>(0).unwrap(), 2, "synchronous = FULL");
        let row = sqlx::query("PRAGMA journal_mode").fetch_one(&q.pool).await.unwrap();
        assert_eq!(row.try_get::<String, _>(0).unwrap(), "wal");
    }
}
