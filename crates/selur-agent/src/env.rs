//! Container environment as Kubernetes builds it: `envFrom` (ConfigMaps and
//! Secrets, with `prefix`) first, then `env` entries in order, each a literal
//! `value` or a `valueFrom` (`fieldRef` on the pod, `configMapKeyRef`,
//! `secretKeyRef`), later names overriding earlier ones. A missing source
//! that is not `optional` is an error (CreateContainerConfigError).

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;

use crate::Agent;

/// A namespaced object by plural and name; `None` when it does not exist.
pub(crate) async fn get_object(
    agent: &Agent,
    ns: &str,
    plural: &str,
    name: &str,
) -> Result<Option<Value>, String> {
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
        Ok((code, v)) => Err(format!(
            "{plural}/{name}: HTTP {code}: {}",
            v["message"].as_str().unwrap_or("")
        )),
        Err(e) => Err(e.to_string()),
    }
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

fn field(pod: &Value, path: &str) -> Option<String> {
    let v = match path {
        "metadata.name" => pod.pointer("/metadata/name"),
        "metadata.namespace" => pod.pointer("/metadata/namespace"),
        "metadata.uid" => pod.pointer("/metadata/uid"),
        "spec.nodeName" => pod.pointer("/spec/nodeName"),
        "spec.serviceAccountName" => pod.pointer("/spec/serviceAccountName"),
        "status.podIP" => pod.pointer("/status/podIP"),
        "status.hostIP" => pod.pointer("/status/hostIP"),
        p => {
            if let Some(k) = p
                .strip_prefix("metadata.labels['")
                .and_then(|r| r.strip_suffix("']"))
            {
                return pod
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            if let Some(k) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|r| r.strip_suffix("']"))
            {
                return pod
                    .pointer("/metadata/annotations")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            None
        }
    };
    Some(v.and_then(Value::as_str).unwrap_or("").to_string())
}

/// The resolved environment of `container` in `pod`.
pub async fn resolve(
    agent: &Agent,
    pod: &Value,
    container: &Value,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
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
            None => return Err(format!("envFrom[{i}]: {plural} {name:?} not found")),
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
            let v = field(pod, path)
                .ok_or_else(|| format!("env[{i}] ({name}): fieldPath {path:?} is not supported"))?;
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
                    return Err(format!(
                        "env[{i}] ({name}): key {key:?} of {plural} {obj_name:?} not found"
                    ))
                }
            }
        } else if from.get("resourceFieldRef").is_some() {
            return Err(format!(
                "env[{i}] ({name}): resourceFieldRef is not supported yet"
            ));
        }
    }
    Ok(out)
}
