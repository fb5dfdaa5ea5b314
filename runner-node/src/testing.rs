//! Helpers for test suites that run functions on the real Docker engine (feature `testing`).
//!
//! There is no registry in the test environment, so function images are built locally: each
//! test function is a static binary (package `test-functions`) packed into a `FROM scratch`
//! image through the Docker API, with an in-memory build context (Dockerfile + binary).
//!
//! Build the binaries first:
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release \
//!     --target x86_64-unknown-linux-gnu -p test-functions
//! ```
//! then call [`function_image`] (`fn-test/echo:latest`, ...) or [`build_scratch_image`] for
//! any other static binary.

use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;

/// Where the static test-function binaries are built.
pub fn test_functions_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("x86_64-unknown-linux-gnu/release")
}

/// Builds (or rebuilds) image `tag` holding only `binary` as `/fn`, its entrypoint.
pub async fn build_scratch_image(docker: &Docker, tag: &str, binary: &Path) -> Result<(), String> {
    let bin = std::fs::read(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let dockerfile = b"FROM scratch\nCOPY fn /fn\nENTRYPOINT [\"/fn\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [("Dockerfile", &dockerfile[..], 0o644), ("fn", &bin[..], 0o755)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data).map_err(|e| e.to_string())?;
    }
    let context = tar.into_inner().map_err(|e| e.to_string())?;
    let opts = BuildImageOptions { t: Some(tag.to_string()), rm: true, forcerm: true, ..Default::default() };
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("building {tag}: {e}"))?;
        if let Some(err) = info.error {
            return Err(format!("building {tag}: {err}"));
        }
    }
    Ok(())
}

/// Image tag of a test function, building the image from its binary (see module docs).
pub async fn function_image(docker: &Docker, name: &str) -> Result<String, String> {
    let binary = test_functions_dir().join(name);
    if !binary.exists() {
        return Err(format!(
            "{} is missing; build it with: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release \
             --target x86_64-unknown-linux-gnu -p test-functions",
            binary.display()
        ));
    }
    let tag = format!("fn-test/{name}:latest");
    build_scratch_image(docker, &tag, &binary).await?;
    Ok(tag)
}
