//! The columns `selur get` shows per kind (as kubectl's printers do): each
//! column's name, cell type and priority, and a function from an object to
//! its cells. The CLI lays them out on a terminal; a server can answer
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` from the same
//! definitions with [`server_table`].
//!
//! Cells are the text kubectl prints (`1/1`, `5m`, `<none>`); [`server_table`]
//! turns those of integer and boolean columns into JSON numbers and booleans.
//! Column names are as printed (upper case), which is also how kubectl shows
//! the names of a server-side table.

mod batch;
mod cluster;
mod network;
mod workloads;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// Type of a column's cells (`TableColumnDefinition.type` of meta.k8s.io/v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellType {
    String,
    Integer,
    Boolean,
}

impl CellType {
    /// The OpenAPI type name a Table's column definition carries.
    pub fn as_str(self) -> &'static str {
        match self {
            CellType::String => "string",
            CellType::Integer => "integer",
            CellType::Boolean => "boolean",
        }
    }
}

/// One column of a kind's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header as printed (`UP-TO-DATE`).
    pub name: &'static str,
    pub cell_type: CellType,
    /// `name` for the column holding the object's name, else empty (the
    /// `format` of a Table's column definition).
    pub format: &'static str,
    /// 0: always shown; 1: only with `-o wide` (as Kubernetes' priorities).
    pub priority: u32,
    pub description: &'static str,
}

impl Column {
    const fn new(name: &'static str, cell_type: CellType, description: &'static str) -> Column {
        Column {
            name,
            cell_type,
            format: "",
            priority: 0,
            description,
        }
    }
    /// The column holding the object's name.
    const fn name() -> Column {
        Column {
            format: "name",
            ..Column::new("NAME", CellType::String, "Name of the object.")
        }
    }
    const fn string(name: &'static str, description: &'static str) -> Column {
        Column::new(name, CellType::String, description)
    }
    const fn integer(name: &'static str, description: &'static str) -> Column {
        Column::new(name, CellType::Integer, description)
    }
    const fn boolean(name: &'static str, description: &'static str) -> Column {
        Column::new(name, CellType::Boolean, description)
    }
    /// The object's age, from its creation time.
    const fn age() -> Column {
        Column::string("AGE", "Time since the object was created.")
    }
    /// Shown only with `-o wide`.
    const fn wide(self) -> Column {
        Column {
            priority: 1,
            ..self
        }
    }
}

/// Builds the cells of every column (wide ones included) of one object, at `now`.
pub type RowFn = fn(&Value, DateTime<Utc>) -> Vec<String>;

/// The columns of one kind and how to fill them.
#[derive(Debug, Clone, Copy)]
pub struct KindColumns {
    /// Every column, wide ones included, in order.
    pub columns: &'static [Column],
    /// One cell per entry of `columns`.
    pub row: RowFn,
}

impl KindColumns {
    fn shown(&self, wide: bool) -> impl Iterator<Item = (usize, &'static Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(move |(_, c)| wide || c.priority == 0)
    }

    /// Headers of the columns shown (all with `wide`, else priority 0 only).
    pub fn headers(&self, wide: bool) -> Vec<&'static str> {
        self.shown(wide).map(|(_, c)| c.name).collect()
    }

    /// The cells of `obj` under [`KindColumns::headers`].
    pub fn cells(&self, obj: &Value, now: DateTime<Utc>, wide: bool) -> Vec<String> {
        let mut all = (self.row)(obj, now);
        if wide {
            return all;
        }
        let keep: Vec<usize> = self.shown(false).map(|(i, _)| i).collect();
        let mut i = 0;
        all.retain(|_| {
            let k = keep.contains(&i);
            i += 1;
            k
        });
        all
    }
}

/// The columns of `kind` (a kind name such as `Deployment`); `NAME` and
/// `AGE` for kinds without columns of their own.
pub fn for_kind(kind: &str) -> KindColumns {
    match kind {
        "Pod" => workloads::POD,
        "Deployment" => workloads::DEPLOYMENT,
        "ReplicaSet" => workloads::REPLICA_SET,
        "DaemonSet" => workloads::DAEMON_SET,
        "HorizontalPodAutoscaler" => workloads::HORIZONTAL_POD_AUTOSCALER,
        "Job" => batch::JOB,
        "CronJob" => batch::CRON_JOB,
        "Service" => network::SERVICE,
        "EndpointSlice" => network::ENDPOINT_SLICE,
        "Endpoints" => network::ENDPOINTS,
        "ResourceQuota" => cluster::RESOURCE_QUOTA,
        "Namespace" => cluster::NAMESPACE,
        "Node" => cluster::NODE,
        "Event" => cluster::EVENT,
        "PodSecurityPolicy" => cluster::POD_SECURITY_POLICY,
        _ => DEFAULT,
    }
}

const DEFAULT: KindColumns = KindColumns {
    columns: &[Column::name(), Column::age()],
    row: |v, now| vec![s(v, "/metadata/name").into(), created_age(v, now)],
};

/// What each row of a [`server_table`] carries besides its cells
/// (`includeObject` of a Table request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// The object's metadata as a `PartialObjectMetadata` (Kubernetes' default).
    Metadata,
    Object,
}

/// A `meta.k8s.io/v1` `Table` of `items` (objects of `kind`) at `now`, with
/// every column (kubectl hides priority 1 ones unless `-o wide`).
pub fn server_table(
    kind: &str,
    items: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
) -> Value {
    let def = for_kind(kind);
    let columns: Vec<Value> = def
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.cell_type.as_str(),
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|it| {
            let cells: Vec<Value> = def
                .columns
                .iter()
                .zip((def.row)(it, now))
                .map(|(c, text)| typed_cell(c.cell_type, text))
                .collect();
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": it.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), it.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A cell as JSON: numbers and booleans for integer and boolean columns
/// (text that does not parse, such as `<none>`, stays text).
fn typed_cell(ty: CellType, text: String) -> Value {
    match ty {
        CellType::Integer => match text.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(text),
        },
        CellType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        CellType::String => Value::String(text),
    }
}

/// Kubernetes' short age (`5s`, `3m`, `2d4h`).
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
    match crate::cron::next_schedule(schedule, tz, now) {
        Ok(Some(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        _ => "<none>".into(),
    }
}

/// The string at `ptr`, or `""`.
fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `ptr`, or 0.
fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The age of the object from its creation time.
fn created_age(v: &Value, now: DateTime<Utc>) -> String {
    age(s(v, "/metadata/creationTimestamp"), now)
}

/// The status of condition `ty`.
fn condition(v: &Value, ty: &str) -> Option<String> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        .and_then(|c| c.get("status")?.as_str().map(String::from))
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

#[cfg(test)]
pub(crate) fn at(ts: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{ts}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = at("2026-01-01T01:00:00Z");
        assert_eq!(age("2026-01-01T00:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T00:55:00Z", now), "5m0s");
        assert_eq!(age("2026-01-01T00:00:00Z", now), "60m");
        assert_eq!(age("2025-12-31T20:00:00Z", now), "5h");
        assert_eq!(age("2025-12-29T00:00:00Z", now), "3d");
        assert_eq!(age("", now), "<unknown>");
    }

    #[test]
    fn every_row_fills_every_column() {
        let now = at("2026-01-01T01:00:00Z");
        let empty = json!({});
        for k in crate::kinds::KINDS {
            let def = for_kind(k.kind);
            assert_eq!(
                (def.row)(&empty, now).len(),
                def.columns.len(),
                "{}",
                k.kind
            );
            assert_eq!(
                def.cells(&empty, now, false).len(),
                def.headers(false).len(),
                "{}",
                k.kind
            );
        }
    }

    #[test]
    fn unknown_kinds_get_name_and_age() {
        let now = at("2026-01-01T01:00:00Z");
        let def = for_kind("ConfigMap");
        assert_eq!(def.headers(true), ["NAME", "AGE"]);
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "2026-01-01T00:59:00Z"}});
        assert_eq!(def.cells(&cm, now, false), ["cfg", "60s"]);
    }

    #[test]
    fn server_table_types_cells_and_keeps_wide_columns() {
        let now = at("2026-01-01T01:00:00Z");
        let pod = json!({"metadata": {"name": "web", "namespace": "default",
                "creationTimestamp": "2026-01-01T00:59:00Z"},
            "spec": {"containers": [{"name": "a"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.2",
                "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let t = server_table("Pod", &[pod], now, IncludeObject::Metadata);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        let cols = t["columnDefinitions"].as_array().map(Vec::len);
        assert_eq!(cols, Some(7));
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][3]["type"], "integer");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web", "1/1", "Running", 2, "60s", "10.0.0.2", "n1"])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        let bare = server_table("Pod", &[json!({})], now, IncludeObject::None);
        assert!(bare["rows"][0].get("object").is_none());
    }

    #[test]
    fn boolean_cells_become_booleans() {
        assert_eq!(typed_cell(CellType::Boolean, "False".into()), json!(false));
        assert_eq!(typed_cell(CellType::Boolean, "true".into()), json!(true));
        assert_eq!(
            typed_cell(CellType::Integer, "<none>".into()),
            json!("<none>")
        );
    }
}
