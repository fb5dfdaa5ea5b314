//! Container image references, checked against Docker's reference grammar.
//!
//! An image name reaches the Docker engine and, through it, a registry: a malformed one must be refused
//! where it is written (fn or route create/update, 400) and again before a pull, rather than passed on for
//! Docker to interpret. The grammar is Docker's (`distribution/reference`):
//!
//! ```text
//! reference  := name [":" tag] ["@" digest]
//! name       := [domain "/"] path-component ["/" path-component]*
//! domain     := host [":" port]          (a first part with "." or ":", or "localhost")
//! path-comp. := [a-z0-9]+ ([_.]|__|-+ [a-z0-9]+)*
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex{32,}
//! ```

/// Longest image name (registry and path, without tag or digest), as Docker allows.
pub const MAX_IMAGE_NAME_LEN: usize = 255;

/// Docker Hub's registry, whatever alias names it.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, valid image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry `host[:port]`, [`DOCKER_HUB`] when the reference names none.
    pub registry: String,
    /// Repository path inside the registry (`team/fn`; Docker Hub's one-part names stay as written).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest (`sha256:...`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `image`; `None` if it does not follow Docker's reference grammar.
    pub fn parse(image: &str) -> Option<ImageRef> {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        if let Some(d) = digest {
            if !valid_digest(d) {
                return None;
            }
        }
        // A tag is after the last ':' that is not followed by a '/' (a registry port is).
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return None;
            }
        }
        if name.is_empty() || name.len() > MAX_IMAGE_NAME_LEN {
            return None;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                if !valid_domain(first) {
                    return None;
                }
                (first.to_string(), rest)
            }
            _ => (DOCKER_HUB.to_string(), name),
        };
        if !path.split('/').all(valid_path_component) {
            return None;
        }
        Some(ImageRef {
            registry,
            repository: path.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// The name Docker pulls (`[registry/]repository`, without tag or digest), as the reference wrote it.
    pub fn name(&self, image: &str) -> String {
        let end = image.find('@').unwrap_or(image.len());
        let named = &image[..end];
        match &self.tag {
            Some(t) => named[..named.len() - t.len() - 1].to_string(),
            None => named.to_string(),
        }
    }
}

/// Whether `image` is a valid Docker image reference.
pub fn is_valid_image(image: &str) -> bool {
    ImageRef::parse(image).is_some()
}

/// The registry host a credentials entry or reference names, normalised for comparison: scheme and
/// path dropped, lowercased, and Docker Hub's aliases folded into [`DOCKER_HUB`].
pub fn normalize_registry(host: &str) -> String {
    let h = host.trim();
    let h = h.strip_prefix("https://").or_else(|| h.strip_prefix("http://")).unwrap_or(h);
    let h = h.split('/').next().unwrap_or(h).to_ascii_lowercase();
    match h.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => h,
    }
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: one '.', one or two '_', or any run of '-', always between alphanumerics.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if d.starts_with('[') {
        match d.find(']') {
            Some(i) => (&d[..=i], d[i + 1..].strip_prefix(':')),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if host.len() + port.map_or(0, |p| p.len() + 1) != d.len() {
        return false;
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|x| x.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|x| x.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_references_parse_into_their_parts() {
        let r = ImageRef::parse("hello").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag, r.digest), ("docker.io", "hello", None, None));
        let r = ImageRef::parse("localhost:5000/team/fn_x-1:v1.2").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/fn_x-1");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.name("localhost:5000/team/fn_x-1:v1.2"), "localhost:5000/team/fn_x-1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let image = format!("reg.example.com/a/b:1@{digest}");
        let r = ImageRef::parse(&image).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.name(&image), "reg.example.com/a/b");
        for ok in [
            "fnproject/hello:0.0.1",
            "127.0.0.1:5000/x",
            "a__b",
            "a---b.c",
            "[::1]:5000/x:y",
            "me/fn@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_valid_image(ok), "{ok}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Hello",
            "me/Fn",
            "a/",
            "/a",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:short",
            "a@sha256",
            "-a",
            "a_.b",
            "a b",
            "--help",
            "a:tag with space",
            "reg.example.com:port/x",
            "reg..example.com/x",
            "a?b",
            "../etc",
        ] {
            assert!(!is_valid_image(bad), "{bad:?}");
        }
        assert!(!is_valid_image(&"a".repeat(256)));
        assert!(!is_valid_image(&format!("a:{}", "t".repeat(129))));
    }

    #[test]
    fn registries_are_compared_by_exact_host_with_hub_aliases_folded() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_registry("Registry.Example.com:5000"), "registry.example.com:5000");
        assert_eq!(normalize_registry("http://registry.example.com/path"), "registry.example.com");
    }
}
