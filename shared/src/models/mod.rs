//! Apps, routes, fns, triggers and calls, in the exact JSON form Fn's clients expect.
//!
//! Each model comes with an `*Input` type: what a client may send, every field optional and unchecked.
//! `Model::new(input)` applies Fn's defaults and validation; `model.apply(input)` merges an update the way
//! Fn does (empty config values, empty header lists and `""`/`null` annotations delete a key) and validates
//! the merged result. Client input reaches a model only through these; the store and the hybrid API
//! rebuild models by deserialising what was stored or sent, without re-checking.

mod annotations;
mod app;
mod call;
mod func;
mod image;
mod maps;
mod resources;
mod route;
mod trigger;

pub use annotations::Annotations;
pub use app::{App, AppInput};
pub use call::{Call, CallAttempt, CallLog, CallStatus, QueuedCall};
pub use func::{Func, FuncInput};
pub use image::{is_valid_image, normalize_registry, ImageRef, DOCKER_HUB, MAX_IMAGE_NAME_LEN};
pub use maps::{Config, Headers};
pub use resources::{Format, MilliCpus};
pub use route::{check_path, clean_path, Route, RouteInput, RouteType};
pub use trigger::{Trigger, TriggerInput, TriggerType};

/// Longest app, fn or trigger name, in bytes. Fn's baseline limit; its later versions allow 255.
pub const MAX_NAME_LEN: usize = 30;
/// Longest route path or trigger source, in bytes (Fn had no limit; its SQL columns did).
pub const MAX_PATH_LEN: usize = 512;
/// Memory, in MB, of a route or fn that names none.
pub const DEFAULT_MEMORY_MB: u64 = 128;
/// Largest memory, in MB, a route or fn may ask for.
pub const MAX_MEMORY_MB: u64 = 8192;
/// Timeout, in seconds, of a route or fn that names none.
pub const DEFAULT_TIMEOUT_S: i32 = 30;
/// Idle timeout, in seconds, of a hot container of a route or fn that names none.
pub const DEFAULT_IDLE_TIMEOUT_S: i32 = 30;
/// Largest idle timeout, in seconds.
pub const MAX_IDLE_TIMEOUT_S: i32 = 3600;

/// App and trigger names: letters, digits, `_` and `-` only (Unicode letters and digits count).
fn is_plain_name(name: &str) -> bool {
    name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Treats `Some("")` like `None`: Fn ignores empty strings in create and update bodies.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The 400 for an image that is not a Docker image reference; it names the field, not the value.
fn invalid_image() -> crate::Error {
    crate::Error::BadRequest(
        "Invalid image: must be a Docker image reference \
         ([registry[:port]/]name[:tag][@digest], lowercase name)"
            .into(),
    )
}
