//! The hybrid API over gRPC (`proto/hybrid.proto`), on `FN_GRPC_PORT`.
//!
//! Errors travel as a gRPC status whose message is Fn's message and whose `fn-status` metadata holds
//! Fn's HTTP status, so the runner rebuilds the same `shared::Error` as over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::hybrid::hybrid_server::{Hybrid, HybridServer};
use proto::hybrid::{
    Ack, CallFinishedRequest, CallJson, CompleteRequest, DequeueReply, DequeueRequest, IdRequest, JsonReply,
    NameRequest, RouteRequest, TriggerRequest,
};
use runner_node::{DataAccess, Delivery};
use shared::{Call, Error, QueuedCall};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// TLS material for the gRPC listener (`FN_NODE_CERT`, `FN_NODE_CERT_KEY`, `FN_NODE_CERT_AUTHORITY`).
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// PEM certificate chain of this node.
    pub cert: Vec<u8>,
    /// PEM private key of this node.
    pub key: Vec<u8>,
    /// PEM CA that runner certificates must chain to; when set, runners must present one (mTLS).
    pub client_ca: Option<Vec<u8>>,
}

/// Why the gRPC listener stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The port could not be bound.
    #[error("cannot listen for gRPC on {addr}: {cause}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        cause: std::io::Error,
    },
    /// TLS setup or serving failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The gRPC service over a `DataAccess`.
pub struct HybridService {
    data: Arc<dyn DataAccess>,
}

/// A domain error as a gRPC status carrying Fn's status and message.
pub fn status(e: Error) -> Status {
    use tonic::Code;
    let http = e.status();
    if let Error::Internal(cause) = &e {
        tracing::error!(%cause, "internal error in the hybrid API");
    }
    let code = match http {
        400 | 405 | 406 | 413 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut s = Status::new(code, e.message());
    s.metadata_mut().insert("fn-status", MetadataValue::from(http));
    s
}

fn json<T: serde::Serialize>(v: &T) -> Result<Response<JsonReply>, Status> {
    let json = serde_json::to_vec(v).map_err(|e| status(Error::internal(e)))?;
    Ok(Response::new(JsonReply { json }))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|_| status(Error::InvalidJson))
}

#[tonic::async_trait]
impl Hybrid for HybridService {
    async fn get_app_by_id(&self, r: Request<IdRequest>) -> Result<Response<JsonReply>, Status> {
        json(&self.data.app_by_id(&r.into_inner().id).await.map_err(status)?)
    }

    async fn get_app_by_name(&self, r: Request<NameRequest>) -> Result<Response<JsonReply>, Status> {
        json(&self.data.app_by_name(&r.into_inner().name).await.map_err(status)?)
    }

    async fn get_fn_by_id(&self, r: Request<IdRequest>) -> Result<Response<JsonReply>, Status> {
        json(&self.data.fn_by_id(&r.into_inner().id).await.map_err(status)?)
    }

    async fn get_route(&self, r: Request<RouteRequest>) -> Result<Response<JsonReply>, Status> {
        let r = r.into_inner();
        json(&self.data.route(&r.app_id, &r.path).await.map_err(status)?)
    }

    async fn get_trigger_by_source(&self, r: Request<TriggerRequest>) -> Result<Response<JsonReply>, Status> {
        let r = r.into_inner();
        json(&self.data.trigger_by_source(&r.app_id, &r.r#type, &r.source).await.map_err(status)?)
    }

    async fn enqueue(&self, r: Request<CallJson>) -> Result<Response<Ack>, Status> {
        let call: QueuedCall = parse(&r.into_inner().json)?;
        self.data.enqueue(&call).await.map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn dequeue(&self, r: Request<DequeueRequest>) -> Result<Response<DequeueReply>, Status> {
        let wait = Duration::from_millis((r.into_inner().wait_ms as u64).min(super::MAX_DEQUEUE_WAIT_MS));
        let delivery = self.data.dequeue(wait).await.map_err(status)?;
        let deliveries = delivery
            .iter()
            .map(|d| serde_json::to_vec(d).map_err(|e| status(Error::internal(e))))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(DequeueReply { deliveries }))
    }

    async fn call_started(&self, r: Request<CallJson>) -> Result<Response<Ack>, Status> {
        let call: Call = parse(&r.into_inner().json)?;
        self.data.call_started(&call).await.map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn call_finished(&self, r: Request<CallFinishedRequest>) -> Result<Response<Ack>, Status> {
        let r = r.into_inner();
        let call: Call = parse(&r.call_json)?;
        self.data.call_finished(&call, &r.log).await.map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn complete(&self, r: Request<CompleteRequest>) -> Result<Response<Ack>, Status> {
        let r = r.into_inner();
        let delivery: Delivery = parse(&r.delivery_json)?;
        let call: Call = parse(&r.call_json)?;
        self.data.complete(&delivery, &call).await.map_err(status)?;
        Ok(Response::new(Ack {}))
    }
}

/// Serves the hybrid gRPC API on `addr` until `shutdown` resolves. With a token, every call must carry
/// `authorization: Bearer <token>` metadata.
pub async fn serve(
    addr: SocketAddr,
    data: Arc<dyn DataAccess>,
    token: Option<Arc<str>>,
    tls: Option<GrpcTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|cause| GrpcError::Bind { addr, cause })?;
    serve_on(listener, data, token, tls, shutdown).await
}

/// As [`serve`], on a listener the caller bound (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    data: Arc<dyn DataAccess>,
    token: Option<Arc<str>>,
    tls: Option<GrpcTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let max_message = shared::config::hybrid_message_limit(shared::config::DEFAULT_MAX_LOG_SIZE, 0);
    serve_limited(listener, data, token, tls, max_message, shutdown).await
}

/// As [`serve_on`], taking and sending messages up to `max_message` bytes
/// ([`shared::config::hybrid_message_limit`]; tonic's own default, 4 MiB, would refuse large reports).
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    data: Arc<dyn DataAccess>,
    token: Option<Arc<str>>,
    tls: Option<GrpcTls>,
    max_message: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let check = move |req: Request<()>| {
        let presented = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if super::authorized(token.as_deref(), presented) {
            Ok(req)
        } else {
            Err(status(Error::Unauthorized))
        }
    };
    let mut server = Server::builder();
    if let Some(tls) = tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(tls.cert, tls.key));
        if let Some(ca) = tls.client_ca {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        server = server.tls_config(config)?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    server
        .add_service(tonic::service::interceptor::InterceptedService::new(
            HybridServer::new(HybridService { data })
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            check,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
