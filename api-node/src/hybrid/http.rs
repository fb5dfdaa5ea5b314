//! The hybrid API over HTTP, under `/v2/runner` (see the module table in [`super`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use runner_node::{DataAccess, Delivery};
use serde::Deserialize;
use serde_json::json;
use shared::secret::Secret;
use shared::{Call, Error, QueuedCall};

use crate::http::{ApiError, ApiVersion, WithVersion};

/// What the handlers share.
#[derive(Clone)]
pub struct HybridState {
    /// Storage and queue, in-process.
    pub data: Arc<dyn DataAccess>,
    /// `FN_RUNNER_TOKEN`, when runners must present one.
    pub token: Option<Secret>,
    /// Largest body taken, in bytes ([`shared::config::hybrid_message_limit`]): a report with the
    /// largest log, a queued call with the largest body.
    pub max_body: usize,
}

/// Mounts the hybrid endpoints.
pub fn configure(cfg: &mut web::ServiceConfig, state: HybridState) {
    cfg.service(
        web::scope("/v2/runner")
            .app_data(web::Data::new(state))
            .route("/apps/{app_id}", web::get().to(app_by_id))
            .route("/appsByName/{name}", web::get().to(app_by_name))
            .route("/fns/{fn_id}", web::get().to(fn_by_id))
            .route("/apps/{app_id}/route", web::get().to(route))
            .route("/apps/{app_id}/triggerBySource/{type}/{source:.*}", web::get().to(trigger_by_source))
            .route("/async", web::put().to(enqueue))
            .route("/async", web::get().to(dequeue))
            .route("/start", web::post().to(start))
            .route("/finish", web::post().to(finish))
            .route("/complete", web::post().to(complete))
            .route("/heartbeat", web::post().to(heartbeat)),
    );
}

/// Every hybrid route as (method, path template), for the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v2/runner/apps/{app_id}"),
    ("GET", "/v2/runner/appsByName/{name}"),
    ("GET", "/v2/runner/fns/{fn_id}"),
    ("GET", "/v2/runner/apps/{app_id}/route"),
    ("GET", "/v2/runner/apps/{app_id}/triggerBySource/{type}/{source}"),
    ("PUT", "/v2/runner/async"),
    ("GET", "/v2/runner/async"),
    ("POST", "/v2/runner/start"),
    ("POST", "/v2/runner/finish"),
    ("POST", "/v2/runner/complete"),
    ("POST", "/v2/runner/heartbeat"),
];

type Reply = Result<HttpResponse, ApiError>;

/// The state, once the caller proved it is a runner.
fn authorize<'a>(req: &HttpRequest, state: &'a web::Data<HybridState>) -> Result<&'a dyn DataAccess, ApiError> {
    let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if !super::authorized(state.token.as_ref(), presented) {
        return Err(ApiVersion::V2.err(Error::Unauthorized));
    }
    Ok(state.data.as_ref())
}

/// Reads and parses a JSON body, after the caller was authorized (a stranger's body is never read):
/// over the size limit is 413, anything unreadable is Fn's 400 "Invalid JSON".
async fn parse<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    s: &HybridState,
) -> Result<T, ApiError> {
    let body =
        crate::http::read_body(req, payload, Some(s.max_body as u64)).await.map_err(|e| ApiVersion::V2.err(e))?;
    serde_json::from_slice(&body).map_err(|_| ApiVersion::V2.err(Error::InvalidJson))
}

/// Parses the query string, after the caller was authorized (a stranger learns nothing, not even 400s).
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiVersion::V2.err(Error::BadRequest(e.to_string().into())))
}

fn ok(value: impl serde::Serialize) -> Reply {
    Ok(HttpResponse::Ok().json(value))
}

async fn app_by_id(req: HttpRequest, s: web::Data<HybridState>, id: web::Path<String>) -> Reply {
    ok(authorize(&req, &s)?.app_by_id(&id).await.v2()?)
}

async fn app_by_name(req: HttpRequest, s: web::Data<HybridState>, name: web::Path<String>) -> Reply {
    ok(authorize(&req, &s)?.app_by_name(&name).await.v2()?)
}

async fn fn_by_id(req: HttpRequest, s: web::Data<HybridState>, id: web::Path<String>) -> Reply {
    ok(authorize(&req, &s)?.fn_by_id(&id).await.v2()?)
}

#[derive(Deserialize)]
struct RouteQuery {
    path: String,
}

async fn route(req: HttpRequest, s: web::Data<HybridState>, id: web::Path<String>) -> Reply {
    let data = authorize(&req, &s)?;
    let q: RouteQuery = query(&req)?;
    ok(data.route(&id, &q.path).await.v2()?)
}

async fn trigger_by_source(
    req: HttpRequest,
    s: web::Data<HybridState>,
    p: web::Path<(String, String, String)>,
) -> Reply {
    let data = authorize(&req, &s)?;
    let (app_id, trigger_type, source) = p.into_inner();
    ok(data.trigger_by_source(&app_id, &trigger_type, &format!("/{source}")).await.v2()?)
}

async fn enqueue(req: HttpRequest, s: web::Data<HybridState>, payload: web::Payload) -> Reply {
    let data = authorize(&req, &s)?;
    let call: QueuedCall = parse(&req, payload, &s).await?;
    data.enqueue(&call).await.v2()?;
    ok(json!({"msg": "enqueued call"}))
}

#[derive(Deserialize)]
struct DequeueQuery {
    #[serde(default)]
    wait_ms: u64,
}

async fn dequeue(req: HttpRequest, s: web::Data<HybridState>) -> Reply {
    let data = authorize(&req, &s)?;
    let q: DequeueQuery = query(&req)?;
    let wait = Duration::from_millis(q.wait_ms.min(super::MAX_DEQUEUE_WAIT_MS));
    let delivery = data.dequeue(wait).await.v2()?;
    ok(json!({"deliveries": delivery.into_iter().collect::<Vec<_>>()}))
}

async fn start(req: HttpRequest, s: web::Data<HybridState>, payload: web::Payload) -> Reply {
    let data = authorize(&req, &s)?;
    let call: Call = parse(&req, payload, &s).await?;
    data.call_started(&call).await.v2()?;
    ok(json!({"msg": "slingshot: engage"}))
}

#[derive(Deserialize)]
struct Finish {
    call: Call,
    #[serde(default)]
    log: String,
}

async fn finish(req: HttpRequest, s: web::Data<HybridState>, payload: web::Payload) -> Reply {
    let data = authorize(&req, &s)?;
    let f: Finish = parse(&req, payload, &s).await?;
    data.call_finished(&f.call, &f.log).await.v2()?;
    ok(json!({"msg": "good night, sweet prince"}))
}

#[derive(Deserialize)]
struct Complete {
    delivery: Delivery,
    call: Call,
}

async fn complete(req: HttpRequest, s: web::Data<HybridState>, payload: web::Payload) -> Reply {
    let data = authorize(&req, &s)?;
    let c: Complete = parse(&req, payload, &s).await?;
    data.complete(&c.delivery, &c.call).await.v2()?;
    ok(json!({"msg": "completed"}))
}

async fn heartbeat(req: HttpRequest, s: web::Data<HybridState>, payload: web::Payload) -> Reply {
    let data = authorize(&req, &s)?;
    let delivery: Delivery = parse(&req, payload, &s).await?;
    let lease = data.heartbeat(&delivery).await.v2()?;
    ok(json!({"lease_ms": lease.as_millis() as u64}))
}
