//! The hybrid API: what runner nodes ask of the API node, served twice over one implementation.
//!
//! Runner nodes hold no database; they fetch apps, fns, routes and triggers by ID, queue and take async
//! calls, and report calls, through `runner_node::DataAccess`. The API node serves that trait's
//! in-process implementation ([`crate::direct::DirectDataAccess`]) over HTTP ([`http`], under
//! `/v2/runner`) and gRPC ([`grpc`], on `FN_GRPC_PORT`); runners pick the transport from the scheme of
//! `FN_RUNNER_API_URL`. Both carry domain objects as Fn JSON and errors as Fn's status and message.
//!
//! When `FN_RUNNER_TOKEN` is set, both transports demand it (`Authorization: Bearer <token>`, as an
//! HTTP header or gRPC metadata) and answer 401 / `UNAUTHENTICATED` otherwise, before doing anything.
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

/// Longest long-poll a runner may ask for; Fn's was 30 s.
pub const MAX_DEQUEUE_WAIT_MS: u64 = 30_000;

/// Whether `presented` (an `Authorization` value) carries `token`. No token configured: always true.
pub fn authorized(token: Option<&str>, presented: Option<&str>) -> bool {
    match token {
        None => true,
        Some(t) => presented.and_then(|p| p.strip_prefix("Bearer ")).is_some_and(|p| constant_time_eq(p.as_bytes(), t.as_bytes())),
    }
}

/// Compares without an early exit, so response time does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens() {
        assert!(super::authorized(None, None));
        assert!(super::authorized(Some("s3cret"), Some("Bearer s3cret")));
        assert!(!super::authorized(Some("s3cret"), Some("Bearer s3cre")));
        assert!(!super::authorized(Some("s3cret"), Some("s3cret")));
        assert!(!super::authorized(Some("s3cret"), None));
    }
}
