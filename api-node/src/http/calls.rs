//! Call records and logs: v1 by app name (`/v1/apps/{app}/calls`), v2 by fn (`/v2/fns/{fn_id}/calls`).
//!
//! A call belongs to an app (or fn) only when its stored `app_id` (or `fn_id`) matches; asking for another
//! app's call is 404 "Call not found", so call IDs cannot be probed across apps.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use shared::time::DateTime;
use shared::{Call, CallLog, Error};

use super::v1::app_by_name;
use super::{items_body, param, query, segment, ApiError, ApiVersion, AppState, WithVersion};
use crate::datastore::CallFilter;

type Reply = Result<HttpResponse, ApiError>;

/// Parses an epoch-seconds query value; Fn's messages name the parameter.
fn epoch(q: &std::collections::HashMap<String, String>, name: &str) -> Result<Option<DateTime>, Error> {
    match param(q, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_unix_seconds)
            .map(Some)
            .ok_or_else(|| Error::BadRequest(format!("{name} is not an epoch time").into())),
    }
}

/// `dead_letter=true|false`: only the async calls given up after their last attempt, or only the others.
fn dead_letter(q: &std::collections::HashMap<String, String>) -> Result<Option<bool>, Error> {
    match param(q, "dead_letter") {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Error::BadRequest("dead_letter must be true or false".into())),
    }
}

/// `GET /v1/apps/{app}/calls?path=&from_time=&to_time=&dead_letter=&cursor=&per_page=`
pub async fn v1_list(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let q = query(&req);
    let filter = CallFilter {
        app_id: Some(app.id),
        fn_id: None,
        path: param(&q, "path").map(str::to_string),
        from_time: epoch(&q, "from_time").v1()?,
        to_time: epoch(&q, "to_time").v1()?,
        dead_letter: dead_letter(&q).v1()?,
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_calls(&filter).await.v1()?;
    let mut body = json!({ "message": "Successfully listed calls", "calls": page.items });
    if let Some(c) = page.next_cursor {
        body["next_cursor"] = c.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The call `id` if it belongs to the app or fn `owner` (`pick` reads the owner from the call).
async fn owned_call(
    st: &AppState,
    id: &str,
    owner: &str,
    pick: fn(&Call) -> &str,
    v: ApiVersion,
) -> Result<Call, ApiError> {
    let call = st.store.get_call(id).await.api(v)?;
    if pick(&call) != owner {
        return Err(v.err(Error::CallNotFound));
    }
    Ok(call)
}

/// `GET /v1/apps/{app}/calls/{call}`
pub async fn v1_get(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let call = owned_call(&st, &segment(&req, "call"), &app.id, |c| &c.app_id, ApiVersion::V1).await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully loaded call", "call": call })))
}

/// `GET /v1/apps/{app}/calls/{call}/log`
pub async fn v1_log(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let call = owned_call(&st, &segment(&req, "call"), &app.id, |c| &c.app_id, ApiVersion::V1).await?;
    let log = st.store.get_log(&call.id).await.v1()?;
    respond_log(&req, log, ApiVersion::V1)
}

/// `GET /v2/fns/{fn_id}/calls?from_time=&to_time=&dead_letter=&cursor=&per_page=`
pub async fn v2_list(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let f = st.store.get_fn(&segment(&req, "fn_id")).await.v2()?;
    let q = query(&req);
    let filter = CallFilter {
        app_id: Some(f.app_id),
        fn_id: Some(f.id),
        path: None,
        from_time: epoch(&q, "from_time").v2()?,
        to_time: epoch(&q, "to_time").v2()?,
        dead_letter: dead_letter(&q).v2()?,
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_calls(&filter).await.v2()?;
    Ok(HttpResponse::Ok().json(items_body(page.items, page.next_cursor)))
}

/// `GET /v2/fns/{fn_id}/calls/{call_id}`
pub async fn v2_get(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let fn_id = segment(&req, "fn_id");
    let call = owned_call(&st, &segment(&req, "call_id"), &fn_id, |c| &c.fn_id, ApiVersion::V2).await?;
    Ok(HttpResponse::Ok().json(call))
}

/// `GET /v2/fns/{fn_id}/calls/{call_id}/log`
pub async fn v2_log(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let fn_id = segment(&req, "fn_id");
    let call = owned_call(&st, &segment(&req, "call_id"), &fn_id, |c| &c.fn_id, ApiVersion::V2).await?;
    let log = st.store.get_log(&call.id).await.v2()?;
    respond_log(&req, log, ApiVersion::V2)
}

/// What a log response should be, from the `Accept` header.
#[derive(Debug, PartialEq, Eq)]
enum LogFormat {
    Json,
    Text,
}

/// Fn's negotiation: no `Accept` (or `*/*`, `application/json`) is JSON, `text/plain` is the raw text,
/// anything else 406. The first acceptable entry, in the client's order, wins.
fn negotiate(req: &HttpRequest) -> Option<LogFormat> {
    let accept: Vec<String> = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if accept.is_empty() {
        return Some(LogFormat::Json);
    }
    accept.iter().find_map(|m| match m.as_str() {
        "application/json" | "application/*" | "*/*" => Some(LogFormat::Json),
        "text/plain" | "text/*" => Some(LogFormat::Text),
        _ => None,
    })
}

fn respond_log(req: &HttpRequest, log: CallLog, v: ApiVersion) -> Reply {
    match negotiate(req) {
        Some(LogFormat::Text) => Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(log.log)),
        Some(LogFormat::Json) => Ok(HttpResponse::Ok().json(match v {
            ApiVersion::V1 => json!({ "message": "Successfully loaded log", "log": log }),
            ApiVersion::V2 => json!(log),
        })),
        None => Err(v.err(Error::NotAcceptable)),
    }
}
