//! The SQL datastore on `sqlx`, for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! One implementation serves the three engines through sqlx's `Any` driver: every column is text or a
//! 64-bit integer (timestamps are fixed-width RFC3339 text, maps are JSON text, as in Fn), so the same
//! statements work everywhere once `?` placeholders are rewritten for PostgreSQL. The few real
//! differences (DDL types, upserts, row locks, advisory locks) live in [`Dialect`].
//!
//! SQLite runs on one connection: writes are serialised in-process, so a read-merge-write transaction can
//! never fail on a lock upgrade, and reads on one local file are fast enough that a pool would not help.

mod apps;
mod calls;
pub(crate) mod connect;
mod dialect;
mod fns;
pub(crate) mod migrations;
mod routes;
mod rows;
mod triggers;

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::AnyPool;

pub use connect::{DbUrl, DbUrlError};
pub use dialect::Dialect;
pub use migrations::LATEST_VERSION;
pub(crate) use rows::text;

use super::{Datastore, StoreResult};

/// The SQL datastore.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

impl SqlStore {
    /// Connects to `url` (see [`DbUrl`]), retrying an unreachable database `retries` times one second
    /// apart, and brings the schema up to date.
    pub async fn connect(url: &DbUrl, retries: u32) -> StoreResult<SqlStore> {
        let pool = connect::open_pool(url, retries).await?;
        let store = SqlStore { pool, dialect: url.dialect() };
        migrations::run(&store.pool, store.dialect).await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The applied schema versions, oldest first (for tests and diagnostics).
    pub async fn schema_versions(&self) -> StoreResult<Vec<i64>> {
        use sqlx::Row;
        let rows =
            sqlx::query("SELECT version FROM fn_schema_migrations ORDER BY version").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<_, _>>()?)
    }

    /// A statement with `?` placeholders, rewritten for the engine.
    fn sql<'q>(&self, q: &'q str) -> Cow<'q, str> {
        self.dialect.rebind(q)
    }

    /// `FOR UPDATE` where the engine has row locks (SQLite serialises writers instead).
    fn for_update(&self) -> &'static str {
        self.dialect.for_update()
    }
}

#[async_trait]
impl Datastore for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
