//! HTTP-level tests of every endpoint and error of the management API, against a real server on a random
//! loopback port over a fresh database, once per backend (SQLite, PostgreSQL, MySQL/MariaDB).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use api_node::datastore::{AppStore, FnStore, LogStore};
use api_node::http::{Extensions, FN_INVOKE_ENDPOINT, TRIGGER_HTTP_ENDPOINT};
use api_node::listeners::{AppListener, FnListener, Listeners, RouteListener, TriggerListener};
use api_node::testing::Backend;
use async_trait::async_trait;
use common::{node, node_with, Node};
use serde_json::{json, Value};
use shared::time::DateTime;
use shared::{App, Call, CallStatus, Error};

per_backend!(
    misc_endpoints,
    unknown_paths_and_methods,
    v2_apps,
    v2_apps_pagination,
    v2_fns,
    v2_triggers,
    v1_apps,
    v1_routes,
    go_client_v1_routes,
    go_client_v2_objects,
    v1_calls_and_logs,
    v2_calls_and_logs,
    body_errors,
    readiness_follows_the_database,
    listeners_fire_and_veto,
    extensions_add_routes_and_filters,
);

async fn create_app(n: &Node, name: &str) -> Value {
    let r = n.req("POST", "/v2/apps", Some(json!({ "name": name }))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

async fn create_fn(n: &Node, app_id: &str, name: &str) -> Value {
    let r = n.req("POST", "/v2/fns", Some(json!({ "name": name, "app_id": app_id, "image": "fnproject/hello" }))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

// ---- misc -----------------------------------------------------------------------------------------

async fn misc_endpoints(b: Backend) {
    let n = node(b).await;
    let r = n.get("/").await;
    assert_eq!((r.status, r.json()), (200, json!({"hello": "world!", "goto": "https://github.com/fnproject/fn"})));
    let r = n.get("/version").await;
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(n.get("/health/live").await.status, 200);
    assert_eq!(n.get("/health/ready").await.status, 200);
    let r = n.get("/v2/openapi.json").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"]["/v2/apps"]["get"].is_object());
    n.shutdown().await;
}

async fn unknown_paths_and_methods(b: Backend) {
    let n = node(b).await;
    let r = n.get("/nope/x").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": {"message": "Path not found: /nope/x"}})));
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    let r = n.get("/v2/nope").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Path not found: /v2/nope"})));
    let r = n.req("PATCH", "/v2/apps", None).await;
    assert_eq!((r.status, r.json()), (405, json!({"message": "Method not allowed: PATCH /v2/apps"})));
    let r = n.req("PUT", "/v1/apps", None).await;
    assert_eq!((r.status, r.json()), (405, json!({"error": {"message": "Method not allowed: PUT /v1/apps"}})));
    let r = n.req("POST", "/v2/fns/x/calls", None).await;
    assert_eq!(r.status, 405);
    let r = n.get("/r/app/route").await;
    assert_eq!(
        (r.status, r.message().as_str()),
        (404, "Path not found: /r/app/route"),
        "full node, invoke not mounted"
    );
    n.shutdown().await;
    let n =
        node_with(b, |s| s.node_type = api_node::config::NodeType::Api, Listeners::default(), Extensions::default())
            .await;
    let r = n.req("POST", "/r/app/route", Some(json!({}))).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"error": {"message": "Invoking routes /r/ is not supported on nodes configured as type API"}}))
    );
    n.shutdown().await;
}

// ---- v2 apps ------------------------------------------------------------------------------------

async fn v2_apps(b: Backend) {
    let n = node(b).await;
    let app = create_app(&n, "a1").await;
    let id = app["id"].as_str().unwrap().to_string();
    assert_eq!(app["name"], "a1");
    assert!(app["created_at"].is_string());

    let r = n.req("POST", "/v2/apps", Some(json!({"name": "a1"}))).await;
    assert_eq!((r.status, r.json()), (409, json!({"message": "App already exists"})));
    let r = n.req("POST", "/v2/apps", Some(json!({"name": "a2", "id": "x"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "App ID cannot be supplied on create"));
    let r = n.req("POST", "/v2/apps", Some(json!({"name": "a b"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid app name"));
    let r = n.req("POST", "/v2/apps", Some(json!({}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing Name"));
    let r = n.req("POST", "/v2/apps", Some(json!({"name": "a3", "syslog_url": "http://x"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "invalid syslog url: \"http://x\""));

    let r = n.get(&format!("/v2/apps/{id}")).await;
    assert_eq!((r.status, r.json()), (200, app.clone()));
    let r = n.get("/v2/apps/nope").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "App not found"})));

    let r =
        n.req("PUT", &format!("/v2/apps/{id}"), Some(json!({"config": {"A": "1"}, "annotations": {"k": "v"}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.json()["config"].clone(), r.json()["annotations"].clone()), (json!({"A": "1"}), json!({"k": "v"})));
    let r = n.req("PUT", &format!("/v2/apps/{id}"), Some(json!({"config": {"B": "2"}}))).await;
    assert_eq!(r.json()["config"], json!({"A": "1", "B": "2"}), "merge keeps A");
    let r = n.req("PUT", &format!("/v2/apps/{id}"), Some(json!({"id": "other"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "App ID in path does not match ID in body"));
    let r = n.req("PUT", &format!("/v2/apps/{id}"), Some(json!({"name": "renamed"}))).await;
    assert_eq!((r.status, r.message().as_str()), (409, "Could not update - name is immutable"));
    let r = n.req("PUT", "/v2/apps/nope", Some(json!({"config": {"A": "1"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (404, "App not found"));
    let r = n.req("PUT", &format!("/v2/apps/{id}"), Some(json!({"annotations": {"bad key": 1}}))).await;
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("Invalid annotation key"));

    let r = n.req("DELETE", &format!("/v2/apps/{id}"), None).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let r = n.req("DELETE", &format!("/v2/apps/{id}"), None).await;
    assert_eq!((r.status, r.message().as_str()), (404, "App not found"));
    n.shutdown().await;
}

async fn v2_apps_pagination(b: Backend) {
    let n = node(b).await;
    for name in ["e", "c", "a", "d", "b"] {
        create_app(&n, name).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v2/apps?per_page=2&cursor={c}"),
            None => "/v2/apps?per_page=2".to_string(),
        };
        let j = n.get(&path).await.json();
        let items = j["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|a| a["name"].as_str().unwrap().to_string()));
        match j.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let j = n.get("/v2/apps?name=c").await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 1);
    assert_eq!(j["items"][0]["name"], "c");
    assert!(j.get("next_cursor").is_none());
    // per_page: bad values mean the default, huge ones are capped.
    assert_eq!(n.get("/v2/apps?per_page=x").await.json()["items"].as_array().unwrap().len(), 5);
    assert_eq!(n.get("/v2/apps?per_page=100000").await.json()["items"].as_array().unwrap().len(), 5);
    let r = n.get("/v2/apps?cursor=!!!").await;
    assert_eq!((r.status, r.message().as_str()), (400, "invalid cursor"));
    n.shutdown().await;
}

// ---- v2 fns -------------------------------------------------------------------------------------

async fn v2_fns(b: Backend) {
    let n = node(b).await;
    let app_id = create_app(&n, "app").await["id"].as_str().unwrap().to_string();
    let r = n.get("/v2/fns").await;
    assert_eq!((r.status, r.json()), (400, json!({"message": "Missing AppID on Fn"})));

    let f = create_fn(&n, &app_id, "f1").await;
    let fn_id = f["id"].as_str().unwrap().to_string();
    assert_eq!(
        (f["memory"].clone(), f["timeout"].clone(), f["idle_timeout"].clone()),
        (json!(128), json!(30), json!(30))
    );
    let invoke = format!("http://localhost:8080/invoke/{fn_id}");
    assert_eq!(f["annotations"][FN_INVOKE_ENDPOINT], invoke);
    // The annotation is computed on read, never stored.
    let stored = n.store.get_fn(&fn_id).await.unwrap();
    assert!(stored.annotations.get(FN_INVOKE_ENDPOINT).is_none());

    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f1", "app_id": app_id, "image": "i"}))).await;
    assert_eq!((r.status, r.message().as_str()), (409, "Fn with specified name already exists"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f2", "app_id": "nope", "image": "i"}))).await;
    assert_eq!((r.status, r.message().as_str()), (404, "App not found"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f2", "image": "i"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing AppID on Fn"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f2", "app_id": app_id}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing image on Fn"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f2", "app_id": app_id, "image": "Evil Image --x"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().starts_with("Invalid image"), "{}", r.text);
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f2", "app_id": app_id, "image": "i", "timeout": 301}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "timeout value is out of range, must be between 0 and 300"));
    let r = n.req("POST", "/v2/fns", Some(json!({"id": "x", "name": "f2", "app_id": app_id, "image": "i"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "ID cannot be provided for Fn creation"));

    let r = n.get(&format!("/v2/fns/{fn_id}")).await;
    assert_eq!((r.status, r.json()), (200, f.clone()));
    let r = n.get("/v2/fns/nope").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Fn not found"})));

    let r = n
        .req("PUT", &format!("/v2/fns/{fn_id}"), Some(json!({"image": "img2", "memory": 256, "config": {"K": "v"}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let u = r.json();
    assert_eq!((u["image"].clone(), u["memory"].clone(), u["timeout"].clone()), (json!("img2"), json!(256), json!(30)));
    assert_eq!(u["annotations"][FN_INVOKE_ENDPOINT], invoke);
    let r = n.req("PUT", &format!("/v2/fns/{fn_id}"), Some(json!({"image": "img2@sha256:short"}))).await;
    assert_eq!(r.status, 400, "an update to an invalid image is refused: {}", r.text);
    let r = n.req("PUT", &format!("/v2/fns/{fn_id}"), Some(json!({"id": "other"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Fn ID in path does not match that in body"));
    let r = n.req("PUT", "/v2/fns/nope", Some(json!({"image": "x"}))).await;
    assert_eq!((r.status, r.message().as_str()), (404, "Fn not found"));
    let r = n.req("PUT", &format!("/v2/fns/{fn_id}"), Some(json!({"memory": 9000}))).await;
    assert_eq!(
        (r.status, r.message().as_str()),
        (400, "memory value is out of range. It should be between 0 and 8192")
    );

    create_fn(&n, &app_id, "f2").await;
    let j = n.get(&format!("/v2/fns?app_id={app_id}")).await.json();
    let names: Vec<&str> = j["items"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["f1", "f2"]);
    assert!(j["items"][1]["annotations"][FN_INVOKE_ENDPOINT].is_string());
    let j = n.get(&format!("/v2/fns?app_id={app_id}&name=f2")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 1, "the name filter applies (Fn ignored it)");
    let j = n.get(&format!("/v2/fns?app_id={app_id}&per_page=1")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 1);
    let c = j["next_cursor"].as_str().unwrap();
    let j = n.get(&format!("/v2/fns?app_id={app_id}&per_page=1&cursor={c}")).await.json();
    assert_eq!(j["items"][0]["name"], "f2");

    let r = n.req("DELETE", &format!("/v2/fns/{fn_id}"), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(n.get(&format!("/v2/fns/{fn_id}")).await.status, 404);
    assert_eq!(n.req("DELETE", &format!("/v2/fns/{fn_id}"), None).await.status, 404);
    n.shutdown().await;
}

// ---- v2 triggers --------------------------------------------------------------------------------

async fn v2_triggers(b: Backend) {
    let n =
        node_with(b, |s| s.public_url = "https://fn.example.com".into(), Listeners::default(), Extensions::default())
            .await;
    let app_id = create_app(&n, "tapp").await["id"].as_str().unwrap().to_string();
    let other_app = create_app(&n, "other").await["id"].as_str().unwrap().to_string();
    let fn_id = create_fn(&n, &app_id, "f").await["id"].as_str().unwrap().to_string();
    let other_fn = create_fn(&n, &other_app, "g").await["id"].as_str().unwrap().to_string();
    let r = n.get("/v2/triggers").await;
    assert_eq!((r.status, r.json()), (400, json!({"message": "Missing App ID on Trigger"})));

    let body = json!({"name": "t1", "app_id": app_id, "fn_id": fn_id, "type": "http", "source": "/hook/a"});
    let r = n.req("POST", "/v2/triggers", Some(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json();
    let tid = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["annotations"][TRIGGER_HTTP_ENDPOINT], "https://fn.example.com/t/tapp/hook/a");
    let r = n.get(&format!("/v2/fns/{fn_id}")).await;
    assert_eq!(r.json()["annotations"][FN_INVOKE_ENDPOINT], format!("https://fn.example.com/invoke/{fn_id}"));

    let r = n.req("POST", "/v2/triggers", Some(body.clone())).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let mut bad = body.clone();
    bad["name"] = json!("t2");
    bad["fn_id"] = json!(other_fn);
    let r = n.req("POST", "/v2/triggers", Some(bad)).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid Fn ID - not owned by specified app"));
    let mut bad = body.clone();
    bad["fn_id"] = json!("nope");
    let r = n.req("POST", "/v2/triggers", Some(bad)).await;
    assert_eq!((r.status, r.message().as_str()), (404, "Fn not found"));
    let mut bad = body.clone();
    bad["type"] = json!("cron");
    let r = n.req("POST", "/v2/triggers", Some(bad)).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Trigger Type Not Supported"));
    let mut bad = body.clone();
    bad["source"] = json!("nohash");
    let r = n.req("POST", "/v2/triggers", Some(bad)).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing Trigger Source Prefix '/'"));

    let r = n.get(&format!("/v2/triggers/{tid}")).await;
    assert_eq!((r.status, r.json()), (200, t.clone()));
    let r = n.get("/v2/triggers/nope").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Trigger not found"})));

    let r =
        n.req("PUT", &format!("/v2/triggers/{tid}"), Some(json!({"source": "/hook/b", "annotations": {"x": 1}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["annotations"][TRIGGER_HTTP_ENDPOINT], "https://fn.example.com/t/tapp/hook/b");
    assert_eq!(r.json()["annotations"]["x"], 1);
    let r = n.req("PUT", &format!("/v2/triggers/{tid}"), Some(json!({"id": "other"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "ID in path does not match ID in body"));

    let mut t2 = body.clone();
    t2["name"] = json!("t2");
    t2["source"] = json!("/hook/c");
    assert_eq!(n.req("POST", "/v2/triggers", Some(t2)).await.status, 200);
    let j = n.get(&format!("/v2/triggers?app_id={app_id}")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 2);
    assert!(j["items"][1]["annotations"][TRIGGER_HTTP_ENDPOINT].as_str().unwrap().ends_with("/t/tapp/hook/c"));
    let j = n.get(&format!("/v2/triggers?app_id={app_id}&name=t2")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 1);
    let j = n.get(&format!("/v2/triggers?app_id={app_id}&fn_id=nope")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 0);
    let j = n.get(&format!("/v2/triggers?app_id={app_id}&per_page=1")).await.json();
    let c = j["next_cursor"].as_str().unwrap();
    let j = n.get(&format!("/v2/triggers?app_id={app_id}&per_page=1&cursor={c}")).await.json();
    assert_eq!(j["items"][0]["name"], "t2");

    assert_eq!(n.req("DELETE", &format!("/v2/triggers/{tid}"), None).await.status, 204);
    assert_eq!(n.get(&format!("/v2/triggers/{tid}")).await.status, 404);
    // Deleting the fn removes its remaining trigger.
    assert_eq!(n.req("DELETE", &format!("/v2/fns/{fn_id}"), None).await.status, 204);
    let j = n.get(&format!("/v2/triggers?app_id={app_id}")).await.json();
    assert_eq!(j["items"].as_array().unwrap().len(), 0);
    n.shutdown().await;
}

// ---- v1 apps ------------------------------------------------------------------------------------

async fn v1_apps(b: Backend) {
    let n = node(b).await;
    let r = n.req("POST", "/v1/apps", Some(json!({"app": {"name": "v1app", "config": {"A": "1"}}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "App successfully created");
    assert_eq!(r.json()["app"]["name"], "v1app");
    let r = n.req("POST", "/v1/apps", Some(json!({"name": "x"}))).await;
    assert_eq!((r.status, r.json()), (400, json!({"error": {"message": "Missing new application"}})));
    let r = n.req("POST", "/v1/apps", Some(json!({"app": {"name": "v1app"}}))).await;
    assert_eq!((r.status, r.json()), (409, json!({"error": {"message": "App already exists"}})));

    let r = n.get("/v1/apps/v1app").await;
    assert_eq!((r.status, r.json()["message"].clone()), (200, json!("Successfully loaded app")));
    assert_eq!(r.json()["app"]["config"], json!({"A": "1"}));
    let r = n.get("/v1/apps/missing").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": {"message": "App not found"}})));

    let r = n.req("PATCH", "/v1/apps/v1app", Some(json!({"app": {"config": {"A": "", "B": "2"}}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "AppName successfully updated");
    assert_eq!(r.json()["app"]["config"], json!({"B": "2"}));
    let r = n.req("PATCH", "/v1/apps/v1app", Some(json!({"app": {"name": "other"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (409, "Could not update - name is immutable"));
    let r = n.req("PATCH", "/v1/apps/v1app", Some(json!({}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing new application"));
    let r = n.req("PATCH", "/v1/apps/missing", Some(json!({"app": {}}))).await;
    assert_eq!(r.status, 404);

    n.req("POST", "/v1/apps", Some(json!({"app": {"name": "second"}}))).await;
    let j = n.get("/v1/apps").await.json();
    assert_eq!(j["message"], "Successfully listed applications");
    let names: Vec<&str> = j["apps"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["second", "v1app"]);
    let j = n.get("/v1/apps?per_page=1").await.json();
    let c = j["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(c, shared::cursor::encode("second"), "Fn's cursor: base64url of the last name");
    let j = n.get(&format!("/v1/apps?per_page=1&cursor={c}")).await.json();
    assert_eq!(j["apps"][0]["name"], "v1app");

    let r = n.req("DELETE", "/v1/apps/v1app", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"message": "App deleted"})));
    assert_eq!(n.req("DELETE", "/v1/apps/v1app", None).await.status, 404);
    n.shutdown().await;
}

// ---- v1 routes ----------------------------------------------------------------------------------

async fn v1_routes(b: Backend) {
    let n = node(b).await;
    // POST auto-creates the app.
    let r = n
        .req("POST", "/v1/apps/auto/routes", Some(json!({"route": {"path": "/hello", "image": "fnproject/hello"}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Route successfully created");
    let route = r.json()["route"].clone();
    assert_eq!(
        (route["memory"].clone(), route["type"].clone(), route["format"].clone()),
        (json!(128), json!("sync"), json!("default"))
    );
    assert_eq!(n.get("/v1/apps/auto").await.status, 200);
    let r = n.req("POST", "/v1/apps/auto/routes", Some(json!({"route": {"path": "/hello", "image": "x"}}))).await;
    assert_eq!((r.status, r.json()), (409, json!({"error": {"message": "Route already exists"}})));
    let r = n.req("POST", "/v1/apps/auto/routes", Some(json!({"path": "/x"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing new route"));
    let r = n.req("POST", "/v1/apps/auto/routes", Some(json!({"route": {"image": "x"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing route Path"));
    let r = n.req("POST", "/v1/apps/auto/routes", Some(json!({"route": {"path": "/a/:id", "image": "x"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Dynamic URL is not allowed"));
    let r = n.req("POST", "/v1/apps/bad%20name/routes", Some(json!({"route": {"path": "/a", "image": "x"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid app name"));
    // A rejected route does not leave an auto-created app behind.
    let r = n.req("POST", "/v1/apps/ghost/routes", Some(json!({"route": {"path": "/a"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Missing route Image"));
    assert_eq!(n.get("/v1/apps/ghost").await.status, 404);
    let r = n.req("POST", "/v1/apps/ghost/routes", Some(json!({"route": {"path": "/a", "image": "UPPER/case"}}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.message().starts_with("Invalid image"), "{}", r.text);
    assert_eq!(n.get("/v1/apps/ghost").await.status, 404);

    // PUT creates (with the app), then updates; nested paths work for every method.
    let r = n.req("PUT", "/v1/apps/putapp/routes/a/b/c", Some(json!({"route": {"image": "img", "timeout": 60}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Route successfully created");
    assert_eq!(r.json()["route"]["path"], "/a/b/c");
    let r = n
        .req("PUT", "/v1/apps/putapp/routes/a/b/c", Some(json!({"route": {"memory": 512, "headers": {"X-A": ["1"]}}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Route successfully updated");
    assert_eq!((r.json()["route"]["memory"].clone(), r.json()["route"]["timeout"].clone()), (json!(512), json!(60)));
    let r = n.req("PUT", "/v1/apps/putapp/routes/a/b/c", Some(json!({"route": {"path": "/other"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (409, "Could not update - path is immutable"));
    let r = n.get("/v1/apps/putapp/routes/a/b/c").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Successfully loaded route");
    assert_eq!(r.json()["route"]["headers"], json!({"X-A": ["1"]}));
    assert_eq!(n.get("/v1/apps/putapp/routes/a//b/c/").await.json()["route"]["path"], "/a/b/c", "paths are cleaned");

    let r = n
        .req("PATCH", "/v1/apps/putapp/routes/a/b/c", Some(json!({"route": {"type": "async", "timeout": 3600}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Route successfully updated");
    let r = n.req("PATCH", "/v1/apps/putapp/routes/a/b/c", Some(json!({"route": {"type": "sync"}}))).await;
    assert_eq!(r.status, 400, "validation runs after the merge: sync allows 120 s at most");
    assert!(r.message().starts_with("timeout value is out of range"));
    let r = n.req("PATCH", "/v1/apps/putapp/routes/none", Some(json!({"route": {"image": "x"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (404, "Route not found"));
    let r = n.req("PATCH", "/v1/apps/missing/routes/none", Some(json!({"route": {"image": "x"}}))).await;
    assert_eq!((r.status, r.message().as_str()), (404, "App not found"));
    assert_eq!(n.get("/v1/apps/putapp/routes/none").await.status, 404);

    n.req("POST", "/v1/apps/putapp/routes", Some(json!({"route": {"path": "/z", "image": "other"}}))).await;
    let j = n.get("/v1/apps/putapp/routes").await.json();
    assert_eq!(j["message"], "Successfully listed routes");
    let paths: Vec<&str> = j["routes"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/a/b/c", "/z"]);
    let j = n.get("/v1/apps/putapp/routes?image=other").await.json();
    assert_eq!(j["routes"].as_array().unwrap().len(), 1);
    let j = n.get("/v1/apps/putapp/routes?per_page=1").await.json();
    let c = j["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(n.get(&format!("/v1/apps/putapp/routes?per_page=1&cursor={c}")).await.json()["routes"][0]["path"], "/z");
    assert_eq!(n.get("/v1/apps/missing/routes").await.status, 404);

    let r = n.req("DELETE", "/v1/apps/putapp/routes/a/b/c", None).await;
    assert_eq!((r.status, r.json()), (200, json!({"message": "Route deleted"})));
    let r = n.req("DELETE", "/v1/apps/putapp/routes/a/b/c", None).await;
    assert_eq!((r.status, r.message().as_str()), (404, "Route not found"));
    n.shutdown().await;
}

// ---- Fn's Go client -----------------------------------------------------------------------------

/// Headers Fn's Go client (fn_go, go-openapi runtime) sends besides `Content-Type: application/json`.
const GO_HEADERS: &[(&str, &str)] = &[("accept", "application/json"), ("user-agent", "Go-http-client/1.1")];

/// Go's zero `time.Time` as go-openapi's `strfmt.DateTime` writes it: what the Go client sends for every
/// timestamp it did not set.
const GO_ZERO: &str = "0001-01-01T00:00:00.000Z";

/// Sends `body` exactly as given (Go's `json.Encoder` ends it with a newline), with the Go client's headers.
async fn go_req(n: &Node, method: &str, path: &str, body: Option<&str>) -> common::Resp {
    n.raw(method, path, body.map(|b| format!("{b}\n").into_bytes()), GO_HEADERS).await
}

/// A v1 route body as fn_go's `models.RouteWrapper` marshals it: every map present, zero timestamps.
fn go_route_body(path: &str, extra: &str) -> String {
    format!(
        r#"{{"route":{{"annotations":{{}},"config":{{}},"created_at":"{GO_ZERO}","headers":{{}},{extra}"path":"{path}","updated_at":"{GO_ZERO}"}}}}"#
    )
}

async fn go_client_v1_routes(b: Backend) {
    let n = node(b).await;
    let app = format!(
        r#"{{"app":{{"annotations":{{}},"config":{{}},"created_at":"{GO_ZERO}","name":"goapp","updated_at":"{GO_ZERO}"}}}}"#
    );
    let r = go_req(&n, "POST", "/v1/apps", Some(&app)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The Go client puts the path, leading slash included, URL-encoded in the URL and in the body.
    let body = go_route_body("/hello", r#""image":"fnproject/hello","#);
    let r = go_req(&n, "PUT", "/v1/apps/goapp/routes/%2Fhello", Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json()["message"].clone(), r.json()["route"]["path"].clone()),
        (json!("Route successfully created"), json!("/hello"))
    );
    let created_at = r.json()["route"]["created_at"].clone();
    assert_ne!(created_at, json!(GO_ZERO));
    let r =
        go_req(&n, "PUT", "/v1/apps/goapp/routes/%2Fhello", Some(&go_route_body("/hello", r#""memory":256,"#))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["message"], "Route successfully updated");
    assert_eq!(
        (r.json()["route"]["memory"].clone(), r.json()["route"]["created_at"].clone()),
        (json!(256), created_at)
    );
    let r =
        go_req(&n, "PATCH", "/v1/apps/goapp/routes/%2Fhello", Some(&go_route_body("/hello", r#""timeout":60,"#))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["route"]["timeout"], 60);
    for url in ["/v1/apps/goapp/routes/%2Fhello", "/v1/apps/goapp/routes/%2fhello", "/v1/apps/goapp/routes/hello"] {
        let r = go_req(&n, "GET", url, None).await;
        assert_eq!((r.status, r.json()["route"]["path"].clone()), (200, json!("/hello")), "{url}: {}", r.text);
        assert_eq!(r.json()["route"]["memory"], 256, "{url}");
    }
    let r = go_req(&n, "PUT", "/v1/apps/goapp/routes/%2Fhello", Some(&go_route_body("/other", ""))).await;
    assert_eq!((r.status, r.message().as_str()), (409, "Could not update - path is immutable"));

    // Nested paths, encoded whole or only in the middle, address the same route.
    let r = go_req(
        &n,
        "PUT",
        "/v1/apps/goapp/routes/%2Fa%2Fb",
        Some(&go_route_body("/a/b", r#""image":"fnproject/hello","#)),
    )
    .await;
    assert_eq!((r.status, r.json()["route"]["path"].clone()), (200, json!("/a/b")), "{}", r.text);
    for url in ["/v1/apps/goapp/routes/%2Fa%2Fb", "/v1/apps/goapp/routes/a%2Fb", "/v1/apps/goapp/routes/a/b"] {
        let r = go_req(&n, "GET", url, None).await;
        assert_eq!((r.status, r.json()["route"]["path"].clone()), (200, json!("/a/b")), "{url}: {}", r.text);
    }
    let r = go_req(&n, "PATCH", "/v1/apps/goapp/routes/a%2Fb", Some(&go_route_body("/a/b", r#""memory":512,"#))).await;
    assert_eq!((r.status, r.json()["route"]["memory"].clone()), (200, json!(512)), "{}", r.text);
    // An encoded percent sign stays a percent sign: `%252F` is the literal text `%2F`, not a slash.
    let r = go_req(&n, "GET", "/v1/apps/goapp/routes/a%252Fb", None).await;
    assert_eq!((r.status, r.message().as_str()), (404, "Route not found"));
    // A decoded path no route can have names none, on every store, and cannot be created.
    for tail in ["%00", "%2F%00", "%FF", "a%2F%0A", "%2Fa%3Fb"] {
        let r = go_req(&n, "GET", &format!("/v1/apps/goapp/routes/{tail}"), None).await;
        assert_eq!((r.status, r.message().as_str()), (404, "Route not found"), "{tail}");
        let r = go_req(&n, "DELETE", &format!("/v1/apps/goapp/routes/{tail}"), None).await;
        assert_eq!((r.status, r.message().as_str()), (404, "Route not found"), "{tail}");
        let r = go_req(&n, "PATCH", &format!("/v1/apps/goapp/routes/{tail}"), Some(&go_route_body("", ""))).await;
        assert_eq!((r.status, r.message().as_str()), (404, "Route not found"), "{tail}");
    }
    for tail in ["%00", "%2F%00", "a%2F%0A", "%2Fa%3Fb"] {
        let r =
            go_req(&n, "PUT", &format!("/v1/apps/goapp/routes/{tail}"), Some(&go_route_body("", r#""image":"i","#)))
                .await;
        assert_eq!((r.status, r.message().as_str()), (400, "Path malformed"), "{tail}");
    }

    let paths: Vec<String> = go_req(&n, "GET", "/v1/apps/goapp/routes", None).await.json()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/a/b", "/hello"]);
    for url in ["/v1/apps/goapp/routes/%2Fa%2Fb", "/v1/apps/goapp/routes/%2Fhello"] {
        let r = go_req(&n, "DELETE", url, None).await;
        assert_eq!((r.status, r.json()), (200, json!({"message": "Route deleted"})), "{url}");
        assert_eq!(go_req(&n, "GET", url, None).await.status, 404, "{url}");
    }
    n.shutdown().await;
}

async fn go_client_v2_objects(b: Backend) {
    let n = node(b).await;
    let zeros = format!(r#""created_at":"{GO_ZERO}","updated_at":"{GO_ZERO}""#);
    let r =
        go_req(&n, "POST", "/v2/apps", Some(&format!(r#"{{"annotations":{{}},"config":{{}},{zeros},"name":"gov2"}}"#)))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let app_id = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(r.json()["created_at"], json!(GO_ZERO));
    let body = format!(r#"{{"annotations":{{}},"config":{{"A":"1"}},{zeros},"name":"gov2"}}"#);
    let r = go_req(&n, "PUT", &format!("/v2/apps/{app_id}"), Some(&body)).await;
    assert_eq!((r.status, r.json()["config"].clone()), (200, json!({"A": "1"})), "{}", r.text);

    let body = format!(
        r#"{{"annotations":{{}},"app_id":"{app_id}","config":{{}},{zeros},"image":"fnproject/hello","name":"gofn"}}"#
    );
    let r = go_req(&n, "POST", "/v2/fns", Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fn_id = r.json()["id"].as_str().unwrap().to_string();
    let body =
        format!(r#"{{"annotations":{{}},"app_id":"{app_id}","config":{{}},{zeros},"id":"{fn_id}","memory":256}}"#);
    let r = go_req(&n, "PUT", &format!("/v2/fns/{fn_id}"), Some(&body)).await;
    assert_eq!((r.status, r.json()["memory"].clone()), (200, json!(256)), "{}", r.text);

    // Fn answered 400 "Trigger Created At Provided for Create" to this body.
    let body = format!(
        r#"{{"annotations":{{}},"app_id":"{app_id}",{zeros},"fn_id":"{fn_id}","name":"gotrig","source":"/go","type":"http"}}"#
    );
    let r = go_req(&n, "POST", "/v2/triggers", Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json();
    let tid = t["id"].as_str().unwrap().to_string();
    assert_ne!((t["created_at"].clone(), t["updated_at"].clone()), (json!(GO_ZERO), json!(GO_ZERO)));
    let body = format!(
        r#"{{"annotations":{{}},"app_id":"{app_id}",{zeros},"fn_id":"{fn_id}","id":"{tid}","name":"gotrig","source":"/go2","type":"http"}}"#
    );
    let r = go_req(&n, "PUT", &format!("/v2/triggers/{tid}"), Some(&body)).await;
    assert_eq!((r.status, r.json()["source"].clone()), (200, json!("/go2")), "{}", r.text);
    assert_eq!(r.json()["created_at"], t["created_at"], "an update keeps the stored creation time");

    // A timestamp that is really set is still refused on create.
    let body = format!(
        r#"{{"app_id":"{app_id}","created_at":"2018-06-25T10:11:12.000Z","fn_id":"{fn_id}","name":"t2","source":"/t2","type":"http"}}"#
    );
    let r = go_req(&n, "POST", "/v2/triggers", Some(&body)).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Trigger Created At Provided for Create"));
    // Anything else must be a time, as for Go's `strfmt.DateTime`.
    let body = format!(
        r#"{{"app_id":"{app_id}","created_at":"yesterday","fn_id":"{fn_id}","name":"t2","source":"/t2","type":"http"}}"#
    );
    let r = go_req(&n, "POST", "/v2/triggers", Some(&body)).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid JSON"));
    n.shutdown().await;
}

// ---- calls and logs -----------------------------------------------------------------------------

fn call(id: &str, app_id: &str, fn_id: &str, path: &str, created_secs: i64) -> Call {
    Call {
        fn_id: fn_id.to_string(),
        path: path.to_string(),
        created_at: DateTime::from_unix_seconds(created_secs).unwrap(),
        ..Call::new(id, app_id, CallStatus::Success)
    }
}

async fn v1_calls_and_logs(b: Backend) {
    let n = node(b).await;
    let app = create_app(&n, "capp").await;
    let app_id = app["id"].as_str().unwrap();
    let other = create_app(&n, "cother").await;
    for (i, secs) in [1_000_000, 2_000_000, 3_000_000].iter().enumerate() {
        let path = if i == 0 { "/p0" } else { "/p" };
        n.store.insert_call(&call(&format!("C{i}"), app_id, "", path, *secs)).await.unwrap();
    }
    n.store.insert_call(&call("OTHER", other["id"].as_str().unwrap(), "", "/p", 1)).await.unwrap();
    n.store.insert_log(app_id, "C1", "line one\nline two\n").await.unwrap();

    let j = n.get("/v1/apps/capp/calls").await.json();
    assert_eq!(j["message"], "Successfully listed calls");
    let ids: Vec<&str> = j["calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["C2", "C1", "C0"], "newest first, other apps' calls excluded");
    let j = n.get("/v1/apps/capp/calls?path=/p0").await.json();
    assert_eq!(j["calls"].as_array().unwrap().len(), 1);
    let j = n.get("/v1/apps/capp/calls?from_time=1500000&to_time=2500000").await.json();
    assert_eq!(j["calls"][0]["id"], "C1");
    assert_eq!(j["calls"].as_array().unwrap().len(), 1);
    let r = n.get("/v1/apps/capp/calls?from_time=yesterday").await;
    assert_eq!((r.status, r.json()), (400, json!({"error": {"message": "from_time is not an epoch time"}})));
    let r = n.get("/v1/apps/capp/calls?to_time=1.5").await;
    assert_eq!((r.status, r.message().as_str()), (400, "to_time is not an epoch time"));
    let j = n.get("/v1/apps/capp/calls?per_page=2").await.json();
    assert_eq!(j["calls"].as_array().unwrap().len(), 2);
    let c = j["next_cursor"].as_str().unwrap().to_string();
    let j = n.get(&format!("/v1/apps/capp/calls?per_page=2&cursor={c}")).await.json();
    assert_eq!(j["calls"][0]["id"], "C0");
    assert_eq!(n.get("/v1/apps/missing/calls").await.status, 404);

    let r = n.get("/v1/apps/capp/calls/C1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "Successfully loaded call");
    assert_eq!(r.json()["call"]["id"], "C1");
    let r = n.get("/v1/apps/capp/calls/OTHER").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": {"message": "Call not found"}})), "another app's call");
    assert_eq!(n.get("/v1/apps/capp/calls/NOPE").await.status, 404);

    let log = json!({"message": "Successfully loaded log", "log": {"call_id": "C1", "log": "line one\nline two\n"}});
    assert_eq!(n.get("/v1/apps/capp/calls/C1/log").await.json(), log);
    let r = n.raw("GET", "/v1/apps/capp/calls/C1/log", None, &[("accept", "application/json")]).await;
    assert_eq!(r.json(), log);
    let r = n.raw("GET", "/v1/apps/capp/calls/C1/log", None, &[("accept", "*/*")]).await;
    assert_eq!(r.json(), log);
    let r = n.raw("GET", "/v1/apps/capp/calls/C1/log", None, &[("accept", "text/plain")]).await;
    assert_eq!((r.status, r.text.as_str()), (200, "line one\nline two\n"));
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let r = n.raw("GET", "/v1/apps/capp/calls/C1/log", None, &[("accept", "image/png")]).await;
    assert_eq!((r.status, r.message().as_str()), (406, "unable to respond within acceptable response content types"));
    let r = n.get("/v1/apps/capp/calls/C0/log").await;
    assert_eq!((r.status, r.message().as_str()), (404, "Call log not found"));
    assert_eq!(n.get("/v1/apps/capp/calls/OTHER/log").await.status, 404);
    n.shutdown().await;
}

async fn v2_calls_and_logs(b: Backend) {
    let n = node(b).await;
    let app_id = create_app(&n, "app").await["id"].as_str().unwrap().to_string();
    let f1 = create_fn(&n, &app_id, "f1").await["id"].as_str().unwrap().to_string();
    let f2 = create_fn(&n, &app_id, "f2").await["id"].as_str().unwrap().to_string();
    n.store.insert_call(&call("K1", &app_id, &f1, "", 100)).await.unwrap();
    n.store.insert_call(&call("K2", &app_id, &f1, "", 200)).await.unwrap();
    n.store.insert_call(&call("K3", &app_id, &f2, "", 300)).await.unwrap();
    n.store.insert_log(&app_id, "K2", "hello log").await.unwrap();

    let j = n.get(&format!("/v2/fns/{f1}/calls")).await.json();
    let ids: Vec<&str> = j["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["K2", "K1"]);
    assert!(j.get("next_cursor").is_none());
    let j = n.get(&format!("/v2/fns/{f1}/calls?per_page=1")).await.json();
    let c = j["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(n.get(&format!("/v2/fns/{f1}/calls?per_page=1&cursor={c}")).await.json()["items"][0]["id"], "K1");
    let r = n.get(&format!("/v2/fns/{f1}/calls?from_time=x")).await;
    assert_eq!((r.status, r.json()), (400, json!({"message": "from_time is not an epoch time"})));
    let r = n.get("/v2/fns/nope/calls").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Fn not found"})));

    let r = n.get(&format!("/v2/fns/{f1}/calls/K2")).await;
    assert_eq!((r.status, r.json()["id"].clone()), (200, json!("K2")));
    let r = n.get(&format!("/v2/fns/{f1}/calls/K3")).await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Call not found"})), "another fn's call");
    let r = n.get(&format!("/v2/fns/{f1}/calls/K2/log")).await;
    assert_eq!((r.status, r.json()), (200, json!({"call_id": "K2", "log": "hello log"})));
    let r = n.raw("GET", &format!("/v2/fns/{f1}/calls/K2/log"), None, &[("accept", "text/plain")]).await;
    assert_eq!(r.text, "hello log");
    let r = n.raw("GET", &format!("/v2/fns/{f1}/calls/K2/log"), None, &[("accept", "application/xml")]).await;
    assert_eq!(r.status, 406);
    let r = n.get(&format!("/v2/fns/{f1}/calls/K1/log")).await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Call log not found"})));
    n.shutdown().await;
}

// ---- request bodies -----------------------------------------------------------------------------

async fn body_errors(b: Backend) {
    let n = node_with(b, |s| s.max_request_size = Some(1024), Listeners::default(), Extensions::default()).await;
    let app_id = create_app(&n, "app").await["id"].as_str().unwrap().to_string();
    for (path, v1) in [
        ("/v2/apps", false),
        ("/v1/apps", true),
        ("/v2/fns", false),
        ("/v2/triggers", false),
        ("/v1/apps/app/routes", true),
    ] {
        for bad in ["{", "", "[]", "\"x\"", "{\"name\": 5}", "{\"app\": 5}", "{\"route\": []}"] {
            let r = n.raw("POST", path, Some(bad.as_bytes().to_vec()), &[]).await;
            // Some shapes are valid JSON for one endpoint's body (e.g. `{"app":5}` on v2 ignores `app`):
            // those must be domain 400s, never 500s; the rest must be "Invalid JSON".
            assert_eq!(r.status, 400, "{path} {bad}: {}", r.text);
            if ["{", "", "[]", "\"x\""].contains(&bad) {
                let expect =
                    if v1 { json!({"error": {"message": "Invalid JSON"}}) } else { json!({"message": "Invalid JSON"}) };
                assert_eq!(r.json(), expect, "{path} {bad}");
            }
        }
    }
    // cpus: a number is "Invalid JSON", a bad string the cpus message.
    let r =
        n.req("POST", "/v1/apps/app/routes", Some(json!({"route": {"path": "/c", "image": "i", "cpus": 100}}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid JSON"));
    let r = n
        .req("POST", "/v1/apps/app/routes", Some(json!({"route": {"path": "/c", "image": "i", "cpus": "lots"}})))
        .await;
    assert_eq!(r.message(), Error::InvalidCpus.message());
    let r = n
        .req("POST", "/v1/apps/app/routes", Some(json!({"route": {"path": "/c", "image": "i", "cpus": "100m"}})))
        .await;
    assert_eq!((r.status, r.json()["route"]["cpus"].clone()), (200, json!("100m")));
    // Wrong types are Invalid JSON; unknown fields are ignored.
    let r =
        n.req("POST", "/v2/fns", Some(json!({"name": "f", "app_id": app_id, "image": "i", "memory": "lots"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid JSON"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f", "app_id": app_id, "image": "i", "memory": -1}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "Invalid JSON"));
    let r = n.req("POST", "/v2/fns", Some(json!({"name": "f", "app_id": app_id, "image": "i", "whatever": [1]}))).await;
    assert_eq!(r.status, 200);
    // Over FN_MAX_REQUEST_SIZE: 413 in the API's shape, nothing stored.
    let big = json!({"name": "big", "config": {"K": "x".repeat(2000)}});
    let r = n.req("POST", "/v2/apps", Some(big)).await;
    assert_eq!((r.status, r.json()), (413, json!({"message": "Request content too large"})));
    let r = n.req("POST", "/v1/apps", Some(json!({"app": {"name": "big", "config": {"K": "x".repeat(2000)}}}))).await;
    assert_eq!((r.status, r.message().as_str()), (413, "Request content too large"));
    assert_eq!(n.get("/v1/apps/big").await.status, 404);
    n.shutdown().await;
}

async fn readiness_follows_the_database(b: Backend) {
    let n = node(b).await;
    assert_eq!(n.get("/health/ready").await.status, 200);
    n.store.close().await;
    let r = n.get("/health/ready").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "15");
    assert_eq!(r.json(), json!({"message": "database is unavailable"}));
    // Every other request that needs the database answers 503 with Retry-After too.
    let r = n.get("/v2/apps").await;
    assert_eq!((r.status, r.headers["retry-after"].to_str().unwrap()), (503, "15"));
    n.shutdown().await;
}

// ---- extension points ---------------------------------------------------------------------------

#[derive(Default)]
struct Counting {
    events: std::sync::Mutex<Vec<String>>,
    veto_name: Option<String>,
    internal_on_delete: bool,
}

impl Counting {
    fn log(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }
}

#[async_trait]
impl AppListener for Counting {
    async fn before_app_create(&self, app: &App) -> Result<(), Error> {
        if self.veto_name.as_deref() == Some(app.name.as_str()) {
            return Err(Error::BadRequest("app name reserved by policy".into()));
        }
        self.log(format!("before_app_create {}", app.name));
        Ok(())
    }
    async fn after_app_create(&self, app: &App) -> Result<(), Error> {
        self.log(format!("after_app_create {}", app.name));
        Ok(())
    }
    async fn after_app_update(&self, app: &App) -> Result<(), Error> {
        self.log(format!("after_app_update {}", app.name));
        Ok(())
    }
    async fn before_app_delete(&self, _id: &str) -> Result<(), Error> {
        if self.internal_on_delete {
            return Err(Error::internal("listener exploded"));
        }
        self.log("before_app_delete");
        Ok(())
    }
}

#[async_trait]
impl RouteListener for Counting {
    async fn after_route_create(&self, r: &shared::Route) -> Result<(), Error> {
        self.log(format!("after_route_create {}", r.path));
        Ok(())
    }
}

#[async_trait]
impl FnListener for Counting {
    async fn after_fn_create(&self, f: &shared::Func) -> Result<(), Error> {
        assert!(!f.id.is_empty());
        self.log(format!("after_fn_create {}", f.name));
        Ok(())
    }
    async fn before_fn_delete(&self, _id: &str) -> Result<(), Error> {
        self.log("before_fn_delete");
        Ok(())
    }
}

#[async_trait]
impl TriggerListener for Counting {
    async fn after_trigger_create(&self, t: &shared::Trigger) -> Result<(), Error> {
        self.log(format!("after_trigger_create {}", t.name));
        Ok(())
    }
}

async fn listeners_fire_and_veto(b: Backend) {
    let l = Arc::new(Counting { veto_name: Some("forbidden".into()), internal_on_delete: true, ..Default::default() });
    let listeners = Listeners {
        apps: vec![l.clone()],
        routes: vec![l.clone()],
        fns: vec![l.clone()],
        triggers: vec![l.clone()],
        calls: vec![],
    };
    let n = node_with(b, |_| {}, listeners, Extensions::default()).await;
    let app_id = create_app(&n, "ok").await["id"].as_str().unwrap().to_string();
    let r = n.req("POST", "/v2/apps", Some(json!({"name": "forbidden"}))).await;
    assert_eq!((r.status, r.message().as_str()), (400, "app name reserved by policy"));
    assert!(n.store.get_app_by_name("forbidden").await.is_err(), "a vetoed create stores nothing");
    n.req("PUT", &format!("/v2/apps/{app_id}"), Some(json!({"config": {"a": "b"}}))).await;
    let fn_id = create_fn(&n, &app_id, "f").await["id"].as_str().unwrap().to_string();
    let t = json!({"name": "t", "app_id": app_id, "fn_id": fn_id, "type": "http", "source": "/s"});
    assert_eq!(n.req("POST", "/v2/triggers", Some(t)).await.status, 200);
    // v1 route POST auto-creates its app through the same wrapper.
    assert_eq!(
        n.req("POST", "/v1/apps/v1auto/routes", Some(json!({"route": {"path": "/r", "image": "i"}}))).await.status,
        200
    );
    assert_eq!(n.req("DELETE", &format!("/v2/fns/{fn_id}"), None).await.status, 204);
    // An unexpected error is a 500 with the cause hidden; the app is not deleted.
    let r = n.req("DELETE", &format!("/v2/apps/{app_id}"), None).await;
    assert_eq!((r.status, r.json()), (500, json!({"message": "internal server error"})));
    let r = n.req("DELETE", "/v1/apps/ok", None).await;
    assert_eq!((r.status, r.json()), (500, json!({"error": {"message": "internal server error"}})));
    assert!(n.store.get_app_by_id(&app_id).await.is_ok());
    let events = l.events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            "before_app_create ok",
            "after_app_create ok",
            "after_app_update ok",
            "after_fn_create f",
            "after_trigger_create t",
            "before_app_create v1auto",
            "after_app_create v1auto",
            "after_route_create /r",
            "before_fn_delete",
        ]
    );
    n.shutdown().await;
}

async fn extensions_add_routes_and_filters(b: Backend) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let ext = Extensions {
        configure: vec![Arc::new(|cfg: &mut actix_web::web::ServiceConfig| {
            cfg.route("/ext/ping", actix_web::web::get().to(|| async { "pong" }));
            cfg.route("/ext/panic", actix_web::web::get().to(|| async { panic!("extension bug") as &'static str }));
        })],
        api_filters: vec![Arc::new(move |req: &actix_web::dev::ServiceRequest| {
            h.fetch_add(1, Ordering::SeqCst);
            match req.headers().get("authorization") {
                Some(v) if v == "Bearer good" => Ok(()),
                _ => Err(Error::BadRequest("missing credentials".into())),
            }
        })],
    };
    let n = node_with(b, |_| {}, Listeners::default(), ext).await;
    let r = n.get("/ext/ping").await;
    assert_eq!((r.status, r.text.as_str()), (200, "pong"));
    let r = n.get("/v2/apps").await;
    assert_eq!((r.status, r.json()), (400, json!({"message": "missing credentials"})));
    let r = n.get("/v1/apps").await;
    assert_eq!((r.status, r.json()), (400, json!({"error": {"message": "missing credentials"}})));
    let r = n.raw("GET", "/v2/apps", None, &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(n.get("/version").await.status, 200, "filters apply to the API only");
    let r = n.get("/ext/panic").await;
    assert_eq!((r.status, r.json()), (500, json!({"error": {"message": "internal server error"}})), "a panic is a 500");
    assert_eq!(n.get("/ext/ping").await.status, 200, "the server survives it");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    n.shutdown().await;
}

// ---- the binary: configuration errors, help, graceful shutdown ------------------------------------

fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_api-node"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FN_")) {
        c.env_remove(k);
    }
    c
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for v in api_node::config::VARIABLES {
        assert!(text.contains(v.name) && text.contains(v.default), "{} missing from --help:\n{text}", v.name);
    }
}

#[test]
fn unknown_db_scheme_fails_fast_naming_the_supported_ones() {
    let start = std::time::Instant::now();
    let out = binary().env("FN_DB_URL", "mongodb://u:p@h/db").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mongodb")
            && err.contains("sqlite3://")
            && err.contains("postgres://")
            && err.contains("mysql://"),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let out = binary().env("FN_PORT", "eighty").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FN_PORT"));
}

#[test]
fn unreachable_db_is_retried_then_exits_naming_the_url_without_password() {
    let start = std::time::Instant::now();
    let out = binary()
        .env("FN_DB_URL", "postgres://fn:s3cret@127.0.0.1:1/fn")
        .env("FN_DS_DB_PING_MAX_RETRIES", "1")
        .env("FN_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres://fn:***@127.0.0.1:1/fn"), "{err}");
    assert!(!err.contains("s3cret"), "password leaked: {err}");
    assert!(start.elapsed() >= std::time::Duration::from_secs(1), "one retry, 1 s later");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary()
        .env("FN_PORT", port.to_string())
        .env("FN_DB_URL", format!("sqlite3://{}/fn.db", dir.path().display()))
        .env("FN_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let mut ready = false;
    for _ in 0..100 {
        if reqwest::get(&url).await.map(|r| r.status() == 200).unwrap_or(false) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "server did not become ready");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(out.0.success(), "exit status {:?}; stderr:\n{}", out.0, out.1);
    // One JSON log line per request, with method, path, status and latency.
    let line = out.1.lines().find(|l| l.contains("/health/ready")).expect("request log line");
    let j: Value = serde_json::from_str(line).unwrap();
    assert_eq!((j["fields"]["method"].clone(), j["fields"]["status"].clone()), (json!("GET"), json!(200)));
    assert!(j["fields"]["latency_us"].is_u64());
    assert!(out.1.contains("api-node stopped"));
}
