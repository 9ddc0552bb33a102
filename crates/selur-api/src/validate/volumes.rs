//! Pod volumes: unique DNS-label names, exactly one source, and the emptyDir
//! and hostPath fields Selur acts on.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Volume;

use super::{dns1123_label, non_negative_quantity, one_of, push_msgs, q};
use crate::FieldError;

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// How many volume sources a volume sets.
fn source_count(v: &Volume) -> usize {
    [
        v.aws_elastic_block_store.is_some(),
        v.azure_disk.is_some(),
        v.azure_file.is_some(),
        v.cephfs.is_some(),
        v.cinder.is_some(),
        v.config_map.is_some(),
        v.csi.is_some(),
        v.downward_api.is_some(),
        v.empty_dir.is_some(),
        v.ephemeral.is_some(),
        v.fc.is_some(),
        v.flex_volume.is_some(),
        v.flocker.is_some(),
        v.gce_persistent_disk.is_some(),
        v.git_repo.is_some(),
        v.glusterfs.is_some(),
        v.host_path.is_some(),
        v.image.is_some(),
        v.iscsi.is_some(),
        v.nfs.is_some(),
        v.persistent_volume_claim.is_some(),
        v.photon_persistent_disk.is_some(),
        v.portworx_volume.is_some(),
        v.projected.is_some(),
        v.quobyte.is_some(),
        v.rbd.is_some(),
        v.scale_io.is_some(),
        v.secret.is_some(),
        v.storageos.is_some(),
        v.vsphere_volume.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count()
}

/// Validate `spec.volumes`; returns the volume names for volumeMounts to refer to.
pub(super) fn validate_volumes(
    volumes: &[Volume],
    spec_path: &str,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("{spec_path}.volumes[{i}]");
        if v.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            push_msgs(
                &format!("{path}.name"),
                &v.name,
                dns1123_label(&v.name),
                errs,
            );
            if !names.insert(v.name.clone()) {
                errs.push(FieldError::duplicate(format!("{path}.name"), q(&v.name)));
            }
        }
        match source_count(v) {
            0 => errs.push(FieldError::required(
                path.clone(),
                "must specify a volume type (e.g. emptyDir: {}, configMap, secret, hostPath)",
            )),
            1 => {}
            _ => errs.push(FieldError::forbidden(
                path.clone(),
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(ed) = &v.empty_dir {
            one_of(
                &format!("{path}.emptyDir.medium"),
                ed.medium.as_deref(),
                &["", "Memory"],
                errs,
            );
            if let Some(sl) = &ed.size_limit {
                non_negative_quantity(&format!("{path}.emptyDir.sizeLimit"), sl, errs);
            }
        }
        if let Some(hp) = &v.host_path {
            let pp = format!("{path}.hostPath.path");
            if hp.path.is_empty() {
                errs.push(FieldError::required(pp, ""));
            } else if !hp.path.starts_with('/') {
                errs.push(FieldError::invalid(
                    pp,
                    q(&hp.path),
                    "must be an absolute path",
                ));
            }
            one_of(
                &format!("{path}.hostPath.type"),
                hp.type_.as_deref(),
                HOST_PATH_TYPES,
                errs,
            );
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, pod};
    use serde_json::json;

    #[test]
    fn volumes_need_unique_names_and_one_source() {
        let mut p = pod("p");
        p["spec"]["volumes"] = json!([
            {"name": "data", "emptyDir": {"medium": "Disk", "sizeLimit": "1x"}},
            {"name": "data", "hostPath": {"path": "var/log", "type": "Pipe"}},
            {"name": "Bad_Name"},
            {"name": "two", "emptyDir": {}, "secret": {"secretName": "s"}},
            {"name": "host", "hostPath": {"path": ""}},
        ]);
        let errs = errors(p);
        assert_has(&errs, "spec.volumes[0].emptyDir.medium: Unsupported value: \"Disk\": supported values: \"\", \"Memory\"");
        assert_has(
            &errs,
            "spec.volumes[0].emptyDir.sizeLimit: Invalid value: \"1x\"",
        );
        assert_has(&errs, "spec.volumes[1].name: Duplicate value: \"data\"");
        assert_has(
            &errs,
            "spec.volumes[1].hostPath.path: Invalid value: \"var/log\": must be an absolute path",
        );
        assert_has(
            &errs,
            "spec.volumes[1].hostPath.type: Unsupported value: \"Pipe\"",
        );
        assert_has(&errs, "spec.volumes[2].name: Invalid value: \"Bad_Name\"");
        assert_has(
            &errs,
            "spec.volumes[2]: Required value: must specify a volume type",
        );
        assert_has(
            &errs,
            "spec.volumes[3]: Forbidden: may not specify more than 1 volume type",
        );
        assert_has(&errs, "spec.volumes[4].hostPath.path: Required value");
        assert_eq!(errs.len(), 9, "{errs:#?}");
    }

    #[test]
    fn mounts_of_declared_volumes_are_fine() {
        let mut p = pod("p");
        p["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "c"}}]);
        p["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "cfg", "mountPath": "/etc/app"},
        ]);
        assert_eq!(
            errors(p),
            ["spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/etc/app\": must be unique"]
        );
    }
}
