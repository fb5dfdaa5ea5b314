//! Bounds on how long a slow or idle client may hold a connection, for every HTTP server of the
//! platform (the API node's and the runner node's) and the gRPC listener.
//!
//! A client that opens connections and then sends nothing, half a request head, or a body that never
//! ends would otherwise hold a worker's connection slot forever. Three limits, all `FN_*` settings:
//!
//! - the request head must arrive within `FN_HTTP_HEADER_TIMEOUT_MSECS` (actix's client request
//!   timeout; the connection is closed);
//! - a request body may stall at most `FN_HTTP_BODY_IDLE_TIMEOUT_MSECS` between two chunks
//!   ([`BodyIdleTimeout`]: answered 408, connection closed). It is an idle limit, not a total, because
//!   invoke bodies stream into the function and may legitimately take long;
//! - an idle kept-alive connection is closed after `FN_HTTP_KEEPALIVE_MSECS`.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::KeepAlive;
use actix_web::{HttpMessage, HttpResponse};
use futures_util::Stream;
use shared::config::{msecs_or, ConfigError, Source};

/// The slow-client limits of a node's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Longest wait for a request head (`FN_HTTP_HEADER_TIMEOUT_MSECS`, 5 s); `None`: no limit.
    pub header: Option<Duration>,
    /// Longest stall between two chunks of a request body (`FN_HTTP_BODY_IDLE_TIMEOUT_MSECS`, 30 s).
    pub body_idle: Option<Duration>,
    /// Longest idle time of a kept-alive connection (`FN_HTTP_KEEPALIVE_MSECS`, 5 s); `None`: no
    /// keep-alive.
    pub keep_alive: Option<Duration>,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            header: Some(Duration::from_secs(5)),
            body_idle: Some(Duration::from_secs(30)),
            keep_alive: Some(Duration::from_secs(5)),
        }
    }
}

/// Longest limit taken as given; above it a deadline could overflow the clock.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

impl HttpTimeouts {
    /// Reads the three settings; 0 or a negative value turns a limit off, and anything above a day
    /// counts as a day.
    pub fn from_source(src: &dyn Source) -> Result<HttpTimeouts, ConfigError> {
        let read = |name: &str, default: Option<Duration>| -> Result<Option<Duration>, ConfigError> {
            let default_ms = default.map_or(0, |d| d.as_millis() as i64);
            Ok(msecs_or(src, name, default_ms)?.filter(|d| !d.is_zero()).map(|d| d.min(LONGEST)))
        };
        let d = HttpTimeouts::default();
        Ok(HttpTimeouts {
            header: read("FN_HTTP_HEADER_TIMEOUT_MSECS", d.header)?,
            body_idle: read("FN_HTTP_BODY_IDLE_TIMEOUT_MSECS", d.body_idle)?,
            keep_alive: read("FN_HTTP_KEEPALIVE_MSECS", d.keep_alive)?,
        })
    }

    /// For `HttpServer::client_request_timeout` (zero: no limit).
    pub fn client_request_timeout(&self) -> Duration {
        self.header.unwrap_or(Duration::ZERO)
    }

    /// For `HttpServer::keep_alive`.
    pub fn keep_alive(&self) -> KeepAlive {
        self.keep_alive.map_or(KeepAlive::Disabled, KeepAlive::Timeout)
    }

    /// The middleware enforcing the body idle limit.
    pub fn body_idle_timeout(&self) -> BodyIdleTimeout {
        BodyIdleTimeout(self.body_idle)
    }
}

/// Middleware: a request body that delivers nothing for the configured time ends with an error for
/// whoever reads it, and the request is answered 408 with the connection closed.
#[derive(Debug, Clone, Copy)]
pub struct BodyIdleTimeout(Option<Duration>);

impl<S, B> Transform<S, ServiceRequest> for BodyIdleTimeout
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = BodyIdleTimeoutService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BodyIdleTimeoutService { service, idle: self.0 }))
    }
}

/// The service [`BodyIdleTimeout`] wraps around the app.
pub struct BodyIdleTimeoutService<S> {
    service: S,
    idle: Option<Duration>,
}

impl<S, B> Service<ServiceRequest> for BodyIdleTimeoutService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let Some(idle) = self.idle else {
            let fut = self.service.call(req);
            return Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) });
        };
        let stalled = Arc::new(AtomicBool::new(false));
        let inner = req.take_payload();
        let watched = IdleBody { inner, idle, timer: None, stalled: stalled.clone(), done: false };
        req.set_payload(Payload::Stream { payload: Box::pin(watched) });
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await;
            if stalled.load(Ordering::SeqCst) {
                let (req, _) = match res {
                    Ok(res) => res.into_parts(),
                    Err(e) => return Err(e),
                };
                tracing::info!(path = req.path(), "request body stalled; answered 408");
                let reply = HttpResponse::RequestTimeout()
                    .force_close()
                    .json(serde_json::json!({"message": "Timed out reading the request body"}));
                return Ok(ServiceResponse::new(req, reply));
            }
            Ok(res?.map_into_boxed_body())
        })
    }
}

/// A request body that fails with a timeout once it delivers nothing for `idle` while being read (the
/// clock runs only while someone waits for the next chunk).
struct IdleBody {
    inner: Payload,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
    done: bool,
}

impl Stream for IdleBody {
    type Item = Result<actix_web::web::Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                this.timer = None;
                this.done = item.is_none();
                Poll::Ready(item)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.done = true;
                this.stalled.store(true, Ordering::SeqCst);
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body stalled");
                Poll::Ready(Some(Err(PayloadError::Io(e))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<HttpTimeouts, ConfigError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HttpTimeouts::from_source(&env)
    }

    #[test]
    fn defaults_overrides_and_bounds() {
        assert_eq!(read(&[]).unwrap(), HttpTimeouts::default());
        let t = read(&[
            ("FN_HTTP_HEADER_TIMEOUT_MSECS", "0"),
            ("FN_HTTP_BODY_IDLE_TIMEOUT_MSECS", "-1"),
            ("FN_HTTP_KEEPALIVE_MSECS", "9223372036854775807"),
        ])
        .unwrap();
        assert_eq!((t.header, t.body_idle, t.keep_alive), (None, None, Some(LONGEST)));
        assert_eq!(t.client_request_timeout(), Duration::ZERO);
        assert!(read(&[("FN_HTTP_BODY_IDLE_TIMEOUT_MSECS", "soon")]).unwrap_err().to_string().contains("FN_HTTP_BODY"));
    }
}
