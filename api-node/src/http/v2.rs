//! v2 handlers: apps, fns and triggers addressed by ID, flat error bodies, `{items,next_cursor}` lists.

use actix_web::{web, HttpRequest, HttpResponse};
use shared::{App, AppInput, Error, Func, FuncInput, Trigger, TriggerInput};

use super::{items_body, ok_json, param, query, read_json, segment, ApiError, AppState, WithVersion};
use crate::datastore::{AppFilter, FnFilter, TriggerFilter};

type Reply = Result<HttpResponse, ApiError>;

/// `GET /v2/apps?name=&cursor=&per_page=`
pub async fn list_apps(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let q = query(&req);
    let filter = AppFilter {
        name: param(&q, "name").map(str::to_string),
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_apps(&filter).await.v2()?;
    Ok(ok_json(items_body(page.items, page.next_cursor)))
}

/// `POST /v2/apps`
pub async fn create_app(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let input: AppInput = read_json(&st, &req, body).await.v2()?;
    let app = App::new(input).v2()?;
    Ok(ok_json(st.store.insert_app(&app).await.v2()?))
}

/// `GET /v2/apps/{app_id}`
pub async fn get_app(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    Ok(ok_json(st.store.get_app_by_id(&segment(&req, "app_id")).await.v2()?))
}

/// `PUT /v2/apps/{app_id}`: merge update; a body ID other than the path's is 400.
pub async fn update_app(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let patch: AppInput = read_json(&st, &req, body).await.v2()?;
    Ok(ok_json(st.store.update_app(&segment(&req, "app_id"), patch).await.v2()?))
}

/// `DELETE /v2/apps/{app_id}`: 204.
pub async fn delete_app(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    st.store.remove_app(&segment(&req, "app_id")).await.v2()?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v2/fns?app_id=&name=&cursor=&per_page=`. Unlike Fn, the `name` filter is applied.
pub async fn list_fns(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let q = query(&req);
    let app_id = param(&q, "app_id").ok_or(Error::FnMissingAppId).v2()?;
    let filter = FnFilter {
        app_id: app_id.to_string(),
        name: param(&q, "name").map(str::to_string),
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_fns(&filter).await.v2()?;
    let items: Vec<Func> = page.items.into_iter().map(|f| st.annotate_fn(f)).collect();
    Ok(ok_json(items_body(items, page.next_cursor)))
}

/// `POST /v2/fns`
pub async fn create_fn(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let input: FuncInput = read_json(&st, &req, body).await.v2()?;
    let f = Func::new(input).v2()?;
    let stored = st.store.insert_fn(&f).await.v2()?;
    Ok(ok_json(st.annotate_fn(stored)))
}

/// `GET /v2/fns/{fn_id}`
pub async fn get_fn(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let f = st.store.get_fn(&segment(&req, "fn_id")).await.v2()?;
    Ok(ok_json(st.annotate_fn(f)))
}

/// `PUT /v2/fns/{fn_id}`: merge update.
pub async fn update_fn(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let patch: FuncInput = read_json(&st, &req, body).await.v2()?;
    let f = st.store.update_fn(&segment(&req, "fn_id"), patch).await.v2()?;
    Ok(ok_json(st.annotate_fn(f)))
}

/// `DELETE /v2/fns/{fn_id}`: 204 (Fn's later behaviour; the baseline answered 200 with a message).
pub async fn delete_fn(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    st.store.remove_fn(&segment(&req, "fn_id")).await.v2()?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v2/triggers?app_id=&fn_id=&name=&cursor=&per_page=`
pub async fn list_triggers(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let q = query(&req);
    let app_id = param(&q, "app_id").ok_or(Error::TriggerMissingAppId).v2()?;
    let filter = TriggerFilter {
        app_id: app_id.to_string(),
        fn_id: param(&q, "fn_id").map(str::to_string),
        name: param(&q, "name").map(str::to_string),
        cursor: param(&q, "cursor").map(str::to_string),
        per_page: shared::cursor::per_page(param(&q, "per_page")),
    };
    let page = st.store.list_triggers(&filter).await.v2()?;
    let items = if page.items.is_empty() {
        Vec::new()
    } else {
        let app = st.store.get_app_by_id(app_id).await.v2()?;
        page.items.into_iter().map(|t| st.annotate_trigger(t, &app.name)).collect()
    };
    Ok(ok_json(items_body(items, page.next_cursor)))
}

async fn annotated(st: &AppState, t: Trigger) -> Reply {
    let app = st.store.get_app_by_id(&t.app_id).await.v2()?;
    Ok(ok_json(st.annotate_trigger(t, &app.name)))
}

/// `POST /v2/triggers`
pub async fn create_trigger(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let input: TriggerInput = read_json(&st, &req, body).await.v2()?;
    let t = Trigger::new(input).v2()?;
    let stored = st.store.insert_trigger(&t).await.v2()?;
    annotated(&st, stored).await
}

/// `GET /v2/triggers/{trigger_id}`
pub async fn get_trigger(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    let t = st.store.get_trigger(&segment(&req, "trigger_id")).await.v2()?;
    annotated(&st, t).await
}

/// `PUT /v2/triggers/{trigger_id}`: merge update.
pub async fn update_trigger(st: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Reply {
    let patch: TriggerInput = read_json(&st, &req, body).await.v2()?;
    let t = st.store.update_trigger(&segment(&req, "trigger_id"), patch).await.v2()?;
    annotated(&st, t).await
}

/// `DELETE /v2/triggers/{trigger_id}`: 204.
pub async fn delete_trigger(st: web::Data<AppState>, req: HttpRequest) -> Reply {
    st.store.remove_trigger(&segment(&req, "trigger_id")).await.v2()?;
    Ok(HttpResponse::NoContent().finish())
}
