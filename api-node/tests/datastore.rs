//! Datastore conformance: one suite, run against SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Every test gets a fresh database on its engine (see `api_node::testing`), so the tests run in parallel.

use std::sync::Arc;

use api_node::datastore::sql::{DbUrl, SqlStore, LATEST_VERSION};
use api_node::datastore::{
    AppFilter, AppStore, CallFilter, Datastore, FnFilter, FnStore, LogStore, RouteFilter, RouteStore, StoreError,
    TriggerFilter, TriggerStore,
};
use api_node::testing::{fresh_store, Backend};
use serde_json::{json, Value};
use shared::time::DateTime;
use shared::{App, AppInput, Call, CallStatus, Error, Func, FuncInput, Route, RouteInput, Trigger, TriggerInput};

// ---- helpers -----------------------------------------------------------------------------------

fn app(name: &str) -> App {
    App::new(serde_json::from_value(json!({ "name": name })).unwrap()).unwrap()
}

fn func(app_id: &str, name: &str) -> Func {
    Func::new(serde_json::from_value(json!({ "name": name, "app_id": app_id, "image": "fnproject/hello" })).unwrap())
        .unwrap()
}

fn route(app_id: &str, path: &str, image: &str) -> Route {
    Route::new(app_id, serde_json::from_value(json!({ "path": path, "image": image })).unwrap()).unwrap()
}

fn trigger(app_id: &str, fn_id: &str, name: &str, source: &str) -> Trigger {
    Trigger::new(
        serde_json::from_value(
            json!({ "name": name, "app_id": app_id, "fn_id": fn_id, "type": "http", "source": source }),
        )
        .unwrap(),
    )
    .unwrap()
}

fn call(app_id: &str, fn_id: &str, path: &str) -> Call {
    Call {
        fn_id: fn_id.into(),
        path: path.into(),
        started_at: Some(DateTime::now()),
        ..Call::new(shared::id::new_id(), app_id, CallStatus::Running)
    }
}

fn patch<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The domain error inside a store error (panics on a database failure, which is a test failure).
fn domain(e: StoreError) -> Error {
    match e {
        StoreError::Domain(d) => d,
        other => panic!("expected a domain error, got {other}"),
    }
}

fn ms() {
    std::thread::sleep(std::time::Duration::from_millis(3));
}

/// Walks every page of a list with `per_page` and returns the items in the order served.
async fn walk<T, F, Fut>(per_page: u32, mut list: F) -> Vec<T>
where
    F: FnMut(Option<String>, u32) -> Fut,
    Fut: std::future::Future<Output = api_node::datastore::StoreResult<api_node::datastore::Page<T>>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = list(cursor.clone(), per_page).await.unwrap();
        assert!(page.items.len() <= per_page as usize);
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("paging did not end");
}

// ---- the suite ---------------------------------------------------------------------------------

async fn apps_crud(s: SqlStore) {
    let a = s.insert_app(&app("alpha")).await.unwrap();
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap(), a);
    assert_eq!(s.get_app_by_name("alpha").await.unwrap(), a);
    assert_eq!(domain(s.get_app_by_name("nope").await.unwrap_err()), Error::AppNotFound);
    assert_eq!(domain(s.get_app_by_id("nope").await.unwrap_err()), Error::AppNotFound);

    let with_config = s
        .update_app(&a.id, patch(json!({"config": {"A": "1", "B": "2"}, "annotations": {"k": {"x": 1}}})))
        .await
        .unwrap();
    assert!(with_config.updated_at >= a.updated_at);
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap(), with_config);

    // An update that changes nothing leaves updated_at alone.
    ms();
    let same = s.update_app(&a.id, patch(json!({"config": {"A": "1"}}))).await.unwrap();
    assert_eq!(same.updated_at, with_config.updated_at);
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap().updated_at, with_config.updated_at);

    ms();
    let merged = s
        .update_app(&a.id, patch(json!({"config": {"A": ""}, "annotations": {"k": null}, "syslog_url": "tcp://h:514"})))
        .await
        .unwrap();
    assert!(merged.updated_at > with_config.updated_at);
    assert_eq!(merged.config.0.len(), 1);
    assert!(merged.annotations.is_empty());
    assert_eq!(merged.syslog_url.as_deref(), Some("tcp://h:514"));
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap(), merged);
    assert_eq!(merged.created_at, a.created_at);

    assert_eq!(domain(s.update_app(&a.id, patch(json!({"name": "beta"}))).await.unwrap_err()), Error::NameImmutable);
    assert_eq!(
        domain(s.update_app(&a.id, patch(json!({"syslog_url": "http://x"}))).await.unwrap_err()),
        Error::InvalidSyslogUrl("http://x".into())
    );
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap(), merged, "a rejected update changes nothing");
    assert_eq!(domain(s.update_app("nope", AppInput::default()).await.unwrap_err()), Error::AppNotFound);

    assert_eq!(domain(s.insert_app(&app("alpha")).await.unwrap_err()), Error::AppAlreadyExists);
    s.remove_app(&a.id).await.unwrap();
    assert_eq!(domain(s.get_app_by_id(&a.id).await.unwrap_err()), Error::AppNotFound);
    assert_eq!(domain(s.remove_app(&a.id).await.unwrap_err()), Error::AppNotFound);
    s.ping().await.unwrap();
}

async fn app_names_are_case_and_byte_exact(s: SqlStore) {
    s.insert_app(&app("Case")).await.unwrap();
    s.insert_app(&app("case")).await.unwrap();
    s.insert_app(&app("cäse")).await.unwrap();
    let names: Vec<String> = s
        .list_apps(&AppFilter { per_page: 10, ..Default::default() })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["Case", "case", "cäse"], "byte order on every engine");
}

async fn concurrent_creates_leave_one_row(s: SqlStore) {
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.insert_app(&app("racer")).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(domain(e), Error::AppAlreadyExists);
                conflicts += 1;
            }
        }
    }
    assert_eq!((ok, conflicts), (1, 19));
    let page =
        s.list_apps(&AppFilter { name: Some("racer".into()), per_page: 100, ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 1);

    // The same for fns within one app.
    let a = s.get_app_by_name("racer").await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, app_id) = (s.clone(), a.id.clone());
            tokio::spawn(async move { s.insert_fn(&func(&app_id, "f")).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().map_err(domain));
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| *e == Error::FnAlreadyExists));
}

async fn paging_returns_each_item_once_in_order(s: SqlStore) {
    let mut names: Vec<String> = (0..250).map(|i| format!("app-{:03}-{}", (i * 37) % 250, i)).collect();
    for n in &names {
        s.insert_app(&app(n)).await.unwrap();
    }
    names.sort();
    let a = s.get_app_by_name(&names[0]).await.unwrap();
    let (f1, f2) = (s.insert_fn(&func(&a.id, "one")).await.unwrap(), s.insert_fn(&func(&a.id, "two")).await.unwrap());
    let mut fn_names = vec!["one".to_string(), "two".to_string()];
    for i in 0..248 {
        let n = format!("fn-{:03}", (i * 91) % 248);
        s.insert_fn(&func(&a.id, &n)).await.unwrap();
        fn_names.push(n);
    }
    fn_names.sort();
    // Triggers share names across the two fns, so the order needs the ID as tie-break.
    let mut trigger_keys = Vec::new();
    for i in 0..250 {
        let f = if i % 2 == 0 { &f1 } else { &f2 };
        let t =
            s.insert_trigger(&trigger(&a.id, &f.id, &format!("t-{:03}", i / 2), &format!("/src/{i}"))).await.unwrap();
        trigger_keys.push((t.name.clone(), t.id.clone()));
    }
    trigger_keys.sort();
    let mut paths = Vec::new();
    for i in 0..250 {
        let p = format!("/r/{:03}/x", (i * 13) % 250);
        s.insert_route(&route(&a.id, &p, "img")).await.unwrap();
        paths.push(p);
    }
    paths.sort();
    let mut call_ids = Vec::new();
    for _ in 0..250 {
        let c = call(&a.id, &f1.id, "/p");
        s.insert_call(&c).await.unwrap();
        call_ids.push(c.id);
    }
    call_ids.reverse(); // newest first

    for per_page in [1, 7, 30, 100] {
        let got = walk(per_page, |cursor, per_page| {
            let s = &s;
            async move { s.list_apps(&AppFilter { cursor, per_page, ..Default::default() }).await }
        })
        .await;
        assert_eq!(got.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), names, "apps per_page={per_page}");

        let got = walk(per_page, |cursor, per_page| {
            let (s, app_id) = (&s, a.id.clone());
            async move { s.list_fns(&FnFilter { app_id, cursor, per_page, ..Default::default() }).await }
        })
        .await;
        assert_eq!(got.iter().map(|f| f.name.clone()).collect::<Vec<_>>(), fn_names, "fns per_page={per_page}");

        let got = walk(per_page, |cursor, per_page| {
            let (s, app_id) = (&s, a.id.clone());
            async move { s.list_triggers(&TriggerFilter { app_id, cursor, per_page, ..Default::default() }).await }
        })
        .await;
        assert_eq!(
            got.iter().map(|t| (t.name.clone(), t.id.clone())).collect::<Vec<_>>(),
            trigger_keys,
            "triggers per_page={per_page}"
        );

        let got = walk(per_page, |cursor, per_page| {
            let (s, app_id) = (&s, a.id.clone());
            async move { s.list_routes(&RouteFilter { app_id, cursor, per_page, ..Default::default() }).await }
        })
        .await;
        assert_eq!(got.iter().map(|r| r.path.clone()).collect::<Vec<_>>(), paths, "routes per_page={per_page}");

        let got =
            walk(per_page, |cursor, per_page| {
                let (s, app_id) = (&s, a.id.clone());
                async move {
                    s.list_calls(&CallFilter { app_id: Some(app_id), cursor, per_page, ..Default::default() }).await
                }
            })
            .await;
        assert_eq!(got.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), call_ids, "calls per_page={per_page}");
    }

    // A page that exactly fills the list has no next cursor (Fn pointed at an empty page there).
    let all = s.list_apps(&AppFilter { per_page: 250, ..Default::default() }).await;
    assert!(all.is_ok());
    let full = s
        .list_fns(&FnFilter {
            app_id: a.id.clone(),
            per_page: 100,
            cursor: Some(shared::cursor::encode(&fn_names[149])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(full.items.len(), 100);
    assert_eq!(full.next_cursor, None);

    let bad = s.list_apps(&AppFilter { cursor: Some("%%%".into()), per_page: 10, ..Default::default() }).await;
    assert_eq!(domain(bad.unwrap_err()).status(), 400);
}

async fn filters(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let b = s.insert_app(&app("b")).await.unwrap();
    let page = s.list_apps(&AppFilter { name: Some("b".into()), per_page: 30, ..Default::default() }).await.unwrap();
    assert_eq!(page.items, vec![b.clone()]);

    let fa = s.insert_fn(&func(&a.id, "fa")).await.unwrap();
    let fb = s.insert_fn(&func(&a.id, "fb")).await.unwrap();
    s.insert_fn(&func(&b.id, "fa")).await.unwrap();
    let page = s
        .list_fns(&FnFilter { app_id: a.id.clone(), name: Some("fb".into()), per_page: 30, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.items, vec![fb.clone()]);
    let page = s.list_fns(&FnFilter { app_id: a.id.clone(), per_page: 30, ..Default::default() }).await.unwrap();
    assert_eq!(page.items, vec![fa.clone(), fb.clone()]);

    let t1 = s.insert_trigger(&trigger(&a.id, &fa.id, "t", "/1")).await.unwrap();
    let t2 = s.insert_trigger(&trigger(&a.id, &fb.id, "t", "/2")).await.unwrap();
    let t3 = s.insert_trigger(&trigger(&a.id, &fb.id, "u", "/3")).await.unwrap();
    let by_fn = s
        .list_triggers(&TriggerFilter {
            app_id: a.id.clone(),
            fn_id: Some(fb.id.clone()),
            per_page: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_fn.items, vec![t2.clone(), t3.clone()]);
    let by_name = s
        .list_triggers(&TriggerFilter {
            app_id: a.id.clone(),
            name: Some("t".into()),
            per_page: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut expected = vec![t1.clone(), t2.clone()];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(by_name.items, expected);

    s.insert_route(&route(&a.id, "/x", "img1")).await.unwrap();
    let r2 = s.insert_route(&route(&a.id, "/y", "img2")).await.unwrap();
    let page = s
        .list_routes(&RouteFilter {
            app_id: a.id.clone(),
            image: Some("img2".into()),
            per_page: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![r2]);

    let mut old = call(&a.id, &fa.id, "/x");
    old.created_at = DateTime::parse("2020-01-01T00:00:00Z").unwrap();
    let mid = {
        let mut c = call(&a.id, &fb.id, "/y");
        c.created_at = DateTime::parse("2021-01-01T00:00:00Z").unwrap();
        c
    };
    let new = call(&b.id, "", "/x");
    for c in [&old, &mid, &new] {
        s.insert_call(c).await.unwrap();
    }
    let ids = |p: api_node::datastore::Page<Call>| p.items.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let f =
        |app: Option<&str>, fn_id: Option<&str>, path: Option<&str>, from: Option<&str>, to: Option<&str>| CallFilter {
            app_id: app.map(Into::into),
            fn_id: fn_id.map(Into::into),
            path: path.map(Into::into),
            from_time: from.map(|t| DateTime::parse(t).unwrap()),
            to_time: to.map(|t| DateTime::parse(t).unwrap()),
            dead_letter: None,
            cursor: None,
            per_page: 30,
        };
    assert_eq!(
        ids(s.list_calls(&f(Some(&a.id), None, None, None, None)).await.unwrap()),
        vec![mid.id.clone(), old.id.clone()]
    );
    assert_eq!(ids(s.list_calls(&f(None, Some(&fb.id), None, None, None)).await.unwrap()), vec![mid.id.clone()]);
    assert_eq!(
        ids(s.list_calls(&f(None, None, Some("/x"), None, None)).await.unwrap()),
        vec![new.id.clone(), old.id.clone()]
    );
    assert_eq!(
        ids(s.list_calls(&f(Some(&a.id), None, None, Some("2020-06-01T00:00:00Z"), None)).await.unwrap()),
        vec![mid.id.clone()]
    );
    assert_eq!(
        ids(s.list_calls(&f(None, None, None, None, Some("2020-06-01T00:00:00Z"))).await.unwrap()),
        vec![old.id.clone()]
    );
}

async fn routes(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let r = s.insert_route(&route(&a.id, "/a/b/c", "img")).await.unwrap();
    assert_eq!(s.get_route(&a.id, "/a/b/c").await.unwrap(), r);
    assert_eq!(domain(s.insert_route(&route(&a.id, "/a/b/c", "other")).await.unwrap_err()), Error::RouteAlreadyExists);
    assert_eq!(domain(s.insert_route(&route("missing", "/x", "img")).await.unwrap_err()), Error::AppNotFound);
    ms();
    let u = s
        .update_route(&a.id, "/a/b/c", patch(json!({"memory": 256, "headers": {"X-A": ["1"]}, "config": {"K": "v"}})))
        .await
        .unwrap();
    assert!(u.updated_at > r.updated_at);
    assert_eq!(s.get_route(&a.id, "/a/b/c").await.unwrap(), u);
    let same = s.update_route(&a.id, "/a/b/c", patch(json!({"memory": 256}))).await.unwrap();
    assert_eq!(same.updated_at, u.updated_at);
    assert_eq!(
        domain(s.update_route(&a.id, "/a/b/c", patch(json!({"path": "/z"}))).await.unwrap_err()),
        Error::RoutePathImmutable
    );
    assert_eq!(
        domain(s.update_route(&a.id, "/a/b/c", patch(json!({"timeout": 1000}))).await.unwrap_err()),
        Error::RouteInvalidTimeout
    );
    assert_eq!(domain(s.update_route(&a.id, "/nope", RouteInput::default()).await.unwrap_err()), Error::RouteNotFound);
    assert_eq!(s.get_route(&a.id, "/a/b/c").await.unwrap(), u);
    s.remove_route(&a.id, "/a/b/c").await.unwrap();
    assert_eq!(domain(s.get_route(&a.id, "/a/b/c").await.unwrap_err()), Error::RouteNotFound);
    assert_eq!(domain(s.remove_route(&a.id, "/a/b/c").await.unwrap_err()), Error::RouteNotFound);
}

async fn fns(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let b = s.insert_app(&app("b")).await.unwrap();
    let f = s.insert_fn(&func(&a.id, "f")).await.unwrap();
    assert_eq!(s.get_fn(&f.id).await.unwrap(), f);
    assert_eq!(domain(s.insert_fn(&func(&a.id, "f")).await.unwrap_err()), Error::FnAlreadyExists);
    s.insert_fn(&func(&b.id, "f")).await.unwrap();
    assert_eq!(domain(s.insert_fn(&func("missing", "f")).await.unwrap_err()), Error::AppNotFound);
    ms();
    let u = s.update_fn(&f.id, patch(json!({"image": "new", "timeout": 60, "annotations": {"a": "b"}}))).await.unwrap();
    assert!(u.updated_at > f.updated_at);
    assert_eq!(s.get_fn(&f.id).await.unwrap(), u);
    let same = s.update_fn(&f.id, patch(json!({"image": "new"}))).await.unwrap();
    assert_eq!(same.updated_at, u.updated_at);
    assert_eq!(domain(s.update_fn(&f.id, patch(json!({"memory": 9000}))).await.unwrap_err()), Error::InvalidMemory);
    assert_eq!(domain(s.update_fn("nope", FuncInput::default()).await.unwrap_err()), Error::FnNotFound);
    s.remove_fn(&f.id).await.unwrap();
    assert_eq!(domain(s.get_fn(&f.id).await.unwrap_err()), Error::FnNotFound);
    assert_eq!(domain(s.remove_fn(&f.id).await.unwrap_err()), Error::FnNotFound);
}

async fn triggers(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let b = s.insert_app(&app("b")).await.unwrap();
    let f = s.insert_fn(&func(&a.id, "f")).await.unwrap();
    let g = s.insert_fn(&func(&a.id, "g")).await.unwrap();
    let other = s.insert_fn(&func(&b.id, "f")).await.unwrap();
    let t = s.insert_trigger(&trigger(&a.id, &f.id, "t", "/hook")).await.unwrap();
    assert_eq!(s.get_trigger(&t.id).await.unwrap(), t);
    assert_eq!(s.get_trigger_by_source(&a.id, "http", "/hook").await.unwrap(), t);
    assert_eq!(domain(s.get_trigger_by_source(&b.id, "http", "/hook").await.unwrap_err()), Error::TriggerNotFound);

    assert_eq!(
        domain(s.insert_trigger(&trigger(&a.id, &f.id, "t", "/other")).await.unwrap_err()),
        Error::TriggerAlreadyExists
    );
    assert_eq!(
        domain(s.insert_trigger(&trigger(&a.id, &g.id, "u", "/hook")).await.unwrap_err()),
        Error::TriggerSourceExists
    );
    assert_eq!(domain(s.insert_trigger(&trigger("missing", &f.id, "x", "/x")).await.unwrap_err()), Error::AppNotFound);
    assert_eq!(domain(s.insert_trigger(&trigger(&a.id, "missing", "x", "/x")).await.unwrap_err()), Error::FnNotFound);
    assert_eq!(
        domain(s.insert_trigger(&trigger(&a.id, &other.id, "x", "/x")).await.unwrap_err()),
        Error::TriggerFnNotInApp
    );
    // Same name on another fn of the app is fine; same source in another app too.
    s.insert_trigger(&trigger(&a.id, &g.id, "t", "/g")).await.unwrap();
    s.insert_trigger(&trigger(&b.id, &other.id, "t", "/hook")).await.unwrap();

    ms();
    let u = s.update_trigger(&t.id, patch(json!({"source": "/moved", "annotations": {"k": 1}}))).await.unwrap();
    assert!(u.updated_at > t.updated_at);
    assert_eq!(s.get_trigger_by_source(&a.id, "http", "/moved").await.unwrap(), u);
    assert_eq!(
        domain(s.update_trigger(&t.id, patch(json!({"source": "/g"}))).await.unwrap_err()),
        Error::TriggerSourceExists
    );
    assert_eq!(
        domain(s.update_trigger(&t.id, patch(json!({"fn_id": g.id, "name": "t"}))).await.unwrap_err()),
        Error::TriggerAlreadyExists
    );
    assert_eq!(
        domain(s.update_trigger(&t.id, patch(json!({"fn_id": other.id}))).await.unwrap_err()),
        Error::TriggerFnNotInApp
    );
    assert_eq!(
        domain(s.update_trigger(&t.id, patch(json!({"fn_id": "missing"}))).await.unwrap_err()),
        Error::FnNotFound
    );
    assert_eq!(
        domain(s.update_trigger(&t.id, patch(json!({"app_id": b.id}))).await.unwrap_err()),
        Error::TriggerAppImmutable
    );
    assert_eq!(s.get_trigger(&t.id).await.unwrap(), u, "rejected updates change nothing");
    let moved = s.update_trigger(&t.id, patch(json!({"fn_id": g.id, "name": "t2"}))).await.unwrap();
    assert_eq!(moved.fn_id, g.id);
    assert_eq!(domain(s.update_trigger("nope", TriggerInput::default()).await.unwrap_err()), Error::TriggerNotFound);
    s.remove_trigger(&t.id).await.unwrap();
    assert_eq!(domain(s.get_trigger(&t.id).await.unwrap_err()), Error::TriggerNotFound);
    assert_eq!(domain(s.remove_trigger(&t.id).await.unwrap_err()), Error::TriggerNotFound);
}

async fn cascades(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let keep = s.insert_app(&app("keep")).await.unwrap();
    let f = s.insert_fn(&func(&a.id, "f")).await.unwrap();
    let g = s.insert_fn(&func(&a.id, "g")).await.unwrap();
    let tf = s.insert_trigger(&trigger(&a.id, &f.id, "t", "/f")).await.unwrap();
    let tg = s.insert_trigger(&trigger(&a.id, &g.id, "t", "/g")).await.unwrap();
    s.insert_route(&route(&a.id, "/r", "img")).await.unwrap();
    let c = call(&a.id, &f.id, "/r");
    s.insert_call(&c).await.unwrap();
    s.insert_log(&a.id, &c.id, "log line").await.unwrap();
    let kf = s.insert_fn(&func(&keep.id, "f")).await.unwrap();
    let kc = call(&keep.id, &kf.id, "");
    s.insert_call(&kc).await.unwrap();
    s.insert_log(&keep.id, &kc.id, "kept").await.unwrap();

    // Deleting a fn removes its triggers only.
    s.remove_fn(&f.id).await.unwrap();
    assert_eq!(domain(s.get_trigger(&tf.id).await.unwrap_err()), Error::TriggerNotFound);
    assert_eq!(s.get_trigger(&tg.id).await.unwrap(), tg);

    // Deleting an app removes everything in it, and nothing else.
    s.remove_app(&a.id).await.unwrap();
    assert_eq!(domain(s.get_fn(&g.id).await.unwrap_err()), Error::FnNotFound);
    assert_eq!(domain(s.get_trigger(&tg.id).await.unwrap_err()), Error::TriggerNotFound);
    assert_eq!(domain(s.get_route(&a.id, "/r").await.unwrap_err()), Error::RouteNotFound);
    assert_eq!(domain(s.get_call(&c.id).await.unwrap_err()), Error::CallNotFound);
    assert_eq!(domain(s.get_log(&c.id).await.unwrap_err()), Error::CallLogNotFound);
    assert_eq!(s.get_fn(&kf.id).await.unwrap(), kf);
    assert_eq!(s.get_call(&kc.id).await.unwrap().id, kc.id);
    assert_eq!(s.get_log(&kc.id).await.unwrap().log, "kept");
}

/// A log holding NUL bytes and what was invalid UTF-8 (replaced by U+FFFD at capture) is stored and
/// served whole on every engine.
async fn logs_with_nul_and_replaced_bytes(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let c = call(&a.id, "F", "/p");
    let raw: &[u8] = b"before\0after \xff\xfe end\n\0";
    let log = String::from_utf8_lossy(raw).into_owned();
    s.insert_log(&a.id, &c.id, &log).await.unwrap();
    assert_eq!(s.get_log(&c.id).await.unwrap().log, log);
    let big = "\0ü".repeat(1 << 18);
    s.insert_log(&a.id, &c.id, &big).await.unwrap();
    assert_eq!(s.get_log(&c.id).await.unwrap().log, big);
}

async fn calls_and_logs(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let mut c = call(&a.id, "F", "/p");
    c.status = CallStatus::Queued;
    c.started_at = None;
    s.insert_call(&c).await.unwrap();
    assert_eq!(s.get_call(&c.id).await.unwrap(), c);
    // The record moves through its statuses and stays one record.
    c.status = CallStatus::Running;
    c.started_at = Some(DateTime::now());
    s.insert_call(&c).await.unwrap();
    c.status = CallStatus::Error;
    c.completed_at = Some(DateTime::now());
    c.error = "container exit code 2".into();
    c.stats = vec![json!({"timestamp": "2020-01-01T00:00:00.000Z", "metrics": {"mem_usage": 1}})];
    s.insert_call(&c).await.unwrap();
    assert_eq!(s.get_call(&c.id).await.unwrap(), c);
    let page =
        s.list_calls(&CallFilter { app_id: Some(a.id.clone()), per_page: 30, ..Default::default() }).await.unwrap();
    assert_eq!(page.items, vec![c.clone()]);
    assert_eq!(domain(s.get_call("nope").await.unwrap_err()), Error::CallNotFound);

    // The queue side's attempts and dead-letter flag survive a runner's later report.
    c.attempts = vec![shared::CallAttempt {
        attempt: 1,
        status: CallStatus::Error,
        started_at: c.started_at,
        completed_at: c.completed_at,
        error: "container exit code 2".into(),
    }];
    c.dead_letter = true;
    s.record_attempt(&c).await.unwrap();
    let mut report = c.clone();
    report.attempts.clear();
    report.dead_letter = false;
    s.insert_call(&report).await.unwrap();
    assert_eq!(s.get_call(&c.id).await.unwrap(), c);
    let dead = s.list_calls(&CallFilter { dead_letter: Some(true), per_page: 30, ..Default::default() }).await.unwrap();
    assert_eq!(dead.items, vec![c.clone()]);
    let alive =
        s.list_calls(&CallFilter { dead_letter: Some(false), per_page: 30, ..Default::default() }).await.unwrap();
    assert!(alive.items.is_empty());
    let mut missing = c.clone();
    missing.id = "nope".into();
    assert_eq!(domain(s.record_attempt(&missing).await.unwrap_err()), Error::CallNotFound);

    assert_eq!(domain(s.get_log(&c.id).await.unwrap_err()), Error::CallLogNotFound);
    let big = "x".repeat(1 << 20);
    s.insert_log(&a.id, &c.id, &big).await.unwrap();
    assert_eq!(s.get_log(&c.id).await.unwrap().log.len(), 1 << 20);
    s.insert_log(&a.id, &c.id, "ünïcode\nline two").await.unwrap();
    assert_eq!(s.get_log(&c.id).await.unwrap().log, "ünïcode\nline two");
    assert_eq!(domain(s.insert_log(&a.id, "", "x").await.unwrap_err()), Error::MissingCallId);
    assert_eq!(domain(s.insert_log("", &c.id, "x").await.unwrap_err()), Error::MissingAppId);
    // A late `queued` record never overwrites what a runner reported first.
    let queued_late = Call { status: CallStatus::Queued, ..c.clone() };
    assert!(!s.insert_call_if_absent(&queued_late).await.unwrap());
    assert_eq!(s.get_call(&c.id).await.unwrap(), c);
    let fresh = Call { status: CallStatus::Queued, ..call(&a.id, "F", "/q") };
    assert!(s.insert_call_if_absent(&fresh).await.unwrap());
    assert_eq!(s.get_call(&fresh.id).await.unwrap(), fresh);
}

async fn lost_calls_are_ended(s: SqlStore) {
    let a = s.insert_app(&app("a")).await.unwrap();
    let old = DateTime::parse("2020-01-01T00:00:00Z").unwrap();
    let lost = Call { started_at: Some(old), ..call(&a.id, "F", "/p") };
    let recent = call(&a.id, "F", "/p");
    let finished =
        Call { status: CallStatus::Success, started_at: Some(old), completed_at: Some(old), ..call(&a.id, "F", "/p") };
    for c in [&lost, &recent, &finished] {
        s.insert_call(c).await.unwrap();
    }
    let cutoff = DateTime::parse("2021-01-01T00:00:00Z").unwrap();
    assert_eq!(s.fail_lost_calls(cutoff, "lost").await.unwrap(), 1);
    let ended = s.get_call(&lost.id).await.unwrap();
    assert_eq!((ended.status, ended.error.as_str()), (CallStatus::Error, "lost"));
    assert!(ended.completed_at.is_some());
    assert_eq!(s.get_call(&recent.id).await.unwrap(), recent);
    assert_eq!(s.get_call(&finished.id).await.unwrap(), finished);
    assert_eq!(s.fail_lost_calls(cutoff, "lost").await.unwrap(), 0, "idempotent");
}

async fn large_values_round_trip(s: SqlStore) {
    let big_config: serde_json::Map<String, Value> =
        (0..200).map(|i| (format!("KEY_{i}"), json!("v".repeat(5000)))).collect();
    let a = App::new(patch(json!({"name": "big", "config": big_config}))).unwrap();
    s.insert_app(&a).await.unwrap();
    assert_eq!(s.get_app_by_id(&a.id).await.unwrap(), a);
    let long_path = format!("/{}", "p".repeat(511));
    let r = s.insert_route(&route(&a.id, &long_path, "img")).await.unwrap();
    assert_eq!(s.get_route(&a.id, &long_path).await.unwrap(), r);
}

async fn migrations_are_idempotent_and_safe_concurrently(s: SqlStore, url: DbUrl) {
    s.insert_app(&app("survivor")).await.unwrap();
    // Two more processes' worth of start-up against the same database at once.
    let (x, y) = tokio::join!(SqlStore::connect(&url, 0), SqlStore::connect(&url, 0));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.get_app_by_name("survivor").await.unwrap().name, "survivor");
    y.insert_app(&app("after")).await.unwrap();
    assert_eq!(schema_versions(&x).await, (1..=LATEST_VERSION).collect::<Vec<_>>());
}

async fn fresh_databases_migrate_concurrently(backend: Backend) {
    let url: DbUrl = api_node::testing::fresh_db_url(backend).await.parse().unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SqlStore::connect(&url, 0).await })
        })
        .collect();
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().expect("every concurrent start-up succeeds"));
    }
    assert_eq!(schema_versions(&stores[0]).await, (1..=LATEST_VERSION).collect::<Vec<_>>());
    for (i, s) in stores.iter().enumerate() {
        s.insert_app(&app(&format!("a{i}"))).await.unwrap();
    }
}

async fn schema_versions(s: &SqlStore) -> Vec<i64> {
    s.schema_versions().await.unwrap()
}

// ---- per-backend instantiation -------------------------------------------------------------------

macro_rules! suite {
    ($backend:ident, $variant:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn apps_crud() {
                super::apps_crud(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn app_names_are_case_and_byte_exact() {
                super::app_names_are_case_and_byte_exact(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_creates_leave_one_row() {
                super::concurrent_creates_leave_one_row(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn paging_returns_each_item_once_in_order() {
                super::paging_returns_each_item_once_in_order(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn filters() {
                super::filters(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn routes() {
                super::routes(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fns() {
                super::fns(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn triggers() {
                super::triggers(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cascades() {
                super::cascades(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn calls_and_logs() {
                super::calls_and_logs(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn logs_with_nul_and_replaced_bytes() {
                super::logs_with_nul_and_replaced_bytes(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lost_calls_are_ended() {
                super::lost_calls_are_ended(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_values_round_trip() {
                super::large_values_round_trip(fresh_store($variant).await.0).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn migrations_are_idempotent_and_safe_concurrently() {
                let (s, url) = fresh_store($variant).await;
                super::migrations_are_idempotent_and_safe_concurrently(s, url).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fresh_databases_migrate_concurrently() {
                super::fresh_databases_migrate_concurrently($variant).await
            }
        }
    };
}

suite!(sqlite, Backend::Sqlite);
suite!(postgres, Backend::Postgres);
suite!(mysql, Backend::Mysql);

// ---- configuration failures ----------------------------------------------------------------------

#[tokio::test]
async fn unreachable_database_is_retried_then_reported_without_password() {
    let url: DbUrl = "postgres://fn:secret@127.0.0.1:1/fn".parse().unwrap();
    let started = std::time::Instant::now();
    let err = SqlStore::connect(&url, 2).await.err().expect("connecting to a closed port fails");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "two retries one second apart");
    assert!(matches!(err, StoreError::Database(_)));
    assert_eq!(url.redacted(), "postgres://fn:***@127.0.0.1:1/fn");
}

#[test]
fn unknown_scheme_names_the_supported_ones() {
    let err = "mongodb://x/y".parse::<DbUrl>().unwrap_err().to_string();
    for scheme in ["sqlite3://", "postgres://", "mysql://"] {
        assert!(err.contains(scheme), "{err}");
    }
}

// ---- call listeners, fired by the listener wrapper as calls are recorded ---------------------------

struct Audit {
    events: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl api_node::listeners::CallListener for Audit {
    async fn before_call(&self, call: &Call) -> Result<(), Error> {
        if call.path == "/forbidden" {
            return Err(Error::BadRequest("path blocked by policy".into()));
        }
        self.events.lock().unwrap().push(format!("before {}", call.status.as_str()));
        Ok(())
    }
    async fn after_call(&self, call: &Call) -> Result<(), Error> {
        self.events.lock().unwrap().push(format!("after {}", call.status.as_str()));
        Ok(())
    }
}

#[tokio::test]
async fn call_listeners_fire_as_calls_are_recorded() {
    let (store, _) = fresh_store(Backend::Sqlite).await;
    let audit = Arc::new(Audit { events: Default::default() });
    let listeners = api_node::listeners::Listeners { calls: vec![audit.clone()], ..Default::default() };
    let s = api_node::listeners::ListeningStore::wrap(Arc::new(store), listeners);
    let a = s.insert_app(&app("a")).await.unwrap();
    let mut c = call(&a.id, "F", "/p");
    s.insert_call(&c).await.unwrap();
    c.status = CallStatus::Success;
    c.completed_at = Some(DateTime::now());
    s.insert_call(&c).await.unwrap();
    assert_eq!(*audit.events.lock().unwrap(), ["before running", "after success"]);
    let blocked = call(&a.id, "F", "/forbidden");
    assert_eq!(domain(s.insert_call(&blocked).await.unwrap_err()), Error::BadRequest("path blocked by policy".into()));
    assert_eq!(
        domain(s.get_call(&blocked.id).await.unwrap_err()),
        Error::CallNotFound,
        "a vetoed record is not stored"
    );
}
