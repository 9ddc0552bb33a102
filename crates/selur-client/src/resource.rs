//! Typed access: where a kind lives (`ResourcePath`) and an [`Api`] of one
//! kind in one namespace, for k8s-openapi types and for Selur's own kinds
//! (as `serde_json::Value`, with a path given by hand).

use std::marker::PhantomData;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Client, ClientError};

/// Where a kind's objects live in the REST tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    /// Lower-case plural, e.g. `pods`.
    pub plural: String,
    pub namespaced: bool,
}

impl ResourcePath {
    /// A kind of Selur's or any other group, by hand.
    pub fn new(group: &str, version: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    /// The path of a k8s-openapi kind.
    pub fn of<K: k8s_openapi::Resource>() -> Self
    where
        K::Scope: 'static,
    {
        Self {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            plural: K::URL_PATH_SEGMENT.into(),
            namespaced: std::any::TypeId::of::<K::Scope>()
                == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
        }
    }

    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection in `namespace` (all namespaces, or cluster-scoped, with `None`).
    pub fn collection(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{}/namespaces/{ns}/{}", self.prefix(), self.plural),
            None => format!("{}/{}", self.prefix(), self.plural),
        }
    }

    /// One object (and optionally a subresource of it).
    pub fn object(&self, namespace: Option<&str>, name: &str, sub: Option<&str>) -> String {
        let base = format!("{}/{name}", self.collection(namespace));
        match sub {
            Some(s) => format!("{base}/{s}"),
            None => base,
        }
    }
}

/// Selectors and paging of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
}

impl ListParams {
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = &self.label_selector {
            q.push(("labelSelector", s.clone()));
        }
        if let Some(s) = &self.field_selector {
            q.push(("fieldSelector", s.clone()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        q
    }
}

/// `DeleteOptions` of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    /// Seconds the object's holder may take (pods); 0 deletes at once.
    pub grace_period_seconds: Option<u64>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    /// Delete only the object with this uid.
    pub precondition_uid: Option<String>,
    pub dry_run: bool,
}

impl DeleteParams {
    /// The `DeleteOptions` body.
    pub fn body(&self) -> Value {
        let mut b = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = self.grace_period_seconds {
            b["gracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = &self.propagation_policy {
            b["propagationPolicy"] = json!(p);
        }
        if let Some(u) = &self.precondition_uid {
            b["preconditions"] = json!({"uid": u});
        }
        if self.dry_run {
            b["dryRun"] = json!(["All"]);
        }
        b
    }
}

/// One kind in one namespace (or all, or cluster-scoped): typed get, list,
/// create, replace, patch, delete. `K` is a k8s-openapi type, or `Value`
/// with [`Api::dynamic`].
#[derive(Debug, Clone)]
pub struct Api<K> {
    client: Client,
    path: ResourcePath,
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: k8s_openapi::Resource> Api<K>
where
    K::Scope: 'static,
{
    /// `K` in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Self::with_path(client, ResourcePath::of::<K>(), Some(namespace))
    }

    /// `K` in every namespace (lists, watches), or a cluster-scoped `K`.
    pub fn all(client: Client) -> Self {
        Self::with_path(client, ResourcePath::of::<K>(), None)
    }
}

impl Api<Value> {
    /// Any kind as JSON, at `path`.
    pub fn dynamic(client: Client, path: ResourcePath, namespace: Option<&str>) -> Self {
        Self::with_path(client, path, namespace)
    }
}

impl<K> Api<K> {
    fn with_path(client: Client, path: ResourcePath, namespace: Option<&str>) -> Self {
        Self {
            client,
            path,
            namespace: namespace.map(String::from),
            _kind: PhantomData,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn resource_path(&self) -> &ResourcePath {
        &self.path
    }

    /// The collection's URL path.
    pub fn collection(&self) -> String {
        self.path.collection(self.namespace.as_deref())
    }

    /// An object's URL path (with an optional subresource).
    pub fn object(&self, name: &str, sub: Option<&str>) -> String {
        self.path.object(self.namespace.as_deref(), name, sub)
    }
}

/// A list answer's items and resourceVersion.
pub fn list_parts(mut list: Value) -> (Vec<Value>, String) {
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let items = match list.get_mut("items").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    (items, rv)
}

fn decode<K: DeserializeOwned>(client: &Client, v: Value) -> Result<K, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Decode {
        url: client.base.clone(),
        reason: e.to_string(),
    })
}

fn encode<K: Serialize>(client: &Client, obj: &K) -> Result<Value, ClientError> {
    serde_json::to_value(obj).map_err(|e| ClientError::Decode {
        url: client.base.clone(),
        reason: e.to_string(),
    })
}

impl<K: Serialize + DeserializeOwned> Api<K> {
    pub async fn get(&self, name: &str) -> Result<K, ClientError> {
        let v = self.client.get(&self.object(name, None)).await?;
        decode(&self.client, v)
    }

    /// `get`, with 404 as `None`.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, ClientError> {
        match self.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The items and the list's resourceVersion.
    pub async fn list(&self, params: &ListParams) -> Result<(Vec<K>, String), ClientError> {
        let v = self
            .client
            .request(Method::GET, &self.collection(), &params.query(), None)
            .await?;
        let (items, rv) = list_parts(v);
        let items = items
            .into_iter()
            .map(|i| decode(&self.client, i))
            .collect::<Result<_, _>>()?;
        Ok((items, rv))
    }

    pub async fn create(&self, obj: &K) -> Result<K, ClientError> {
        let body = encode(&self.client, obj)?;
        let v = self.client.post(&self.collection(), &body).await?;
        decode(&self.client, v)
    }

    /// `PUT` the whole object (optimistic concurrency on its resourceVersion).
    pub async fn replace(&self, name: &str, obj: &K) -> Result<K, ClientError> {
        let body = encode(&self.client, obj)?;
        let v = self
            .client
            .json(
                Method::PUT,
                &self.object(name, None),
                &[],
                &body,
                "application/json",
            )
            .await?;
        decode(&self.client, v)
    }

    /// A JSON merge patch of the object or of a subresource (`status`).
    pub async fn patch_merge(
        &self,
        name: &str,
        sub: Option<&str>,
        patch: &Value,
    ) -> Result<K, ClientError> {
        let v = self
            .client
            .merge_patch(&self.object(name, sub), patch)
            .await?;
        decode(&self.client, v)
    }

    /// A [`Watcher`](crate::watcher::Watcher) over this collection: list,
    /// watch, resume, re-list after a 410 with deletions for what vanished.
    pub fn watcher(
        &self,
        params: ListParams,
    ) -> crate::watcher::Watcher<crate::watcher::ApiSource> {
        crate::watcher::Watcher::new(crate::watcher::ApiSource::new(
            self.client.clone(),
            &self.path,
            self.namespace.as_deref(),
            params,
        ))
    }

    /// Delete; the answer is the object (still there while it terminates)
    /// or a `Status`.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<Value, ClientError> {
        self.client
            .json(
                Method::DELETE,
                &self.object(name, None),
                &[],
                &params.body(),
                "application/json",
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Node, Pod};

    #[test]
    fn paths_of_kinds() {
        let p = ResourcePath::of::<Pod>();
        assert_eq!(
            p.collection(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(
            p.object(Some("ns"), "web", Some("status")),
            "/api/v1/namespaces/ns/pods/web/status"
        );
        assert_eq!(p.collection(None), "/api/v1/pods");
        let d = ResourcePath::of::<Deployment>();
        assert_eq!(
            d.object(Some("a"), "b", None),
            "/apis/apps/v1/namespaces/a/deployments/b"
        );
        let n = ResourcePath::of::<Node>();
        assert!(!n.namespaced);
        assert_eq!(n.object(Some("ignored"), "n1", None), "/api/v1/nodes/n1");
        let img = ResourcePath::new("images.selur.io", "v1", "images", false);
        assert_eq!(img.collection(None), "/apis/images.selur.io/v1/images");
    }

    #[test]
    fn delete_options_body() {
        let b = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: Some("u1".into()),
            ..Default::default()
        }
        .body();
        assert_eq!(b["gracePeriodSeconds"], 0);
        assert_eq!(b["preconditions"]["uid"], "u1");
    }
}
