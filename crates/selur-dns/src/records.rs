//! The cluster's names, built from one snapshot of Services, EndpointSlices
//! and Pods: a pure function, no I/O.
//!
//! Every record gets the same short TTL ([`TTL`]): the agent pushes a new
//! snapshot on every change, and clients should not keep an old ClusterIP or
//! endpoint set for long after it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// TTL of every cluster record, and of the SOA in negative answers.
pub const TTL: u32 = 5;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The answer [`Records::lookup`] has for one name and type.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    /// The name holds records of the asked type (or a CNAME): the answers,
    /// and the addresses of SRV targets for the additional section.
    Found {
        /// Records for the answer section.
        answers: Vec<&'a Record>,
        /// A/AAAA records of SRV targets.
        additionals: Vec<&'a Record>,
    },
    /// The name exists (holds other types, or only names below it), but has
    /// nothing of the asked type: NOERROR with an empty answer.
    NoData,
    /// The name is not among the cluster's names.
    Unknown,
}

/// The cluster's DNS records: forward names under the cluster domain and
/// PTR names of the addresses they point at.
///
/// Built whole from a snapshot by [`Records::build`] and then only read;
/// [`crate::DnsHandle::update`] swaps in a new one.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Owner name (lower case) -> its records.
    names: HashMap<LowerName, Vec<Record>>,
    /// Names with nothing of their own but names below them
    /// (`svc.<domain>`, `<ns>.svc.<domain>`, `_tcp.<svc>...`): they exist,
    /// so they answer NOERROR, not NXDOMAIN.
    interior: HashSet<LowerName>,
}

impl Records {
    /// Builds the records of a snapshot for the cluster domain `domain`
    /// (`cluster.local`, with or without the trailing dot).
    ///
    /// - `<svc>.<ns>.svc.<domain>`: AAAA (A for IPv4) of the ClusterIPs; for
    ///   a headless Service the ready addresses of its EndpointSlices (all
    ///   of them with `publishNotReadyAddresses`); a CNAME for ExternalName.
    /// - `<host>.<svc>.<ns>.svc.<domain>` for each endpoint of a headless
    ///   Service: its hostname, or its address with dashes.
    /// - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports:
    ///   target the Service name, or each endpoint name when headless.
    /// - `<ip-with-dashes>.<ns>.pod.<domain>` for pods' IPs.
    /// - PTR for ClusterIPs (the Service name), endpoint addresses of
    ///   headless Services with a hostname (the endpoint name) and other pod
    ///   IPs (the pod name).
    ///
    /// Objects whose names do not make valid DNS names are skipped: one bad
    /// object must not take the others' names away.
    pub fn build(
        domain: &str,
        services: &[Service],
        slices: &[EndpointSlice],
        pods: &[Pod],
    ) -> Records {
        let Ok(domain) = fqdn(domain) else {
            tracing::warn!(domain, "cluster DNS domain is not a valid name; no records");
            return Records::default();
        };
        let mut builder = Builder {
            domain,
            names: HashMap::new(),
            ptr: BTreeMap::new(),
        };
        for pod in pods {
            builder.pod(pod);
        }
        // Slices by (namespace, service name), so each Service finds its
        // own without a scan of all of them.
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref();
            let svc = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (ns, svc) {
                by_service
                    .entry((ns, svc.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        for service in services {
            let key = (
                service.metadata.namespace.as_deref().unwrap_or_default(),
                service.metadata.name.as_deref().unwrap_or_default(),
            );
            let own = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
            builder.service(service, own);
        }
        builder.finish()
    }

    /// What the records say about `name` and `qtype`. Names are compared
    /// without regard to case, and a name without its trailing dot counts
    /// as fully qualified.
    pub fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup<'_> {
        let name = &qualified(name);
        let Some(records) = self.names.get(name) else {
            return if self.interior.contains(name) {
                Lookup::NoData
            } else {
                Lookup::Unknown
            };
        };
        let mut answers: Vec<&Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .collect();
        if answers.is_empty() {
            // A CNAME stands for every type at its name.
            answers = records
                .iter()
                .filter(|r| r.record_type() == RecordType::CNAME)
                .collect();
        }
        if answers.is_empty() {
            return Lookup::NoData;
        }
        let additionals = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => self.names.get(&LowerName::new(&srv.target)),
                _ => None,
            })
            .flatten()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .collect();
        Lookup::Found {
            answers,
            additionals,
        }
    }

    /// Whether `name` is one of the records' names (with data or interior).
    pub fn contains(&self, name: &LowerName) -> bool {
        let name = &qualified(name);
        self.names.contains_key(name) || self.interior.contains(name)
    }

    /// Number of names that hold records.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no records at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Why a PTR points where it does: endpoint hostnames win over pod names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PtrSource {
    Pod,
    Endpoint,
}

struct Builder {
    domain: Name,
    names: HashMap<Name, Vec<Record>>,
    ptr: BTreeMap<IpAddr, (PtrSource, Vec<Name>)>,
}

impl Builder {
    /// Adds a record at `name`, which is lower case already (built by
    /// [`Builder::name`] or from an address).
    fn add(&mut self, name: &Name, data: RData) {
        let records = self.names.entry(name.clone()).or_default();
        let record = Record::from_rdata(name.clone(), TTL, data);
        if !records.contains(&record) {
            records.push(record);
        }
    }

    /// A name that exists with no records of its own (a headless Service
    /// without endpoints, say).
    fn touch(&mut self, name: &Name) {
        self.names.entry(name.clone()).or_default();
    }

    fn add_ptr(&mut self, ip: IpAddr, source: PtrSource, target: &Name) {
        let entry = self.ptr.entry(ip).or_insert((source, Vec::new()));
        if entry.0 < source {
            *entry = (source, Vec::new());
        }
        if entry.0 == source && !entry.1.contains(target) {
            entry.1.push(target.clone());
        }
    }

    /// `labels` followed by the domain. Labels are checked here as
    /// Kubernetes names (letters, digits, `-`, `_`, at most 63) and taken as
    /// raw bytes: hickory's text parsing goes through IDNA, which cost most
    /// of a build's time, and rejects a leading dash (`--1` for `::1`).
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = self.domain.clone();
        for label in labels.iter().rev() {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return None;
            }
            name = name
                .prepend_label(label.to_ascii_lowercase().as_bytes())
                .ok()?;
        }
        Some(name)
    }

    fn pod(&mut self, pod: &Pod) {
        let (Some(pod_name), Some(ns)) = (&pod.metadata.name, &pod.metadata.namespace) else {
            return;
        };
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            // The node's own address: its reverse name is the node's.
            return;
        }
        let Some(status) = &pod.status else { return };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return;
        }
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        for ip in ips {
            let Some(name) = self.name(&[&dashed(ip), ns, "pod"]) else {
                tracing::debug!(pod = %pod_name, namespace = %ns, "pod name not valid in DNS");
                continue;
            };
            self.add(&name, address(ip));
            self.add_ptr(ip, PtrSource::Pod, &name);
        }
    }

    /// A Service's names; `slices` are its own EndpointSlices.
    fn service(&mut self, service: &Service, slices: &[&EndpointSlice]) {
        let (Some(svc), Some(ns)) = (&service.metadata.name, &service.metadata.namespace) else {
            return;
        };
        let Some(spec) = &service.spec else { return };
        let Some(svc_name) = self.name(&[svc, ns, "svc"]) else {
            tracing::debug!(service = %svc, namespace = %ns, "service name not valid in DNS");
            return;
        };
        self.touch(&svc_name);

        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(|n| fqdn(n).ok()) {
                self.add(&svc_name, RData::CNAME(CNAME(target)));
            }
            return;
        }

        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips = cluster_ips(spec.cluster_ip.as_deref(), spec.cluster_ips.as_deref());
            for ip in ips {
                self.add(&svc_name, address(ip));
                self.add_ptr(ip, PtrSource::Endpoint, &svc_name);
            }
            let ports = spec.ports.iter().flatten().filter_map(|p| {
                let name = p.name.as_deref().filter(|n| !n.is_empty())?;
                let port = u16::try_from(p.port).ok()?;
                Some((name, protocol(p.protocol.as_deref()), port))
            });
            let ports: Vec<(&str, String, u16)> = ports.collect();
            for (port_name, proto, port) in ports {
                let Some(srv_name) = self.name(&[
                    &format!("_{port_name}"),
                    &format!("_{proto}"),
                    svc,
                    ns,
                    "svc",
                ]) else {
                    continue;
                };
                self.add(
                    &srv_name,
                    RData::SRV(SRV::new(0, 100, port, svc_name.clone())),
                );
            }
            return;
        }

        // Headless: the endpoints are the answer.
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let mut srv: BTreeMap<(String, String), Vec<(u16, Name)>> = BTreeMap::new();
        for port in spec.ports.iter().flatten() {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                srv.entry((name.to_owned(), protocol(port.protocol.as_deref())))
                    .or_default();
            }
        }
        for slice in slices {
            if slice.address_type == "FQDN" {
                continue;
            }
            let ports: Vec<(String, String, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let name = p.name.as_deref().filter(|n| !n.is_empty())?;
                    let port = u16::try_from(p.port?).ok()?;
                    Some((name.to_owned(), protocol(p.protocol.as_deref()), port))
                })
                .collect();
            for endpoint in slice
                .endpoints
                .iter()
                .filter(|e| publish_not_ready || ready(e))
            {
                let ips: Vec<IpAddr> = endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                for &ip in &ips {
                    let host = endpoint
                        .hostname
                        .as_deref()
                        .map(str::to_owned)
                        .unwrap_or_else(|| dashed(ip));
                    let Some(endpoint_name) = self.name(&[&host, svc, ns, "svc"]) else {
                        continue;
                    };
                    self.add(&svc_name, address(ip));
                    self.add(&endpoint_name, address(ip));
                    if endpoint.hostname.is_some() {
                        self.add_ptr(ip, PtrSource::Endpoint, &endpoint_name);
                    }
                    for (port_name, proto, port) in &ports {
                        srv.entry((port_name.clone(), proto.clone()))
                            .or_default()
                            .push((*port, endpoint_name.clone()));
                    }
                }
            }
        }
        for ((port_name, proto), targets) in srv {
            let Some(srv_name) = self.name(&[
                &format!("_{port_name}"),
                &format!("_{proto}"),
                svc,
                ns,
                "svc",
            ]) else {
                continue;
            };
            self.touch(&srv_name);
            let weight = u16::try_from(100 / targets.len().max(1))
                .unwrap_or(1)
                .max(1);
            for (port, target) in targets {
                self.add(&srv_name, RData::SRV(SRV::new(0, weight, port, target)));
            }
        }
    }

    fn finish(mut self) -> Records {
        let ptr = std::mem::take(&mut self.ptr);
        for (ip, (_, targets)) in ptr {
            let reverse = Name::from(ip);
            for target in targets {
                self.add(&reverse, RData::PTR(PTR(target)));
            }
        }
        let mut interior = HashSet::new();
        for name in self.names.keys() {
            // Every name between a record's owner and the zone it is in
            // exists: the cluster domain for forward names; for reverse
            // names only the owner itself counts (the reverse tree outside
            // our addresses belongs to the upstreams).
            if !self.domain.zone_of(name) {
                continue;
            }
            let mut parent = name.base_name();
            while self.domain.zone_of(&parent) && parent.num_labels() > 0 {
                if !interior.insert(LowerName::new(&parent)) {
                    // Its parents are in already.
                    break;
                }
                parent = parent.base_name();
            }
        }
        let names: HashMap<LowerName, Vec<Record>> = self
            .names
            .into_iter()
            .map(|(name, records)| (LowerName::new(&name), records))
            .collect();
        interior.retain(|n| !names.contains_key(n));
        Records { names, interior }
    }
}

/// `name` with its trailing dot: names from the wire always have it, names
/// from callers may not, and the two do not compare equal.
fn qualified(name: &LowerName) -> LowerName {
    if name.is_fqdn() {
        return name.clone();
    }
    let mut full = Name::from(name.clone());
    full.set_fqdn(true);
    LowerName::new(&full)
}

/// `name` as a fully qualified, lower-case DNS name.
pub(crate) fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut parsed = Name::from_ascii(name.trim_end_matches('.'))?;
    parsed.set_fqdn(true);
    Ok(parsed.to_lowercase())
}

/// An address as Kubernetes writes it in DNS labels: `fd00--5`, `10-0-0-5`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace([':', '.'], "-")
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn protocol(proto: Option<&str>) -> String {
    proto.unwrap_or("TCP").to_ascii_lowercase()
}

/// An endpoint's ready condition; unset means ready (the API's rule).
fn ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

fn cluster_ips(cluster_ip: Option<&str>, cluster_ips: Option<&[String]>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = cluster_ips
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if let Some(ip) = cluster_ip.and_then(|ip| ip.parse().ok()) {
        if !ips.contains(&ip) {
            ips.insert(0, ip);
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn service(ns: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "ports": ports},
        }))
        .unwrap()
    }

    fn slice(
        ns: &str,
        svc: &str,
        endpoints: serde_json::Value,
        ports: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{svc}-abc"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv6",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap()
    }

    fn pod(ns: &str, name: &str, ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": []},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
        }))
        .unwrap()
    }

    fn lower(name: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(name).unwrap())
    }

    fn data<'a>(lookup: &Lookup<'a>) -> Vec<&'a RData> {
        match lookup {
            Lookup::Found { answers, .. } => answers.iter().map(|r| &r.data).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    fn aaaa(ip: &str) -> RData {
        RData::AAAA(AAAA(ip.parse::<Ipv6Addr>().unwrap()))
    }

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    fn sample() -> Records {
        let services = [
            service(
                "default",
                "web",
                "fd01::20",
                serde_json::json!([
                    {"name": "http", "port": 80, "protocol": "TCP"},
                    {"port": 81},
                ]),
            ),
            service(
                "db",
                "pg",
                "None",
                serde_json::json!([{"name": "sql", "port": 5432}]),
            ),
        ];
        let slices = [slice(
            "db",
            "pg",
            serde_json::json!([
                {"addresses": ["fd00::5"], "hostname": "pg-0", "conditions": {"ready": true}},
                {"addresses": ["fd00::6"]},
                {"addresses": ["fd00::7"], "conditions": {"ready": false}},
            ]),
            serde_json::json!([{"name": "sql", "port": 15432, "protocol": "TCP"}]),
        )];
        let pods = [
            pod("db", "pg-0", "fd00::5"),
            pod("default", "client", "fd00::9"),
        ];
        Records::build("Cluster.Local.", &services, &slices, &pods)
    }

    #[test]
    fn service_name_holds_its_cluster_ip_whatever_the_case() {
        let records = sample();
        let got = records.lookup(&lower("WEB.default.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&got), vec![&aaaa("fd01::20")]);
        assert_eq!(
            records.lookup(&lower("web.default.svc.cluster.local"), RecordType::AAAA),
            got
        );
    }

    #[test]
    fn a_query_for_an_ipv6_service_is_nodata_not_unknown() {
        let records = sample();
        assert_eq!(
            records.lookup(&lower("web.default.svc.cluster.local."), RecordType::A),
            Lookup::NoData
        );
    }

    #[test]
    fn names_between_service_and_domain_exist_and_others_do_not() {
        let records = sample();
        for interior in [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "_tcp.web.default.svc.cluster.local.",
            "pod.cluster.local.",
        ] {
            assert_eq!(
                records.lookup(&lower(interior), RecordType::AAAA),
                Lookup::NoData,
                "{interior}"
            );
        }
        for unknown in [
            "nope.default.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "x.cluster.local.",
        ] {
            assert_eq!(
                records.lookup(&lower(unknown), RecordType::AAAA),
                Lookup::Unknown,
                "{unknown}"
            );
        }
    }

    #[test]
    fn named_port_gets_srv_pointing_at_the_service_name_unnamed_gets_none() {
        let records = sample();
        let got = records.lookup(
            &lower("_http._tcp.web.default.svc.cluster.local."),
            RecordType::SRV,
        );
        let svc = name("web.default.svc.cluster.local.");
        assert_eq!(data(&got), vec![&RData::SRV(SRV::new(0, 100, 80, svc))]);
        let Lookup::Found { additionals, .. } = got else {
            unreachable!()
        };
        assert_eq!(
            additionals.iter().map(|r| &r.data).collect::<Vec<_>>(),
            vec![&aaaa("fd01::20")]
        );
    }

    #[test]
    fn headless_service_answers_ready_endpoints_with_their_names() {
        let records = sample();
        let got = records.lookup(&lower("pg.db.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&got), vec![&aaaa("fd00::5"), &aaaa("fd00::6")]);
        let host = records.lookup(&lower("pg-0.pg.db.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&host), vec![&aaaa("fd00::5")]);
        let dashed = records.lookup(&lower("fd00--6.pg.db.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&dashed), vec![&aaaa("fd00::6")]);
        let srv = records.lookup(
            &lower("_sql._tcp.pg.db.svc.cluster.local."),
            RecordType::SRV,
        );
        assert_eq!(
            data(&srv),
            vec![
                &RData::SRV(SRV::new(
                    0,
                    50,
                    15432,
                    name("pg-0.pg.db.svc.cluster.local.")
                )),
                &RData::SRV(SRV::new(
                    0,
                    50,
                    15432,
                    name("fd00--6.pg.db.svc.cluster.local.")
                )),
            ]
        );
    }

    #[test]
    fn not_ready_endpoints_are_published_when_the_service_says_so() {
        let mut svc = service("db", "pg", "None", serde_json::json!([]));
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let slices = [slice(
            "db",
            "pg",
            serde_json::json!([{"addresses": ["fd00::7"], "conditions": {"ready": false}}]),
            serde_json::json!([]),
        )];
        let records = Records::build("cluster.local", &[svc], &slices, &[]);
        let got = records.lookup(&lower("pg.db.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&got), vec![&aaaa("fd00::7")]);
    }

    #[test]
    fn headless_service_without_endpoints_exists_with_no_addresses() {
        let svc = service("db", "pg", "None", serde_json::json!([]));
        let records = Records::build("cluster.local", &[svc], &[], &[]);
        assert_eq!(
            records.lookup(&lower("pg.db.svc.cluster.local."), RecordType::AAAA),
            Lookup::NoData
        );
    }

    #[test]
    fn ptr_names_service_ip_endpoint_hostname_and_pod_ip() {
        let records = sample();
        let ptr = |ip: &str| {
            let reverse = Name::from(ip.parse::<IpAddr>().unwrap());
            records.lookup(&LowerName::new(&reverse), RecordType::PTR)
        };
        assert_eq!(
            data(&ptr("fd01::20")),
            vec![&RData::PTR(PTR(name("web.default.svc.cluster.local.")))]
        );
        assert_eq!(
            data(&ptr("fd00::5")),
            vec![&RData::PTR(PTR(name("pg-0.pg.db.svc.cluster.local.")))]
        );
        assert_eq!(
            data(&ptr("fd00::9")),
            vec![&RData::PTR(PTR(name("fd00--9.default.pod.cluster.local.")))]
        );
        assert_eq!(ptr("fd00::99"), Lookup::Unknown);
    }

    #[test]
    fn pod_name_with_dashes_answers_its_ip() {
        let records = sample();
        let got = records.lookup(
            &lower("fd00--9.default.pod.cluster.local."),
            RecordType::AAAA,
        );
        assert_eq!(data(&got), vec![&aaaa("fd00::9")]);
    }

    #[test]
    fn address_with_a_leading_dash_still_makes_a_pod_name() {
        let records = Records::build("cluster.local", &[], &[], &[pod("default", "p", "::5")]);
        // Text parsing refuses the label; on the wire it is plain bytes.
        let labels: [&[u8]; 5] = [b"--5", b"default", b"pod", b"cluster", b"local"];
        let mut wire = Name::from_labels(labels).unwrap();
        wire.set_fqdn(true);
        let got = records.lookup(&LowerName::new(&wire), RecordType::AAAA);
        assert_eq!(data(&got), vec![&aaaa("::5")]);
    }

    #[test]
    fn external_name_service_is_a_cname() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.org"},
        }))
        .unwrap();
        let records = Records::build("cluster.local", &[svc], &[], &[]);
        let got = records.lookup(&lower("ext.default.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&got), vec![&RData::CNAME(CNAME(name("example.org.")))]);
    }

    #[test]
    fn slices_of_other_namespaces_or_services_are_not_mixed_in() {
        let svc = service("db", "pg", "None", serde_json::json!([]));
        let slices = [
            slice(
                "other",
                "pg",
                serde_json::json!([{"addresses": ["fd00::1"]}]),
                serde_json::json!([]),
            ),
            slice(
                "db",
                "mysql",
                serde_json::json!([{"addresses": ["fd00::2"]}]),
                serde_json::json!([]),
            ),
        ];
        let records = Records::build("cluster.local", &[svc], &slices, &[]);
        assert_eq!(
            records.lookup(&lower("pg.db.svc.cluster.local."), RecordType::AAAA),
            Lookup::NoData
        );
    }

    #[test]
    fn objects_with_names_invalid_in_dns_are_skipped_not_fatal() {
        let long = "x".repeat(70);
        let services = [
            service("default", &long, "fd01::30", serde_json::json!([])),
            service("default", "ok", "fd01::31", serde_json::json!([])),
        ];
        let records = Records::build("cluster.local", &services, &[], &[]);
        let got = records.lookup(&lower("ok.default.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(data(&got), vec![&aaaa("fd01::31")]);
    }
}
