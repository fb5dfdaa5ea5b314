//! v1 handlers: apps by name and their routes, with Fn's message-wrapped bodies and wrapped errors.
//!
//! Quirk fixed on purpose: Fn's `GET /v1/apps/{app}/routes/{route}` matched a single segment, so nested
//! routes could not be read; here every route method takes the whole tail (`/a/b/c`). The tail may be
//! percent-encoded, slashes included (`%2Fa%2Fb`), as Fn's Go client sends it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::{check_path, clean_path, App, AppInput, Error, Route, RouteInput};

use super::{param, query, read_json, segment, ApiError, AppState, WithVersion};
use crate::datastore::{AppFilter, RouteFilter, StoreError};

type Reply = Result<HttpResponse, ApiError>;

/// `{"app": {...}}`; `null` or absent means "Missing new application".
#[derive(Deserialize)]
struct AppBody {
    #[serde(default)]
    app: Option<AppInput>,
}

/// `{"route": {...}}`; `null` or absent means "Missing new route".
#[derive(Deserialize)]
struct RouteBody {
    #[serde(default)]
    route: Option<RouteInput>,
}

/// A message plus extra fields, the v1 success shape.
fn message(msg: &str, extra: Value) -> HttpResponse {
    let mut body = json!({ "message": msg });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    HttpResponse::Ok().json(body)
}

/// Adds `next_cursor` when there is a next page.
fn with_cursor(mut extra: Value, cursor: Option<String>) -> Value {
    if let Some(c) = cursor {
        extra["next_cursor"] = Value::String(c);
    }
    extra
}

/// The app named in the URL, or 404 "App not found".
pub(crate) async fn app_by_name(st: &AppState, req: &HttpRequest) -> Result<App, ApiError> {
    let name = segment(req, "app");
    if name.is_empty() {
        return Err(super::ApiVersion::V1.err(Error::MissingAppName));
    }
    st.store.get_app_by_name(&name).await.v1()
}

/// `GET /v1/apps?cursor=&per_page=`
pub async fn list_apps(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let q = query(&req);
    let filter = AppFilter {
        name: None,
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_apps(&filter).await.v1()?;
    Ok(message("Successfully listed applications", with_cursor(json!({ "apps": page.items }), page.next_cursor)))
}

/// `POST /v1/apps` with `{"app":{...}}`.
pub async fn create_app(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let body: AppBody = read_json(&st, &req, body).await.v1()?;
    let app = App::new(body.app.ok_or(Error::MissingNewApp).v1()?).v1()?;
    let stored = st.store.insert_app(&app).await.v1()?;
    Ok(message("App successfully created", json!({ "app": stored })))
}

/// `GET /v1/apps/{app}`
pub async fn get_app(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    Ok(message("Successfully loaded app", json!({ "app": app })))
}

/// `PATCH /v1/apps/{app}` with `{"app":{config,annotations,syslog_url}}`. A different name is 409; the
/// same name is accepted (Fn rejected any name, which broke clients echoing the object back).
pub async fn update_app(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let body: AppBody = read_json(&st, &req, body).await.v1()?;
    let patch = body.app.ok_or(Error::MissingNewApp).v1()?;
    let updated = st.store.update_app(&app.id, patch).await.v1()?;
    Ok(message("AppName successfully updated", json!({ "app": updated })))
}

/// `DELETE /v1/apps/{app}`
pub async fn delete_app(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    st.store.remove_app(&app.id).await.v1()?;
    Ok(message("App deleted", json!({})))
}

/// `GET /v1/apps/{app}/routes?image=&cursor=&per_page=`
pub async fn list_routes(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let q = query(&req);
    let filter = RouteFilter {
        app_id: app.id,
        image: param(&q, "image").map(str::to_string),
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_routes(&filter).await.v1()?;
    Ok(message("Successfully listed routes", with_cursor(json!({ "routes": page.items }), page.next_cursor)))
}

/// The app named in the URL, or a new (validated, not yet stored) one: v1 route writes create the app as
/// Fn does. The app is stored only after the route validated, so a rejected route leaves nothing behind.
async fn app_or_new(st: &AppState, req: &HttpRequest) -> Result<(App, bool), ApiError> {
    let name = segment(req, "app");
    match st.store.get_app_by_name(&name).await {
        Ok(app) => Ok((app, false)),
        Err(StoreError::Domain(Error::AppNotFound)) => {
            let app = App::new(AppInput { name: Some(name), ..Default::default() }).v1()?;
            Ok((app, true))
        }
        Err(e) => Err(super::ApiVersion::V1.err(e)),
    }
}

/// Stores an app made by [`app_or_new`]; a concurrent request creating it first is fine.
async fn store_new_app(st: &AppState, app: &App) -> Result<App, ApiError> {
    match st.store.insert_app(app).await {
        Ok(a) => Ok(a),
        Err(StoreError::Domain(Error::AppAlreadyExists)) => st.store.get_app_by_name(&app.name).await.v1(),
        Err(e) => Err(super::ApiVersion::V1.err(e)),
    }
}

/// Inserts `route` into `app`, storing the app first when it is new.
async fn insert_route(st: &AppState, app: App, is_new: bool, route: Route) -> Result<Route, ApiError> {
    let route = if is_new {
        let stored = store_new_app(st, &app).await?;
        if stored.id != app.id {
            // Another request created the app meanwhile: rebuild the route for the stored app.
            Route { app_id: stored.id, ..route }
        } else {
            route
        }
    } else {
        route
    };
    st.store.insert_route(&route).await.v1()
}

/// `POST /v1/apps/{app}/routes` with `{"route":{...}}`; creates the app if missing.
pub async fn create_route(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let body: RouteBody = read_json(&st, &req, body).await.v1()?;
    let input = body.route.ok_or(Error::MissingNewRoute).v1()?;
    let (app, is_new) = app_or_new(&st, &req).await?;
    let route = Route::new(&app.id, input).v1()?;
    let stored = insert_route(&st, app, is_new, route).await?;
    Ok(message("Route successfully created", json!({ "route": stored })))
}

/// The `{route}` URL tail, for percent-decoding it.
#[derive(Deserialize)]
struct RouteTail {
    route: String,
}

/// The route path from the URL tail, percent-decoded, checked and cleaned like Go's `path.Clean`. Fn's Go
/// client sends the path encoded with its leading slash (`/routes/%2Fhello`), and actix keeps `%2F` encoded
/// while matching, so the tail is decoded here: `%2Fhello`, `hello`, `%2Fa%2Fb` and `a%2Fb` all name the
/// route they spell once decoded. A decoded path no route can have (a control character, `?`, a bad
/// escape) is refused as a route path would be on create.
fn route_path(req: &HttpRequest) -> Result<String, Error> {
    let tail = req.match_info().load::<RouteTail>().map(|t| t.route).unwrap_or_else(|_| segment(req, "route"));
    check_path(&format!("/{tail}"))
}

/// The path of an existing route the URL names: a path no route can have names none, answered without
/// asking the store (PostgreSQL refuses NUL bytes outright).
fn existing_route_path(req: &HttpRequest) -> Result<String, ApiError> {
    route_path(req).map_err(|_| Error::RouteNotFound).v1()
}

/// `GET /v1/apps/{app}/routes/{path...}`
pub async fn get_route(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let route = st.store.get_route(&app.id, &existing_route_path(&req)?).await.v1()?;
    Ok(message("Successfully loaded route", json!({ "route": route })))
}

/// `PUT /v1/apps/{app}/routes/{path...}`: creates the route (and app) if missing, else merge-updates it.
pub async fn put_route(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let body: RouteBody = read_json(&st, &req, body).await.v1()?;
    let mut input = body.route.ok_or(Error::MissingNewRoute).v1()?;
    let path = route_path(&req).v1()?;
    if input.path.as_deref().is_some_and(|p| !p.is_empty() && clean_path(p) != path) {
        return Err(super::ApiVersion::V1.err(Error::RoutePathImmutable));
    }
    let (app, is_new) = app_or_new(&st, &req).await?;
    if !is_new {
        match st.store.get_route(&app.id, &path).await {
            Ok(_) => {
                let updated = st.store.update_route(&app.id, &path, input).await.v1()?;
                return Ok(message("Route successfully updated", json!({ "route": updated })));
            }
            Err(StoreError::Domain(Error::RouteNotFound)) => {}
            Err(e) => return Err(super::ApiVersion::V1.err(e)),
        }
    }
    input.path = Some(path);
    let route = Route::new(&app.id, input).v1()?;
    let stored = insert_route(&st, app, is_new, route).await?;
    Ok(message("Route successfully created", json!({ "route": stored })))
}

/// `PATCH /v1/apps/{app}/routes/{path...}`: merge update; the app and route must exist.
pub async fn patch_route(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let app = app_by_name(&st, &req).await?;
    let body: RouteBody = read_json(&st, &req, body).await.v1()?;
    let input = body.route.ok_or(Error::MissingNewRoute).v1()?;
    let updated = st.store.update_route(&app.id, &existing_route_path(&req)?, input).await.v1()?;
    Ok(message("Route successfully updated", json!({ "route": updated })))
}

/// `DELETE /v1/apps/{app}/routes/{path...}`
pub async fn delete_route(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let app = app_by_name(&st, &req).await?;
    st.store.remove_route(&app.id, &existing_route_path(&req)?).await.v1()?;
    Ok(message("Route deleted", json!({})))
}
