//! Output of `get` and `describe`: kubectl-like tables per kind, `-o
//! json|yaml|name|wide`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use selur_api::columns::{self, age};
use selur_api::kinds::ResourceKind;

/// Output format of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(Format::Table),
            "wide" => Ok(Format::Wide),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            "name" => Ok(Format::Name),
            other => Err(format!(
                "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, name, wide, yaml"
            )),
        }
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Column headers and one row per object: the kind's columns from
/// [`selur_api::columns`] (wide ones only with `wide`), after a `NAMESPACE`
/// column when listing a namespaced kind across namespaces.
pub fn table(
    kind: &ResourceKind,
    items: &[Value],
    wide: bool,
    all_ns: bool,
    now: DateTime<Utc>,
) -> Vec<Vec<String>> {
    let def = columns::for_kind(kind.kind);
    let mut header = def.headers(wide);
    let namespaced_col = all_ns && kind.namespaced;
    if namespaced_col {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for it in items {
        let mut r = def.cells(it, now, wide);
        if namespaced_col {
            r.insert(0, s(it, "/metadata/namespace").into());
        }
        rows.push(r);
    }
    rows
}

/// Align columns with three spaces between them, as kubectl does.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// YAML text of a value.
pub fn to_yaml(v: &Value) -> String {
    yaml_serde::to_string(v).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

/// `deployment.apps/web-service`
pub fn name_of(kind: &ResourceKind, v: &Value) -> String {
    format!("{}/{}", kind.qualified_singular(), s(v, "/metadata/name"))
}

/// The events about `obj`, oldest first: matched by `involvedObject.uid` (by
/// name and kind only for events without a uid), so a new object never shows
/// the events of an old one of the same name; ordered by `lastTimestamp`, else
/// `firstTimestamp`, `eventTime` or creation time.
pub fn events_about(obj: &Value, events: &[Value]) -> Vec<Value> {
    let uid = s(obj, "/metadata/uid");
    let name = s(obj, "/metadata/name");
    let mut out: Vec<Value> = events
        .iter()
        .filter(|e| match s(e, "/involvedObject/uid") {
            "" => s(e, "/involvedObject/name") == name,
            u => u == uid,
        })
        .cloned()
        .collect();
    let when = |e: &Value| -> Option<DateTime<Utc>> {
        [
            "/lastTimestamp",
            "/firstTimestamp",
            "/eventTime",
            "/metadata/creationTimestamp",
        ]
        .iter()
        .find_map(|p| DateTime::parse_from_rfc3339(s(e, p)).ok())
        .map(|t| t.with_timezone(&Utc))
    };
    out.sort_by_key(|e| when(e));
    out
}

/// `kubectl describe`-style text: metadata summary, the rest as YAML, then events.
pub fn describe(kind: &ResourceKind, v: &Value, events: &[Value], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    out.push_str(&format!("Name:         {}\n", s(v, "/metadata/name")));
    if kind.namespaced {
        out.push_str(&format!("Namespace:    {}\n", s(v, "/metadata/namespace")));
    }
    let kv = |ptr: &str| -> String {
        v.pointer(ptr)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join("\n              ")
            })
            .unwrap_or_else(|| "<none>".into())
    };
    out.push_str(&format!("Labels:       {}\n", kv("/metadata/labels")));
    let mut ann = v
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(m) = ann.as_object_mut() {
        m.remove(crate::cmd::apply::LAST_APPLIED);
    }
    let ann_text = ann
        .as_object()
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}: {}", x.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("\n              ")
        })
        .unwrap_or_else(|| "<none>".into());
    out.push_str(&format!("Annotations:  {ann_text}\n"));
    out.push_str(&format!(
        "Kind:         {} ({})\n",
        kind.kind,
        kind.api_version()
    ));
    out.push_str(&format!("UID:          {}\n", s(v, "/metadata/uid")));
    out.push_str(&format!(
        "Created:      {} ({} ago)\n",
        s(v, "/metadata/creationTimestamp"),
        age(s(v, "/metadata/creationTimestamp"), now)
    ));
    if let Some(refs) = v
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    {
        for r in refs {
            out.push_str(&format!(
                "Controlled By:  {}/{}\n",
                s(r, "/kind"),
                s(r, "/name")
            ));
        }
    }
    for section in ["spec", "status", "data"] {
        if let Some(x) = v.get(section) {
            let title = format!("{}{}", section[..1].to_uppercase(), &section[1..]);
            out.push_str(&format!("{title}:\n"));
            for line in to_yaml(x).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out.push_str("Events:");
    if events.is_empty() {
        out.push_str("       <none>\n");
    } else {
        out.push('\n');
        let mut rows = vec![vec![
            "Type".to_string(),
            "Reason".into(),
            "Age".into(),
            "From".into(),
            "Message".into(),
        ]];
        for e in events {
            let last = [
                s(e, "/lastTimestamp"),
                s(e, "/eventTime"),
                s(e, "/metadata/creationTimestamp"),
            ]
            .into_iter()
            .find(|x| !x.is_empty())
            .unwrap_or("");
            let count = n(e, "/count");
            let when = if count > 1 {
                format!("{} (x{count})", age(last, now))
            } else {
                age(last, now)
            };
            rows.push(vec![
                s(e, "/type").into(),
                s(e, "/reason").into(),
                when,
                s(e, "/source/component").into(),
                s(e, "/message").into(),
            ]);
        }
        for line in render(&rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let kind = selur_api::kinds::by_cli_name("deploy").unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T00:59:00Z"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
        let rows = table(kind, &[d], false, true, now);
        assert_eq!(rows[0][0], "NAMESPACE");
        assert_eq!(rows[1][2], "2/3");
        assert!(render(&rows).contains("web"));
    }

    #[test]
    fn describe_shows_only_this_objects_events_in_time_order() {
        let obj = json!({"metadata": {"name": "web", "uid": "new"}});
        let ev = |n: &str, uid: Option<&str>, last: &str| {
            let mut e = json!({"metadata": {"name": n},
                "involvedObject": {"kind": "Pod", "name": "web"}, "lastTimestamp": last});
            if let Some(u) = uid {
                e["involvedObject"]["uid"] = json!(u);
            }
            e
        };
        let mut first_only = ev("d", Some("new"), "");
        first_only["firstTimestamp"] = json!("2026-01-01T00:00:02Z");
        let events = [
            ev("a", Some("new"), "2026-01-01T00:00:09Z"),
            ev("b", Some("old"), "2026-01-01T00:00:01Z"),
            ev("c", None, "2026-01-01T00:00:05Z"),
            first_only,
        ];
        let names: Vec<String> = events_about(&obj, &events)
            .iter()
            .map(|e| s(e, "/metadata/name").to_string())
            .collect();
        assert_eq!(names, ["d", "c", "a"]);
    }
}
