//! The datastore's error type.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An outcome the caller should see as is: not found, already exists, a validation error of a merge.
    #[error(transparent)]
    Domain(#[from] shared::Error),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row could not be read back as a model.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to a failed statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
            )
        )
    }
}

impl From<StoreError> for shared::Error {
    /// Domain outcomes pass through; database trouble becomes 503 when the database is unreachable and
    /// 500 otherwise, with the cause kept for the log only.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d,
            e if e.is_unavailable() => shared::Error::Unavailable("database is unavailable".into()),
            e => shared::Error::internal(e),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
