//! What the agent is asked to run ([`CallSpec`]) and what it answers ([`CallResponse`]).
//! The invoke handlers build a `CallSpec` from the domain models; the agent does not know them.
//! The wire format is the domain's [`Format`] (`shared::Format`); the agent runs every format but
//! `cloudevent`, which it refuses with 400.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use sha1::{Digest, Sha1};
pub use shared::Format;

/// One call to run: the function's container settings plus the request.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Call id (shown to the function, used for the record).
    pub id: String,
    /// App id.
    pub app_id: String,
    /// App name (`FN_APP_NAME`).
    pub app_name: String,
    /// Fn id (`FN_FN_ID`); empty for v1 routes.
    pub fn_id: String,
    /// Route path (`FN_PATH`); empty for v2 fns.
    pub path: String,
    /// Image to run.
    pub image: String,
    /// Wire format.
    pub format: Format,
    /// Memory limit in MB.
    pub memory_mb: u64,
    /// CPU limit in mCPU, 0 = none.
    pub cpus_mcpu: u64,
    /// Size of the /tmp tmpfs in MB, 0 = unsized.
    pub tmpfs_mb: u64,
    /// Execution timeout, counted from when the call has a container.
    pub timeout: Duration,
    /// How long a hot container lives without work.
    pub idle_timeout: Duration,
    /// App config merged with fn/route config; becomes the container environment.
    pub config: BTreeMap<String, String>,
    /// Anything else that must give a distinct container (annotations, syslog url, ...).
    pub extra_key: BTreeMap<String, String>,
    /// HTTP method of the request.
    pub method: String,
    /// Full request URL.
    pub url: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// A call taken from the async queue. Nobody waits for its answer, so the response body goes to the
    /// call's log (as in Fn), and a failed run is not the call's final status: the queue side decides
    /// whether it runs again.
    pub queued: bool,
}

impl CallSpec {
    /// A call with Fn's default limits (128 MB, 30 s timeout, 30 s idle timeout, http-stream).
    pub fn new(id: impl Into<String>, image: impl Into<String>) -> Self {
        CallSpec {
            id: id.into(),
            app_id: String::new(),
            app_name: String::new(),
            fn_id: String::new(),
            path: String::new(),
            image: image.into(),
            format: Format::HttpStream,
            memory_mb: 128,
            cpus_mcpu: 0,
            tmpfs_mb: 0,
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            config: BTreeMap::new(),
            extra_key: BTreeMap::new(),
            method: "POST".into(),
            url: "http://localhost/".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            queued: false,
        }
    }

    /// Memory the call reserves: memory plus tmpfs (tmpfs pages count against the node too).
    pub fn memory_bytes(&self) -> u64 {
        (self.memory_mb + self.tmpfs_mb) << 20
    }

    /// The hot slot key: a SHA-1 over everything that changes a container, so any change
    /// gives fresh containers and equal settings share them.
    pub fn slot_key(&self) -> String {
        let mut h = Sha1::new();
        let mut field = |k: &str, v: &str| {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        };
        field("app_id", &self.app_id);
        field("fn_id", &self.fn_id);
        field("path", &self.path);
        field("image", &self.image);
        field("format", self.format.as_str());
        field("timeout", &self.timeout.as_millis().to_string());
        field("idle_timeout", &self.idle_timeout.as_millis().to_string());
        field("memory", &self.memory_mb.to_string());
        field("cpus", &self.cpus_mcpu.to_string());
        field("tmpfs", &self.tmpfs_mb.to_string());
        for (k, v) in &self.config {
            field(&format!("config.{k}"), v);
        }
        for (k, v) in &self.extra_key {
            field(&format!("extra.{k}"), v);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Environment every container of this call's function gets (docs/fn-compatibility.md, "Function
    /// formats and environment").
    pub fn base_env(&self) -> Vec<String> {
        let mut env: Vec<String> = self.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("FN_FORMAT={}", self.format.as_str()));
        env.push(format!("FN_APP_NAME={}", self.app_name));
        env.push(format!("FN_APP_ID={}", self.app_id));
        env.push(format!("FN_FN_ID={}", self.fn_id));
        env.push(format!("FN_PATH={}", self.path));
        env.push(format!("FN_MEMORY={}", self.memory_mb));
        env.push("FN_TYPE=sync".to_string());
        if self.cpus_mcpu > 0 {
            env.push(format!("FN_CPUS={}m", self.cpus_mcpu));
        }
        env
    }
}

/// The function's answer, fully buffered (Fn buffers sync responses too).
#[derive(Debug, Clone)]
pub struct CallResponse {
    /// Status to answer with.
    pub status: u16,
    /// Response headers from the function (hop-by-hop headers removed).
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_key_changes_with_anything_that_changes_a_container() {
        let a = CallSpec::new("1", "img");
        let mut b = CallSpec::new("2", "img");
        b.body = Bytes::from_static(b"other request");
        assert_eq!(a.slot_key(), b.slot_key(), "the request is not part of the key");
        b.config.insert("K".into(), "V".into());
        assert_ne!(a.slot_key(), b.slot_key());
        let mut c = CallSpec::new("3", "img");
        c.memory_mb = 256;
        assert_ne!(a.slot_key(), c.slot_key());
    }
}
