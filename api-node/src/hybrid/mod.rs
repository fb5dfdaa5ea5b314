//! The hybrid API: what runner nodes ask of the API node, served twice over one implementation.
//!
//! Runner nodes hold no database; they fetch apps, fns, routes and triggers by ID, queue and take async
//! calls, and report calls, through `runner_node::DataAccess`. The API node serves that trait's
//! in-process implementation ([`crate::direct::DirectDataAccess`]) over HTTP ([`http`], under
//! `/v2/runner`) and gRPC ([`grpc`], on `FN_GRPC_PORT`); runners pick the transport from the scheme of
//! `FN_RUNNER_API_URL`. Both carry domain objects as Fn JSON and errors as Fn's status and message.
//!
//! Closed by default: the runner API is served only when runners can be authenticated. With
//! `FN_RUNNER_TOKEN` both transports demand it (`Authorization: Bearer <token>`, as an HTTP header or
//! gRPC metadata, compared in constant time) and answer 401 / `UNAUTHENTICATED` otherwise, before doing
//! anything. With a client CA (`FN_NODE_CERT_AUTHORITY`) gRPC demands a client certificate (mutual TLS);
//! HTTP cannot check one, so without a token `/v2/runner` is not mounted at all. An api node with
//! neither refuses to start, and a full node serves no runner API (no `/v2/runner`, no gRPC port),
//! unless `FN_RUNNER_API_INSECURE=true` opts out, which is logged as a warning at start
//! (see [`crate::config::Settings::serves_runner_api`]).
//!
//! HTTP endpoints (JSON bodies; errors are v2 `{"message":..}` with Fn's status):
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v2/runner/apps/{app_id}` | | App |
//! | `GET /v2/runner/appsByName/{name}` | | App |
//! | `GET /v2/runner/fns/{fn_id}` | | Fn |
//! | `GET /v2/runner/apps/{app_id}/route?path=` | | Route |
//! | `GET /v2/runner/apps/{app_id}/triggerBySource/{type}/{source...}` | | Trigger |
//! | `PUT /v2/runner/async` | QueuedCall | `{"msg":"enqueued call"}` |
//! | `GET /v2/runner/async?wait_ms=` | | `{"deliveries":[Delivery]}` (0 or 1) |
//! | `POST /v2/runner/start` | Call | `{"msg":"slingshot: engage"}` |
//! | `POST /v2/runner/finish` | `{"call":Call,"log":".."}` | `{"msg":"good night, sweet prince"}` |
//! | `POST /v2/runner/complete` | `{"delivery":Delivery,"call":Call}` | `{"msg":"completed"}` |
//! | `POST /v2/runner/heartbeat` | Delivery | `{"lease_ms":N}` (400 once the hold is lost) |

pub mod grpc;
pub mod http;

use shared::secret::Secret;

/// Longest long-poll a runner may ask for; Fn's was 30 s.
pub const MAX_DEQUEUE_WAIT_MS: u64 = 30_000;

/// Whether `presented` (an `Authorization` value) carries `token`, compared in constant time. No token
/// configured: always true (the node serves the API only when another check or the operator's explicit
/// opt-out stands in for it).
pub fn authorized(token: Option<&Secret>, presented: Option<&str>) -> bool {
    match token {
        None => true,
        Some(t) => presented.and_then(|p| p.strip_prefix("Bearer ")).is_some_and(|p| t.matches(p)),
    }
}

#[cfg(test)]
mod tests {
    use shared::secret::Secret;

    #[test]
    fn tokens() {
        let t = Secret::new("s3cret".to_string());
        assert!(super::authorized(None, None));
        assert!(super::authorized(Some(&t), Some("Bearer s3cret")));
        assert!(!super::authorized(Some(&t), Some("Bearer s3cre")));
        assert!(!super::authorized(Some(&t), Some("s3cret")));
        assert!(!super::authorized(Some(&t), None));
    }
}
