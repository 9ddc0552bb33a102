//! What an object costs against a ResourceQuota, as Kubernetes' quota
//! evaluators count it (pure: no store, no clock).
//!
//! Pods cost `pods`, `count/pods`, `requests.<r>` (and bare `cpu`/`memory`)
//! and `limits.<r>`, with the pod's effective requests and limits: the larger
//! of the containers' sum and the largest init container, plus overhead.
//! Finished pods (Succeeded/Failed) cost nothing. Every other object costs
//! one of `count/<plural>.<group>` (`count/<plural>` in the core group) and,
//! for the core kinds Kubernetes names so, the legacy `<plural>`.

use std::collections::BTreeMap;

use selur_api::kinds::{ResourceKind, KINDS};
use selur_api::quantity::{self, Quantity};
use serde_json::Value;

/// Resource name → amount.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Core kinds whose count has a legacy name without `count/`.
const LEGACY_COUNTS: &[&str] = &[
    "pods",
    "services",
    "secrets",
    "configmaps",
    "replicationcontrollers",
    "resourcequotas",
    "persistentvolumeclaims",
];

/// Resources a pod's cpu/memory quota forces every container to state.
const MUST_STATE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

fn one() -> Quantity {
    Quantity::from_millis(1000)
}

/// `count/<plural>.<group>` (`count/<plural>` for the core group).
pub fn count_name(kind: &ResourceKind) -> String {
    format!("count/{}", kind.qualified_plural())
}

/// The kind whose objects a quota resource name counts.
pub fn kind_of_resource(name: &str) -> Option<&'static ResourceKind> {
    let pod_kind = || {
        KINDS
            .iter()
            .find(|k| k.group.is_empty() && k.plural == "pods")
    };
    if let Some(rest) = name.strip_prefix("count/") {
        return KINDS.iter().find(|k| k.qualified_plural() == rest);
    }
    if name == "cpu"
        || name == "memory"
        || name.starts_with("requests.")
        || name.starts_with("limits.")
    {
        return pod_kind();
    }
    if LEGACY_COUNTS.contains(&name) {
        return KINDS
            .iter()
            .find(|k| k.group.is_empty() && k.plural == name);
    }
    None
}

fn is_pods(kind: &ResourceKind) -> bool {
    kind.group.is_empty() && kind.plural == "pods"
}

/// Whether the pod has finished and no longer counts.
pub fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn quantities(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Some((k.clone(), quantity::parse(q.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn add_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let e = acc.entry(k.clone()).or_default();
        *e = e.checked_add(q).unwrap_or(*e);
    }
}

fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let e = acc.entry(k.clone()).or_default();
        if q > e {
            *e = *q;
        }
    }
}

/// The pod's effective requests or limits (`field` is `requests` or `limits`).
fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let of = |c: &Value| quantities(c.pointer(&format!("/resources/{field}")));
    let list = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut sum = ResourceList::new();
    for c in list("/spec/containers") {
        add_into(&mut sum, &of(&c));
    }
    let mut init = ResourceList::new();
    for c in list("/spec/initContainers") {
        max_into(&mut init, &of(&c));
    }
    max_into(&mut sum, &init);
    add_into(&mut sum, &quantities(pod.pointer("/spec/overhead")));
    sum
}

/// What `obj` of `kind` costs.
pub fn usage(kind: &ResourceKind, obj: &Value) -> ResourceList {
    let mut u = ResourceList::new();
    u.insert(count_name(kind), one());
    if kind.group.is_empty() && LEGACY_COUNTS.contains(&kind.plural) {
        u.insert(kind.plural.to_string(), one());
    }
    if !is_pods(kind) {
        return u;
    }
    if terminal(obj) {
        return ResourceList::new();
    }
    for (r, q) in pod_resources(obj, "requests") {
        if r == "cpu" || r == "memory" {
            u.insert(r.clone(), q);
        }
        u.insert(format!("requests.{r}"), q);
    }
    for (r, q) in pod_resources(obj, "limits") {
        u.insert(format!("limits.{r}"), q);
    }
    u
}

/// Kubernetes' pod constraint: when a quota tracks cpu or memory, every
/// container must state it. `Err("must specify limits.cpu for: web; ...")`.
pub fn pod_constraints(tracked: &[String], pod: &Value) -> Result<(), String> {
    let required: Vec<&str> = MUST_STATE
        .iter()
        .copied()
        .filter(|r| tracked.iter().any(|t| t == r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for list in ["/spec/containers", "/spec/initContainers"] {
        for c in pod
            .pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let has = |field: &str, r: &str| {
                c.pointer(&format!("/resources/{field}/{r}"))
                    .and_then(Value::as_str)
                    .is_some_and(|q| quantity::parse(q).is_ok())
            };
            for r in &required {
                let stated = match *r {
                    "cpu" | "memory" => has("requests", r),
                    other => match other.split_once('.') {
                        Some((field, res)) => has(field, res),
                        None => true,
                    },
                };
                if !stated {
                    let name = c["name"].as_str().unwrap_or("").to_string();
                    missing.entry(r).or_default().push(name);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(r, mut names)| {
            names.sort();
            names.dedup();
            format!("{r} for: {}", names.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Whether a resource name counts objects (printed as a plain integer).
fn is_count(name: &str) -> bool {
    name.starts_with("count/") || LEGACY_COUNTS.contains(&name)
}

/// One amount as the API shows it.
pub fn show(name: &str, q: &Quantity) -> String {
    if is_count(name) {
        q.value().to_string()
    } else {
        q.to_string()
    }
}

/// `a=1,b=2`, sorted by name, as Kubernetes' `prettyPrint`.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={}", show(k, q)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `spec.hard`/`status.used` map.
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    quantities(v)
}

/// A resource list as JSON.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, q)| (k.clone(), Value::String(show(k, q))))
            .collect(),
    )
}

/// The tracked resources of `usage` that `used + usage` would push over `hard`.
pub fn exceeded(hard: &ResourceList, used: &ResourceList, usage: &ResourceList) -> Vec<String> {
    usage
        .iter()
        .filter_map(|(r, q)| {
            let limit = hard.get(r)?;
            let now = used.get(r).copied().unwrap_or_default();
            let total = now.checked_add(q).unwrap_or(now);
            (total > *limit).then(|| r.clone())
        })
        .collect()
}

/// `list` restricted to `names`.
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    names
        .iter()
        .map(|n| (n.clone(), list.get(n).copied().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
