//! Test functions for the agent's Docker tests. Each `src/bin/*.rs` is one function image.
//! Build them as static binaries with
//! `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions`
//! and package them with `runner_node::testing` (feature `testing`).

/// Names of the binaries in this package; each becomes an image `fn-test-<name>`.
pub const FUNCTIONS: &[&str] =
    &["echo", "envdump", "sleep", "crash", "oom", "huge", "forkbomb", "failn", "hello", "netprobe", "logtag"];
