//! The one place a domain error becomes an HTTP response.
//!
//! Fn answers v1 errors wrapped (`{"error":{"message":..}}`) and v2 errors flat (`{"message":..}`); the
//! handler says which API it serves by the [`ApiVersion`] it attaches, and [`ApiError`] logs the cause of
//! 500s (callers only ever see "internal server error") and hands the rest (status, body, `Retry-After` on
//! 503) to the renderer the invoke endpoints use too, [`runner_node::http::error::respond`].

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::error::Shape;
use shared::Error;

use crate::datastore::StoreError;

/// Which error body shape a response uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `{"error":{"message":..}}` (v1, and paths outside the APIs, as Fn does).
    V1,
    /// `{"message":..}`.
    V2,
}

/// A domain error on its way to a caller of API `version`.
#[derive(Debug)]
pub struct ApiError {
    /// Body shape.
    pub version: ApiVersion,
    /// What went wrong.
    pub error: Error,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Error::Internal(cause) => write!(f, "internal error: {cause}"),
            e => write!(f, "{e}"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        runner_node::http::error::status_code(&self.error)
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::Internal(cause) = &self.error {
            tracing::error!(%cause, "internal error");
        }
        runner_node::http::error::respond(&self.error, self.version.shape())
    }
}

/// Attaches an API version to a failing result: `store.get_app(id).await.v2()?`.
pub trait WithVersion<T> {
    /// As a v1 error.
    fn v1(self) -> Result<T, ApiError>;
    /// As a v2 error.
    fn v2(self) -> Result<T, ApiError>;
    /// As an error of `version`.
    fn api(self, version: ApiVersion) -> Result<T, ApiError>;
}

impl<T, E: Into<Error>> WithVersion<T> for Result<T, E> {
    fn v1(self) -> Result<T, ApiError> {
        self.api(ApiVersion::V1)
    }
    fn v2(self) -> Result<T, ApiError> {
        self.api(ApiVersion::V2)
    }
    fn api(self, version: ApiVersion) -> Result<T, ApiError> {
        self.map_err(|e| ApiError { version, error: e.into() })
    }
}

impl ApiVersion {
    /// The error body shape of this API.
    pub fn shape(self) -> Shape {
        match self {
            ApiVersion::V1 => Shape::V1,
            ApiVersion::V2 => Shape::V2,
        }
    }

    /// `error` as this version's response error.
    pub fn err(self, error: impl Into<Error>) -> ApiError {
        ApiError { version: self, error: error.into() }
    }
}

/// Lets `?` work on store results inside helpers that return `shared::Error`.
pub fn store(e: StoreError) -> Error {
    e.into()
}
