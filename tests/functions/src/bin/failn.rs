//! Fails (panics, which the FDK reports as a function error) for the first N calls of each
//! container, N from the FAIL_TIMES config (default 2), then echoes.
fn main() {
    let n: u32 = std::env::var("FAIL_TIMES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let mut seen = 0u32;
    fdk::run(move |req| {
        seen += 1;
        if seen <= n {
            panic!("failing call {seen} of {n}");
        }
        fdk::Response::ok(req.body.clone())
    });
}
