//! Services, EndpointSlices and Endpoints, as kubectl prints them.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{created_age, or_none, s, Column, KindColumns};

pub(super) const SERVICE: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("TYPE", "The service's type."),
        Column::string("CLUSTER-IP", "The service's cluster IP."),
        Column::string(
            "EXTERNAL-IP",
            "External IPs, or the load balancer's (<pending> until it has one).",
        ),
        Column::string("PORT(S)", "Ports, with node ports, and protocols."),
        Column::age(),
        Column::string("SELECTOR", "The labels of the pods behind the service.").wide(),
    ],
    row: service_row,
};

fn service_row(v: &Value, now: DateTime<Utc>) -> Vec<String> {
    vec![
        s(v, "/metadata/name").into(),
        s(v, "/spec/type").into(),
        or_none(s(v, "/spec/clusterIP").into()),
        external_ip(v),
        ports_of_service(v),
        created_age(v, now),
        or_none(label_map(v.pointer("/spec/selector"))),
    ]
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// kubectl's EXTERNAL-IP: externalIPs; for a LoadBalancer also its
/// ingress addresses, `<pending>` while it has none; an ExternalName's name.
fn external_ip(v: &Value) -> String {
    let mut ips = strings(v.pointer("/spec/externalIPs"));
    match s(v, "/spec/type") {
        "ExternalName" => return s(v, "/spec/externalName").into(),
        "LoadBalancer" => {
            let ingress = v
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .map(String::from);
            let mut all: Vec<String> = ingress.collect();
            all.append(&mut ips);
            if all.is_empty() {
                return "<pending>".into();
            }
            return all.join(",");
        }
        _ => {}
    }
    or_none(ips.join(","))
}

/// `a=1,b=2` (keys sorted), or empty.
fn label_map(m: Option<&Value>) -> String {
    let mut pairs: Vec<String> = m
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// At most three items, then ` + N more...`, as kubectl; `empty` when none.
fn at_most_three(items: Vec<String>, empty: &str) -> String {
    match items.len() {
        0 => empty.into(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

pub(super) const ENDPOINT_SLICE: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("ADDRESSTYPE", "The family of the addresses (IPv6)."),
        Column::string("PORTS", "The ports every endpoint of the slice serves."),
        Column::string("ENDPOINTS", "The endpoints' addresses."),
        Column::age(),
    ],
    row: endpoint_slice_row,
};

fn endpoint_slice_row(v: &Value, now: DateTime<Utc>) -> Vec<String> {
    let ports = v
        .pointer("/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("port").and_then(Value::as_i64))
        .map(|p| p.to_string())
        .collect();
    let addrs = v
        .pointer("/endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| strings(e.get("addresses")))
        .collect();
    vec![
        s(v, "/metadata/name").into(),
        s(v, "/addressType").into(),
        at_most_three(ports, "<unset>"),
        at_most_three(addrs, "<unset>"),
        created_age(v, now),
    ]
}

pub(super) const ENDPOINTS: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("ENDPOINTS", "Ready addresses with their ports."),
        Column::age(),
    ],
    row: endpoints_row,
};

fn endpoints_row(v: &Value, now: DateTime<Utc>) -> Vec<String> {
    let mut cells = Vec::new();
    for subset in v
        .pointer("/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("port").and_then(Value::as_i64))
            .collect();
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            if ports.is_empty() {
                cells.push(ip.to_string());
            }
            cells.extend(ports.iter().map(|p| format!("{host}:{p}")));
        }
    }
    vec![
        s(v, "/metadata/name").into(),
        at_most_three(cells, "<none>"),
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

    #[test]
    fn service_wide_row_has_the_selector_and_load_balancers_pend() {
        let now = at("2026-01-01T01:00:00Z");
        let v = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "fd01::5", "selector": {"tier": "x", "app": "web"},
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let svc = for_kind("Service");
        assert_eq!(
            svc.headers(true),
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ]
        );
        assert_eq!(
            svc.cells(&v, now, true),
            [
                "web",
                "LoadBalancer",
                "fd01::5",
                "<pending>",
                "80:30080/TCP",
                "60m",
                "app=web,tier=x"
            ]
        );
        let plain = json!({"spec": {"type": "ClusterIP", "externalIPs": ["2001:db8::1"]}});
        let cells = svc.cells(&plain, now, true);
        assert_eq!(
            (cells[3].as_str(), cells[6].as_str()),
            ("2001:db8::1", "<none>")
        );
    }

    #[test]
    fn endpoint_slice_and_endpoints_rows() {
        let now = at("2026-01-01T01:00:00Z");
        let sl = json!({"metadata": {"name": "web-abcde", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "addressType": "IPv6", "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": ["fd00::2"]}, {"addresses": ["fd00::3"]},
                          {"addresses": ["fd00::4"]}]});
        let c = for_kind("EndpointSlice");
        assert_eq!(
            c.headers(false),
            ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        );
        assert_eq!(
            c.cells(&sl, now, false),
            [
                "web-abcde",
                "IPv6",
                "8080",
                "fd00::1,fd00::2,fd00::3 + 1 more...",
                "60m"
            ]
        );
        let empty = c.cells(&json!({"addressType": "IPv6", "endpoints": []}), now, false);
        assert_eq!(
            (empty[2].as_str(), empty[3].as_str()),
            ("<unset>", "<unset>")
        );
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "fd00::1"}],
            "notReadyAddresses": [{"ip": "fd00::2"}], "ports": [{"port": 8080}]}]});
        assert_eq!(
            for_kind("Endpoints").cells(&ep, now, false)[1],
            "[fd00::1]:8080"
        );
        assert_eq!(
            for_kind("Endpoints").cells(&json!({}), now, false)[1],
            "<none>"
        );
    }
}
