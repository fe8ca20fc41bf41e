//! Image references: `host[:port]/path[:tag][@sha256:…]`, with Docker Hub's
//! normalisation, and the image name of a build.

use std::fmt;

use crate::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A reference that is not `[HOST[:PORT]/]PATH[:TAG][@sha256:HEX]`.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid image reference {given:?}: {why}; expected [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], \
     with PATH in lowercase letters, digits and . _ - separators"
)]
pub struct ReferenceError {
    /// What was given.
    pub given: String,
    /// What is wrong.
    pub why: String,
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path (`library/debian`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

impl Reference {
    /// The same repository, under `tag` (None: the repository alone).
    pub fn with_tag(&self, tag: Option<String>) -> Self {
        Self {
            tag,
            digest: None,
            ..self.clone()
        }
    }

    /// Parses a reference; a bare `name` means Docker Hub's `library/name:latest`
    /// only when `default_tag` is set (pulls), never for pushes.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = |why: &str| ReferenceError {
            given: s.to_string(),
            why: why.to_string(),
        };
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| err(&e.to_string()))?),
            ),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_string())),
            _ => (path, None),
        };
        if !valid_host(&registry) {
            return Err(err(&format!("{registry:?} is not a valid registry host")));
        }
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(err(&format!("{path:?} is not a valid repository path")));
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(err(&format!("{t:?} is not a valid tag")));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the HTTP API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to put after `/manifests/`: the digest if any, else the tag, else `latest`.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository, with a digest instead of a tag.
    pub fn with_digest(&self, digest: &Digest) -> Self {
        Self {
            tag: None,
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }

    /// The reference `<registry>[/<prefix>]/<name>:<version>` of a build,
    /// the version made a valid tag. The name is the build's
    /// (`crate::build` composes it from the project and its extras).
    pub fn for_build(registry: &str, name: &str, version: &str) -> Result<Self, ReferenceError> {
        // A tag cannot hold `+` (local versions) or `!` (epochs).
        let tag: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self::parse(&format!("{}/{name}:{tag}", registry.trim_end_matches('/')))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    port_ok && host_ok
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|x| {
            x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_path_tag_and_digest() {
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("127.0.0.1:5000/team/milborne:0.4.0@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/milborne");
        assert_eq!(r.tag.as_deref(), Some("0.4.0"));
        assert_eq!(r.digest, Some(d.clone()));
        assert_eq!(r.manifest_ref(), d.to_string());
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let r = Reference::parse("debian:bookworm").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.api_host()),
            ("docker.io", "library/debian", "registry-1.docker.io")
        );
        let r = Reference::parse("docker://someone/app").unwrap();
        assert_eq!(r.repository, "someone/app");
        assert_eq!(r.manifest_ref(), "latest");
    }

    #[test]
    fn localhost_is_a_registry() {
        assert_eq!(
            Reference::parse("localhost/x").unwrap().registry,
            "localhost"
        );
    }

    #[test]
    fn bad_references_name_the_accepted_form() {
        for bad in [
            "",
            "Host:5000",
            "127.0.0.1:5000/UPPER",
            "127.0.0.1:5000/x:bad+tag",
            "127.0.0.1:5000/x@sha256:12",
            "a//b",
            "127.0.0.1:port/x",
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected [HOST[:PORT]/]PATH"), "{bad}: {e}");
        }
    }

    #[test]
    fn build_references_make_the_version_a_tag() {
        let r =
            Reference::for_build("127.0.0.1:5000/team", "milborne-extra", "0.4.0+local").unwrap();
        assert_eq!(
            r.to_string(),
            "127.0.0.1:5000/team/milborne-extra:0.4.0_local"
        );
    }
}
