//! `FN_DB_URL` parsing and opening the connection pool.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use super::Dialect;
use crate::datastore::StoreResult;

/// A database URL the store understands.
///
/// - `sqlite3://PATH` (or `sqlite://PATH`): a file, its directory created if missing. `sqlite3:///abs/fn.db`
///   is absolute, `sqlite3://./data/fn.db` relative to the working directory.
/// - `postgres://user:pass@host:port/db` (or `postgresql://`).
/// - `mysql://user:pass@host:port/db`, and Fn's Go-driver form `mysql://user:pass@tcp(host:port)/db`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    raw: String,
    dialect: Dialect,
    connect: String,
    sqlite_path: Option<PathBuf>,
}

/// Why an `FN_DB_URL` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DbUrlError {
    /// The scheme is none of the supported ones.
    #[error("unsupported FN_DB_URL scheme {0:?}: use sqlite3://PATH, postgres://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@HOST:PORT/DB")]
    UnsupportedScheme(String),
    /// The URL has no `scheme://` part at all.
    #[error("FN_DB_URL {0:?} is not a URL: use sqlite3://PATH, postgres://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@HOST:PORT/DB")]
    NotAUrl(String),
    /// A SQLite URL without a file path.
    #[error("FN_DB_URL {0:?} names no database file")]
    MissingPath(String),
}

impl FromStr for DbUrl {
    type Err = DbUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) =
            raw.split_once("://").ok_or_else(|| DbUrlError::NotAUrl(shared::secret::redact_url(raw)))?;
        let (dialect, connect, sqlite_path) = match scheme.to_ascii_lowercase().as_str() {
            "sqlite3" | "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(DbUrlError::MissingPath(shared::secret::redact_url(raw)));
                }
                (Dialect::Sqlite, format!("sqlite://{path}?mode=rwc"), Some(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => (Dialect::Postgres, format!("postgres://{rest}"), None),
            "mysql" => (Dialect::Mysql, format!("mysql://{}", unwrap_go_tcp(rest)), None),
            other => return Err(DbUrlError::UnsupportedScheme(other.to_string())),
        };
        Ok(DbUrl { raw: raw.to_string(), dialect, connect, sqlite_path })
    }
}

/// `user:pass@tcp(host:port)/db` → `user:pass@host:port/db`.
fn unwrap_go_tcp(rest: &str) -> String {
    match (rest.find("tcp("), rest.find(')')) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}{}", &rest[..start], &rest[start + 4..end], &rest[end + 1..])
        }
        _ => rest.to_string(),
    }
}

impl DbUrl {
    /// The engine this URL names.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL as given, with any password replaced by `***`, for logs and error messages.
    pub fn redacted(&self) -> String {
        shared::secret::redact_url(&self.raw)
    }
}

/// Redacted: the URL may carry a password.
impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUrl").field("url", &self.redacted()).field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

/// Opens the pool, retrying `retries` times one second apart while the database does not answer.
pub(crate) async fn open_pool(url: &DbUrl, retries: u32) -> StoreResult<AnyPool> {
    open_pool_with(url, retries, false).await
}

/// As [`open_pool`]; with `sync_full`, SQLite writes every commit through to the disk
/// (`synchronous = FULL`), so a commit survives power loss, not only a crash (the embedded queue).
pub(crate) async fn open_pool_with(url: &DbUrl, retries: u32, sync_full: bool) -> StoreResult<AnyPool> {
    sqlx::any::install_default_drivers();
    if let Some(dir) = url.sqlite_path.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    // One plain connection first: it fails at once, with the real cause, when nothing listens; the pool's
    // own connect would keep retrying until its acquire timeout and then report only "timed out".
    let mut attempt = 0;
    loop {
        let probe = match AnyConnection::connect(&url.connect).await {
            Ok(conn) => conn.close().await,
            Err(e) => Err(e),
        };
        match probe {
            Ok(()) => return Ok(pool_options(url.dialect, sync_full).connect(&url.connect).await?),
            Err(e) if attempt < retries => {
                attempt += 1;
                tracing::warn!(url = %url.redacted(), attempt, error = %e, "database not reachable, retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn pool_options(dialect: Dialect, sync_full: bool) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
    let synchronous = if sync_full { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
    match dialect {
        Dialect::Sqlite => options.max_connections(1).after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute(synchronous).await?;
                Ok(())
            })
        }),
        Dialect::Postgres | Dialect::Mysql => options.max_connections(32).min_connections(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_schemes() {
        let u: DbUrl = "sqlite3://./data/fn.db".parse().unwrap();
        assert_eq!((u.dialect(), u.connect.as_str()), (Dialect::Sqlite, "sqlite://./data/fn.db?mode=rwc"));
        let u: DbUrl = "sqlite3:///tmp/x/fn.db".parse().unwrap();
        assert_eq!(u.sqlite_path.as_deref(), Some(std::path::Path::new("/tmp/x/fn.db")));
        let u: DbUrl = "mysql://root:secret@tcp(db:3306)/funcs".parse().unwrap();
        assert_eq!(u.connect, "mysql://root:secret@db:3306/funcs");
        assert_eq!(u.redacted(), "mysql://root:***@tcp(db:3306)/funcs");
        let u: DbUrl = "postgres://fn:pw@127.0.0.1:5432/fn?sslmode=disable".parse().unwrap();
        assert_eq!(u.dialect(), Dialect::Postgres);
        assert_eq!(u.redacted(), "postgres://fn:***@127.0.0.1:5432/fn?sslmode=disable");
    }

    #[test]
    fn bad_urls_name_the_supported_schemes() {
        let e = "redis://x".parse::<DbUrl>().unwrap_err();
        assert!(e.to_string().contains("\"redis\"") && e.to_string().contains("sqlite3://"));
        assert!(matches!("no-scheme".parse::<DbUrl>(), Err(DbUrlError::NotAUrl(_))));
        assert!(matches!("sqlite3://".parse::<DbUrl>(), Err(DbUrlError::MissingPath(_))));
    }
}
