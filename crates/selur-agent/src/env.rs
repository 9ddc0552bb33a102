//! Container environment as Kubernetes builds it: `envFrom` (ConfigMaps and
//! Secrets, with `prefix`) first, then `env` entries in order, each a literal
//! `value` or a `valueFrom` (`fieldRef` on the pod, `configMapKeyRef`,
//! `secretKeyRef`), later names overriding earlier ones. A missing source
//! that is not `optional` is an error (CreateContainerConfigError).
//!
//! Then, as the kubelet does, the Service variables for names the container
//! does not set itself: `KUBERNETES_SERVICE_HOST`/`_PORT` (and the other
//! variables) of `default/kubernetes` always, and those of every Service of
//! the pod's namespace with a clusterIP unless `enableServiceLinks: false`
//! (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORTNAME>]` and the
//! docker-link `<NAME>_PORT[_<port>_<PROTO>[_PROTO|_PORT|_ADDR]]`). They are
//! read from the API when the container starts, one list per start.

use std::collections::HashMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::{Agent, AgentError};

/// Reading a ConfigMap or Secret from the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("reading {plural}/{name}: {source}")]
    Request {
        plural: String,
        name: String,
        #[source]
        source: Box<AgentError>,
    },
    #[error("{plural}/{name}: HTTP {code}: {message}")]
    Refused {
        plural: String,
        name: String,
        code: u16,
        message: String,
    },
}

/// Why a container's environment cannot be built (shown to users as
/// `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("envFrom[{index}]: {plural} {name:?} not found")]
    SourceNotFound {
        index: usize,
        plural: &'static str,
        name: String,
    },
    #[error("env[{index}] ({name}): fieldPath {path:?} is not supported")]
    FieldPath {
        index: usize,
        name: String,
        path: String,
    },
    #[error("env[{index}] ({name}): key {key:?} of {plural} {object:?} not found")]
    KeyNotFound {
        index: usize,
        name: String,
        key: String,
        plural: &'static str,
        object: String,
    },
    #[error("env[{index}] ({name}): resourceFieldRef is not supported yet")]
    ResourceFieldRef { index: usize, name: String },
}

/// A namespaced object by plural and name; `None` when it does not exist.
pub(crate) async fn get_object(
    agent: &Agent,
    ns: &str,
    plural: &str,
    name: &str,
) -> Result<Option<Value>, ObjectError> {
    let path = format!("/api/v1/namespaces/{ns}/{plural}/{name}");
    match agent
        .call(
            reqwest::Method::GET,
            &path,
            "application/json",
            &Value::Null,
        )
        .await
    {
        Ok((200, v)) => Ok(Some(v)),
        Ok((404, _)) => Ok(None),
        Ok((code, v)) => Err(ObjectError::Refused {
            plural: plural.to_string(),
            name: name.to_string(),
            code,
            message: v["message"].as_str().unwrap_or("").to_string(),
        }),
        Err(source) => Err(ObjectError::Request {
            plural: plural.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

/// The Services of a namespace (`items` of the list).
async fn list_services(agent: &Agent, ns: &str) -> Result<Vec<Value>, ObjectError> {
    let path = format!("/api/v1/namespaces/{ns}/services");
    let refused = |code: u16, message: String| ObjectError::Refused {
        plural: "services".into(),
        name: String::new(),
        code,
        message,
    };
    match agent
        .call(
            reqwest::Method::GET,
            &path,
            "application/json",
            &Value::Null,
        )
        .await
    {
        Ok((200, v)) => Ok(v["items"].as_array().cloned().unwrap_or_default()),
        Ok((code, v)) => Err(refused(code, v["message"].as_str().unwrap_or("").into())),
        Err(source) => Err(ObjectError::Request {
            plural: "services".into(),
            name: String::new(),
            source: Box::new(source),
        }),
    }
}

/// The Services whose variables a pod in `ns` gets: `default/kubernetes`
/// always, the namespace's own with `links`.
async fn services_for(agent: &Agent, ns: &str, links: bool) -> Result<Vec<Value>, ObjectError> {
    // The Service proxy's watch cache, once it has listed: no API request
    // on the start path (the kubelet reads its informer the same way).
    if let Some(all) = agent.services_cache() {
        return Ok(all
            .iter()
            .filter(|s| {
                let sns = s["metadata"]["namespace"].as_str().unwrap_or("");
                (links && sns == ns)
                    || (sns == MASTER_NAMESPACE && s["metadata"]["name"] == MASTER_SERVICE)
            })
            .cloned()
            .collect());
    }
    let mut out = if links {
        list_services(agent, ns).await?
    } else {
        Vec::new()
    };
    let has_master =
        ns == MASTER_NAMESPACE && out.iter().any(|s| s["metadata"]["name"] == MASTER_SERVICE);
    if !has_master {
        if let Some(svc) = get_object(agent, MASTER_NAMESPACE, "services", MASTER_SERVICE).await? {
            out.push(svc);
        }
    }
    Ok(out)
}

const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// `my-svc` -> `MY_SVC`, as the kubelet names variables.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The kubelet's Service variables (`envvars.FromServices`) for a pod in
/// `ns`: Services without a clusterIP (headless, ExternalName) give none;
/// other namespaces' Services count only for `default/kubernetes`, and the
/// namespace's own only with `links`. Sorted by Service name.
pub fn service_vars(services: &[Value], ns: &str, links: bool) -> Vec<(String, String)> {
    let mut chosen: Vec<&Value> = services
        .iter()
        .filter(|s| {
            let ip = s["spec"]["clusterIP"].as_str().unwrap_or("");
            !ip.is_empty() && ip != "None"
        })
        .filter(|s| {
            let (sns, name) = (
                s["metadata"]["namespace"].as_str().unwrap_or(""),
                s["metadata"]["name"].as_str().unwrap_or(""),
            );
            (sns == MASTER_NAMESPACE && name == MASTER_SERVICE) || (links && sns == ns)
        })
        .collect();
    chosen.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or(""));
    chosen.dedup_by_key(|s| s["metadata"]["name"].as_str().unwrap_or(""));
    let mut out = Vec::new();
    for svc in chosen {
        let prefix = env_name(svc["metadata"]["name"].as_str().unwrap_or(""));
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
        let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        let port_of = |p: &Value| p["port"].as_i64().unwrap_or(0);
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), port_of(first).to_string()));
        }
        for p in &ports {
            if let Some(n) = p["name"].as_str().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                    port_of(p).to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            let port = port_of(p);
            let url = format!("{}://[{ip}]:{port}", proto.to_lowercase());
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
            out.push((format!("{pp}_PORT"), port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The string values of a ConfigMap (`data`) or Secret (`data`, base64-decoded; `stringData` is folded in by the API).
fn values_of(obj: &Value, secret: bool) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or("");
        let text = if secret {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default()
        } else {
            s.to_string()
        };
        out.insert(k.clone(), text);
    }
    out
}

/// The value of a `fieldRef` on the pod; `None` for unsupported paths.
fn field(pod: &Pod, path: &str) -> Option<String> {
    let (meta, spec, status) = (&pod.metadata, pod.spec.as_ref(), pod.status.as_ref());
    let v = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        p => {
            if let Some(k) = p
                .strip_prefix("metadata.labels['")
                .and_then(|r| r.strip_suffix("']"))
            {
                return meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
            }
            if let Some(k) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|r| r.strip_suffix("']"))
            {
                return meta.annotations.as_ref().and_then(|l| l.get(k)).cloned();
            }
            return None;
        }
    };
    Some(v.unwrap_or_default())
}

/// The resolved environment of `container` in `pod`.
pub async fn resolve(
    agent: &Agent,
    pod: &Pod,
    container: &Value,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: String, v: String, out: &mut Vec<(String, String)>| {
        out.retain(|(n, _)| *n != k);
        out.push((k, v));
    };
    for (i, from) in container["envFrom"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let prefix = from["prefix"].as_str().unwrap_or("");
        let (src, plural, secret) = if from.get("configMapRef").is_some() {
            (&from["configMapRef"], "configmaps", false)
        } else {
            (&from["secretRef"], "secrets", true)
        };
        let name = src["name"].as_str().unwrap_or("");
        match get_object(agent, ns, plural, name).await? {
            Some(obj) => {
                let mut vals: Vec<_> = values_of(&obj, secret).into_iter().collect();
                vals.sort();
                for (k, v) in vals {
                    set(format!("{prefix}{k}"), v, &mut out);
                }
            }
            None if src["optional"].as_bool() == Some(true) => {}
            None => {
                return Err(EnvError::SourceNotFound {
                    index: i,
                    plural,
                    name: name.to_string(),
                })
            }
        }
    }
    for (i, e) in container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = e["name"].as_str().unwrap_or("").to_string();
        if let Some(v) = e["value"].as_str() {
            set(name, v.to_string(), &mut out);
            continue;
        }
        let Some(from) = e.get("valueFrom") else {
            set(name, String::new(), &mut out);
            continue;
        };
        if let Some(fr) = from.get("fieldRef") {
            let path = fr["fieldPath"].as_str().unwrap_or("");
            let v = field(pod, path).ok_or_else(|| EnvError::FieldPath {
                index: i,
                name: name.clone(),
                path: path.to_string(),
            })?;
            set(name, v, &mut out);
        } else if let Some((src, plural, secret)) = from
            .get("configMapKeyRef")
            .map(|s| (s, "configmaps", false))
            .or_else(|| from.get("secretKeyRef").map(|s| (s, "secrets", true)))
        {
            let obj_name = src["name"].as_str().unwrap_or("");
            let key = src["key"].as_str().unwrap_or("");
            let optional = src["optional"].as_bool() == Some(true);
            let value = get_object(agent, ns, plural, obj_name)
                .await?
                .and_then(|o| values_of(&o, secret).remove(key));
            match value {
                Some(v) => set(name, v, &mut out),
                None if optional => {}
                None => {
                    return Err(EnvError::KeyNotFound {
                        index: i,
                        name,
                        key: key.to_string(),
                        plural,
                        object: obj_name.to_string(),
                    })
                }
            }
        } else if from.get("resourceFieldRef").is_some() {
            return Err(EnvError::ResourceFieldRef { index: i, name });
        }
    }
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    // Without the API (down, or partitioned away) a container still
    // (re)starts, without Service variables, as the kubelet does from an
    // empty informer: a restart must never wait for the control plane.
    let services = match services_for(agent, ns, links).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(namespace = ns, error = %e, "no Service variables for a container start: the Services could not be read");
            Vec::new()
        }
    };
    for (k, v) in service_vars(&services, ns, links) {
        // The container's own variables win, as with the kubelet.
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: Value) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn service_variables_follow_the_kubelet() {
        let services = [
            svc(
                "default",
                "kubernetes",
                "fd01::1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "web",
                "my-db",
                "fd01::20",
                json!([{"port": 5432, "protocol": "TCP"},
                {"name": "metrics", "port": 9187, "protocol": "UDP"}]),
            ),
            svc("web", "headless", "None", json!([{"port": 80}])),
            svc("other", "elsewhere", "fd01::30", json!([{"port": 80}])),
        ];
        let vars: HashMap<String, String> =
            service_vars(&services, "web", true).into_iter().collect();
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("fd01::1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://[fd01::1]:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("fd01::1"));
        assert_eq!(get("MY_DB_SERVICE_HOST"), Some("fd01::20"));
        assert_eq!(get("MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get("MY_DB_SERVICE_PORT_METRICS"), Some("9187"));
        assert_eq!(get("MY_DB_PORT"), Some("tcp://[fd01::20]:5432"));
        assert_eq!(get("MY_DB_PORT_9187_UDP"), Some("udp://[fd01::20]:9187"));
        assert_eq!(get("MY_DB_PORT_9187_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_DB_PORT_9187_UDP_PORT"), Some("9187"));
        assert!(!vars
            .keys()
            .any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE")));

        // enableServiceLinks: false keeps only the kubernetes Service.
        let vars = service_vars(&services, "web", false);
        assert!(
            vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{vars:?}"
        );
        assert!(!vars.is_empty());
    }

    #[test]
    fn field_refs_read_the_decoded_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "labels": {"app": "web"}, "annotations": {"a": "1"}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"podIP": "fd00::5"}}))
        .unwrap();
        assert_eq!(field(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(field(&pod, "metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(field(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(field(&pod, "status.podIP").as_deref(), Some("fd00::5"));
        assert_eq!(field(&pod, "status.hostIP").as_deref(), Some(""));
        assert_eq!(
            field(&pod, "metadata.labels['app']").as_deref(),
            Some("web")
        );
        assert_eq!(
            field(&pod, "metadata.annotations['a']").as_deref(),
            Some("1")
        );
        assert_eq!(field(&pod, "metadata.labels['none']"), None);
        assert_eq!(field(&pod, "spec.whatever"), None);
    }
}
