//! A pod's `/etc/resolv.conf`, by its `dnsPolicy` as the kubelet writes it:
//! `ClusterFirst` (the default) points at the cluster DNS address with the
//! namespace's search path and `ndots:5`; `Default` takes the node's
//! resolvers; `None` only the pod's `dnsConfig`, which the other policies
//! add to.

use k8s_openapi::api::core::v1::Pod;

use super::NodeNetwork;

#[derive(Debug, Default, PartialEq, Eq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Resolv {
    fn parse(text: &str) -> Self {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => r.nameservers.extend(w.next().map(String::from)),
                Some("search") | Some("domain") => {
                    r.searches = w.map(String::from).collect();
                }
                Some("options") => {
                    for o in w {
                        r.option(o);
                    }
                }
                _ => {}
            }
        }
        r
    }

    fn option(&mut self, o: &str) {
        let (name, value) = match o.split_once(':') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (o.to_string(), None),
        };
        self.set_option(name, value);
    }

    fn set_option(&mut self, name: String, value: Option<String>) {
        match self.options.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.options.push((name, value)),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // The resolver reads at most three nameservers and six search domains.
        for ns in self.nameservers.iter().take(3) {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            let s: Vec<&str> = self.searches.iter().take(6).map(String::as_str).collect();
            out.push_str(&format!("search {}\n", s.join(" ")));
        }
        if !self.options.is_empty() {
            let o: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                })
                .collect();
            out.push_str(&format!("options {}\n", o.join(" ")));
        }
        out
    }
}

/// The pod's resolv.conf.
pub fn resolv_conf(pod: &Pod, net: Option<&NodeNetwork>) -> String {
    let node = net
        .map(|n| n.resolv_conf.clone())
        .unwrap_or_else(|| "/etc/resolv.conf".into());
    let node = std::fs::read_to_string(node).unwrap_or_default();
    render(
        pod,
        net.and_then(|n| Some((n.dns_ip()?, n.cluster.cluster_domain.as_str()))),
        &node,
    )
}

fn render(pod: &Pod, cluster: Option<(std::net::Ipv6Addr, &str)>, node: &str) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut r = match (policy, cluster) {
        ("None", _) => Resolv::default(),
        ("ClusterFirst" | "ClusterFirstWithHostNet", Some((dns, domain))) => Resolv {
            nameservers: vec![dns.to_string()],
            searches: vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ],
            options: vec![("ndots".into(), Some("5".into()))],
        },
        // `Default`, or no cluster DNS on this node: the node's resolvers.
        _ => Resolv::parse(node),
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in c.nameservers.iter().flatten() {
            if !r.nameservers.contains(n) {
                r.nameservers.push(n.clone());
            }
        }
        for s in c.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in c.options.iter().flatten() {
            if let Some(name) = &o.name {
                r.set_option(name.clone(), o.value.clone());
            }
        }
    }
    r.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    const NODE: &str = "# node\nnameserver 2001:db8::53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";

    #[test]
    fn cluster_first_points_at_the_cluster_dns() {
        let dns = "fd01::a".parse().unwrap();
        let text = render(
            &pod(json!({"containers": []})),
            Some((dns, "cluster.local")),
            NODE,
        );
        assert_eq!(
            text,
            "nameserver fd01::a\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_and_none_policies_and_dns_config() {
        let dns = "fd01::a".parse().unwrap();
        let text = render(
            &pod(json!({"containers": [], "dnsPolicy": "Default"})),
            Some((dns, "cluster.local")),
            NODE,
        );
        assert_eq!(
            text,
            "nameserver 2001:db8::53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
        );
        let text = render(
            &pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["fd02::53"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}})),
            Some((dns, "cluster.local")),
            NODE,
        );
        assert_eq!(
            text,
            "nameserver fd02::53\nsearch a.example\noptions ndots:2 single-request\n"
        );
        // dnsConfig adds to ClusterFirst; its ndots wins.
        let text = render(
            &pod(
                json!({"containers": [], "dnsConfig": {"searches": ["x.example"],
                "options": [{"name": "ndots", "value": "1"}]}}),
            ),
            Some((dns, "cluster.local")),
            NODE,
        );
        assert!(
            text.contains(
                "search shop.svc.cluster.local svc.cluster.local cluster.local x.example\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("options ndots:1\n"), "{text}");
    }

    #[test]
    fn without_cluster_dns_the_node_resolvers_are_used() {
        let text = render(&pod(json!({"containers": []})), None, NODE);
        assert!(text.starts_with("nameserver 2001:db8::53\n"), "{text}");
    }
}
