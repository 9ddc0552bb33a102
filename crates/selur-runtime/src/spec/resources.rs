//! Resources: QoS class, cgroup limits from requests and limits, sysctls.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources};
use selur_api::quantity::{parse, Quantity};

use super::{Ctx, SpecError, SpecInput, DEFAULT_PIDS_LIMIT};

/// A pod's quality-of-service class, which decides eviction order and OOM
/// scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    /// Every container sets cpu and memory limits equal to its requests.
    Guaranteed,
    /// Some requests or limits are set, but not enough for Guaranteed.
    Burstable,
    /// No container sets cpu or memory requests or limits.
    BestEffort,
}

impl QosClass {
    /// The name Kubernetes uses in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources that count for QoS.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

fn positive(q: &K8sQuantity) -> Option<Quantity> {
    parse(&q.0).ok().filter(|q| *q > Quantity::default())
}

/// The pod's QoS class, computed as Kubernetes' `GetPodQOS` does over all
/// containers and init containers: requests and limits for cpu and memory
/// are summed; no positive values at all is BestEffort; every container
/// limiting both cpu and memory, with summed requests equal to summed limits,
/// is Guaranteed; anything else is Burstable.
///
/// A missing request defaults to the limit, as API defaulting does, so the
/// answer is the same for defaulted and undefaulted pods. Quantities that do
/// not parse count as unset (validation rejects them before this point).
pub fn qos_class(pod: &Pod) -> QosClass {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut requests: BTreeMap<&'static str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&'static str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let add = |sums: &mut BTreeMap<&'static str, Quantity>, name: &'static str, q: Quantity| {
        let sum = sums.entry(name).or_default();
        *sum = sum.checked_add(&q).unwrap_or(*sum);
    };
    for c in containers {
        let res = c.resources.as_ref();
        let req_map = res.and_then(|r| r.requests.as_ref());
        let lim_map = res.and_then(|r| r.limits.as_ref());
        let mut limited = 0;
        for name in QOS_RESOURCES {
            let limit = lim_map.and_then(|m| m.get(name)).and_then(positive);
            let request = match req_map.and_then(|m| m.get(name)) {
                Some(q) => positive(q),
                None => limit,
            };
            if let Some(q) = request {
                add(&mut requests, name, q);
            }
            if let Some(q) = limit {
                add(&mut limits, name, q);
                limited += 1;
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(name, r)| limits.get(name) == Some(r))
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

/// CFS period used with quotas (Kubernetes' default, 100ms).
pub(crate) const CPU_PERIOD: u64 = 100_000;
const MIN_SHARES: i128 = 2;
const MAX_SHARES: i128 = 262_144;
const MIN_QUOTA: i128 = 1_000;

/// Kubernetes' `MilliCPUToShares`: 1024 shares per CPU, at least 2.
fn millicpu_to_shares(milli: i128) -> u64 {
    let shares = (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES);
    // Clamped into 2..=262144 above, so the conversion cannot fail.
    u64::try_from(shares).unwrap_or(MIN_SHARES as u64)
}

/// A container quantity by kind (`requests`/`limits`) and name, parsed.
fn quantity(
    input: &SpecInput,
    ctx: &Ctx,
    kind: &str,
    name: &str,
) -> Result<Option<Quantity>, SpecError> {
    let res = input.container.resources.as_ref();
    let map = match kind {
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => res.and_then(|r| r.limits.as_ref()),
    };
    let Some(raw) = map.and_then(|m| m.get(name)) else {
        return Ok(None);
    };
    let field = ctx.field(&format!("resources.{kind}[{name}]"));
    let q = parse(&raw.0).map_err(|e| SpecError::invalid(&field, &raw.0, e.to_string()))?;
    if q.is_negative() {
        return Err(SpecError::invalid(
            field,
            &raw.0,
            "must be greater than or equal to 0",
        ));
    }
    Ok(Some(q))
}

/// cgroup settings from requests and limits, as kubelet computes them: cpu
/// shares from the cpu request (or the limit when no request is set), a CFS
/// quota per 100ms period from the cpu limit, the memory limit in bytes, a
/// pids limit, and a device rule denying everything (the runtime adds the
/// standard `/dev/null`-style devices on top).
pub(crate) fn linux_resources(input: &SpecInput, ctx: &Ctx) -> Result<LinuxResources, SpecError> {
    let cpu_request = quantity(input, ctx, "requests", "cpu")?.map_or(0, |q| q.millis());
    let cpu_limit = quantity(input, ctx, "limits", "cpu")?.map_or(0, |q| q.millis());
    let memory_limit = quantity(input, ctx, "limits", "memory")?.map_or(0, |q| q.value());

    let mut cpu = LinuxCpu::default();
    let share_millis = if cpu_request == 0 {
        cpu_limit
    } else {
        cpu_request
    };
    cpu.set_shares(Some(millicpu_to_shares(share_millis)));
    if cpu_limit > 0 {
        let quota = (cpu_limit * i128::from(CPU_PERIOD) / 1000).max(MIN_QUOTA);
        let quota = i64::try_from(quota).map_err(|_| {
            SpecError::invalid(
                ctx.field("resources.limits[cpu]"),
                format!("{cpu_limit}m"),
                "is too large for a CFS quota; use a smaller cpu limit",
            )
        })?;
        cpu.set_quota(Some(quota)).set_period(Some(CPU_PERIOD));
    }

    let mut resources = LinuxResources::default();
    if memory_limit > 0 {
        let bytes = i64::try_from(memory_limit).map_err(|_| {
            SpecError::invalid(
                ctx.field("resources.limits[memory]"),
                memory_limit.to_string(),
                "is too large; use a memory limit below 8Ei",
            )
        })?;
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(bytes));
        resources.set_memory(Some(memory));
    }
    let pids = input.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    if pids > 0 {
        let mut p = LinuxPids::default();
        p.set_limit(pids);
        resources.set_pids(Some(p));
    }
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all
        .set_allow(false)
        .set_access(Some("rwm".to_string()));
    resources
        .set_cpu(Some(cpu))
        .set_devices(Some(vec![deny_all]));
    Ok(resources)
}

/// The pod cgroup's limits, as the kubelet sums them over the app
/// containers: a memory limit and a CFS quota only when every container
/// sets one (else the pod is unbounded there), shares from the summed CPU
/// requests, and the per-pod pids limit. Unparsable quantities count as unset.
pub fn pod_limits(pod: &Pod, pids: i64) -> crate::cgroups::PodLimits {
    let containers: Vec<&Container> = pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
    let get = |c: &Container, kind: &str, name: &str| -> Option<Quantity> {
        let r = c.resources.as_ref()?;
        let m = if kind == "requests" {
            r.requests.as_ref()
        } else {
            r.limits.as_ref()
        }?;
        positive(m.get(name)?)
    };
    let mut cpu_req: i128 = 0;
    let mut mem_limit: Option<i128> = Some(0);
    let mut cpu_limit: Option<i128> = Some(0);
    for c in &containers {
        let lim_cpu = get(c, "limits", "cpu").map(|q| q.millis());
        cpu_req += get(c, "requests", "cpu")
            .map(|q| q.millis())
            .or(lim_cpu)
            .unwrap_or(0);
        mem_limit = mem_limit
            .zip(get(c, "limits", "memory").map(|q| q.value()))
            .map(|(a, b)| a + b);
        cpu_limit = cpu_limit.zip(lim_cpu).map(|(a, b)| a + b);
    }
    if containers.is_empty() {
        mem_limit = None;
        cpu_limit = None;
    }
    crate::cgroups::PodLimits {
        memory: mem_limit.and_then(|m| i64::try_from(m).ok()),
        cpu_shares: millicpu_to_shares(cpu_req),
        cpu_quota: cpu_limit
            .and_then(|l| i64::try_from((l * i128::from(CPU_PERIOD) / 1000).max(MIN_QUOTA)).ok()),
        pids: (pids > 0).then_some(pids),
    }
}

/// Kubernetes accepts `net/ipv4/ip_forward` for `net.ipv4.ip_forward`; with
/// `/` as the separator, dots are part of names (`eno2.100`) and swap.
fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// Pod sysctls, limited to ones the kernel scopes to the container's own
/// namespaces: `kernel.shm_rmid_forced` (IPC) and `net.*` (network; the pod
/// never shares the host's network namespace under Selur).
pub(crate) fn sysctls(ctx: &Ctx) -> Result<HashMap<String, String>, SpecError> {
    let list = ctx
        .pod_sc
        .and_then(|s| s.sysctls.as_deref())
        .unwrap_or_default();
    let mut out = HashMap::new();
    for (i, sysctl) in list.iter().enumerate() {
        let name = normalize_sysctl(&sysctl.name);
        if name != "kernel.shm_rmid_forced" && !name.starts_with("net.") {
            return Err(SpecError::forbidden(
                format!("spec.securityContext.sysctls[{i}].name"),
                format!(
                    "sysctl {name:?} is not namespaced to the pod and would change the host; \
                     only kernel.shm_rmid_forced and net.* sysctls are allowed"
                ),
            ));
        }
        out.insert(name, sysctl.value.clone());
    }
    Ok(out)
}
