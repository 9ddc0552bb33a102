//! A CNI driver: pod networks made by CNI plugins (the containernetworking
//! spec 1.0.0 / 0.4.0 / 0.3.x) instead of Selur's built-in datapath, with
//! the semantics the kubelet and containerd get from libcni:
//!
//! - the network is the first config file in the config dir (`*.conflist`,
//!   `*.conf`, `*.json`, sorted by name); a single-plugin `.conf` is wrapped
//!   into a list of one;
//! - ADD runs the list's plugins in order, each given the previous one's
//!   result as `prevResult`; the final result is cached in a file so DEL,
//!   also after an agent restart, hands it back to the plugins;
//! - DEL runs them in reverse and tolerates what is already gone.
//!
//! This module runs plugins; it does not choose between CNI and the
//! built-in datapath, nor give pods their DNS settings.
//!
//! Plugins run with a clean environment (the `CNI_*` variables and `PATH`),
//! bounded by a timeout after which they are killed. [`CniNetwork::host_netns`]
//! runs them through `nsenter --net=<file>`, so the "host" side of a pod
//! network (bridge, host routes, sysctls) can be a namespace of its own.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use selur_api::network::{CidrError, Ipv6Cidr};

/// How long one plugin may run before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The file [`write_default_conflist`] writes.
pub const DEFAULT_CONFLIST: &str = "10-selur.conflist";

/// The network name of Selur's default conflist.
pub const DEFAULT_NETWORK_NAME: &str = "selur";

/// The config versions whose results this driver reads (the `ips` list of
/// 0.3.0 and later; 0.1/0.2's `ip4`/`ip6` are not supported).
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "0.4.0", "0.3.1", "0.3.0"];

/// `PATH` given to plugins (some, like `bridge`'s sysctl helpers or
/// `firewall`, run other programs).
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The magic number of nsfs (`statfs` of a bound network namespace file).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Errors loading a CNI network or running its plugins.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "no CNI network config (*.conflist, *.conf, *.json) in {dir}: install your CNI \
         plugin's config there, or use Selur's default (write_default_conflist)"
    )]
    NoConfig { dir: PathBuf },
    #[error("reading the CNI config dir {dir}: {source} (check that it exists and is readable)")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading CNI config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid CNI config {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error(
        "CNI plugin {plugin:?} not found in {dirs}: install it (Debian: containernetworking-plugins \
         puts them in /usr/lib/cni) or add its directory to the CNI bin dirs"
    )]
    PluginNotFound { plugin: String, dirs: String },
    #[error("starting CNI plugin {plugin} ({path}) for {command}: {source}")]
    Spawn {
        plugin: String,
        path: PathBuf,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The plugin's own error (its error JSON on stdout).
    #[error(
        "CNI plugin {plugin} {command} failed with code {code}: {msg}{}",
        if details.is_empty() { String::new() } else { format!(" ({details})") }
    )]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        details: String,
    },
    /// The plugin failed without an error JSON.
    #[error("CNI plugin {plugin} {command} exited with {status}: {output}")]
    PluginFailed {
        plugin: String,
        command: &'static str,
        status: ExitStatus,
        output: String,
    },
    #[error(
        "CNI plugin {plugin} {command} did not finish within {after:?} and was killed \
         (a hung plugin or datastore; see the plugin's logs)"
    )]
    Timeout {
        plugin: String,
        command: &'static str,
        after: Duration,
    },
    #[error("CNI plugin {plugin} {command} returned an unusable result: {reason}")]
    BadResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("{what} the CNI result cache {path}: {source}")]
    Cache {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing CNI config {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Selur's default CNI config: {0}")]
    DefaultConfig(String),
    /// ADD failed, and so did deleting what it had added: both errors, the
    /// cause first. The pod's network may be half made; a later DEL retries.
    #[error("{add}; and undoing it failed too: {del}")]
    Rollback {
        add: Box<CniError>,
        del: Box<CniError>,
    },
}

/// A loaded CNI network (one conflist).
#[derive(Debug, Clone)]
pub struct CniNetwork {
    /// The network's name (`name`).
    pub name: String,
    /// Its config version (`cniVersion`).
    pub cni_version: String,
    /// Its plugins' configs, in order, as written (each has `type`).
    pub plugins: Vec<Value>,
    /// Where plugins are looked up, in order (also `CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The file the network was loaded from.
    pub source: PathBuf,
    /// Run plugins inside this network namespace (`nsenter --net=`) instead
    /// of the agent's own: the namespace holding the node's side of pod
    /// networks.
    pub host_netns: Option<PathBuf>,
    /// How long each plugin may run.
    pub timeout: Duration,
}

/// The result of an ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The pod's addresses (`ips[].address` without the prefix length).
    pub ips: Vec<IpAddr>,
    /// The whole result as the last plugin returned it.
    pub raw: Value,
}

impl CniResult {
    /// Read a result (the `ips` list of spec 0.3.0 and later).
    pub fn parse(raw: Value) -> Result<Self, String> {
        let mut ips = Vec::new();
        if !raw.is_object() {
            return Err(format!("expected a JSON object, got {raw}"));
        }
        match raw.get("ips") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for entry in list {
                    let addr = entry
                        .get("address")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            format!("an entry of \"ips\" has no \"address\": {entry}")
                        })?;
                    let ip = addr.split_once('/').map_or(addr, |(a, _)| a);
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| format!("\"ips\" address {addr:?} is not an IP address"))?;
                    ips.push(ip);
                }
            }
            Some(other) => return Err(format!("\"ips\" is not a list: {other}")),
        }
        Ok(Self { ips, raw })
    }

    /// The pod's first IPv6 address.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ips.iter().find_map(|ip| match ip {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }
}

/// The CNI config files in `dir`, sorted by name (libcni's `ConfFiles`).
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let read_err = |source| CniError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"));
        // Directories named like configs are not configs.
        if wanted && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A string field of a config object, if present.
fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(CniError::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!("\"{key}\" must be a string, not {other}"),
        }),
    }
}

/// Parse one config file's contents into (name, cniVersion, plugins).
fn parse_config(path: &Path, text: &str) -> Result<(String, String, Vec<Value>), CniError> {
    let invalid = |reason: String| CniError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("expected a JSON object".into()))?;
    let is_list = path.extension().is_some_and(|e| e == "conflist");
    let name = str_field(obj, "name", path)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("no \"name\": every CNI network needs one".into()))?
        .to_string();
    let version = str_field(obj, "cniVersion", path)?
        .ok_or_else(|| {
            invalid(format!(
                "no \"cniVersion\": set one of {}",
                SUPPORTED_VERSIONS.join(", ")
            ))
        })?
        .to_string();
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(invalid(format!(
            "cniVersion {version:?} is not supported: use one of {}",
            SUPPORTED_VERSIONS.join(", ")
        )));
    }
    let plugins = if is_list {
        let list = match obj.get("plugins") {
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(invalid("\"plugins\" must be a list".into())),
            None => return Err(invalid("a .conflist needs a \"plugins\" list".into())),
        };
        if list.is_empty() {
            return Err(invalid("\"plugins\" is empty".into()));
        }
        list
    } else {
        if obj.contains_key("plugins") {
            return Err(invalid(
                "has a \"plugins\" list but is not named *.conflist: rename it to .conflist".into(),
            ));
        }
        // A single plugin's config is the only member of its list.
        vec![value.clone()]
    };
    for (i, plugin) in plugins.iter().enumerate() {
        let p = plugin
            .as_object()
            .ok_or_else(|| invalid(format!("plugin {i} is not a JSON object")))?;
        let ty = str_field(p, "type", path)?
            .ok_or_else(|| invalid(format!("plugin {i} has no \"type\" (the plugin's program)")))?;
        if ty.is_empty() || ty.contains('/') {
            return Err(invalid(format!(
                "plugin {i}'s \"type\" {ty:?} must be a program name, not a path"
            )));
        }
    }
    Ok((name, version, plugins))
}

/// The program of a plugin config (validated at load).
fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The stdin of one plugin: its own config plus the network's `name` and
/// `cniVersion`, and the previous plugin's result as `prevResult`.
pub fn plugin_stdin(
    plugin: &Value,
    name: &str,
    cni_version: &str,
    prev_result: Option<&Value>,
) -> Value {
    let mut conf = match plugin {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    conf.insert("name".into(), Value::String(name.into()));
    conf.insert("cniVersion".into(), Value::String(cni_version.into()));
    match prev_result {
        Some(prev) => {
            conf.insert("prevResult".into(), prev.clone());
        }
        None => {
            conf.remove("prevResult");
        }
    }
    Value::Object(conf)
}

/// What a plugin run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
        }
    }
}

/// The per-call CNI arguments.
struct Call<'a> {
    container_id: &'a str,
    /// Empty when the namespace is gone (DEL).
    netns: String,
    ifname: &'a str,
}

impl CniNetwork {
    /// The first network config in `conf_dir` (`*.conflist`, `*.conf`,
    /// `*.json` sorted by name); a single-plugin config is wrapped into a
    /// list. Plugins are looked up in `bin_dir`, in order.
    pub fn load(conf_dir: &Path, bin_dir: &[PathBuf]) -> Result<Self, CniError> {
        let files = conf_files(conf_dir)?;
        let first = files.first().ok_or_else(|| CniError::NoConfig {
            dir: conf_dir.to_path_buf(),
        })?;
        Self::load_file(first, bin_dir)
    }

    /// The network in the config file `path`.
    pub fn load_file(path: &Path, bin_dir: &[PathBuf]) -> Result<Self, CniError> {
        let text = std::fs::read_to_string(path).map_err(|source| CniError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let (name, cni_version, plugins) = parse_config(path, &text)?;
        Ok(Self {
            name,
            cni_version,
            plugins,
            bin_dirs: bin_dir.to_vec(),
            source: path.to_path_buf(),
            host_netns: None,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        })
    }

    /// Run plugins inside the network namespace bound at `netns`.
    pub fn with_host_netns(mut self, netns: impl Into<PathBuf>) -> Self {
        self.host_netns = Some(netns.into());
        self
    }

    /// Bound each plugin run by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// ADD the pod's network namespace `netns` (interface `ifname`) to the
    /// network: every plugin in order, each given the previous one's result.
    /// The final result is cached in `cache_file` for DEL. On failure, what
    /// was added is deleted again (best effort) and the plugin's error
    /// returned ([`CniError::Rollback`] if deleting failed as well).
    pub fn add(
        &self,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        cache_file: &Path,
    ) -> Result<CniResult, CniError> {
        let call = Call {
            container_id,
            netns: netns.display().to_string(),
            ifname,
        };
        let mut prev: Option<Value> = None;
        for (i, plugin) in self.plugins.iter().enumerate() {
            match self.run(plugin, Op::Add, &call, prev.as_ref()) {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {
                    let err = CniError::BadResult {
                        plugin: plugin_type(plugin).into(),
                        command: "ADD",
                        reason: "no result on stdout".into(),
                    };
                    return Err(self.roll_back(err, i, &call, prev.as_ref()));
                }
                Err(err) => return Err(self.roll_back(err, i, &call, prev.as_ref())),
            }
        }
        let plugin_name = self.plugins.last().map(plugin_type).unwrap_or_default();
        let raw = prev.unwrap_or(Value::Null);
        let result = match CniResult::parse(raw) {
            Ok(r) => r,
            Err(reason) => {
                let err = CniError::BadResult {
                    plugin: plugin_name.into(),
                    command: "ADD",
                    reason,
                };
                return Err(self.roll_back(err, self.plugins.len() - 1, &call, None));
            }
        };
        if let Err(err) = self.write_cache(cache_file, container_id, ifname, &result.raw) {
            return Err(self.roll_back(err, self.plugins.len() - 1, &call, Some(&result.raw)));
        }
        Ok(result)
    }

    /// DEL the plugins `0..=last` in reverse after a failed ADD; the ADD's
    /// error, with the DEL's if that failed too.
    fn roll_back(
        &self,
        add: CniError,
        last: usize,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> CniError {
        match self.del_plugins(&self.plugins[..=last], call, prev) {
            Ok(()) => add,
            Err(del) => CniError::Rollback {
                add: Box::new(add),
                del: Box::new(del),
            },
        }
    }

    /// DEL the pod's network namespace from the network: every plugin in
    /// reverse, with the result cached by ADD as `prevResult` if there is
    /// one. Idempotent: a namespace already gone, or no cache, is fine. The
    /// cache is removed once every plugin succeeded.
    pub fn del(
        &self,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        cache_file: &Path,
    ) -> Result<(), CniError> {
        let prev = self.read_cache(cache_file)?;
        let call = Call {
            container_id,
            netns: if is_netns(netns) {
                netns.display().to_string()
            } else {
                // Plugins skip the in-namespace part for an empty CNI_NETNS
                // but still release host-side resources (addresses, links).
                String::new()
            },
            ifname,
        };
        self.del_plugins(&self.plugins, &call, prev.as_ref())?;
        match std::fs::remove_file(cache_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache {
                what: "removing",
                path: cache_file.to_path_buf(),
                source,
            }),
        }
    }

    /// DEL `plugins` in reverse; every one is tried, the first error kept.
    fn del_plugins(
        &self,
        plugins: &[Value],
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first_err = None;
        for plugin in plugins.iter().rev() {
            if let Err(e) = self.run(plugin, Op::Del, call, prev) {
                tracing::warn!(network = %self.name, error = %e, "CNI DEL");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The cached ADD result in `path`, if any. A cache that cannot be read
    /// as one is ignored (DEL without prevResult) rather than blocking DEL
    /// forever.
    fn read_cache(&self, path: &Path) -> Result<Option<Value>, CniError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CniError::Cache {
                    what: "reading",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => match v.get("result") {
                Some(r) if r.is_object() => Ok(Some(r.clone())),
                _ => {
                    tracing::warn!(path = %path.display(), "CNI result cache has no result; DEL without prevResult");
                    Ok(None)
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "CNI result cache is not JSON; DEL without prevResult");
                Ok(None)
            }
        }
    }

    /// Cache an ADD's result (written to a temporary file and renamed, so a
    /// crash leaves either no cache or a whole one).
    fn write_cache(
        &self,
        path: &Path,
        container_id: &str,
        ifname: &str,
        result: &Value,
    ) -> Result<(), CniError> {
        let cache = json!({
            "kind": "selurCniCacheV1",
            "containerId": container_id,
            "ifName": ifname,
            "networkName": self.name,
            "cniVersion": self.cni_version,
            "result": result,
        });
        let err = |source| CniError::Cache {
            what: "writing",
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, cache.to_string()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Where plugin `ty` is.
    fn find_plugin(&self, ty: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: ty.into(),
                dirs: self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    /// The command running plugin `path` (through nsenter with a host netns).
    fn command(&self, path: &Path, op: Op, call: &Call<'_>) -> Command {
        let mut cmd = match &self.host_netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        };
        let cni_path = std::env::join_paths(&self.bin_dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        cmd.env_clear()
            .env("PATH", PLUGIN_PATH)
            .env("CNI_COMMAND", op.as_str())
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", &call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run one plugin; its result for ADD (None when it printed nothing).
    fn run(
        &self,
        plugin: &Value,
        op: Op,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let ty = plugin_type(plugin);
        let path = self.find_plugin(ty)?;
        let stdin = plugin_stdin(plugin, &self.name, &self.cni_version, prev).to_string();
        let child = self
            .command(&path, op, call)
            .spawn()
            .map_err(|source| CniError::Spawn {
                plugin: ty.into(),
                path: path.clone(),
                command: op.as_str(),
                source,
            })?;
        let out =
            wait_with_timeout(child, stdin.into_bytes(), self.timeout).map_err(|e| match e {
                WaitError::Timeout => CniError::Timeout {
                    plugin: ty.into(),
                    command: op.as_str(),
                    after: self.timeout,
                },
                WaitError::Io(source) => CniError::Spawn {
                    plugin: ty.into(),
                    path: path.clone(),
                    command: op.as_str(),
                    source,
                },
            })?;
        interpret(ty, op, out)
    }
}

/// What a finished plugin left.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Turn a plugin's output into its result or its error.
fn interpret(ty: &str, op: Op, out: Output) -> Result<Option<Value>, CniError> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<Value> = if stdout.trim().is_empty() {
        None
    } else {
        serde_json::from_str(stdout.trim()).ok()
    };
    if !out.status.success() {
        if let Some(err) = parsed.as_ref().and_then(plugin_error) {
            let (code, msg, details) = err;
            return Err(CniError::Plugin {
                plugin: ty.into(),
                command: op.as_str(),
                code,
                msg,
                details,
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let output = [stdout.trim(), stderr.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CniError::PluginFailed {
            plugin: ty.into(),
            command: op.as_str(),
            status: out.status,
            output: if output.is_empty() {
                "no output".into()
            } else {
                output
            },
        });
    }
    if op == Op::Del {
        return Ok(None);
    }
    match parsed {
        Some(v) if v.is_object() => Ok(Some(v)),
        Some(v) => Err(CniError::BadResult {
            plugin: ty.into(),
            command: op.as_str(),
            reason: format!("expected a JSON object, got {v}"),
        }),
        None if stdout.trim().is_empty() => Ok(None),
        None => Err(CniError::BadResult {
            plugin: ty.into(),
            command: op.as_str(),
            reason: format!("not JSON: {}", stdout.trim()),
        }),
    }
}

/// A CNI error JSON's (code, msg, details).
fn plugin_error(v: &Value) -> Option<(u64, String, String)> {
    let code = v.get("code")?.as_u64()?;
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let details = v
        .get("details")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, msg, details))
}

enum WaitError {
    Timeout,
    Io(std::io::Error),
}

/// Feed `input` to the child, collect its output, and kill it if it runs
/// longer than `timeout`.
fn wait_with_timeout(
    mut child: Child,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<Output, WaitError> {
    // Pipes are drained on threads so a plugin that writes a lot before
    // reading (or the other way round) cannot deadlock against us.
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            // A plugin that exits without reading closes the pipe: not ours
            // to report, its exit status says what happened.
            let _ = s.write_all(&input);
        }
    });
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WaitError::Io(e));
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The reader threads end when the pipes close; a grandchild
            // holding them open must not hold us too, so they are detached.
            return Err(WaitError::Timeout);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Whether `path` is a bound network namespace (a file on nsfs); a file
/// left after the namespace was unmounted, or no file, is not.
fn is_netns(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS_MAGIC)
}

/// Selur's default conflist: Debian's `bridge` plugin (the bridge is the
/// pods' gateway, no masquerading, hairpin on so a pod reaches itself
/// through a Service) with `host-local` addresses from the node's range.
pub fn default_conflist(
    bridge: &str,
    pod_cidr: &str,
    gateway: Ipv6Addr,
) -> Result<Value, CniError> {
    if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
        return Err(CniError::DefaultConfig(format!(
            "bridge name {bridge:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
        )));
    }
    let cidr: Ipv6Cidr = pod_cidr.parse().map_err(|e| {
        let why = match e {
            CidrError::Syntax => "not address/prefix".to_string(),
            CidrError::Ipv4 => "an IPv4 range (Selur's pods are IPv6-only)".to_string(),
            CidrError::HostBits { network } => {
                format!("bits set after the prefix (did you mean {network}?)")
            }
        };
        CniError::DefaultConfig(format!(
            "pod range {pod_cidr:?}: {why}; expected the node's IPv6 range, like fd00:10:0:1::/64"
        ))
    })?;
    let mask = if cidr.prefix() == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(cidr.prefix()))
    };
    if u128::from(gateway) & mask != u128::from(cidr.addr()) || gateway == cidr.addr() {
        return Err(CniError::DefaultConfig(format!(
            "gateway {gateway} is not a host address in the pod range {pod_cidr}"
        )));
    }
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": DEFAULT_NETWORK_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": pod_cidr, "gateway": gateway.to_string() }]],
                "routes": [{ "dst": "::/0" }],
            },
        }],
    }))
}

/// Write Selur's default conflist ([`default_conflist`]) as
/// `<dir>/10-selur.conflist`; its path.
pub fn write_default_conflist(
    dir: &Path,
    bridge: &str,
    pod_cidr: &str,
    gateway: Ipv6Addr,
) -> Result<PathBuf, CniError> {
    let conf = default_conflist(bridge, pod_cidr, gateway)?;
    let path = dir.join(DEFAULT_CONFLIST);
    let err = |source| CniError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let text = serde_json::to_string_pretty(&conf).map_err(|e| err(e.into()))?;
    std::fs::write(&path, text + "\n").map_err(err)?;
    Ok(path)
}
