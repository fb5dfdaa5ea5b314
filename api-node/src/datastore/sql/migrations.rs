//! Schema migrations, embedded in the binary and applied at start.
//!
//! Each migration runs once, recorded in `fn_schema_migrations`. Nodes starting together take turns: the
//! whole run holds PostgreSQL's advisory lock, MySQL's `GET_LOCK`, or SQLite's write lock
//! (`BEGIN IMMEDIATE`), and reads the applied versions only once it holds it, so a second runner finds the
//! work done. On PostgreSQL and SQLite a migration is transactional; MySQL commits DDL implicitly, so its
//! tables are created with `IF NOT EXISTS` and a re-run after a crash finishes the job.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Executor, Row};

use super::Dialect;
use crate::datastore::{StoreError, StoreResult};

/// One schema change.
struct Migration {
    version: i64,
    description: &'static str,
    /// DDL templates; see [`Dialect::ddl`] for the placeholders.
    statements: &'static [&'static str],
    /// Statements only some engines need (their DDL differs too much for one template), run after
    /// `statements`.
    engine_statements: fn(Dialect) -> &'static [&'static str],
}

/// No engine-specific statements.
fn none(_: Dialect) -> &'static [&'static str] {
    &[]
}

/// Logs become bytes: PostgreSQL's `text` refuses NUL, and a log holds whatever a function wrote.
/// SQLite needs nothing: a BLOB stays a BLOB in a TEXT-affinity column.
fn logs_as_bytes(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Sqlite => &[],
        Dialect::Postgres => &["ALTER TABLE logs ALTER COLUMN log TYPE BYTEA USING convert_to(log, 'UTF8')"],
        Dialect::Mysql => &["ALTER TABLE logs MODIFY log LONGBLOB NOT NULL"],
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "apps, routes, fns, triggers, calls and logs",
        statements: &[
            "CREATE TABLE IF NOT EXISTS apps (
            id {key} NOT NULL PRIMARY KEY,
            name {name} NOT NULL,
            config {text} NOT NULL,
            annotations {text} NOT NULL,
            syslog_url {text} NULL,
            created_at {key} NOT NULL,
            updated_at {key} NOT NULL,
            CONSTRAINT uq_apps_name UNIQUE (name)
        ){table}",
            "CREATE TABLE IF NOT EXISTS routes (
            app_id {key} NOT NULL,
            path {name} NOT NULL,
            image {text} NOT NULL,
            format {key} NOT NULL,
            memory {int} NOT NULL,
            cpus {int} NOT NULL,
            timeout {int} NOT NULL,
            idle_timeout {int} NOT NULL,
            tmpfs_size {int} NOT NULL,
            type {key} NOT NULL,
            headers {text} NOT NULL,
            config {text} NOT NULL,
            annotations {text} NOT NULL,
            created_at {key} NOT NULL,
            updated_at {key} NOT NULL,
            PRIMARY KEY (app_id, path)
        ){table}",
            "CREATE TABLE IF NOT EXISTS fns (
            id {key} NOT NULL PRIMARY KEY,
            name {name} NOT NULL,
            app_id {key} NOT NULL,
            image {text} NOT NULL,
            format {key} NOT NULL,
            memory {int} NOT NULL,
            timeout {int} NOT NULL,
            idle_timeout {int} NOT NULL,
            config {text} NOT NULL,
            annotations {text} NOT NULL,
            created_at {key} NOT NULL,
            updated_at {key} NOT NULL,
            CONSTRAINT uq_fns_name UNIQUE (app_id, name)
        ){table}",
            "CREATE TABLE IF NOT EXISTS triggers (
            id {key} NOT NULL PRIMARY KEY,
            name {name} NOT NULL,
            app_id {key} NOT NULL,
            fn_id {key} NOT NULL,
            type {key} NOT NULL,
            source {name} NOT NULL,
            annotations {text} NOT NULL,
            created_at {key} NOT NULL,
            updated_at {key} NOT NULL,
            CONSTRAINT uq_triggers_name UNIQUE (app_id, fn_id, name),
            CONSTRAINT uq_triggers_source UNIQUE (app_id, type, source)
        ){table}",
            "CREATE TABLE IF NOT EXISTS calls (
            id {key} NOT NULL PRIMARY KEY,
            app_id {key} NOT NULL,
            fn_id {key} NOT NULL,
            path {name} NOT NULL,
            status {key} NOT NULL,
            created_at {key} NOT NULL,
            started_at {key} NULL,
            completed_at {key} NULL,
            error {text} NOT NULL,
            stats {text} NOT NULL
        ){table}",
            "CREATE INDEX ix_calls_app ON calls (app_id, id)",
            "CREATE INDEX ix_calls_fn ON calls (fn_id, id)",
            "CREATE TABLE IF NOT EXISTS logs (
            id {key} NOT NULL PRIMARY KEY,
            app_id {key} NOT NULL,
            log {text} NOT NULL
        ){table}",
            "CREATE INDEX ix_logs_app ON logs (app_id)",
            "CREATE INDEX ix_fns_app ON fns (app_id)",
            "CREATE INDEX ix_triggers_fn ON triggers (fn_id)",
        ],
        engine_statements: none,
    },
    Migration {
        version: 2,
        description: "attempts and dead-letter flag of async calls",
        statements: &[
            "ALTER TABLE calls ADD COLUMN attempts {text} NULL",
            "ALTER TABLE calls ADD COLUMN dead_letter {int} NOT NULL DEFAULT 0",
        ],
        engine_statements: none,
    },
    Migration {
        version: 3,
        description: "logs stored as bytes, so NUL and any byte are kept",
        statements: &[],
        engine_statements: logs_as_bytes,
    },
];

/// The schema version this binary brings the database to.
pub const LATEST_VERSION: i64 = 3;

const PG_LOCK_KEY: i64 = 0x666e_5f6d_6967; // "fn_mig"

/// Applies every migration the database lacks, under the engine's cross-process lock.
pub(super) async fn run(pool: &AnyPool, dialect: Dialect) -> StoreResult<()> {
    run_to(pool, dialect, LATEST_VERSION).await
}

/// Applies the missing migrations up to version `target` (tests start from an older schema).
async fn run_to(pool: &AnyPool, dialect: Dialect, target: i64) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    lock(&mut conn, dialect).await?;
    let result = apply_pending(&mut conn, dialect, target).await;
    let unlocked = unlock(&mut conn, dialect, result.is_ok()).await;
    result.and(unlocked)
}

pub(crate) async fn lock(conn: &mut PoolConnection<Any>, dialect: Dialect) -> StoreResult<()> {
    match dialect {
        Dialect::Postgres => {
            conn.execute(format!("SELECT pg_advisory_lock({PG_LOCK_KEY})").as_str()).await?;
        }
        Dialect::Mysql => {
            let got: Option<i64> =
                sqlx::query("SELECT GET_LOCK('fn_schema_migrations', 300)").fetch_one(&mut **conn).await?.try_get(0)?;
            if got != Some(1) {
                return Err(StoreError::Corrupt("timed out waiting for the migration lock".into()));
            }
        }
        Dialect::Sqlite => {
            conn.execute("BEGIN IMMEDIATE").await?;
        }
    }
    Ok(())
}

pub(crate) async fn unlock(conn: &mut PoolConnection<Any>, dialect: Dialect, commit: bool) -> StoreResult<()> {
    match dialect {
        Dialect::Postgres => {
            conn.execute(format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})").as_str()).await?;
        }
        Dialect::Mysql => {
            conn.execute("SELECT RELEASE_LOCK('fn_schema_migrations')").await?;
        }
        Dialect::Sqlite => {
            conn.execute(if commit { "COMMIT" } else { "ROLLBACK" }).await?;
        }
    }
    Ok(())
}

async fn apply_pending(conn: &mut PoolConnection<Any>, dialect: Dialect, target: i64) -> StoreResult<()> {
    let ddl = "CREATE TABLE IF NOT EXISTS fn_schema_migrations (
        version {int} NOT NULL PRIMARY KEY,
        description {text} NOT NULL
    ){table}";
    conn.execute(dialect.ddl(ddl).as_str()).await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM fn_schema_migrations")
        .fetch_all(&mut **conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newer) = applied.iter().find(|v| **v > LATEST_VERSION) {
        return Err(StoreError::Corrupt(format!(
            "the database schema is at version {newer}, newer than this binary's {LATEST_VERSION}: upgrade the binary"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= target && !applied.contains(&m.version)) {
        tracing::info!(version = m.version, description = m.description, "applying migration");
        let record = dialect.rebind("INSERT INTO fn_schema_migrations (version, description) VALUES (?, ?)");
        if dialect == Dialect::Postgres {
            let mut tx = conn.begin().await?;
            for s in m.statements.iter().chain((m.engine_statements)(dialect)) {
                tx.execute(dialect.ddl(s).as_str()).await?;
            }
            sqlx::query(&record).bind(m.version).bind(m.description).execute(&mut *tx).await?;
            tx.commit().await?;
        } else {
            // SQLite is inside the run's BEGIN IMMEDIATE; MySQL commits each DDL statement itself, so
            // an index or column left by a crashed earlier run is taken as done.
            for s in m.statements.iter().chain((m.engine_statements)(dialect)) {
                match conn.execute(dialect.ddl(s).as_str()).await {
                    Err(sqlx::Error::Database(e))
                        if dialect == Dialect::Mysql
                            && (e.message().contains("Duplicate key name")
                                || e.message().contains("Duplicate column name")) => {}
                    other => {
                        other?;
                    }
                }
            }
            sqlx::query(&record).bind(m.version).bind(m.description).execute(&mut **conn).await?;
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::datastore::sql::{DbUrl, SqlStore};
    use crate::datastore::LogStore;
    use crate::testing::{fresh_db_url, Backend};

    /// Logs written as text before migration 3 read back the same once the column holds bytes, next to
    /// new logs holding NUL.
    async fn text_logs_survive_the_move_to_bytes(backend: Backend) {
        let url: DbUrl = fresh_db_url(backend).await.parse().unwrap();
        let pool = super::super::connect::open_pool(&url, 0).await.unwrap();
        let dialect = url.dialect();
        run_to(&pool, dialect, 2).await.unwrap();
        let insert = dialect.rebind("INSERT INTO logs (id, app_id, log) VALUES (?, ?, ?)");
        sqlx::query(&insert).bind("c1").bind("a1").bind("ünïcode\nline two").execute(&pool).await.unwrap();
        run(&pool, dialect).await.unwrap();
        pool.close().await;

        let store = SqlStore::connect(&url, 0).await.unwrap();
        assert_eq!(store.schema_versions().await.unwrap(), (1..=LATEST_VERSION).collect::<Vec<_>>());
        assert_eq!(store.get_log("c1").await.unwrap().log, "ünïcode\nline two");
        store.insert_log("a1", "c2", "nul\0 and \u{FFFD}").await.unwrap();
        assert_eq!(store.get_log("c2").await.unwrap().log, "nul\0 and \u{FFFD}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_logs_survive_the_move_to_bytes_sqlite() {
        text_logs_survive_the_move_to_bytes(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_logs_survive_the_move_to_bytes_postgres() {
        text_logs_survive_the_move_to_bytes(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_logs_survive_the_move_to_bytes_mysql() {
        text_logs_survive_the_move_to_bytes(Backend::Mysql).await
    }
}
