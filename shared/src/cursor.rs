//! Opaque page cursors: base64url (no padding) of the last item's sort key, as Fn's lists use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Page size when the caller names none, or a bad one.
pub const DEFAULT_PER_PAGE: u32 = 30;
/// Largest page size.
pub const MAX_PER_PAGE: u32 = 100;

/// Fn's `per_page` rule: default 30, capped at 100; zero, negative or non-numeric values mean 30.
pub fn per_page(param: Option<&str>) -> u32 {
    match param.and_then(|p| p.trim().parse::<i64>().ok()) {
        Some(n) if n > 0 => n.min(MAX_PER_PAGE as i64) as u32,
        _ => DEFAULT_PER_PAGE,
    }
}

/// Encodes a sort key as a cursor.
pub fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a cursor back into its sort key. A cursor that is not ours yields `None`; callers treat that as
/// a 400 rather than silently restarting from the first page. Padded input is accepted too, since Fn's own
/// cursors carried padding in some versions.
pub fn decode(cursor: &str) -> Option<String> {
    let trimmed = cursor.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for key in ["", "app-1", "/a/b/c", "ünïcode"] {
            assert_eq!(super::decode(&super::encode(key)).as_deref(), Some(key));
        }
        assert_eq!(super::decode("YXBw").as_deref(), Some("app"));
        assert_eq!(super::decode("!!"), None);
        assert_eq!(super::per_page(None), 30);
        assert_eq!(super::per_page(Some("7")), 7);
        assert_eq!(super::per_page(Some("1000")), 100);
        assert_eq!(super::per_page(Some("-3")), 30);
        assert_eq!(super::per_page(Some("x")), 30);
    }
}
