//! Services.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{created_age, or_none, s, Column, KindColumns};

pub(super) const SERVICE: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("TYPE", "The service's type."),
        Column::string("CLUSTER-IP", "The service's cluster IP."),
        Column::string("EXTERNAL-IP", "External IPs (none in Selur)."),
        Column::string("PORT(S)", "Ports, with node ports, and protocols."),
        Column::age(),
    ],
    row: service_row,
};

fn service_row(v: &Value, now: DateTime<Utc>) -> Vec<String> {
    vec![
        s(v, "/metadata/name").into(),
        s(v, "/spec/type").into(),
        or_none(s(v, "/spec/clusterIP").into()),
        "<none>".into(),
        ports_of_service(v),
        created_age(v, now),
    ]
}

/// `80/TCP,443:30443/TCP`, or `<none>`.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{at, for_kind};

    #[test]
    fn service_row() {
        let now = at("2026-01-01T01:00:00Z");
        let v = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                "ports": [{"port": 80}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}});
        assert_eq!(
            for_kind("Service").cells(&v, now, false),
            [
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80/TCP,443:30443/TCP",
                "60m"
            ]
        );
        let bare = for_kind("Service").cells(&json!({"spec": {"ports": []}}), now, false);
        assert_eq!((bare[2].as_str(), bare[4].as_str()), ("<none>", "<none>"));
    }
}
