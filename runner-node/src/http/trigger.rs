//! `/t/{app}/{source...}`: HTTP triggers, any method, with Fn's gateway mapping
//! (docs/fn-compatibility.md, "Invoke paths").
//!
//! App by name, trigger by `(app, "http", source)`, then its fn. Headers are wrapped on the way
//! in and unwrapped on the way out ([`super::gateway`]). Errors use the v2 shape. A trigger annotated
//! [`ASYNC_ANNOTATION`]` = "detached"` (or a request with `Fn-Invoke-Type: detached`) queues the call.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{InvokeError, Shape};
use super::gateway;
use super::request::{accepted, append_headers, fn_spec, wants_detached, Incoming};
use super::{InvokeState, CALL_ID_HEADER};

/// Trigger annotation that makes every call through the trigger async: with the value `"detached"`,
/// the call is queued and answered 202 `{"call_id"}`, like `Fn-Invoke-Type: detached` on one request.
pub const ASYNC_ANNOTATION: &str = "fnrs.io/trigger/invokeType";

/// Serves one `/t/` request.
pub(super) async fn handle(req: HttpRequest, payload: web::Payload, st: web::Data<InvokeState>) -> HttpResponse {
    let id = shared::id::new_id();
    run(&req, payload, &st, &id).await.unwrap_or_else(|e| e.render(Shape::V2, &id))
}

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    st: &InvokeState,
    id: &str,
) -> Result<HttpResponse, InvokeError> {
    let app_name = req.match_info().get("app").unwrap_or_default();
    let source = format!("/{}", req.match_info().get("source").unwrap_or_default());
    let app = st.data.app_by_name(app_name).await.map_err(InvokeError::Lookup)?;
    let trigger = st.data.trigger_by_source(&app.id, "http", &source).await.map_err(InvokeError::Lookup)?;
    let func = st.data.fn_by_id(&trigger.fn_id).await.map_err(InvokeError::Lookup)?;
    let detached =
        trigger.annotations.get(ASYNC_ANNOTATION).and_then(|v| v.as_str()) == Some("detached") || wants_detached(req);
    let mut incoming = Incoming::read(req, payload, id, st.limits.max_request_size).await?;
    incoming.headers = gateway::request_headers(&incoming.headers, &incoming.method, &incoming.url);

    if detached {
        st.data.enqueue(&incoming.queued(&app.id, &func.id, "")).await.map_err(InvokeError::Enqueue)?;
        let mut resp = HttpResponse::Ok();
        resp.insert_header((CALL_ID_HEADER, id));
        return Ok(accepted(&mut resp, id));
    }

    let out = st.submit(fn_spec(&app, &func, incoming)).await?;
    let (status, mut headers) = gateway::response(&out);
    headers.remove(CALL_ID_HEADER);
    let mut resp = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    append_headers(&mut resp, &headers);
    resp.insert_header((CALL_ID_HEADER, id));
    Ok(resp.body(out.body))
}
