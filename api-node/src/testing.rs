//! Test support: a fresh, empty database on each engine the store supports.
//!
//! PostgreSQL and MySQL/MariaDB are reached at the URLs in `FN_TEST_POSTGRES_URL` and `FN_TEST_MYSQL_URL`
//! (defaults: the loopback servers the test command provisions). Each call creates a new database with a
//! unique name there, so tests run in parallel without sharing state. An unreachable server fails the
//! test: a backend that was not tested must not look like one that passed.

use sqlx::{Connection, Executor};

pub mod fuzz;

use crate::datastore::sql::{DbUrl, SqlStore};

/// A database engine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in a fresh temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
    /// A fresh database on the test MySQL/MariaDB server.
    Mysql,
}

/// Server URL (without database) of the test PostgreSQL.
pub fn postgres_server() -> String {
    std::env::var("FN_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://fn:fn@127.0.0.1:5432".into())
}

/// Server URL (without database) of the test MySQL/MariaDB.
pub fn mysql_server() -> String {
    std::env::var("FN_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://fn:fn@127.0.0.1:3306".into())
}

/// A new empty database on `backend`; returns its `FN_DB_URL`. SQLite files live under the system temp
/// directory and are left for the OS to clean.
pub async fn fresh_db_url(backend: Backend) -> String {
    let name = format!("fnt_{}", shared::id::new_id().to_lowercase());
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("fn-tests").join(&name);
            format!("sqlite3://{}/fn.db", dir.display())
        }
        Backend::Postgres => {
            let server = postgres_server();
            let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                .await
                .unwrap_or_else(|e| panic!("test PostgreSQL at {server} is not reachable: {e}"));
            admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
            format!("{server}/{name}")
        }
        Backend::Mysql => {
            let server = mysql_server();
            let mut admin = sqlx::MySqlConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("test MySQL at {server} is not reachable: {e}"));
            admin
                .execute(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4").as_str())
                .await
                .expect("create test database");
            format!("{server}/{name}")
        }
    }
}

/// A connected, migrated store on a new empty database of `backend`.
pub async fn fresh_store(backend: Backend) -> (SqlStore, DbUrl) {
    let url: DbUrl = fresh_db_url(backend).await.parse().expect("test database URL");
    let store = SqlStore::connect(&url, 0).await.expect("connect to test database");
    (store, url)
}
