//! The HTTP transport: actix-web handlers for Fn's v1 and v2 management API.
//!
//! Handlers only translate: they read the request (path, query, JSON body into the `*Input` types), call
//! the domain constructors in `shared` and the [`crate::datastore::Datastore`] traits, and render the
//! result. No handler talks SQL. Every served route is listed once, in [`endpoints`], which the
//! router and the OpenAPI test both read.

pub mod calls;
pub mod errors;
pub mod openapi;
pub mod v1;
pub mod v2;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, ServiceConfig};
use actix_web::{App, HttpRequest, HttpResponse, Route};
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use shared::{Error, Func, Trigger};

use crate::config::NodeType;
use crate::datastore::Datastore;
pub use errors::{ApiError, ApiVersion, WithVersion};

/// The server's version, reported by `GET /version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Annotation carrying a fn's invoke URL (added on read, never stored).
pub const FN_INVOKE_ENDPOINT: &str = "fnproject.io/fn/invokeEndpoint";
/// Annotation carrying an HTTP trigger's URL (added on read, never stored).
pub const TRIGGER_HTTP_ENDPOINT: &str = "fnproject.io/trigger/httpEndpoint";

/// A hook that registers extra routes or services (the invoke paths in full mode, extension endpoints).
pub type Configure = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// A check run before every `/v1` and `/v2` request (authentication, quotas...); an error answers the
/// request in that API's error shape and the handler does not run.
pub type ApiFilter = Arc<dyn Fn(&ServiceRequest) -> Result<(), Error> + Send + Sync>;

/// Ways to extend the server without forking it.
#[derive(Clone, Default)]
pub struct Extensions {
    /// Registered before the API routes, in order.
    pub configure: Vec<Configure>,
    /// Run in order before each API request.
    pub api_filters: Vec<ApiFilter>,
}

/// Everything the handlers need, shared by all workers.
#[derive(Clone)]
pub struct AppState {
    /// The datastore (usually listener-wrapped).
    pub store: Arc<dyn Datastore>,
    /// Base of the invoke and trigger URLs in annotations, without a trailing slash.
    pub public_url: Arc<str>,
    /// Largest accepted body (`None` only if set so after construction: unlimited).
    pub max_request_size: Option<u64>,
    /// Extra routes and API filters.
    pub ext: Extensions,
    /// What this node is; an `api` node answers `/r/` with Fn's "not supported" 400.
    pub node_type: NodeType,
}

impl AppState {
    /// State over `store` with no extensions; `max_request_size` `None` means [`shared::config::UNLIMITED_REQUEST_BODY`].
    pub fn new(store: Arc<dyn Datastore>, public_url: &str, max_request_size: Option<u64>) -> Self {
        AppState {
            store,
            public_url: public_url.trim_end_matches('/').into(),
            max_request_size: Some(max_request_size.unwrap_or(shared::config::UNLIMITED_REQUEST_BODY)),
            ext: Extensions::default(),
            node_type: NodeType::Full,
        }
    }

    /// A fn as returned to clients: with its invoke URL annotation.
    pub fn annotate_fn(&self, mut f: Func) -> Func {
        let url = format!("{}/invoke/{}", self.public_url, f.id);
        f.annotations.set(FN_INVOKE_ENDPOINT, Value::String(url));
        f
    }

    /// A trigger as returned to clients: with its HTTP URL annotation (needs the app's name).
    pub fn annotate_trigger(&self, mut t: Trigger, app_name: &str) -> Trigger {
        let url = format!("{}/t/{}/{}", self.public_url, app_name, t.source.trim_start_matches('/'));
        t.annotations.set(TRIGGER_HTTP_ENDPOINT, Value::String(url));
        t
    }
}

/// One served route: method, actix path pattern and a short description (also used by OpenAPI).
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// actix path pattern (`{name}` segments; `{name:.+}` for a tail).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    route: fn() -> Route,
}

impl Endpoint {
    /// The path in OpenAPI form: `{route:.+}` becomes `{route}`.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut in_param = false;
        let mut skipping = false;
        for c in self.path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push(c);
                }
                ':' if in_param => skipping = true,
                '}' => {
                    in_param = false;
                    skipping = false;
                    out.push(c);
                }
                _ if skipping => {}
                _ => out.push(c),
            }
        }
        out
    }
}

macro_rules! ep {
    ($method:ident, $path:expr, $summary:expr, $handler:path) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            summary: $summary,
            route: || web::method(Method::$method).to($handler),
        }
    };
}

/// Every route the API serves. The router is built from this table and the OpenAPI test checks it.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        ep!(GET, "/", "Greeting, as Fn answers", root),
        ep!(GET, "/version", "Server version", version),
        ep!(GET, "/health/live", "Liveness: the process answers", live),
        ep!(GET, "/health/ready", "Readiness: 503 while the database is unreachable", ready),
        ep!(GET, "/v2/openapi.json", "This API's OpenAPI document", openapi::document),
        // v1 apps and routes (by app name)
        ep!(GET, "/v1/apps", "List apps", v1::list_apps),
        ep!(POST, "/v1/apps", "Create an app", v1::create_app),
        ep!(GET, "/v1/apps/{app}", "Get an app", v1::get_app),
        ep!(PATCH, "/v1/apps/{app}", "Update an app", v1::update_app),
        ep!(DELETE, "/v1/apps/{app}", "Delete an app and everything in it", v1::delete_app),
        ep!(GET, "/v1/apps/{app}/routes", "List the routes of an app", v1::list_routes),
        ep!(POST, "/v1/apps/{app}/routes", "Create a route (and the app if missing)", v1::create_route),
        ep!(GET, "/v1/apps/{app}/routes/{route:.+}", "Get a route", v1::get_route),
        ep!(
            PUT,
            "/v1/apps/{app}/routes/{route:.+}",
            "Create or update a route (and the app if missing)",
            v1::put_route
        ),
        ep!(PATCH, "/v1/apps/{app}/routes/{route:.+}", "Update a route", v1::patch_route),
        ep!(DELETE, "/v1/apps/{app}/routes/{route:.+}", "Delete a route", v1::delete_route),
        ep!(GET, "/v1/apps/{app}/calls", "List the calls of an app, newest first", calls::v1_list),
        ep!(GET, "/v1/apps/{app}/calls/{call}", "Get a call", calls::v1_get),
        ep!(GET, "/v1/apps/{app}/calls/{call}/log", "Get the log of a call (JSON or text/plain)", calls::v1_log),
        // v2 (by ID)
        ep!(GET, "/v2/apps", "List apps", v2::list_apps),
        ep!(POST, "/v2/apps", "Create an app", v2::create_app),
        ep!(GET, "/v2/apps/{app_id}", "Get an app", v2::get_app),
        ep!(PUT, "/v2/apps/{app_id}", "Update an app", v2::update_app),
        ep!(DELETE, "/v2/apps/{app_id}", "Delete an app and everything in it", v2::delete_app),
        ep!(GET, "/v2/fns", "List the fns of an app", v2::list_fns),
        ep!(POST, "/v2/fns", "Create a fn", v2::create_fn),
        ep!(GET, "/v2/fns/{fn_id}", "Get a fn", v2::get_fn),
        ep!(PUT, "/v2/fns/{fn_id}", "Update a fn", v2::update_fn),
        ep!(DELETE, "/v2/fns/{fn_id}", "Delete a fn and its triggers", v2::delete_fn),
        ep!(GET, "/v2/fns/{fn_id}/calls", "List the calls of a fn, newest first", calls::v2_list),
        ep!(GET, "/v2/fns/{fn_id}/calls/{call_id}", "Get a call of a fn", calls::v2_get),
        ep!(GET, "/v2/fns/{fn_id}/calls/{call_id}/log", "Get the log of a call (JSON or text/plain)", calls::v2_log),
        ep!(GET, "/v2/triggers", "List the triggers of an app", v2::list_triggers),
        ep!(POST, "/v2/triggers", "Create a trigger", v2::create_trigger),
        ep!(GET, "/v2/triggers/{trigger_id}", "Get a trigger", v2::get_trigger),
        ep!(PUT, "/v2/triggers/{trigger_id}", "Update a trigger", v2::update_trigger),
        ep!(DELETE, "/v2/triggers/{trigger_id}", "Delete a trigger", v2::delete_trigger),
    ]
}

/// The actix application: extension routes, then every [`endpoints`] route, JSON 404/405 answers,
/// API filters and one log line per request. Callers may `.wrap()` more middleware around it.
pub fn build(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let configure = state.ext.configure.clone();
    App::new()
        .app_data(web::Data::new(state))
        .configure(move |cfg| {
            for c in &configure {
                c(cfg);
            }
            routes(cfg);
        })
        .default_service(web::to(not_found))
        .wrap(from_fn(api_filters))
        .wrap(from_fn(log_request))
}

/// Registers the API routes: one resource per path, answering 405 for the methods it does not serve.
pub fn routes(cfg: &mut ServiceConfig) {
    let mut paths: Vec<(&'static str, Vec<Endpoint>)> = Vec::new();
    for ep in endpoints() {
        match paths.iter_mut().find(|(p, _)| *p == ep.path) {
            Some((_, eps)) => eps.push(ep),
            None => paths.push((ep.path, vec![ep])),
        }
    }
    for (path, eps) in paths {
        let mut resource = web::resource(path);
        for ep in eps {
            resource = resource.route((ep.route)());
        }
        cfg.service(resource.default_service(web::to(method_not_allowed)));
    }
}

/// Error shape for a path outside the handlers: v2 paths answer flat, everything else wrapped (as Fn).
fn version_of(path: &str) -> ApiVersion {
    if path.starts_with("/v2/") || path == "/v2" {
        ApiVersion::V2
    } else {
        ApiVersion::V1
    }
}

async fn not_found(st: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if st.node_type == NodeType::Api {
        let path = req.path();
        let kind = ["/r", "/invoke", "/t"].into_iter().find(|p| path == *p || path.starts_with(&format!("{p}/")));
        if let Some(kind) = kind {
            let msg = format!("Invoking routes {kind}/ is not supported on nodes configured as type API");
            let version = if kind == "/invoke" { ApiVersion::V2 } else { ApiVersion::V1 };
            return Err(version.err(Error::BadRequest(msg.into())));
        }
    }
    Err(version_of(req.path()).err(Error::PathNotFound(req.path().to_string())))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(version_of(req.path())
        .err(Error::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string() }))
}

async fn api_filters(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    if path.starts_with("/v1/") || path.starts_with("/v2/") {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            for filter in &state.ext.api_filters {
                if let Err(e) = filter(&req) {
                    return Err(version_of(req.path()).err(e).into());
                }
            }
        }
    }
    next.call(req).await
}

async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    // A panicking handler answers 500 like any unexpected error instead of dropping the connection.
    let res = match std::panic::AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(version_of(&path).err(Error::internal(format!("handler panicked: {cause}"))).into())
        }
    };
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let latency_us = start.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, latency_us, "request");
    } else {
        tracing::info!(%method, %path, status, latency_us, "request");
    }
    res
}

async fn root() -> HttpResponse {
    HttpResponse::Ok().json(json!({"hello": "world!", "goto": "https://github.com/fnproject/fn"}))
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "version": VERSION }))
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match st.store.ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database ping failed");
            Err(ApiVersion::V2.err(Error::Unavailable("database is unavailable".into())))
        }
    }
}

// ---- helpers shared by the handlers ------------------------------------------------------------

/// Reads the whole body, enforcing the size limit (413) before and while reading.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: Option<u64>,
) -> Result<web::BytesMut, Error> {
    if let Some(limit) = limit {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::RequestTooLarge);
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "unreadable request body");
            Error::BadRequest("could not read request body".into())
        })?;
        if limit.is_some_and(|l| (body.len() + chunk.len()) as u64 > l) {
            return Err(Error::RequestTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and parses a JSON body. Any parse failure is Fn's 400 "Invalid JSON"; unknown fields are ignored.
pub(crate) async fn read_json<T: DeserializeOwned>(
    st: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, Error> {
    let body = read_body(req, payload, st.max_request_size).await?;
    // Bodies are JSON objects; serde would also read a struct from an array, which Fn rejects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidJson);
    }
    serde_json::from_slice(&body).map_err(|_| Error::InvalidJson)
}

/// The query string as a map (a malformed encoding is read as best it can, never an error).
pub(crate) fn query(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect()
}

/// A non-empty query value.
pub(crate) fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|s| !s.is_empty())
}

/// A path segment of the matched route.
pub(crate) fn segment(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_string()
}

/// A list body: `{"items":[..],"next_cursor":..}`, the cursor omitted on the last page.
pub(crate) fn items_body<T: serde::Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Value {
    let mut body = json!({ "items": items });
    if let Some(c) = next_cursor {
        body["next_cursor"] = Value::String(c);
    }
    body
}

/// A JSON 200 response.
pub(crate) fn ok_json(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(body)
}
