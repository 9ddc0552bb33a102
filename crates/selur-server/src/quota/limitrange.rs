//! LimitRange on pod creation, as Kubernetes' LimitRanger: containers that
//! leave a resource out get the `Container` item's `default` (limits) and
//! `defaultRequest` (requests; the default limit or the minimum when absent),
//! then every container is checked against `min`/`max`, and the pod's sums
//! against `Pod` items. Runs before quota is checked, so defaults count.

use std::sync::Arc;

use selur_api::quantity::{self, Quantity};
use selur_api::TypedObject;
use selur_store::Store;
use serde_json::{Map, Value};

use crate::admission::{AdmissionRequest, Operation, StoreMutator};
use crate::registry::prefix;
use crate::status::{ApiError, ApiResult};

fn map(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn q(v: &Value) -> Option<Quantity> {
    quantity::parse(v.as_str()?).ok()
}

/// Fill in defaults of the `Container` items of `ranges` (LimitRange objects).
pub fn default_pod(ranges: &[Value], pod: &mut Value) {
    for item in items(ranges, "Container") {
        let default = map(item.get("default").or_else(|| item.get("max")));
        let mut request = map(item.get("min"));
        request.extend(map(item.get("default")));
        request.extend(map(item.get("defaultRequest")));
        for list in ["containers", "initContainers"] {
            let Some(cs) = pod
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in cs {
                let res = &mut c["resources"];
                if !res.is_object() {
                    *res = Value::Object(Map::new());
                }
                for (field, defaults) in [("limits", &default), ("requests", &request)] {
                    if defaults.is_empty() {
                        continue;
                    }
                    let m = &mut res[field];
                    if !m.is_object() {
                        *m = Value::Object(Map::new());
                    }
                    if let Some(m) = m.as_object_mut() {
                        for (k, v) in defaults {
                            m.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
            }
        }
    }
}

fn items<'a>(ranges: &'a [Value], type_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .filter_map(|r| r.pointer("/spec/limits").and_then(Value::as_array))
        .flatten()
        .filter(move |i| i["type"] == type_)
}

fn check(
    what: &str,
    item: &Value,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errs: &mut Vec<String>,
) {
    for (r, min) in map(item.get("min")) {
        match requests.get(&r).and_then(q) {
            None => errs.push(format!(
                "minimum {r} usage per {what} is {}.  No request is specified",
                min.as_str().unwrap_or("")
            )),
            Some(v) if q(&min).is_some_and(|m| v < m) => errs.push(format!(
                "minimum {r} usage per {what} is {}, but request is {v}",
                min.as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
    for (r, max) in map(item.get("max")) {
        match limits.get(&r).and_then(q) {
            None => errs.push(format!(
                "maximum {r} usage per {what} is {}.  No limit is specified",
                max.as_str().unwrap_or("")
            )),
            Some(v) if q(&max).is_some_and(|m| v > m) => errs.push(format!(
                "maximum {r} usage per {what} is {}, but limit is {v}",
                max.as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
}

fn sum(pod: &Value, field: &str) -> Map<String, Value> {
    let mut total: std::collections::BTreeMap<String, Quantity> = Default::default();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in map(c.pointer(&format!("/resources/{field}"))) {
            if let Some(v) = q(&v) {
                let e = total.entry(k).or_default();
                *e = e.checked_add(&v).unwrap_or(*e);
            }
        }
    }
    total
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.to_string())))
        .collect()
}

/// The min/max violations of `pod` against `ranges`, in Kubernetes' words.
pub fn violations(ranges: &[Value], pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(ranges, "Container") {
        for list in ["/spec/containers", "/spec/initContainers"] {
            for c in pod
                .pointer(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let requests = map(c.pointer("/resources/requests"));
                let limits = map(c.pointer("/resources/limits"));
                check("Container", item, &requests, &limits, &mut errs);
            }
        }
    }
    for item in items(ranges, "Pod") {
        check(
            "Pod",
            item,
            &sum(pod, "requests"),
            &sum(pod, "limits"),
            &mut errs,
        );
    }
    errs
}

/// The LimitRange mutator.
pub struct LimitRanger {
    store: Arc<dyn Store>,
}

impl LimitRanger {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl StoreMutator for LimitRanger {
    async fn mutate(&self, req: &AdmissionRequest<'_>, obj: &mut TypedObject) -> ApiResult<()> {
        let is_pod = req.kind.group.is_empty() && req.kind.plural == "pods";
        let (true, Operation::Create, Some(ns)) = (is_pod, req.operation, req.namespace) else {
            return Ok(());
        };
        let Some(lr_kind) = selur_api::kinds::by_cli_name("limitranges") else {
            return Ok(());
        };
        let items = self
            .store
            .list(&prefix(lr_kind, Some(ns)), None, 0)
            .await?
            .items;
        if items.is_empty() {
            return Ok(());
        }
        let ranges: Vec<Value> = items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let mut pod = obj
            .to_value()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        default_pod(&ranges, &mut pod);
        let errs = violations(&ranges, &pod);
        if !errs.is_empty() {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let msg = if errs.len() == 1 {
                errs[0].clone()
            } else {
                format!("[{}]", errs.join(", "))
            };
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: {msg}"
            )));
        }
        let (_, typed) = selur_api::decode::decode(pod).map_err(|e| ApiError::decode(&e))?;
        *obj = typed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ranges() -> Vec<Value> {
        vec![json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m"},
            "max": {"cpu": "2"}}]}})]
    }

    #[test]
    fn defaults_fill_only_what_a_container_leaves_out() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]}});
        default_pod(&ranges(), &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"},
                   "requests": {"cpu": "100m", "memory": "256Mi"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["requests"]["memory"],
            "256Mi"
        );
        assert!(violations(&ranges(), &pod).is_empty());
    }

    #[test]
    fn max_is_enforced_with_kubernetes_words() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "3"}}}]}});
        assert_eq!(
            violations(&ranges(), &pod),
            vec!["maximum cpu usage per Container is 2, but limit is 3".to_string()]
        );
    }
}
