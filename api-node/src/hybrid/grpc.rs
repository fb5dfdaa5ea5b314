//! The hybrid API over gRPC (`proto/hybrid.proto`), on `FN_GRPC_PORT`.
//!
//! Errors travel as a gRPC status whose message is Fn's message and whose `fn-status` metadata holds
//! Fn's HTTP status, so the runner rebuilds the same `shared::Error` as over HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proto::hybrid::hybrid_server::{Hybrid, HybridServer};
use proto::hybrid::{
    Ack, CallFinishedRequest, CallJson, CompleteRequest, DequeueReply, DequeueRequest, HeartbeatReply,
    HeartbeatRequest, IdRequest, JsonReply, NameRequest, RouteRequest, TriggerRequest,
};
use runner_node::slow_clients::HttpTimeouts;
use runner_node::{DataAccess, Delivery};
use shared::secret::Secret;
use shared::{Call, Error, QueuedCall};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::metadata::MetadataValue;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// TLS material for the gRPC listener (`FN_NODE_CERT`, `FN_NODE_CERT_KEY`, `FN_NODE_CERT_AUTHORITY`).
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// PEM certificate chain of this node.
    pub cert: Vec<u8>,
    /// PEM private key of this node (redacted in `Debug`).
    pub key: Secret<Vec<u8>>,
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

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Result<Response<HeartbeatReply>, Status> {
        let delivery: Delivery = parse(&r.into_inner().delivery_json)?;
        let lease = self.data.heartbeat(&delivery).await.map_err(status)?;
        Ok(Response::new(HeartbeatReply { lease_ms: lease.as_millis() as u64 }))
    }
}

/// Serves the hybrid gRPC API on `addr` until `shutdown` resolves. With a token, every call must carry
/// `authorization: Bearer <token>` metadata.
pub async fn serve(
    addr: SocketAddr,
    data: Arc<dyn DataAccess>,
    token: Option<Secret>,
    tls: Option<GrpcTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|cause| GrpcError::Bind { addr, cause })?;
    serve_on(listener, data, token, tls, shutdown).await
}

/// As [`serve`], on a listener the caller bound (tests bind port 0 and read the address first), with
/// the default slow-client limits.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    data: Arc<dyn DataAccess>,
    token: Option<Secret>,
    tls: Option<GrpcTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let max_message = shared::config::default_hybrid_message_limit();
    serve_on_with(listener, data, token, tls, &HttpTimeouts::default(), max_message, shutdown).await
}

/// Longest interval between HTTP/2 pings to a connected runner: its answers are what keeps an
/// otherwise quiet connection (a runner waiting on a long-poll) from counting as idle.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(10);

/// As [`serve_on`], with the node's slow-client limits (`FN_HTTP_*_MSECS`) and message size: a
/// connection whose peer sends nothing, not even a ping answer, for the body idle time is closed (this
/// also cuts a client that stalls in the TLS handshake or the HTTP/2 preface); the server pings at a
/// third of that (at most every 10 s) and drops the connection when a ping goes unanswered for the
/// header time; a request may take at most the longest long-poll plus the body idle time. Messages up to
/// `max_message` bytes are taken and sent ([`shared::config::hybrid_message_limit`]; tonic's own
/// default, 4 MiB, would refuse large reports).
pub async fn serve_on_with(
    listener: tokio::net::TcpListener,
    data: Arc<dyn DataAccess>,
    token: Option<Secret>,
    tls: Option<GrpcTls>,
    timeouts: &HttpTimeouts,
    max_message: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let check = move |req: Request<()>| {
        let presented = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if super::authorized(token.as_ref(), presented) {
            Ok(req)
        } else {
            Err(status(Error::Unauthorized))
        }
    };
    let idle = timeouts.body_idle;
    let ping = idle.map_or(MAX_PING_INTERVAL, |i| (i / 3).min(MAX_PING_INTERVAL)).max(Duration::from_millis(10));
    let mut server = Server::builder()
        .http2_keepalive_interval(Some(ping))
        .http2_keepalive_timeout(Some(timeouts.header.unwrap_or(Duration::from_secs(20))))
        .tcp_keepalive(Some(Duration::from_secs(60)));
    if let Some(idle) = idle {
        server = server.timeout(Duration::from_millis(super::MAX_DEQUEUE_WAIT_MS) + idle);
    }
    if let Some(tls) = tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(tls.cert, tls.key.expose()));
        if let Some(ca) = tls.client_ca {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        server = server.tls_config(config)?;
    }
    let incoming =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), move |conn| {
            conn.map(|io| IdleIo { io, idle, timer: None })
        });
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

/// A connection that fails once its peer has sent nothing for `idle` while the server waits to read.
struct IdleIo {
    io: tokio::net::TcpStream,
    idle: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for IdleIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(idle) = this.idle else { return Poll::Pending };
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "gRPC peer idle too long")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for IdleIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}
