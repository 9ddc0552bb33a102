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
//!
//! Everything here blocks (plugins take from milliseconds to the timeout):
//! call it from `tokio::task::spawn_blocking` on the agent's runtime.

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
    #[error("CNI_ARGS {0}")]
    InvalidArgs(String),
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
    /// `CNI_ARGS` (empty for none).
    args: String,
}

/// `CNI_ARGS` from key/value pairs (`IgnoreUnknown=1;K=V;...`, as the
/// kubelet passes `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ...); empty for none.
/// `IgnoreUnknown=1` is added unless given, so plugins that do not know a
/// key do not fail.
pub fn cni_args(args: &[(&str, &str)]) -> Result<String, CniError> {
    if args.is_empty() {
        return Ok(String::new());
    }
    let mut parts = Vec::with_capacity(args.len() + 1);
    if !args.iter().any(|(k, _)| *k == "IgnoreUnknown") {
        parts.push("IgnoreUnknown=1".to_string());
    }
    for (k, v) in args {
        if k.is_empty() || k.contains([';', '=']) || v.contains([';', '=']) {
            return Err(CniError::InvalidArgs(format!(
                "{k:?}={v:?}: keys must be non-empty and neither keys nor values may hold ';' or '='"
            )));
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(";"))
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
        self.add_with_args(container_id, netns, ifname, &[], cache_file)
    }

    /// [`CniNetwork::add`] with `CNI_ARGS` (see [`cni_args`]).
    pub fn add_with_args(
        &self,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        args: &[(&str, &str)],
        cache_file: &Path,
    ) -> Result<CniResult, CniError> {
        let last = self
            .plugins
            .len()
            .checked_sub(1)
            .ok_or_else(|| CniError::InvalidConfig {
                path: self.source.clone(),
                reason: "no plugins".into(),
            })?;
        let call = Call {
            container_id,
            netns: netns.display().to_string(),
            ifname,
            args: cni_args(args)?,
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
                return Err(self.roll_back(err, last, &call, None));
            }
        };
        if let Err(err) = self.write_cache(cache_file, container_id, ifname, &result.raw) {
            return Err(self.roll_back(err, last, &call, Some(&result.raw)));
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
        match self.del_plugins(
            self.plugins.get(..=last).unwrap_or(&self.plugins),
            call,
            prev,
        ) {
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
        self.del_with_args(container_id, netns, ifname, &[], cache_file)
    }

    /// [`CniNetwork::del`] with `CNI_ARGS` (see [`cni_args`]).
    pub fn del_with_args(
        &self,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        args: &[(&str, &str)],
        cache_file: &Path,
    ) -> Result<(), CniError> {
        let args = cni_args(args)?;
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
            args,
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
        if !call.args.is_empty() {
            cmd.env("CNI_ARGS", &call.args);
        }
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
        let child =
            spawn(&mut self.command(&path, op, call)).map_err(|source| CniError::Spawn {
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

/// Start `cmd`, retrying briefly while its program is busy being written
/// (a plugin replaced by a package upgrade at that moment).
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
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
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// A fake plugin `name` in `bin`: records its call and stdin in `log`,
    /// then runs `body` (shell).
    fn fake_plugin(bin: &Path, log: &Path, name: &str, body: &str) {
        let script = format!(
            "#!/bin/sh\nin=$(cat)\n\
             echo \"$CNI_COMMAND {name} $CNI_CONTAINERID [$CNI_NETNS] $CNI_IFNAME $CNI_PATH\" >> {log}/calls\n\
             printf '%s' \"$in\" > {log}/{name}.$CNI_COMMAND.stdin\n\
             env > {log}/{name}.env\n{body}\n",
            log = log.display()
        );
        let path = bin.join(name);
        let tmp = bin.join(format!(".{name}.tmp"));
        write(&tmp, &script);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in ["conf", "bin", "log"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            Self { dir }
        }
        fn conf(&self) -> PathBuf {
            self.dir.path().join("conf")
        }
        fn bin(&self) -> PathBuf {
            self.dir.path().join("bin")
        }
        fn log(&self) -> PathBuf {
            self.dir.path().join("log")
        }
        fn cache(&self) -> PathBuf {
            self.dir.path().join("cache/pod1-eth0.json")
        }
        fn plugin(&self, name: &str, body: &str) {
            fake_plugin(&self.bin(), &self.log(), name, body);
        }
        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.log().join("calls"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }
        fn stdin(&self, name: &str, cmd: &str) -> Value {
            let text =
                std::fs::read_to_string(self.log().join(format!("{name}.{cmd}.stdin"))).unwrap();
            serde_json::from_str(&text).unwrap()
        }
        fn network(&self, plugins: &[&str]) -> CniNetwork {
            let list: Vec<Value> = plugins
                .iter()
                .map(|p| json!({ "type": p, "opt": format!("{p}-opt") }))
                .collect();
            write(
                &self.conf().join("10-test.conflist"),
                &json!({ "cniVersion": "1.0.0", "name": "testnet", "plugins": list }).to_string(),
            );
            CniNetwork::load(&self.conf(), &[self.dir.path().join("nowhere"), self.bin()]).unwrap()
        }
    }

    const RESULT_A: &str = r#"echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"fd00:1::5/64","interface":0}]}'"#;
    const RESULT_B: &str = r#"echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.0.5/24"},{"address":"fd00:1::5/64","gateway":"fd00:1::1"}]}'"#;

    #[test]
    fn load_takes_the_first_config_by_name_and_wraps_a_conf() {
        let f = Fixture::new();
        write(
            &f.conf().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        write(
            &f.conf().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp","mtu":1400}"#,
        );
        write(&f.conf().join("00-readme.txt"), "not a config");
        std::fs::create_dir(f.conf().join("05-dir.conf")).unwrap();
        let net = CniNetwork::load(&f.conf(), &[f.bin()]).unwrap();
        assert_eq!(net.name, "a");
        assert_eq!(net.cni_version, "0.4.0");
        assert_eq!(net.plugins.len(), 1);
        assert_eq!(net.plugins[0]["type"], "ptp");
        assert_eq!(net.plugins[0]["mtu"], 1400);
        assert_eq!(net.source, f.conf().join("10-a.conf"));
        assert_eq!(net.timeout, DEFAULT_PLUGIN_TIMEOUT);

        std::fs::remove_file(f.conf().join("10-a.conf")).unwrap();
        let net = CniNetwork::load(&f.conf(), &[f.bin()]).unwrap();
        assert_eq!(net.name, "b");
        let types: Vec<_> = net.plugins.iter().map(plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap"]);
    }

    #[test]
    fn load_reads_json_files_like_conf() {
        let f = Fixture::new();
        write(
            &f.conf().join("99-x.json"),
            r#"{"cniVersion":"0.3.1","name":"x","type":"bridge"}"#,
        );
        let net = CniNetwork::load(&f.conf(), &[]).unwrap();
        assert_eq!((net.name.as_str(), net.plugins.len()), ("x", 1));
    }

    #[test]
    fn no_config_names_the_dir() {
        let f = Fixture::new();
        let err = CniNetwork::load(&f.conf(), &[]).unwrap_err().to_string();
        assert!(err.contains(&f.conf().display().to_string()), "{err}");
        assert!(err.contains("*.conflist"), "{err}");
        let missing = f.dir.path().join("absent");
        let err = CniNetwork::load(&missing, &[]).unwrap_err();
        assert!(matches!(err, CniError::ReadDir { .. }), "{err}");
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn invalid_configs_are_named_with_the_reason() {
        let cases = [
            ("a.conflist", "{nope", "not JSON"),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "no \"name\"",
            ),
            (
                "a.conflist",
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                "no \"cniVersion\"",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"x"}]}"#,
                "not supported",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "\"plugins\" is empty",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                "needs a \"plugins\" list",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"mtu":1}]}"#,
                "plugin 0 has no \"type\"",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
                "not a path",
            ),
            (
                "a.conf",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"}]}"#,
                "rename it to .conflist",
            ),
            (
                "a.conf",
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                "no \"type\"",
            ),
            ("a.conf", r#"[1]"#, "JSON object"),
        ];
        for (file, text, want) in cases {
            let f = Fixture::new();
            write(&f.conf().join(file), text);
            let err = CniNetwork::load(&f.conf(), &[]).unwrap_err();
            assert!(
                matches!(err, CniError::InvalidConfig { .. }),
                "{text}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(
                msg.contains(&f.conf().join(file).display().to_string()),
                "{msg}"
            );
        }
    }

    #[test]
    fn result_addresses_without_prefix() {
        let r = CniResult::parse(json!({
            "ips": [{"address": "10.1.0.5/24"}, {"address": "fd00:1::5/64"}, {"address": "fd00:2::5/64"}]
        }))
        .unwrap();
        assert_eq!(r.ips.len(), 3);
        assert_eq!(r.ips[0], "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(r.ipv6(), Some("fd00:1::5".parse().unwrap()));
        let none = CniResult::parse(json!({"cniVersion": "1.0.0"})).unwrap();
        assert!(none.ips.is_empty() && none.ipv6().is_none());
        let v4 = CniResult::parse(json!({"ips": [{"address": "10.0.0.1/8"}]})).unwrap();
        assert_eq!(v4.ipv6(), None);
        let err = CniResult::parse(json!({"ips": [{"address": "fd00::zz/64"}]})).unwrap_err();
        assert!(err.contains("fd00::zz/64"), "{err}");
        assert!(CniResult::parse(json!({"ips": [{"gateway": "fd00::1"}]})).is_err());
        assert!(CniResult::parse(json!({"ips": "x"})).is_err());
        assert!(CniResult::parse(json!([1])).is_err());
    }

    #[test]
    fn stdin_is_the_plugin_config_with_name_version_and_prev_result() {
        let plugin = json!({"type": "bridge", "bridge": "br0", "cniVersion": "0.3.0", "prevResult": {"stale": true}});
        let prev = json!({"ips": [{"address": "fd00::5/64"}]});
        let s = plugin_stdin(&plugin, "net", "1.0.0", Some(&prev));
        assert_eq!(
            s,
            json!({"type": "bridge", "bridge": "br0", "name": "net", "cniVersion": "1.0.0", "prevResult": prev})
        );
        let s = plugin_stdin(&plugin, "net", "1.0.0", None);
        assert!(s.get("prevResult").is_none(), "{s}");
    }

    #[test]
    fn add_chains_prev_result_caches_it_and_del_hands_it_back_in_reverse() {
        let f = Fixture::new();
        f.plugin(
            "a",
            &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_A}; exit 0"),
        );
        f.plugin(
            "b",
            &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_B}; exit 0"),
        );
        let net = f.network(&["a", "b"]);
        let netns = f.dir.path().join("not-a-netns");
        let r = net.add("pod1", &netns, "eth0", &f.cache()).unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.ipv6(), Some("fd00:1::5".parse().unwrap()));
        assert_eq!(r.raw["ips"][1]["gateway"], "fd00:1::1");

        let a_in = f.stdin("a", "ADD");
        assert_eq!(a_in["name"], "testnet");
        assert_eq!(a_in["cniVersion"], "1.0.0");
        assert_eq!(a_in["opt"], "a-opt");
        assert!(a_in.get("prevResult").is_none());
        let b_in = f.stdin("b", "ADD");
        assert_eq!(b_in["prevResult"]["ips"][0]["address"], "fd00:1::5/64");
        assert_eq!(b_in["opt"], "b-opt");

        let cache: Value =
            serde_json::from_str(&std::fs::read_to_string(f.cache()).unwrap()).unwrap();
        assert_eq!(cache["result"], r.raw);
        assert_eq!(cache["containerId"], "pod1");

        // A fresh load, as after an agent restart.
        let net = CniNetwork::load(&f.conf(), &net.bin_dirs).unwrap();
        net.del("pod1", &netns, "eth0", &f.cache()).unwrap();
        let cni_path = format!(
            "{}:{}",
            f.dir.path().join("nowhere").display(),
            f.bin().display()
        );
        let calls = f.calls();
        assert_eq!(
            calls,
            [
                format!("ADD a pod1 [{}] eth0 {cni_path}", netns.display()),
                format!("ADD b pod1 [{}] eth0 {cni_path}", netns.display()),
                // The netns is not a namespace: DEL gets an empty CNI_NETNS.
                format!("DEL b pod1 [] eth0 {cni_path}"),
                format!("DEL a pod1 [] eth0 {cni_path}"),
            ]
        );
        assert_eq!(f.stdin("a", "DEL")["prevResult"], r.raw);
        assert_eq!(f.stdin("b", "DEL")["prevResult"], r.raw);
        assert!(!f.cache().exists());

        // Again: nothing cached, still fine, no prevResult.
        net.del("pod1", &netns, "eth0", &f.cache()).unwrap();
        assert!(f.stdin("a", "DEL").get("prevResult").is_none());
    }

    #[test]
    fn plugins_get_a_clean_environment() {
        let f = Fixture::new();
        f.plugin("a", RESULT_A);
        let net = f.network(&["a"]);
        net.add("pod1", Path::new("/nonexistent"), "eth0", &f.cache())
            .unwrap();
        let env = std::fs::read_to_string(f.log().join("a.env")).unwrap();
        let mut names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            // Set by the shell itself.
            .filter(|k| !matches!(*k, "PWD" | "SHLVL" | "_" | "OLDPWD"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "CNI_COMMAND",
                "CNI_CONTAINERID",
                "CNI_IFNAME",
                "CNI_NETNS",
                "CNI_PATH",
                "PATH"
            ]
        );
    }

    #[test]
    fn cni_args_are_passed_with_ignore_unknown() {
        let f = Fixture::new();
        f.plugin(
            "a",
            &format!(
                "echo \"$CNI_ARGS\" > {}/args; {RESULT_A}",
                f.log().display()
            ),
        );
        let net = f.network(&["a"]);
        let args = [("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web-1")];
        net.add_with_args("pod1", Path::new("/x"), "eth0", &args, &f.cache())
            .unwrap();
        let seen = std::fs::read_to_string(f.log().join("args")).unwrap();
        assert_eq!(
            seen.trim(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1"
        );
        assert_eq!(cni_args(&[]).unwrap(), "");
        assert_eq!(
            cni_args(&[("IgnoreUnknown", "0")]).unwrap(),
            "IgnoreUnknown=0"
        );
        let err = cni_args(&[("A", "x;B=y")]).unwrap_err().to_string();
        assert!(err.contains("';'"), "{err}");
        let err = net
            .del_with_args("pod1", Path::new("/x"), "eth0", &[("", "v")], &f.cache())
            .unwrap_err();
        assert!(matches!(err, CniError::InvalidArgs(_)), "{err:?}");
    }

    #[test]
    fn a_network_without_plugins_is_an_error_not_a_panic() {
        let f = Fixture::new();
        let net = CniNetwork {
            plugins: Vec::new(),
            ..f.network(&["a"])
        };
        let err = net
            .add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        assert!(err.to_string().contains("no plugins"), "{err}");
    }

    #[test]
    fn failed_add_deletes_what_was_added_and_returns_the_plugins_error() {
        let f = Fixture::new();
        f.plugin(
            "a",
            &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_A}; exit 0"),
        );
        f.plugin(
            "b",
            r#"if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"no more addresses","details":"range full"}'; exit 1; fi"#,
        );
        f.plugin("c", RESULT_A);
        let net = f.network(&["a", "b", "c"]);
        let err = net
            .add("pod1", Path::new("/nonexistent"), "eth0", &f.cache())
            .unwrap_err();
        match &err {
            CniError::Plugin {
                plugin,
                command,
                code,
                msg,
                details,
            } => {
                assert_eq!((plugin.as_str(), *command, *code), ("b", "ADD", 11));
                assert_eq!(
                    (msg.as_str(), details.as_str()),
                    ("no more addresses", "range full")
                );
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("no more addresses") && text.contains("range full"),
            "{text}"
        );
        let calls: Vec<String> = f
            .calls()
            .iter()
            .map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        // c never ran; b (which may have half-made something) and a are deleted.
        assert_eq!(calls, ["ADD a", "ADD b", "DEL b", "DEL a"]);
        assert_eq!(
            f.stdin("a", "DEL")["prevResult"]["ips"][0]["address"],
            "fd00:1::5/64"
        );
        assert!(!f.cache().exists());
    }

    #[test]
    fn failed_add_whose_cleanup_fails_keeps_both_errors() {
        let f = Fixture::new();
        f.plugin("a", r#"echo "broken $CNI_COMMAND" >&2; exit 3"#);
        let net = f.network(&["a"]);
        let err = net
            .add("pod1", Path::new("/nonexistent"), "eth0", &f.cache())
            .unwrap_err();
        let CniError::Rollback { add, del } = &err else {
            panic!("{err:?}")
        };
        assert!(add.to_string().contains("broken ADD"), "{add}");
        assert!(del.to_string().contains("broken DEL"), "{del}");
        assert!(matches!(**add, CniError::PluginFailed { .. }));
    }

    #[test]
    fn add_without_a_result_is_an_error() {
        let f = Fixture::new();
        f.plugin("a", "exit 0");
        let net = f.network(&["a"]);
        let err = net
            .add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        assert!(err.to_string().contains("no result"), "{err}");
        f.plugin("a", "echo not-json");
        let err = net
            .add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        assert!(err.to_string().contains("not JSON: not-json"), "{err}");
    }

    #[test]
    fn a_hung_plugin_is_killed_after_the_timeout() {
        let f = Fixture::new();
        f.plugin(
            "a",
            r#"if [ "$CNI_COMMAND" = ADD ]; then exec sleep 30; fi"#,
        );
        let net = f.network(&["a"]).with_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let err = net
            .add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(
            matches!(err, CniError::Timeout { ref plugin, command: "ADD", .. } if plugin == "a"),
            "{err:?}"
        );
        assert!(err.to_string().contains("was killed"), "{err}");
    }

    #[test]
    fn a_missing_plugin_names_the_dirs() {
        let f = Fixture::new();
        let net = f.network(&["absent"]);
        let err = net
            .add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        // DEL of the rollback finds it missing too.
        let CniError::Rollback { add, .. } = &err else {
            panic!("{err:?}")
        };
        let text = add.to_string();
        assert!(
            text.contains("\"absent\"") && text.contains(&f.bin().display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn a_corrupt_cache_does_not_block_del() {
        let f = Fixture::new();
        f.plugin("a", "exit 0");
        let net = f.network(&["a"]);
        std::fs::create_dir_all(f.cache().parent().unwrap()).unwrap();
        write(&f.cache(), "{truncated");
        net.del("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap();
        assert!(f.stdin("a", "DEL").get("prevResult").is_none());
        assert!(!f.cache().exists());
    }

    #[test]
    fn del_errors_are_returned_and_keep_the_cache() {
        let f = Fixture::new();
        f.plugin("a", r#"[ "$CNI_COMMAND" = ADD ] && echo '{"ips":[]}' && exit 0; echo '{"code":7,"msg":"busy"}'; exit 1"#);
        f.plugin(
            "b",
            r#"[ "$CNI_COMMAND" = ADD ] && echo '{"ips":[]}'; exit 0"#,
        );
        let net = f.network(&["a", "b"]);
        net.add("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap();
        let err = net
            .del("pod1", Path::new("/x"), "eth0", &f.cache())
            .unwrap_err();
        assert!(matches!(err, CniError::Plugin { code: 7, .. }), "{err:?}");
        // b ran even though a failed, and the cache is kept for the retry.
        assert!(f.calls().iter().any(|c| c.starts_with("DEL b")));
        assert!(f.cache().exists());
    }

    #[test]
    fn default_conflist_round_trips_and_checks_its_inputs() {
        let f = Fixture::new();
        let gw: Ipv6Addr = "fd00:10:0:1::1".parse().unwrap();
        let path = write_default_conflist(&f.conf(), "selurcni0", "fd00:10:0:1::/64", gw).unwrap();
        assert_eq!(path, f.conf().join("10-selur.conflist"));
        let net = CniNetwork::load(&f.conf(), &[PathBuf::from("/usr/lib/cni")]).unwrap();
        assert_eq!(net.name, "selur");
        assert_eq!(net.cni_version, "1.0.0");
        let p = &net.plugins[0];
        assert_eq!(p["type"], "bridge");
        assert_eq!(p["bridge"], "selurcni0");
        assert_eq!(
            (
                p["isGateway"].as_bool(),
                p["ipMasq"].as_bool(),
                p["hairpinMode"].as_bool()
            ),
            (Some(true), Some(false), Some(true))
        );
        assert_eq!(p["ipam"]["type"], "host-local");
        assert_eq!(p["ipam"]["ranges"][0][0]["subnet"], "fd00:10:0:1::/64");
        assert_eq!(p["ipam"]["ranges"][0][0]["gateway"], "fd00:10:0:1::1");

        for (bridge, cidr, gw, want) in [
            ("", "fd00::/64", "fd00::1", "bridge name"),
            ("a-very-long-bridge", "fd00::/64", "fd00::1", "bridge name"),
            ("br0", "10.0.0.0/24", "fd00::1", "IPv4"),
            ("br0", "fd00::1/64", "fd00::1", "did you mean fd00::/64"),
            ("br0", "fd00::", "fd00::1", "not address/prefix"),
            ("br0", "fd00::/64", "fd01::1", "not a host address"),
            ("br0", "fd00::/64", "fd00::", "not a host address"),
        ] {
            let err = default_conflist(bridge, cidr, gw.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bridge} {cidr} {gw}: {err}");
        }
    }
}
