//! The admission chain every write goes through, in DESIGN.md's order:
//! decode (strict) → defaults → mutate → validate → policy → quota.
//!
//! Decode, defaults and validation come from `selur-api`. Mutation, policy
//! and quota are plug-in seams ([`Mutator`], [`PolicyCheck`], [`QuotaCharger`])
//! that later parts (security policy, ResourceQuota/LimitRange in `crate::quota`) fill in; quota
//! returns extra compare/write pairs that are committed in the same store
//! transaction as the object itself, so concurrent creates can never both take
//! the last slot.

use std::sync::Arc;

use selur_api::{defaults, validate, ResourceKind, TypedObject};
use selur_store::{Compare, Op};
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// What a write is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// Context handed to every plug-in.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    pub kind: &'static ResourceKind,
    pub operation: Operation,
    pub namespace: Option<&'a str>,
    pub old: Option<&'a TypedObject>,
    pub dry_run: bool,
}

/// Changes objects before validation (e.g. LimitRange defaults, obli-pkg probe injection).
pub trait Mutator: Send + Sync {
    fn mutate(&self, req: &AdmissionRequest<'_>, obj: &mut TypedObject) -> ApiResult<()>;
}

/// Changes objects from what the store holds (LimitRange defaults); runs
/// after the Kubernetes defaults and before the other mutators.
#[async_trait::async_trait]
pub trait StoreMutator: Send + Sync {
    async fn mutate(&self, req: &AdmissionRequest<'_>, obj: &mut TypedObject) -> ApiResult<()>;
}

/// Accepts or refuses a validated object (e.g. PodSecurityPolicy, image policy).
pub trait PolicyCheck: Send + Sync {
    fn check(&self, req: &AdmissionRequest<'_>, obj: &TypedObject) -> ApiResult<()>;
}

/// Extra compares and writes committed atomically with the object (quota usage).
#[derive(Debug, Default, Clone)]
pub struct Charge {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

/// Charges a write against a budget (ResourceQuota).
#[async_trait::async_trait]
pub trait QuotaCharger: Send + Sync {
    async fn charge(&self, req: &AdmissionRequest<'_>, obj: &TypedObject) -> ApiResult<Charge>;
}

/// Hands out what must be unique across objects (a Service's clusterIP and
/// nodePorts): fills the values in on the admitted object and returns the
/// compares and writes that claim them, committed in the object's own store
/// transaction. Runs again on every attempt of a write, so a value taken by
/// a concurrent write (its compare failed) is replaced by another.
#[async_trait::async_trait]
pub trait Allocator: Send + Sync {
    /// Claim what `obj` needs (and, on an update, free what it no longer holds).
    async fn allocate(&self, req: &AdmissionRequest<'_>, obj: &mut Value) -> ApiResult<Charge>;
    /// Writes that free what `obj` holds, for the transaction removing it.
    fn release(&self, kind: &ResourceKind, obj: &Value) -> Vec<Op>;
}

/// The configured chain.
#[derive(Default, Clone)]
pub struct Admission {
    pub store_mutators: Vec<Arc<dyn StoreMutator>>,
    pub mutators: Vec<Arc<dyn Mutator>>,
    pub policies: Vec<Arc<dyn PolicyCheck>>,
    pub quotas: Vec<Arc<dyn QuotaCharger>>,
    pub allocators: Vec<Arc<dyn Allocator>>,
}

impl Admission {
    /// Defaults, mutation, validation and policy for an object that decoded already.
    pub async fn admit(&self, req: &AdmissionRequest<'_>, obj: &mut TypedObject) -> ApiResult<()> {
        defaults::apply(obj);
        for m in &self.store_mutators {
            m.mutate(req, obj).await?;
        }
        for m in &self.mutators {
            m.mutate(req, obj)?;
        }
        let errors = match req.old {
            Some(old) => validate::validate_update(old, obj),
            None => validate::validate(obj),
        };
        if !errors.is_empty() {
            let name = obj.metadata().name.clone().unwrap_or_default();
            return Err(ApiError::invalid(req.kind, &name, &errors));
        }
        for p in &self.policies {
            p.check(req, obj)?;
        }
        Ok(())
    }

    /// Allocations for the write (filled in on `obj`), to add to its transaction.
    pub async fn allocate(&self, req: &AdmissionRequest<'_>, obj: &mut Value) -> ApiResult<Charge> {
        let mut all = Charge::default();
        for a in &self.allocators {
            let c = a.allocate(req, obj).await?;
            all.compares.extend(c.compares);
            all.ops.extend(c.ops);
        }
        Ok(all)
    }

    /// Writes freeing what a removed object held.
    pub fn release(&self, kind: &ResourceKind, obj: &Value) -> Vec<Op> {
        self.allocators
            .iter()
            .flat_map(|a| a.release(kind, obj))
            .collect()
    }

    /// Quota charges for the write, to add to its transaction.
    pub async fn charge(&self, req: &AdmissionRequest<'_>, obj: &TypedObject) -> ApiResult<Charge> {
        let mut all = Charge::default();
        for q in &self.quotas {
            let c = q.charge(req, obj).await?;
            all.compares.extend(c.compares);
            all.ops.extend(c.ops);
        }
        Ok(all)
    }
}
