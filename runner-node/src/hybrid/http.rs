//! The hybrid API over HTTP: `/v2/runner/*` on the API node, Fn JSON bodies, v2 error bodies.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shared::{App, Call, Error, Func, QueuedCall, Route, Trigger};

use super::{bad_reply, retry_lookup, unreachable, ConnectError};
use crate::data_access::{DataAccess, Delivery};

/// [`DataAccess`] against an API node's HTTP hybrid endpoints (`http://host:port[/prefix]`).
///
/// Lookups are retried on 5xx and transport failures; writes and dequeues are sent once, and their
/// failures are for the caller (or the report buffer) to handle.
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    /// `{base}/v2/runner`, the root of every endpoint.
    root: Url,
    token: Option<shared::secret::Secret>,
    timeout: Duration,
}

impl HttpClient {
    /// A client for the API node at `base_url`, presenting `token` as a bearer token when given.
    /// Requests time out after `timeout` (a dequeue after its wait plus `timeout`).
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<Self, ConnectError> {
        let invalid = |reason: String| ConnectError::InvalidUrl { url: base_url.into(), reason };
        let mut root = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if root.scheme() != "http" {
            return Err(ConnectError::UnsupportedScheme(root.scheme().into()));
        }
        if root.query().is_some() || root.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        root.path_segments_mut()
            .map_err(|_| invalid("cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(["v2", "runner"]);
        if let Some(t) = &token {
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).is_err() {
                return Err(ConnectError::InvalidToken);
            }
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .build()
            .map_err(|e| ConnectError::Client(e.to_string()))?;
        Ok(HttpClient { http, root, token: token.map(shared::secret::Secret::new), timeout })
    }

    /// `{root}/{segments...}`, each segment percent-encoded as a path segment.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.root.clone();
        url.path_segments_mut().expect("checked in new").extend(segments);
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url).timeout(self.timeout);
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    /// Sends `req`; a non-2xx answer becomes the error the API node named.
    async fn send(req: RequestBuilder) -> Result<Response, Error> {
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(Error::from_wire(status.as_u16(), &error_message(&body, status)))
    }

    /// GETs Fn JSON, retrying while the API node is away.
    async fn lookup<T: DeserializeOwned>(&self, what: &str, url: Url) -> Result<T, Error> {
        retry_lookup(|| async {
            let resp = Self::send(self.request(Method::GET, url.clone())).await?;
            read_json(what, resp).await
        })
        .await
    }

    /// Sends a JSON body once; the reply's body is not needed.
    async fn post<B: Serialize + ?Sized>(&self, method: Method, endpoint: &str, body: &B) -> Result<(), Error> {
        Self::send(self.request(method, self.url([endpoint])).json(body)).await.map(drop)
    }
}

/// The message of an error body: v2 `{"message":..}`, v1 `{"error":{"message":..}}`, else the text.
fn error_message(body: &[u8], status: reqwest::StatusCode) -> String {
    #[derive(Deserialize)]
    struct V2 {
        message: String,
    }
    #[derive(Deserialize)]
    struct V1 {
        error: V2,
    }
    if let Ok(v2) = serde_json::from_slice::<V2>(body) {
        return v2.message;
    }
    if let Ok(v1) = serde_json::from_slice::<V1>(body) {
        return v1.error.message;
    }
    match String::from_utf8_lossy(body).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    }
}

/// The body as Fn JSON; a body cut off in transit is a transport failure, one that does not parse is not.
async fn read_json<T: DeserializeOwned>(what: &str, resp: Response) -> Result<T, Error> {
    let body = resp.bytes().await.map_err(unreachable)?;
    serde_json::from_slice(&body).map_err(|e| bad_reply(what, e))
}

#[derive(Serialize)]
struct Finished<'a> {
    call: &'a Call,
    log: &'a str,
}

#[derive(Serialize)]
struct Completed<'a> {
    delivery: &'a Delivery,
    call: &'a Call,
}

#[derive(Deserialize)]
struct Lease {
    lease_ms: u64,
}

#[derive(Deserialize)]
struct Deliveries {
    #[serde(default)]
    deliveries: Vec<Delivery>,
}

#[async_trait]
impl DataAccess for HttpClient {
    async fn app_by_name(&self, name: &str) -> Result<App, Error> {
        self.lookup("app", self.url(["appsByName", name])).await
    }

    async fn app_by_id(&self, id: &str) -> Result<App, Error> {
        self.lookup("app", self.url(["apps", id])).await
    }

    async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
        self.lookup("fn", self.url(["fns", id])).await
    }

    async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
        let mut url = self.url(["apps", app_id, "route"]);
        url.query_pairs_mut().append_pair("path", path);
        self.lookup("route", url).await
    }

    async fn trigger_by_source(&self, app_id: &str, trigger_type: &str, source: &str) -> Result<Trigger, Error> {
        // `/hook/x` → `.../triggerBySource/http/hook/x`: the source's segments follow the type.
        let source = source.strip_prefix('/').unwrap_or(source);
        let url = self.url(["apps", app_id, "triggerBySource", trigger_type].into_iter().chain(source.split('/')));
        self.lookup("trigger", url).await
    }

    async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
        self.post(Method::PUT, "async", call).await
    }

    async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
        let wait_ms = wait.as_millis().min(u32::MAX as u128) as u32;
        let mut url = self.url(["async"]);
        url.query_pairs_mut().append_pair("wait_ms", &wait_ms.to_string());
        let req = self.request(Method::GET, url).timeout(self.timeout + wait);
        let reply: Deliveries = read_json("dequeue reply", Self::send(req).await?).await?;
        Ok(reply.deliveries.into_iter().next())
    }

    async fn call_started(&self, call: &Call) -> Result<(), Error> {
        self.post(Method::POST, "start", call).await
    }

    async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
        self.post(Method::POST, "finish", &Finished { call, log }).await
    }

    async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
        self.post(Method::POST, "complete", &Completed { delivery, call }).await
    }

    async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
        let resp = Self::send(self.request(Method::POST, self.url(["heartbeat"])).json(delivery)).await?;
        let lease: Lease = read_json("heartbeat reply", resp).await?;
        Ok(Duration::from_millis(lease.lease_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> HttpClient {
        HttpClient::new(base, None, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn endpoint_urls() {
        let c = client("http://api:8080");
        assert_eq!(c.url(["apps", "01ABC"]).as_str(), "http://api:8080/v2/runner/apps/01ABC");
        let c = client("http://api:8080/fn/");
        assert_eq!(c.url(["fns", "f"]).as_str(), "http://api:8080/fn/v2/runner/fns/f");
        // Path pieces are encoded as segments, so a name cannot reach another endpoint.
        assert_eq!(c.url(["appsByName", "a/b?c"]).as_str(), "http://api:8080/fn/v2/runner/appsByName/a%2Fb%3Fc");
    }

    #[test]
    fn error_bodies() {
        let s = reqwest::StatusCode::NOT_FOUND;
        assert_eq!(error_message(br#"{"message":"App not found"}"#, s), "App not found");
        assert_eq!(error_message(br#"{"error":{"message":"Route not found"}}"#, s), "Route not found");
        assert_eq!(error_message(b"nope\n", s), "nope");
        assert_eq!(error_message(b"", s), "Not Found");
        assert_eq!(Error::from_wire(404, &error_message(br#"{"message":"App not found"}"#, s)), Error::AppNotFound);
    }
}
