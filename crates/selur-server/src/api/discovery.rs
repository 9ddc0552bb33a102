//! Discovery: `/version`, `/api`, `/apis` and each group version's resource list.

use axum::Json;
use serde_json::{json, Value};

use selur_api::kinds::KINDS;

pub(super) async fn ok() -> &'static str {
    "ok"
}

pub(super) async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("v1.33.0-selur.{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

pub(super) async fn api_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

pub(super) async fn api_groups() -> Json<Value> {
    let mut groups: Vec<(&str, &str)> = KINDS
        .iter()
        .filter(|k| !k.group.is_empty())
        .map(|k| (k.group, k.version))
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

pub(super) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if k.kind == "Event" {
            verbs.retain(|v| *v != "deletecollection");
        }
        resources.push(
            json!({"name": k.plural, "singularName": k.singular(), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs, "shortNames": k.short_names}),
        );
        if k.status {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.scale {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if k.kind == "Pod" {
            resources.push(
                json!({"name": "pods/binding", "singularName": "", "namespaced": true,
                "kind": "Binding", "verbs": ["create"]}),
            );
            for sub in ["exec", "portforward"] {
                resources.push(json!({"name": format!("pods/{sub}"), "singularName": "", "namespaced": true,
                    "kind": format!("Pod{}Options", if sub == "exec" { "Exec" } else { "PortForward" }),
                    "verbs": ["create", "get"]}));
            }
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
