//! Which lists merge and by what key: the table standing in for Kubernetes'
//! `patchStrategy`/`patchMergeKey` struct tags.

/// How a list field merges, decided from its path.
///
/// Kubernetes encodes this in `patchStrategy`/`patchMergeKey` struct tags; we
/// have no typed structs at patch time, so the strategy is looked up by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Items are objects matched by the value of this field and merged pairwise.
    MergeByKey(&'static str),
    /// Items are scalars; merging is a set union that keeps first-seen order.
    MergePrimitives,
    /// The patch list replaces the original list (the JSON merge patch rule).
    Replace,
}

/// Field names whose items are containers; `ports` below them merge by
/// `containerPort` rather than a Service's `port`.
fn is_container_list(field: &str) -> bool {
    matches!(
        field,
        "containers" | "initContainers" | "ephemeralContainers"
    )
}

/// `path` is the object-field path from the object root with list indices removed,
/// e.g. ["spec","template","spec","containers"] or ["spec","ports"] (a Service) or ["metadata","finalizers"].
///
/// The table mirrors the `patchMergeKey` tags of the Kubernetes core types that
/// Selur serves. Fields not listed are atomic (replaced), which is also what
/// upstream does for untagged lists and for custom resources.
pub fn list_strategy(path: &[&str]) -> ListStrategy {
    let Some((&last, ancestors)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        // Container ports are identified by the port the process listens on; a
        // Service's ports by the port the Service exposes.
        "ports" if ancestors.iter().any(|a| is_container_list(a)) => {
            ListStrategy::MergeByKey("containerPort")
        }
        "ports" => ListStrategy::MergeByKey("port"),
        // Only `metadata.finalizers` is a merge list; e.g. a Namespace's
        // `spec.finalizers` is atomic upstream.
        "finalizers" if matches!(ancestors.last(), None | Some(&"metadata")) => {
            ListStrategy::MergePrimitives
        }
        _ => ListStrategy::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_table() {
        use ListStrategy::*;
        let pod = ["spec", "template", "spec"];
        let at = |tail: &[&'static str]| {
            let mut p: Vec<&str> = pod.to_vec();
            p.extend_from_slice(tail);
            list_strategy(&p)
        };
        assert_eq!(at(&["containers"]), MergeByKey("name"));
        assert_eq!(at(&["initContainers"]), MergeByKey("name"));
        assert_eq!(at(&["ephemeralContainers"]), MergeByKey("name"));
        assert_eq!(at(&["volumes"]), MergeByKey("name"));
        assert_eq!(at(&["imagePullSecrets"]), MergeByKey("name"));
        assert_eq!(at(&["hostAliases"]), MergeByKey("ip"));
        assert_eq!(
            at(&["topologySpreadConstraints"]),
            MergeByKey("topologyKey")
        );
        assert_eq!(at(&["containers", "env"]), MergeByKey("name"));
        assert_eq!(at(&["containers", "volumeMounts"]), MergeByKey("mountPath"));
        assert_eq!(
            at(&["containers", "volumeDevices"]),
            MergeByKey("devicePath")
        );
        assert_eq!(at(&["containers", "ports"]), MergeByKey("containerPort"));
        assert_eq!(
            at(&["initContainers", "ports"]),
            MergeByKey("containerPort")
        );
        assert_eq!(
            list_strategy(&["spec", "containers", "ports"]),
            MergeByKey("containerPort")
        );
        assert_eq!(list_strategy(&["spec", "ports"]), MergeByKey("port"));
        assert_eq!(list_strategy(&["status", "conditions"]), MergeByKey("type"));
        assert_eq!(
            list_strategy(&["metadata", "ownerReferences"]),
            MergeByKey("uid")
        );
        assert_eq!(list_strategy(&["metadata", "finalizers"]), MergePrimitives);
        assert_eq!(list_strategy(&["spec", "finalizers"]), Replace);
        for atomic in ["args", "command", "envFrom"] {
            assert_eq!(at(&["containers", atomic]), Replace);
        }
        assert_eq!(at(&["tolerations"]), Replace);
        assert_eq!(list_strategy(&["spec", "ipFamilies"]), Replace);
        assert_eq!(list_strategy(&["spec", "rules", "http"]), Replace);
        assert_eq!(list_strategy(&[]), Replace);
    }
}
