//! The Job controller: per Job, read its pods (controller owner reference),
//! let [`job_logic::plan`] decide, then create pods from the template
//! (`generateName <job>-`, labels `job-name`/`controller-uid` and their
//! `batch.kubernetes.io/` forms; Indexed mode adds the completion index as
//! annotation, label and `JOB_COMPLETION_INDEX`), delete pods (deadline,
//! back-off limit, suspend, parallelism lowered), write `status` and, once the
//! TTL after finishing ran out, delete the Job (its pods follow through the
//! garbage collector).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use selur_store::Event;

use super::job_logic::{self, Backoff, Finish, Plan, Previous, Spec};
use super::job_status::{changed, condition_status, status_of};
use super::podstate;
use super::workqueue::split_key;
use super::{kind, list_containing};
use crate::events::Recorder;
use crate::registry::{meta_str, DeleteOptions, Registry, Subresource};
use crate::status::ApiResult;

/// Store prefix of all Jobs.
pub const PREFIX: &str = "/registry/batch/jobs/";
const POD_PREFIX: &str = "/registry/core/pods/";

/// What the controller works with.
pub struct Ctx {
    pub reg: Registry,
    pub recorder: Recorder,
    pub backoff: Backoff,
}

impl Ctx {
    pub fn new(reg: Registry, backoff: Backoff) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(reg.clone(), "job-controller"),
            reg,
            backoff,
        })
    }
}

/// The Jobs a change concerns: the Job itself, or a pod's controlling Job.
pub fn keys_of(ev: &Event) -> Vec<String> {
    super::workqueue::owner_keys(ev, PREFIX, POD_PREFIX, "Job")
}

/// Reconcile one Job; `Ok(Some(d))` to look again after `d`.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> ApiResult<Option<Duration>> {
    let (ns, name) = split_key(&key);
    let job_kind = kind("jobs")?;
    let job = match ctx.reg.get(job_kind, Some(ns), name).await {
        Ok(v) => v,
        Err(e) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if podstate::deleting(&job) {
        return Ok(None);
    }
    let uid = meta_str(&job, "uid").unwrap_or("").to_string();
    let pods: Vec<Value> = list_containing(&ctx.reg, kind("pods")?, ns, &uid)
        .await?
        .into_iter()
        .filter(|p| podstate::controlled_by(p, &uid))
        .collect();
    let spec = Spec::of(&job);
    let prev = Previous::of(&job);
    let now = ctx.reg.clock.now();
    let mut plan = job_logic::plan(&spec, &prev, &pods, now, ctx.backoff);
    if plan.delete_job {
        let opts = DeleteOptions {
            propagation_policy: Some("Background".into()),
            precondition_uid: Some(uid),
            ..Default::default()
        };
        return match ctx.reg.delete(job_kind, Some(ns), name, &opts).await {
            Ok(_) => Ok(None),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        };
    }
    let deleted = delete_pods(&ctx, &job, &plan.delete).await;
    plan.active -= deleted as i64;
    let (created, create_err) = create_pods(&ctx, &job, &plan.create).await;
    plan.active += created as i64;
    let status = status_of(&job, &spec, &plan, now);
    if changed(&job["status"], &status) {
        ctx.reg
            .merge(
                job_kind,
                Some(ns),
                name,
                &json!({"status": status}),
                Subresource::Status,
            )
            .await?;
        record_transitions(&ctx, &job, &spec, &plan);
    }
    if let Some(e) = create_err {
        return Err(e);
    }
    // A finished Job with a TTL is looked at again when it runs out.
    if plan.finish.is_some() {
        if let Some(ttl) = spec.ttl_after_finished {
            return Ok(Some(
                Duration::from_secs(ttl.max(0) as u64) + Duration::from_millis(50),
            ));
        }
    }
    Ok(plan.requeue)
}

fn record_transitions(ctx: &Arc<Ctx>, job: &Value, spec: &Spec, plan: &Plan) {
    match &plan.finish {
        Some(Finish::Complete) => {
            ctx.recorder
                .record_later(job, "Normal", "Completed", "Job completed".into())
        }
        Some(Finish::Failed { reason, message }) => {
            ctx.recorder
                .record_later(job, "Warning", reason, message.to_string())
        }
        None => {}
    }
    let was_suspended = condition_status(job, "Suspended") == Some("True");
    if spec.suspend && !was_suspended {
        ctx.recorder
            .record_later(job, "Normal", "Suspended", "Job suspended".into());
    } else if !spec.suspend && was_suspended {
        ctx.recorder
            .record_later(job, "Normal", "Resumed", "Job resumed".into());
    }
}

/// A pod for `job` from its template, with completion index `index` in Indexed mode.
pub fn pod_for(job: &Value, index: Option<i64>) -> Value {
    let t = &job["spec"]["template"];
    let name = meta_str(job, "name").unwrap_or("");
    let uid = meta_str(job, "uid").unwrap_or("");
    let mut labels = t
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut annotations = t
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("job-name", name),
    ] {
        labels[k] = json!(v);
    }
    let mut spec = t["spec"].clone();
    let generate = match index {
        Some(i) => {
            labels[job_logic::INDEX_ANNOTATION] = json!(i.to_string());
            annotations[job_logic::INDEX_ANNOTATION] = json!(i.to_string());
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_array_mut().into_iter().flatten() {
                    let env = c["env"].as_array().cloned().unwrap_or_default();
                    let mut env: Vec<Value> = env
                        .into_iter()
                        .filter(|e| e["name"] != "JOB_COMPLETION_INDEX")
                        .collect();
                    env.push(json!({"name": "JOB_COMPLETION_INDEX", "value": i.to_string()}));
                    c["env"] = Value::Array(env);
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": generate, "namespace": job["metadata"]["namespace"],
            "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec})
}

/// Create the planned pods in batches of 1, 2, 4, ... (a refused create stops
/// before many more fail the same way); returns how many were created.
async fn create_pods(
    ctx: &Arc<Ctx>,
    job: &Value,
    indexes: &[Option<i64>],
) -> (usize, Option<crate::status::ApiError>) {
    let pod_kind = match kind("pods") {
        Ok(k) => k,
        Err(e) => return (0, Some(e)),
    };
    let ns = meta_str(job, "namespace");
    let mut done = 0;
    let mut batch = 1;
    while done < indexes.len() {
        let chunk = &indexes[done..(done + batch).min(indexes.len())];
        let results = join_all(chunk.iter().map(|i| async move {
            let body = pod_for(job, *i);
            let mut res = ctx.reg.create(pod_kind, ns, body.clone(), false).await;
            if matches!(&res, Err(e) if e.code == 409 && e.reason == "AlreadyExists") {
                res = ctx.reg.create(pod_kind, ns, body, false).await;
            }
            match &res {
                Ok(p) => ctx.recorder.record_later(
                    job,
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created pod: {}", meta_str(p, "name").unwrap_or("")),
                ),
                Err(e) => ctx.recorder.record_later(
                    job,
                    "Warning",
                    "FailedCreate",
                    format!("Error creating: {}", e.message),
                ),
            }
            res
        }))
        .await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(_) => done += 1,
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_some() {
            return (done, failed);
        }
        batch *= 2;
    }
    (done, None)
}

/// Delete the named pods; returns how many went.
async fn delete_pods(ctx: &Arc<Ctx>, job: &Value, names: &[String]) -> usize {
    let Ok(pod_kind) = kind("pods") else { return 0 };
    let ns = meta_str(job, "namespace");
    let results = join_all(names.iter().map(|n| async move {
        match ctx
            .reg
            .delete(pod_kind, ns, n, &DeleteOptions::default())
            .await
        {
            Ok(_) => {
                ctx.recorder.record_later(
                    job,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {n}"),
                );
                true
            }
            Err(e) if e.code == 404 => true,
            Err(e) => {
                ctx.recorder.record_later(
                    job,
                    "Warning",
                    "FailedDelete",
                    format!("Error deleting: {}", e.message),
                );
                false
            }
        }
    }))
    .await;
    results.into_iter().filter(|ok| *ok).count()
}
