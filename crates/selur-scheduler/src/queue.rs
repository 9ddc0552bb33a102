//! Queue order: higher priority first (the pod's `spec.priority`, else its
//! PriorityClass's value, else the global default class, else 0); among equal
//! priorities smaller images first, so small workloads become Ready soonest
//! (catalog size, else the image's `io.hyperpolymath.size-mb` label; unknown
//! sizes last); then older pods first; then by key, for a total order.

use std::cmp::Reverse;
use std::collections::HashMap;

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::pod::PodInfo;
use super::snapshot::Catalog;

/// PriorityClass values by name, and the global default.
#[derive(Debug, Clone, Default)]
pub struct Priorities {
    classes: HashMap<String, (i32, bool)>,
}

impl Priorities {
    pub fn upsert(&mut self, pc: &PriorityClass) {
        if let Some(name) = &pc.metadata.name {
            self.classes
                .insert(name.clone(), (pc.value, pc.global_default == Some(true)));
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.classes.remove(name);
    }

    fn global_default(&self) -> Option<i32> {
        self.classes
            .values()
            .filter(|(_, d)| *d)
            .map(|(v, _)| *v)
            .max()
    }

    /// The pod's priority.
    pub fn of(&self, pod: &PodInfo) -> i32 {
        if let Some(p) = pod.priority {
            return p;
        }
        match &pod.priority_class {
            Some(c) => self.classes.get(c).map(|(v, _)| *v).unwrap_or(0),
            None => self.global_default().unwrap_or(0),
        }
    }
}

/// Total bytes of the pod's images, if every one has a known size.
pub fn image_bytes(pod: &PodInfo, catalog: &Catalog) -> Option<u64> {
    let mut total = 0u64;
    for reference in &pod.images {
        total = total.saturating_add(catalog.resolve(reference)?.size_bytes()?);
    }
    Some(total)
}

/// The sort key: smaller goes first.
pub type QueueKey = (Reverse<i32>, u64, i64, String);

pub fn queue_key(key: &str, pod: &PodInfo, prio: &Priorities, catalog: &Catalog) -> QueueKey {
    (
        Reverse(prio.of(pod)),
        image_bytes(pod, catalog).unwrap_or(u64::MAX),
        pod.created,
        key.to_string(),
    )
}

/// Sort pod keys into scheduling order.
pub fn order<'a>(
    pods: impl IntoIterator<Item = (&'a str, &'a PodInfo)>,
    prio: &Priorities,
    catalog: &Catalog,
) -> Vec<String> {
    let mut keyed: Vec<QueueKey> = pods
        .into_iter()
        .map(|(k, p)| queue_key(k, p, prio, catalog))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|k| k.3).collect()
}
