//! `/r/{app}/{route...}`: v1 routes, any method (docs/fn-compatibility.md, "Invoke paths").
//!
//! App by name, route by cleaned path; the route's headers and `Fn-Call-Id` go on every answer.
//! Async routes are queued (202 `{"call_id"}` once stored); sync routes run and their buffered
//! response gets a Content-Type when the function set none. Errors use the v1 shape.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::RouteType;

use super::error::{InvokeError, Shape};
use super::request::{accepted, append_headers, clean_path, route_spec, Incoming};
use super::{InvokeState, CALL_ID_HEADER};
use crate::protocol::strip_hop_headers;

/// Content type that turns a call into a CloudEvent (docs/fn-compatibility.md, "Invoke paths").
const CLOUDEVENT_TYPE: &str = "application/cloudevents+json";

/// Serves one `/r/` request.
pub(super) async fn handle(req: HttpRequest, payload: web::Payload, st: web::Data<InvokeState>) -> HttpResponse {
    let id = shared::id::new_id();
    run(&req, payload, &st, &id).await.unwrap_or_else(|e| e.render(Shape::V1, &id))
}

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    st: &InvokeState,
    id: &str,
) -> Result<HttpResponse, InvokeError> {
    let app_name = req.match_info().get("app").unwrap_or_default();
    let path = clean_path(req.match_info().get("route").unwrap_or_default());
    let app = st.data.app_by_name(app_name).await.map_err(InvokeError::Lookup)?;
    let route = st.data.route(&app.id, &path).await.map_err(InvokeError::Lookup)?;
    let incoming = Incoming::read(req, payload, id, st.limits.max_request_size).await?;

    let mut resp = HttpResponse::Ok();
    for (name, values) in &route.headers.0 {
        for v in values {
            resp.append_header((name.as_str(), v.as_str()));
        }
    }
    resp.insert_header((CALL_ID_HEADER, id));

    if route.route_type == RouteType::Async {
        let queued = incoming.queued(&app.id, "", &route.path);
        st.data.enqueue(&queued).await.map_err(InvokeError::Enqueue)?;
        return Ok(accepted(&mut resp, id));
    }

    let is_cloudevent = incoming
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CLOUDEVENT_TYPE.as_bytes()));
    let mut spec = route_spec(&app, &route, incoming);
    if is_cloudevent {
        spec.format = shared::Format::CloudEvent;
    }
    let out = st.submit(spec).await?;
    let mut headers = out.headers;
    strip_hop_headers(&mut headers);
    append_headers(&mut resp, &headers);
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        resp.insert_header(("Content-Type", detect_content_type(&out.body)));
    }
    resp.status(StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK));
    Ok(resp.body(out.body))
}

/// Content type of an untyped v1 response: JSON-looking bodies are JSON (as Fn), other text is
/// plain text, anything else is bytes. (Fn used Go's full sniffer; HEAD dropped sniffing.)
fn detect_content_type(body: &[u8]) -> &'static str {
    if body.first() == Some(&b'{') {
        "application/json; charset=utf-8"
    } else if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}
