//! Harness for end-to-end tests: starts the real `api-node` and `runner-node` binaries as child processes
//! on free loopback ports, waits until they answer, and stops them (gracefully or with `kill -9`).
//!
//! The binaries come from the same target directory as the test (the test command builds the whole
//! workspace first). Every node gets its own data directory and, through `FN_CONTAINER_LABEL_TAG`-style
//! settings the caller passes, its own containers, so tests can run in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub mod hybrid;

/// Path of a workspace binary built next to the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run the test command (it builds the workspace first)", path.display());
    path
}

pub use api_node::testing::free_port;

/// A running node process.
pub struct Node {
    child: Option<Child>,
    /// Base URL of its HTTP listener.
    pub url: String,
    /// Its HTTP port.
    pub port: u16,
    /// What it was started with, to start it again.
    program: PathBuf,
    env: HashMap<String, String>,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
}

impl Node {
    /// Starts `program` with `env` (plus `FN_PORT`, unless given) and waits until `GET /` answers.
    pub async fn start(program: PathBuf, mut env: HashMap<String, String>) -> anyhow::Result<Node> {
        let port: u16 = match env.get("FN_PORT") {
            Some(p) => p.parse()?,
            None => {
                let p = free_port();
                env.insert("FN_PORT".into(), p.to_string());
                p
            }
        };
        let log =
            std::env::temp_dir().join(format!("fn-e2e-{}-{port}.log", program.file_name().unwrap().to_string_lossy()));
        // A fresh log per node (an earlier run may have used the same port); restarts append to it.
        let _ = std::fs::remove_file(&log);
        let mut node = Node { child: None, url: format!("http://127.0.0.1:{port}"), port, program, env, log };
        node.spawn().await?;
        Ok(node)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        // Errors print without a backtrace, so the log's tail shows the message, not the stack.
        let child = Command::new(&self.program)
            .env("RUST_LIB_BACKTRACE", "0")
            .env("FN_LISTEN_HOST", "127.0.0.1")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Waits until the node answers `GET /`.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < within {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("{} exited with {status}; log: {}", self.program.display(), self.log_tail());
            }
            if client.get(format!("{}/", self.url)).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not answer within {within:?}; log: {}", self.program.display(), self.log_tail())
    }

    /// The last lines of the node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `kill -9`: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited with status 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The environment it was started with (plus `FN_PORT`).
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// Starts the node again with the same settings and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.terminate();
    }
}
