//! The OCI config and manifest of a built image, serialised
//! deterministically (object keys sorted, no insignificant white space) so
//! the same inputs always give the same digests.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, History, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::Serialize;
use serde_json::Value;

use crate::digest::Digest;
use crate::store::{ImageStore, StoreError};

/// The run-time part of an image config, kept in a form that is easy to
/// edit instruction by instruction and that serialises in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExecConfig {
    pub user: Option<String>,
    /// In definition order; redefining a name keeps its place.
    pub env: Vec<(String, String)>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
}

impl ExecConfig {
    /// Take over a base image's config.
    pub fn from_oci(c: &oci_spec::image::Config) -> Self {
        let env = c
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect();
        ExecConfig {
            user: c.user().clone().filter(|u| !u.is_empty()),
            env,
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports: c
                .exposed_ports()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            volumes: c
                .volumes()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            stop_signal: c.stop_signal().clone(),
        }
    }

    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_env(&mut self, name: String, value: String) {
        match self.env.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name, value)),
        }
    }

    fn to_oci(&self) -> Result<oci_spec::image::Config, String> {
        let mut b = ConfigBuilder::default();
        if let Some(u) = &self.user {
            b = b.user(u.clone());
        }
        if !self.env.is_empty() {
            b = b.env(
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(e) = &self.entrypoint {
            b = b.entrypoint(e.clone());
        }
        if let Some(c) = &self.cmd {
            b = b.cmd(c.clone());
        }
        if let Some(w) = &self.working_dir {
            b = b.working_dir(w.clone());
        }
        if !self.labels.is_empty() {
            b = b.labels(
                self.labels
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        if !self.exposed_ports.is_empty() {
            b = b.exposed_ports(self.exposed_ports.iter().cloned().collect::<Vec<_>>());
        }
        if !self.volumes.is_empty() {
            b = b.volumes(self.volumes.iter().cloned().collect::<Vec<_>>());
        }
        if let Some(s) = &self.stop_signal {
            b = b.stop_signal(s.clone());
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// A history entry at the fixed build time.
pub(crate) fn history(
    created: &str,
    created_by: &str,
    empty_layer: bool,
) -> Result<History, String> {
    let mut b = HistoryBuilder::default()
        .created(created.to_string())
        .created_by(created_by.to_string())
        .comment("selur build".to_string());
    if empty_layer {
        b = b.empty_layer(true);
    }
    b.build().map_err(|e| e.to_string())
}

/// Everything the config and manifest are made of.
pub(crate) struct ImageParts<'a> {
    pub created: &'a str,
    pub author: Option<&'a str>,
    pub arch: Arch,
    pub os: Os,
    pub exec: &'a ExecConfig,
    pub layers: &'a [Descriptor],
    pub diff_ids: &'a [String],
    pub history: &'a [History],
}

/// Write config and manifest blobs; returns (manifest, config) digests.
pub(crate) fn write_image(
    store: &ImageStore,
    p: &ImageParts<'_>,
) -> Result<(Digest, Digest), String> {
    let rootfs = RootFsBuilder::default()
        .typ("layers".to_string())
        .diff_ids(p.diff_ids.to_vec())
        .build()
        .map_err(|e| e.to_string())?;
    let mut cb = ImageConfigurationBuilder::default()
        .created(p.created.to_string())
        .architecture(p.arch.clone())
        .os(p.os.clone())
        .config(p.exec.to_oci()?)
        .rootfs(rootfs)
        .history(p.history.to_vec());
    if let Some(a) = p.author {
        cb = cb.author(a.to_string());
    }
    let config: ImageConfiguration = cb.build().map_err(|e| e.to_string())?;
    let config_bytes = canonical_json(&config)?;
    let config_digest = store.put_blob_bytes(&config_bytes).map_err(store_msg)?;
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config_bytes.len() as u64,
        oci_digest(&config_digest)?,
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(p.layers.to_vec())
        .build()
        .map_err(|e| e.to_string())?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = store.put_blob_bytes(&manifest_bytes).map_err(store_msg)?;
    Ok((manifest_digest, config_digest))
}

pub(crate) fn store_msg(e: StoreError) -> String {
    format!("image store: {e}")
}

/// Our digest as oci-spec's.
pub(crate) fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest, String> {
    d.as_str()
        .parse()
        .map_err(|e: oci_spec::OciSpecError| e.to_string())
}

/// JSON with every object's keys sorted and no white space.
pub(crate) fn canonical_json<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    let value = serde_json::to_value(v).map_err(|e| e.to_string())?;
    serde_json::to_vec(&sorted(value)).map_err(|e| e.to_string())
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<String, Value> = m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(b.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        assert_eq!(
            canonical_json(&v).unwrap(),
            br#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#.to_vec()
        );
    }
}
