//! The OpenAPI document of every served route.
//!
//! Hand-written (`api-node/openapi.json`) so it can say what the code cannot (error shapes, merge
//! semantics); the `openapi` test checks that every route in [`super::endpoints`], the hybrid API
//! ([`crate::hybrid::http::ROUTES`]) and the invoke paths (`runner_node::http::ROUTES`) is in it, and that
//! everything documented is served, so a new route cannot ship undocumented.

use actix_web::HttpResponse;

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// `GET /v2/openapi.json`
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every served route is documented, and every documented operation is served.
    #[test]
    fn every_served_route_is_documented() {
        let doc: Value = serde_json::from_str(super::OPENAPI_JSON).expect("openapi.json is JSON");
        let mut served: Vec<(String, String)> = crate::http::endpoints()
            .iter()
            .map(|ep| (ep.method.as_str().to_ascii_lowercase(), ep.openapi_path()))
            .collect();
        served.extend(crate::hybrid::http::ROUTES.iter().map(|(m, p)| (m.to_ascii_lowercase(), p.to_string())));
        for (methods, path) in runner_node::http::ROUTES {
            served.extend(methods.iter().map(|m| (m.to_ascii_lowercase(), path.to_string())));
        }
        let missing: Vec<_> =
            served.iter().filter(|(m, p)| !doc["paths"][p.as_str()][m.as_str()].is_object()).collect();
        assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
        let mut extra = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                if !served.iter().any(|(m, p)| p == path && m == method) {
                    extra.push(format!("{method} {path}"));
                }
            }
        }
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    #[test]
    fn tail_patterns_become_plain_parameters() {
        let ep = crate::http::endpoints().into_iter().find(|e| e.path.contains(":.+")).unwrap();
        assert_eq!(ep.openapi_path(), "/v1/apps/{app}/routes/{route}");
    }
}
