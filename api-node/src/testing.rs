//! Test support: a fresh, empty database on each engine the store supports.
//!
//! PostgreSQL and MySQL/MariaDB are reached at the URLs in `FN_TEST_POSTGRES_URL` and `FN_TEST_MYSQL_URL`
//! (defaults: the loopback servers the test command provisions). Each call creates a new database with a
//! unique name there, so tests run in parallel without sharing state. An unreachable server fails the
//! test: a backend that was not tested must not look like one that passed. [`send_then_stall`] plays a
//! slow client against any of the node's servers.

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

/// Sends `bytes` on a fresh connection to `addr` (`host:port`), then reads until the server closes it,
/// and returns what it answered. Panics when the connection is still open after `within`: a server must
/// cut off a client that stalls.
pub async fn send_then_stall(addr: &str, bytes: &[u8], within: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let (addr, bytes) = (addr.to_string(), bytes.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(within)).expect("read timeout");
        s.write_all(&bytes).expect("send");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    panic!(
                        "{addr} kept a stalled connection open; answered so far: {:?}",
                        String::from_utf8_lossy(&answer)
                    )
                }
                // A reset is a close too.
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("stalling client")
}

/// A TCP port free now, for a node process a test starts. It comes from below the kernel's ephemeral
/// range (32768 and up), so no outgoing connection elsewhere in the test run can take it before the
/// node binds it, as happens under load to ports picked by binding port 0. Ports are handed out in turn
/// from a starting point that differs per process, so parallel tests never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT)
}
