//! `POST /invoke/{fn_id}`: v2 fns (docs/fn-compatibility.md, "Invoke paths").
//!
//! Fn, then its app. Request headers pass through; the function's response headers come back
//! (hop-by-hop removed) with `Fn-Call-Id`. `Fn-Invoke-Type: detached` queues the call and answers
//! 202 `{"call_id"}` once stored. Errors use the v2 shape.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{InvokeError, Shape};
use super::request::{accepted, append_headers, fn_spec, wants_detached, Incoming};
use super::{InvokeState, CALL_ID_HEADER};
use crate::protocol::strip_hop_headers;

/// Serves one `/invoke` request.
pub(super) async fn handle(req: HttpRequest, payload: web::Payload, st: web::Data<InvokeState>) -> HttpResponse {
    let id = shared::id::new_id();
    run(&req, payload, &st, &id).await.unwrap_or_else(|e| e.render(Shape::V2, &id))
}

/// Any method but POST.
pub(super) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let e = shared::Error::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string() };
    InvokeError::Lookup(e).render(Shape::V2, "")
}

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    st: &InvokeState,
    id: &str,
) -> Result<HttpResponse, InvokeError> {
    let fn_id = req.match_info().get("fn_id").unwrap_or_default();
    let func = st.data.fn_by_id(fn_id).await.map_err(InvokeError::Lookup)?;
    let app = st.data.app_by_id(&func.app_id).await.map_err(InvokeError::Lookup)?;
    let detached = wants_detached(req);
    let incoming = Incoming::read(req, payload, id, st.limits.max_request_size).await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((CALL_ID_HEADER, id));

    if detached {
        let queued = incoming.queued(&app.id, &func.id, "");
        st.data.enqueue(&queued).await.map_err(InvokeError::Enqueue)?;
        return Ok(accepted(&mut resp, id));
    }

    let out = st.submit(fn_spec(&app, &func, incoming)).await?;
    let mut headers = out.headers;
    strip_hop_headers(&mut headers);
    headers.remove(CALL_ID_HEADER);
    append_headers(&mut resp, &headers);
    resp.status(StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK));
    Ok(resp.body(out.body))
}
