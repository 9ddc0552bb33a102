//! Selur's registry settings: mirrors, repository rewrites, plain-HTTP
//! registries, CA files and credentials per registry, in the shape of k3s's
//! `registries.yaml`:
//!
//! ```yaml
//! mirrors:
//!   ghcr.io:
//!     endpoint: ["https://127.0.0.1:5443"]   # tried in order, then ghcr.io itself
//!     rewrite:                                # regex -> replacement on the repository
//!       "^hyperpolymath/(.*)": "mirror/$1"
//!     upstream: true                          # false: never contact ghcr.io itself
//!   "*":                                      # mirrors for every other registry
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5443":
//!     tls: {ca_file: /path/ca.pem, insecure_skip_verify: false}
//!     auth: {username: u, password: p}
//!   "127.0.0.1:5000":
//!     insecure: true                          # plain HTTP
//! ```
//!
//! Unknown fields are errors. Rewrites apply to mirror endpoints only (as in
//! k3s), the first matching rule in file order wins.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::reference::Reference;

/// A settings file that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("registry settings {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry settings {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("registry settings: {0}")]
    Parse(String),
}

/// The whole settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Registry name (`ghcr.io`, `docker.io`, or `*` for any) → its mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Registry host (`host[:port]`, as in an endpoint) → how to talk to it.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// Mirrors of one registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// URLs (`https://host[:port]`, `http://...`, or a bare `host[:port]`), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Rewrites of the repository path for the mirror endpoints.
    #[serde(default)]
    pub rewrite: Rewrites,
    /// Whether the registry itself is tried after its mirrors (default true).
    #[serde(default = "yes")]
    pub upstream: bool,
}

fn yes() -> bool {
    true
}

/// Ordered `regex → replacement` rules (`$1` etc. refer to capture groups).
#[derive(Debug, Clone, Default)]
pub struct Rewrites(Vec<(regex::Regex, String)>);

impl Rewrites {
    /// `repository` rewritten by the first rule that matches it, if any.
    pub fn apply(&self, repository: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(re, _)| re.is_match(repository))
            .map(|(re, to)| re.replace(repository, to.as_str()).into_owned())
    }
}

impl<'de> Deserialize<'de> for Rewrites {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rewrites;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of regular expressions to replacements")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rewrites, A::Error> {
                let mut out = Vec::new();
                while let Some((pattern, replacement)) = map.next_entry::<String, String>()? {
                    let re = regex::Regex::new(&pattern).map_err(|e| {
                        serde::de::Error::custom(format!(
                            "rewrite {pattern:?} is not a valid regular expression: {e}"
                        ))
                    })?;
                    out.push((re, replacement));
                }
                Ok(Rewrites(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// How to talk to one registry host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: Option<Auth>,
}

/// TLS settings of a registry host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates trusted in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials for HTTP basic authentication (or a bearer token exchange).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        })
    }
}

/// One place to fetch an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Repository path on that host (after rewrites).
    pub repository: String,
    pub protocol: Protocol,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub auth: Option<Auth>,
    /// Whether this is a mirror rather than the registry itself.
    pub mirror: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.protocol, self.host, self.repository)
    }
}

impl RegistrySettings {
    /// Read and check a settings file; every error names the file (and the
    /// line, where the YAML parser knows it).
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            SettingsError::Parse(message) => SettingsError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parse settings from YAML text (an empty document is the default).
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let s: Self =
            yaml_serde::from_str(text).map_err(|e| SettingsError::Parse(e.to_string()))?;
        for (registry, m) in &s.mirrors {
            for e in &m.endpoint {
                split_endpoint(e).map_err(|reason| {
                    SettingsError::Parse(format!(
                        "mirrors.{registry}.endpoint: {e:?} is not usable: {reason}"
                    ))
                })?;
            }
        }
        Ok(s)
    }

    /// Where to fetch `r` from, in order: its mirrors, then (unless the
    /// mirror says `upstream: false`) the registry itself; docker.io is
    /// reached at `registry-1.docker.io`.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mirror = self
            .mirrors
            .get(&r.registry)
            .or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        if let Some(m) = mirror {
            for url in &m.endpoint {
                let Ok((scheme, host)) = split_endpoint(url) else {
                    continue;
                };
                let repository = m
                    .rewrite
                    .apply(&r.repository)
                    .unwrap_or_else(|| r.repository.clone());
                out.push(self.endpoint(host, scheme, repository, true));
            }
        }
        if mirror.is_none_or(|m| m.upstream) {
            let host = if r.registry == "docker.io" {
                "registry-1.docker.io".to_string()
            } else {
                r.registry.clone()
            };
            out.push(self.endpoint(host, None, r.repository.clone(), false));
        }
        // The same host and repository twice is tried once.
        let mut seen = Vec::new();
        out.retain(|e| {
            let key = (e.host.clone(), e.repository.clone(), e.protocol);
            let new = !seen.contains(&key);
            seen.push(key);
            new
        });
        out
    }

    fn config_for(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| match host {
            "registry-1.docker.io" | "index.docker.io" => self.configs.get("docker.io"),
            _ => None,
        })
    }

    fn endpoint(
        &self,
        host: String,
        scheme: Option<Protocol>,
        repository: String,
        mirror: bool,
    ) -> Endpoint {
        let cfg = self.config_for(&host).cloned().unwrap_or_default();
        let protocol = scheme.unwrap_or(if cfg.insecure {
            Protocol::Http
        } else {
            Protocol::Https
        });
        let tls = cfg.tls.unwrap_or_default();
        Endpoint {
            host,
            repository,
            protocol,
            ca_file: tls.ca_file,
            insecure_skip_verify: tls.insecure_skip_verify,
            auth: cfg.auth,
            mirror,
        }
    }
}

/// `https://host:port[/v2][/]` → (Some(Https), "host:port"); a bare host has no scheme.
fn split_endpoint(url: &str) -> Result<(Option<Protocol>, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Some(Protocol::Https), rest),
        Some(("http", rest)) => (Some(Protocol::Http), rest),
        Some((other, _)) => return Err(format!("scheme {other:?} is neither http nor https")),
        None => (None, url),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !matches!(path, "" | "/" | "/v2" | "/v2/") {
        return Err(format!("paths ({path:?}) are not supported on endpoints"));
    }
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err("expected a host[:port]".into());
    }
    Ok((scheme, host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
mirrors:
  ghcr.io:
    endpoint: ["https://127.0.0.1:5443", "127.0.0.1:5000/"]
    rewrite:
      "^hyperpolymath/(.*)": "mirror/$1"
configs:
  "127.0.0.1:5443":
    tls: {ca_file: /tmp/ca.pem}
    auth: {username: u, password: p}
  "127.0.0.1:5000":
    insecure: true
"#;

    #[test]
    fn mirrors_then_upstream() {
        let s = RegistrySettings::parse(SAMPLE).unwrap();
        let r = Reference::parse("ghcr.io/hyperpolymath/lago-grey:minimal").unwrap();
        let e = s.endpoints(&r);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].host.as_str(), e[0].repository.as_str(), e[0].protocol),
            ("127.0.0.1:5443", "mirror/lago-grey", Protocol::Https)
        );
        assert_eq!(e[0].ca_file.as_deref(), Some(Path::new("/tmp/ca.pem")));
        assert_eq!(e[0].auth.as_ref().map(|a| a.username.as_str()), Some("u"));
        assert_eq!(
            (e[1].host.as_str(), e[1].protocol),
            ("127.0.0.1:5000", Protocol::Http)
        );
        assert_eq!(
            (e[2].host.as_str(), e[2].repository.as_str(), e[2].mirror),
            ("ghcr.io", "hyperpolymath/lago-grey", false)
        );
        let d = RegistrySettings::default().endpoints(&Reference::parse("busybox").unwrap());
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].host.as_str(), d[0].repository.as_str()),
            ("registry-1.docker.io", "library/busybox")
        );
    }

    #[test]
    fn strict() {
        let err = |y: &str| RegistrySettings::parse(y).unwrap_err().to_string();
        let e = err("mirrors:\n  ghcr.io:\n    endpoints: []\n");
        assert!(
            e.contains("mirrors.ghcr.io: unknown field `endpoints`") && e.contains("line 3"),
            "{e}"
        );
        let e = err("mirrors: {x: {endpoint: [\"ftp://a\"]}}");
        assert!(e.contains("ftp"), "{e}");
        let e = err("mirrors: {x: {rewrite: {\"(\": a}}}");
        assert!(e.contains("regular expression"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, "configs:\n  a:\n    tls: {ca: x}\n").unwrap();
        let e = RegistrySettings::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("line 3"),
            "{e}"
        );
        let off =
            RegistrySettings::parse("mirrors: {\"*\": {endpoint: [\"a:1\"], upstream: false}}")
                .unwrap();
        let e = off.endpoints(&Reference::parse("quay.io/x/y").unwrap());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host, "a:1");
    }
}
