//! The kinds Selur serves, with their REST names (group, version, plural),
//! scope, short names and subresources: the one table the API server's
//! router, the store's key layout and the CLI's `KIND` arguments all read.

/// One served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group; `""` is the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in REST paths (`deployments`).
    pub plural: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Has a `status` subresource: the main resource ignores status changes, `/status` only changes status.
    pub status: bool,
    /// Has a `scale` subresource (`spec.replicas`).
    pub scale: bool,
}

impl ResourceKind {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Lower-case singular name (`deployment`).
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }
    /// `deployment.apps` as kubectl prints it (`pod` for the core group).
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular()
        } else {
            format!("{}.{}", self.singular(), self.group)
        }
    }
    /// `deployments.apps`, the resource name used in Status messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// The group's name in store keys (`core` for the core group).
    pub fn store_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }
    /// REST path of the collection in `namespace` (or cluster-wide when `None`).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }
}

#[allow(clippy::too_many_arguments)]
const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    scale: bool,
) -> ResourceKind {
    ResourceKind {
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names,
        status,
        scale,
    }
}

/// Every kind Selur stores, in discovery order.
pub static KINDS: &[ResourceKind] = &[
    k("", "v1", "Pod", "pods", true, &["po"], true, false),
    k("", "v1", "Service", "services", true, &["svc"], true, false),
    k(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        true,
        false,
    ),
    k("", "v1", "Node", "nodes", false, &["no"], true, false),
    k("", "v1", "Event", "events", true, &["ev"], false, false),
    k(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        true,
        false,
    ),
    k(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
        false,
    ),
    k("", "v1", "Secret", "secrets", true, &[], false, false),
    k(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        false,
        false,
    ),
    k(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
    ),
    k(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
    ),
    k(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        true,
    ),
    k(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        false,
    ),
    k("batch", "v1", "Job", "jobs", true, &["job"], true, false),
    k(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        false,
    ),
    k(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        false,
    ),
    k(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        false,
    ),
    k(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
        false,
    ),
    k(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
        false,
    ),
    k(
        "policy",
        "v1beta1",
        "PodSecurityPolicy",
        "podsecuritypolicies",
        false,
        &["psp"],
        false,
        false,
    ),
    k(
        "networking.istio.io",
        "v1beta1",
        "VirtualService",
        "virtualservices",
        true,
        &["vs"],
        true,
        false,
    ),
    k(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
        true,
        &["smon"],
        false,
        false,
    ),
    k(
        "images.selur.io",
        "v1",
        "Image",
        "images",
        false,
        &["img"],
        true,
        false,
    ),
];

/// The kind named by a manifest's `apiVersion` and `kind`.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The kind served at `group/version/plural`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The kind a user means on the command line: plural, singular, short name or
/// kind, any case, optionally qualified by group (`deployments.apps`).
pub fn by_cli_name(name: &str) -> Option<&'static ResourceKind> {
    let lower = name.to_ascii_lowercase();
    let (word, group) = match lower.split_once('.') {
        Some((w, g)) => (w.to_string(), Some(g.to_string())),
        None => (lower.clone(), None),
    };
    KINDS.iter().find(|r| {
        let group_ok = match &group {
            Some(g) => r.group == g || r.group.starts_with(&format!("{g}.")),
            None => true,
        };
        group_ok
            && (r.plural == word
                || r.singular() == word
                || r.short_names.iter().any(|s| *s == word))
    })
}

/// Whether `api_version` names a group/version Selur serves at all (for clearer errors).
pub fn known_api_version(api_version: &str) -> bool {
    KINDS.iter().any(|r| r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let d = by_cli_name("deploy").unwrap();
        assert_eq!(
            d.collection_path(Some("default")),
            "/apis/apps/v1/namespaces/default/deployments"
        );
        assert_eq!(by_cli_name("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(
            by_cli_name("po").unwrap().collection_path(None),
            "/api/v1/pods"
        );
        assert_eq!(
            by_cli_name("no").unwrap().collection_path(Some("x")),
            "/api/v1/nodes"
        );
        assert_eq!(
            by_api_version_kind("autoscaling/v2", "HorizontalPodAutoscaler")
                .unwrap()
                .plural,
            "horizontalpodautoscalers"
        );
        for s in [
            "po", "deploy", "rs", "ds", "job", "cj", "svc", "ep", "hpa", "quota", "psp", "ns",
            "no", "ev", "sa", "pc",
        ] {
            assert!(by_cli_name(s).is_some(), "{s}");
        }
    }
}
