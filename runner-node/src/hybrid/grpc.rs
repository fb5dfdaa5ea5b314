//! The hybrid API over gRPC: the `fnrs.hybrid.Hybrid` service, Fn JSON in bytes fields.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use proto::hybrid::hybrid_client::HybridClient;
use proto::hybrid::{
    CallFinishedRequest, CallJson, CompleteRequest, DequeueRequest, HeartbeatRequest, IdRequest, NameRequest,
    RouteRequest, TriggerRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use super::{bad_reply, retry_lookup, unreachable, ConnectError};
use crate::data_access::{DataAccess, Delivery};

/// Metadata key in which the API node puts the HTTP status of an Fn error.
const FN_STATUS: &str = "fn-status";

/// TLS material for `grpcs://`: whom to trust, and who this runner is when the API node asks (mTLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificate(s) the API node's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// PEM certificate chain and private key of this runner, for an API node that demands client
    /// certificates.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// [`DataAccess`] against an API node's gRPC hybrid service: `grpc://host:port` (plaintext HTTP/2) or
/// `grpcs://host:port` (TLS, see [`ClientTls`]).
///
/// The channel connects lazily and reconnects by itself, so building a client never fails on an
/// unreachable API node; calls answer 503 until it is back. Lookups are retried like [`super::HttpClient`]'s.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    client: HybridClient<Channel>,
    auth: Option<AsciiMetadataValue>,
    timeout: Duration,
}

impl GrpcClient {
    /// A client for the API node at `url` (`grpc://host:port`, or `grpcs://host:port` with `tls`),
    /// presenting `token` as `authorization: Bearer <token>` when given. Calls time out after `timeout`
    /// (a dequeue after its wait plus `timeout`). Must be called inside a Tokio runtime.
    pub fn new(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        tls: Option<ClientTls>,
    ) -> Result<Self, ConnectError> {
        let invalid = |reason: &str| ConnectError::InvalidUrl { url: url.into(), reason: reason.into() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "grpc" => false,
            "grpcs" => true,
            _ => return Err(ConnectError::UnsupportedScheme(scheme.into())),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#']) {
            return Err(invalid("expected grpc://host:port or grpcs://host:port"));
        }
        let http_scheme = if secure { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{http_scheme}://{authority}"))
            .map_err(|e| invalid(&e.to_string()))?
            .connect_timeout(Duration::from_secs(5).min(timeout));
        if secure {
            let tls =
                tls.ok_or_else(|| ConnectError::Tls("grpcs:// needs a CA certificate (FN_RUNNER_API_CA)".into()))?;
            let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(tls.ca_pem));
            if let Some((cert, key)) = tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| ConnectError::Tls(e.to_string()))?;
        }
        let auth = match token {
            Some(t) => {
                let mut value: AsciiMetadataValue =
                    format!("Bearer {t}").parse().map_err(|_| ConnectError::InvalidToken)?;
                // Kept out of `Debug` output.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = HybridClient::new(endpoint.connect_lazy());
        Ok(GrpcClient { client, auth, timeout }.with_max_message(shared::config::default_hybrid_message_limit()))
    }

    /// Sends and takes messages up to `bytes` (tonic's default is 4 MiB, less than a report with a
    /// large log or a queued call with a large body); the API node must take as much
    /// ([`shared::config::hybrid_message_limit`] on both sides).
    pub fn with_max_message(mut self, bytes: usize) -> Self {
        self.client = self.client.max_decoding_message_size(bytes).max_encoding_message_size(bytes);
        self
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(auth) = &self.auth {
            req.metadata_mut().insert("authorization", auth.clone());
        }
        req
    }

    /// Runs one RPC on a fresh handle of the shared channel, within `limit`.
    async fn call<R, F, Fut>(&self, limit: Duration, rpc: F) -> Result<R, Error>
    where
        F: FnOnce(HybridClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        match tokio::time::timeout(limit, rpc(self.client.clone())).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(status_error(&status)),
            Err(_) => Err(unreachable(format!("no answer within {limit:?}"))),
        }
    }
}

/// Rebuilds the Fn error the API node sent (its HTTP status in `fn-status`, its message as the
/// status message); a status without `fn-status` came from the transport or a foreign server.
fn status_error(status: &Status) -> Error {
    if let Some(code) = fn_status(status.metadata()) {
        return Error::from_wire(code, status.message());
    }
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => unreachable(status),
        Code::NotFound => Error::from_wire(404, status.message()),
        Code::AlreadyExists | Code::Aborted => Error::from_wire(409, status.message()),
        Code::Unauthenticated => Error::from_wire(401, status.message()),
        Code::PermissionDenied => Error::from_wire(403, status.message()),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Error::from_wire(400, status.message()),
        Code::ResourceExhausted => Error::ServerBusy,
        _ => Error::internal(format!("API node: {status}")),
    }
}

fn fn_status(metadata: &MetadataMap) -> Option<u16> {
    metadata.get(FN_STATUS)?.to_str().ok()?.trim().parse().ok()
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(Error::internal)
}

fn from_json<T: DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(json).map_err(|e| bad_reply(what, e))
}

#[async_trait]
impl DataAccess for GrpcClient {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        retry_lookup(|| async {
            let req = self.request(NameRequest { name: name.into() });
            let reply = self.call(self.timeout, |mut c| async move { c.get_app_by_name(req).await }).await?;
            from_json("app", &reply.json)
        })
        .await
    }

    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        retry_lookup(|| async {
            let req = self.request(IdRequest { id: id.into() });
            let reply = self.call(self.timeout, |mut c| async move { c.get_app_by_id(req).await }).await?;
            from_json("app", &reply.json)
        })
        .await
    }

    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        retry_lookup(|| async {
            let req = self.request(IdRequest { id: id.into() });
            let reply = self.call(self.timeout, |mut c| async move { c.get_fn_by_id(req).await }).await?;
            from_json("fn", &reply.json)
        })
        .await
    }

    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        retry_lookup(|| async {
            let req = self.request(RouteRequest { app_id: app_id.into(), path: path.into() });
            let reply = self.call(self.timeout, |mut c| async move { c.get_route(req).await }).await?;
            from_json("route", &reply.json)
        })
        .await
    }

    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        retry_lookup(|| async {
            let req = self.request(TriggerRequest {
                app_id: app_id.into(),
                r#type: trigger_type.into(),
                source: source.into(),
            });
            let reply = self.call(self.timeout, |mut c| async move { c.get_trigger_by_source(req).await }).await?;
            from_json("trigger", &reply.json)
        })
        .await
    }

    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        let req = self.request(CallJson { json: to_json(call)? });
        self.call(self.timeout, |mut c| async move { c.enqueue(req).await }).await.map(drop)
    }

    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        let wait_ms = wait.as_millis().min(u32::MAX as u128) as u32;
        let req = self.request(DequeueRequest { wait_ms });
        let reply = self.call(self.timeout + wait, |mut c| async move { c.dequeue(req).await }).await?;
        reply.deliveries.first().map(|json| from_json("delivery", json)).transpose()
    }

    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        let req = self.request(CallJson { json: to_json(call)? });
        self.call(self.timeout, |mut c| async move { c.call_started(req).await }).await.map(drop)
    }

    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        let req = self.request(CallFinishedRequest { call_json: to_json(call)?, log: log.into() });
        self.call(self.timeout, |mut c| async move { c.call_finished(req).await }).await.map(drop)
    }

    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        let req = self.request(CompleteRequest { delivery_json: to_json(delivery)?, call_json: to_json(call)? });
        self.call(self.timeout, |mut c| async move { c.complete(req).await }).await.map(drop)
    }

    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        let req = self.request(HeartbeatRequest { delivery_json: to_json(delivery)? });
        let reply = self.call(self.timeout, |mut c| async move { c.heartbeat(req).await }).await?;
        Ok(Duration::from_millis(reply.lease_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fn_status(code: Code, message: &str, fn_status: &str) -> Status {
        let mut s = Status::new(code, message);
        s.metadata_mut().insert(FN_STATUS, fn_status.parse().unwrap());
        s
    }

    #[test]
    fn statuses_map_back_to_fn_errors() {
        assert_eq!(status_error(&with_fn_status(Code::NotFound, "Fn not found", "404")), Error::FnNotFound);
        assert_eq!(
            status_error(&with_fn_status(Code::Unauthenticated, "Invalid runner token", "401")),
            Error::Unauthorized
        );
        assert_eq!(status_error(&with_fn_status(Code::Unavailable, "db down", "503")).status(), 503);
        assert!(matches!(status_error(&Status::unavailable("tcp connect error")), Error::Unavailable(_)));
        assert_eq!(status_error(&Status::not_found("App not found")), Error::AppNotFound);
        assert_eq!(status_error(&Status::internal("x")).status(), 500);
    }

    #[tokio::test]
    async fn urls() {
        let t = Duration::from_secs(1);
        assert!(GrpcClient::new("grpc://api:9191", None, t, None).is_ok());
        assert!(GrpcClient::new("grpc://api:9191/", None, t, None).is_ok());
        assert!(matches!(GrpcClient::new("grpc://api:9191/x", None, t, None), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(GrpcClient::new("grpc://", None, t, None), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(GrpcClient::new("http://api:1", None, t, None), Err(ConnectError::UnsupportedScheme(_))));
        assert!(matches!(GrpcClient::new("grpcs://api:1", None, t, None), Err(ConnectError::Tls(_))));
    }
}
