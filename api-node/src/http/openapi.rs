//! The OpenAPI document of every served route.
//!
//! Hand-written (`api-node/openapi.json`) so it can say what the code cannot (error shapes, merge
//! semantics); the `openapi` test checks that every route in [`super::endpoints`] is in it, so a new
//! route cannot ship undocumented.

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
        let endpoints = crate::http::endpoints();
        let mut missing = Vec::new();
        for ep in &endpoints {
            let method = ep.method.as_str().to_ascii_lowercase();
            if !doc["paths"][ep.openapi_path()][&method].is_object() {
                missing.push(format!("{} {}", ep.method, ep.openapi_path()));
            }
        }
        assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
        let mut extra = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let served = endpoints
                    .iter()
                    .any(|ep| ep.openapi_path() == *path && ep.method.as_str().eq_ignore_ascii_case(method));
                if !served {
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
