//! Output of `get` and `describe`: kubectl-like tables per kind, `-o
//! json|yaml|name|wide`.

use chrono::{DateTime, Utc};
use serde_json::Value;

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

/// Kubernetes' short age (`5s`, `3m`, `2d4h`).
/// When a CronJob runs next (UTC, RFC 3339), computed from its schedule, time
/// zone and `now`; `<none>` when suspended or never.
pub fn next_schedule(c: &Value, now: DateTime<Utc>) -> String {
    if c.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        return "<none>".into();
    }
    let schedule = c
        .pointer("/spec/schedule")
        .and_then(Value::as_str)
        .unwrap_or("");
    let tz = c.pointer("/spec/timeZone").and_then(Value::as_str);
    match selur_api::cron::next_schedule(schedule, tz, now) {
        Ok(Some(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        _ => "<none>".into(),
    }
}

pub fn age(ts: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=599 => format!("{}m{}s", secs / 60, secs % 60),
        600..=10799 => format!("{}m", secs / 60),
        10800..=172799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn condition(v: &Value, ty: &str) -> Option<String> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        .and_then(|c| c.get("status")?.as_str().map(String::from))
}

fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for cs in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(r) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return r.to_string();
        }
    }
    let phase = s(p, "/status/phase");
    if phase.is_empty() {
        "Pending".into()
    } else {
        phase.to_string()
    }
}

fn ports_of_service(v: &Value) -> String {
    v.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

/// Builds one table row from an object.
type RowFn = Box<dyn Fn(&Value) -> Vec<String>>;

/// Column headers and one row per object.
pub fn table(
    kind: &ResourceKind,
    items: &[Value],
    wide: bool,
    all_ns: bool,
    now: DateTime<Utc>,
) -> Vec<Vec<String>> {
    let (mut header, row): (Vec<&str>, RowFn) = match kind.kind {
        "Pod" => {
            let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                h.extend(["IP", "NODE"]);
            }
            (
                h,
                Box::new(move |p: &Value| {
                    let total = p
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map(Vec::len)
                        .unwrap_or(0);
                    let statuses = p
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array);
                    let ready = statuses
                        .map(|a| {
                            a.iter()
                                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                                .count()
                        })
                        .unwrap_or(0);
                    let restarts: i64 = statuses
                        .map(|a| {
                            a.iter()
                                .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                                .sum()
                        })
                        .unwrap_or(0);
                    let mut r = vec![
                        s(p, "/metadata/name").into(),
                        format!("{ready}/{total}"),
                        pod_status(p),
                        restarts.to_string(),
                        age(s(p, "/metadata/creationTimestamp"), now),
                    ];
                    if wide {
                        r.push(or_none(s(p, "/status/podIP").into()));
                        r.push(or_none(s(p, "/spec/nodeName").into()));
                    }
                    r
                }),
            )
        }
        "Deployment" => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            Box::new(move |d: &Value| {
                vec![
                    s(d, "/metadata/name").into(),
                    format!(
                        "{}/{}",
                        n(d, "/status/readyReplicas"),
                        n(d, "/spec/replicas")
                    ),
                    n(d, "/status/updatedReplicas").to_string(),
                    n(d, "/status/availableReplicas").to_string(),
                    age(s(d, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "ReplicaSet" => (
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            Box::new(move |d: &Value| {
                vec![
                    s(d, "/metadata/name").into(),
                    n(d, "/spec/replicas").to_string(),
                    n(d, "/status/replicas").to_string(),
                    n(d, "/status/readyReplicas").to_string(),
                    age(s(d, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "DaemonSet" => (
            vec![
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
            ],
            Box::new(move |d: &Value| {
                vec![
                    s(d, "/metadata/name").into(),
                    n(d, "/status/desiredNumberScheduled").to_string(),
                    n(d, "/status/currentNumberScheduled").to_string(),
                    n(d, "/status/numberReady").to_string(),
                    n(d, "/status/updatedNumberScheduled").to_string(),
                    n(d, "/status/numberAvailable").to_string(),
                    age(s(d, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "Job" => (
            vec!["NAME", "STATUS", "COMPLETIONS", "AGE"],
            Box::new(move |j: &Value| {
                let status = if condition(j, "Complete").as_deref() == Some("True") {
                    "Complete"
                } else if condition(j, "Failed").as_deref() == Some("True") {
                    "Failed"
                } else if j.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
                    "Suspended"
                } else {
                    "Running"
                };
                let completions = j
                    .pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "1".into());
                vec![
                    s(j, "/metadata/name").into(),
                    status.into(),
                    format!("{}/{}", n(j, "/status/succeeded"), completions),
                    age(s(j, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "CronJob" => (
            vec![
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "NEXT SCHEDULE",
                "AGE",
            ],
            Box::new(move |c: &Value| {
                let active = c
                    .pointer("/status/active")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .unwrap_or(0);
                let last = s(c, "/status/lastScheduleTime");
                vec![
                    s(c, "/metadata/name").into(),
                    s(c, "/spec/schedule").into(),
                    or_none(s(c, "/spec/timeZone").into()),
                    c.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .replace("false", "False")
                        .replace("true", "True"),
                    active.to_string(),
                    if last.is_empty() {
                        "<none>".into()
                    } else {
                        age(last, now)
                    },
                    next_schedule(c, now),
                    age(s(c, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "Service" => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            Box::new(move |v: &Value| {
                vec![
                    s(v, "/metadata/name").into(),
                    s(v, "/spec/type").into(),
                    or_none(s(v, "/spec/clusterIP").into()),
                    "<none>".into(),
                    ports_of_service(v),
                    age(s(v, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "HorizontalPodAutoscaler" => (
            vec![
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            Box::new(move |h: &Value| {
                let targets = h
                    .pointer("/spec/metrics")
                    .and_then(Value::as_array)
                    .map(|ms| {
                        ms.iter()
                            .map(|m| {
                                let target = m
                                    .pointer("/resource/target/averageUtilization")
                                    .and_then(Value::as_i64)
                                    .map(|t| format!("{t}%"))
                                    .unwrap_or_else(|| "?".into());
                                format!("<unknown>/{target}")
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                vec![
                    s(h, "/metadata/name").into(),
                    format!(
                        "{}/{}",
                        s(h, "/spec/scaleTargetRef/kind"),
                        s(h, "/spec/scaleTargetRef/name")
                    ),
                    or_none(targets),
                    n(h, "/spec/minReplicas").to_string(),
                    n(h, "/spec/maxReplicas").to_string(),
                    n(h, "/status/currentReplicas").to_string(),
                    age(s(h, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "ResourceQuota" => (
            vec!["NAME", "AGE", "REQUEST", "LIMIT"],
            Box::new(move |q: &Value| {
                let mut req = Vec::new();
                let mut lim = Vec::new();
                if let Some(hard) = q.pointer("/spec/hard").and_then(Value::as_object) {
                    for (k, v) in hard {
                        let used = q
                            .pointer(&format!("/status/used/{}", k.replace('/', "~1")))
                            .and_then(Value::as_str)
                            .unwrap_or("0");
                        let e = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
                        if k.starts_with("limits.") {
                            lim.push(e)
                        } else {
                            req.push(e)
                        }
                    }
                }
                vec![
                    s(q, "/metadata/name").into(),
                    age(s(q, "/metadata/creationTimestamp"), now),
                    req.join(", "),
                    lim.join(", "),
                ]
            }),
        ),
        "Namespace" => (
            vec!["NAME", "STATUS", "AGE"],
            Box::new(move |v: &Value| {
                vec![
                    s(v, "/metadata/name").into(),
                    s(v, "/status/phase").into(),
                    age(s(v, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        "Node" => {
            let mut h = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
            if wide {
                h.extend([
                    "INTERNAL-IP",
                    "OS-IMAGE",
                    "KERNEL-VERSION",
                    "CAPACITY",
                    "TAINTS",
                ]);
            }
            (
                h,
                Box::new(move |v: &Value| {
                    let mut status = match condition(v, "Ready").as_deref() {
                        Some("True") => "Ready".to_string(),
                        Some("Unknown") => "NotReady".to_string(),
                        _ => "NotReady".to_string(),
                    };
                    if v.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                        status.push_str(",SchedulingDisabled");
                    }
                    let roles: Vec<String> = v
                        .pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.keys()
                                .filter_map(|k| {
                                    k.strip_prefix("node-role.kubernetes.io/").map(String::from)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut r = vec![
                        s(v, "/metadata/name").into(),
                        status,
                        or_none(roles.join(",")),
                        age(s(v, "/metadata/creationTimestamp"), now),
                        s(v, "/status/nodeInfo/kubeletVersion").into(),
                    ];
                    if wide {
                        let ip = v
                            .pointer("/status/addresses")
                            .and_then(Value::as_array)
                            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                            .and_then(|x| x["address"].as_str())
                            .unwrap_or("<none>");
                        let cap = format!(
                            "cpu={},memory={},pods={}",
                            s(v, "/status/allocatable/cpu"),
                            s(v, "/status/allocatable/memory"),
                            s(v, "/status/allocatable/pods")
                        );
                        let taints: Vec<String> = v
                            .pointer("/spec/taints")
                            .and_then(Value::as_array)
                            .map(|ts| {
                                ts.iter()
                                    .map(|t| match t["value"].as_str() {
                                        Some(val) => {
                                            format!("{}={}:{}", s(t, "/key"), val, s(t, "/effect"))
                                        }
                                        None => format!("{}:{}", s(t, "/key"), s(t, "/effect")),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        r.extend([
                            ip.to_string(),
                            s(v, "/status/nodeInfo/osImage").into(),
                            s(v, "/status/nodeInfo/kernelVersion").into(),
                            cap,
                            or_none(taints.join(",")),
                        ]);
                    }
                    r
                }),
            )
        }
        "Event" => (
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            Box::new(move |e: &Value| {
                let last = [
                    s(e, "/lastTimestamp"),
                    s(e, "/eventTime"),
                    s(e, "/metadata/creationTimestamp"),
                ]
                .into_iter()
                .find(|x| !x.is_empty())
                .unwrap_or("");
                vec![
                    age(last, now),
                    s(e, "/type").into(),
                    s(e, "/reason").into(),
                    format!(
                        "{}/{}",
                        s(e, "/involvedObject/kind").to_ascii_lowercase(),
                        s(e, "/involvedObject/name")
                    ),
                    s(e, "/message").into(),
                ]
            }),
        ),
        "PodSecurityPolicy" => (
            vec!["NAME", "PRIV", "READONLYROOTFS", "RUNASUSER", "AGE"],
            Box::new(move |p: &Value| {
                vec![
                    s(p, "/metadata/name").into(),
                    p.pointer("/spec/privileged")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    p.pointer("/spec/readOnlyRootFilesystem")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    s(p, "/spec/runAsUser/rule").into(),
                    age(s(p, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
        _ => (
            vec!["NAME", "AGE"],
            Box::new(move |v: &Value| {
                vec![
                    s(v, "/metadata/name").into(),
                    age(s(v, "/metadata/creationTimestamp"), now),
                ]
            }),
        ),
    };
    let namespaced_col = all_ns && kind.namespaced;
    if namespaced_col {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for it in items {
        let mut r = row(it);
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
        m.remove(crate::apply::LAST_APPLIED);
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
    fn ages_and_tables() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(age("2026-01-01T00:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T00:00:00Z", now), "60m");
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
