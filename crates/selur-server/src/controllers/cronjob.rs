//! The CronJob controller: per CronJob, read its Jobs (controller owner
//! reference), let [`cronjob_logic::decide`] pick the due run, then delete
//! running Jobs (Replace), create the Job `<cronjob>-<minutes since epoch>`
//! from the template, prune finished Jobs beyond the history limits and write
//! `status` (active, lastScheduleTime, lastSuccessfulTime). It asks to run
//! again just after the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use selur_store::Event;

use super::cronjob_logic::{self, job_name, CronSpec, Skip};
use super::podstate::{self, parse_time};
use super::workqueue::split_key;
use super::{kind, list_containing};
use crate::clock::rfc3339;
use crate::events::Recorder;
use crate::registry::{meta_str, DeleteOptions, Registry, Subresource};
use crate::status::{ApiError, ApiResult};

/// Store prefix of all CronJobs.
pub const PREFIX: &str = "/registry/batch/cronjobs/";
const JOB_PREFIX: &str = "/registry/batch/jobs/";
/// Annotation on a created Job: the time it was scheduled for.
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub struct Ctx {
    pub reg: Registry,
    pub recorder: Recorder,
}

impl Ctx {
    pub fn new(reg: Registry) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(reg.clone(), "cronjob-controller"),
            reg,
        })
    }

    async fn event(&self, obj: &Value, type_: &str, reason: &str, msg: String) {
        self.recorder.record(obj, type_, reason, &msg).await;
    }
}

/// The CronJobs a change concerns: the CronJob itself, or a Job's controlling CronJob.
pub fn keys_of(ev: &Event) -> Vec<String> {
    super::workqueue::owner_keys(ev, PREFIX, JOB_PREFIX, "CronJob")
}

/// A Job's finishing condition (`Complete` or `Failed`), if it finished.
fn finished(job: &Value) -> Option<&str> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")?
        .get("type")?
        .as_str()
}

fn finish_time(job: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time(job.pointer("/status/completionTime")).or_else(|| {
        job.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .filter(|c| c["status"] == "True")
            .filter_map(|c| parse_time(c.get("lastTransitionTime")))
            .max()
    })
}

/// Reconcile one CronJob; `Ok(Some(d))` to run again at the next schedule.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> ApiResult<Option<Duration>> {
    let (ns, name) = split_key(&key);
    let cj_kind = kind("cronjobs")?;
    let job_kind = kind("jobs")?;
    let cj = match ctx.reg.get(cj_kind, Some(ns), name).await {
        Ok(v) => v,
        Err(e) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if podstate::deleting(&cj) {
        return Ok(None);
    }
    let spec = match CronSpec::of(&cj) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("invalid schedule or time zone: {e}");
            ctx.event(&cj, "Warning", "InvalidSchedule", msg).await;
            return Ok(None);
        }
    };
    let uid = meta_str(&cj, "uid").unwrap_or("").to_string();
    let jobs: Vec<Value> = list_containing(&ctx.reg, job_kind, ns, &uid)
        .await?
        .into_iter()
        .filter(|j| podstate::controlled_by(j, &uid) && !podstate::deleting(j))
        .collect();
    let (mut active, done): (Vec<Value>, Vec<Value>) =
        jobs.into_iter().partition(|j| finished(j).is_none());
    let now = ctx.reg.clock.now();
    let created = parse_time(cj.pointer("/metadata/creationTimestamp")).unwrap_or(now);
    let mut last_schedule = parse_time(cj.pointer("/status/lastScheduleTime"));
    let d = cronjob_logic::decide(&spec, created, last_schedule, active.len(), now);
    if let Some(n) = d.too_many_missed {
        let msg = format!("too many missed start times: {n}. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
        ctx.event(&cj, "Warning", "TooManyMissedTimes", msg).await;
    }
    match d.skipped {
        Some((t, Skip::TooLate)) => {
            let msg = format!("Missed scheduled time to start a job: {}", rfc3339(t));
            ctx.event(&cj, "Warning", "MissSchedule", msg).await;
        }
        Some((_, Skip::AlreadyActive)) => {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            ctx.event(&cj, "Normal", "JobAlreadyActive", msg.into())
                .await;
        }
        None => {}
    }
    if d.replace_active {
        for j in std::mem::take(&mut active) {
            delete_job(&ctx, &cj, &j).await?;
        }
    }
    if let Some(t) = d.run {
        active.push(create_job(&ctx, &cj, t).await?);
        last_schedule = Some(t);
    }
    prune_history(&ctx, &cj, &done).await?;
    let last_success = done
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(finish_time)
        .chain(parse_time(cj.pointer("/status/lastSuccessfulTime")))
        .max();
    let refs: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": ns,
                "name": meta_str(j, "name"), "uid": meta_str(j, "uid"),
                "resourceVersion": meta_str(j, "resourceVersion")})
        })
        .collect();
    let status = json!({
        "active": if refs.is_empty() { Value::Null } else { Value::Array(refs) },
        "lastScheduleTime": last_schedule.map(rfc3339),
        "lastSuccessfulTime": last_success.map(rfc3339),
    });
    let old = &cj["status"];
    let same = |k: &str| {
        let (o, n) = (old.get(k).unwrap_or(&Value::Null), &status[k]);
        match (o, n) {
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x["uid"] == y["uid"])
            }
            (Value::Array(a), Value::Null) => a.is_empty(),
            _ => o == n,
        }
    };
    if !["active", "lastScheduleTime", "lastSuccessfulTime"]
        .iter()
        .all(|k| same(k))
    {
        ctx.reg
            .merge(
                cj_kind,
                Some(ns),
                name,
                &json!({"status": status}),
                Subresource::Status,
            )
            .await?;
    }
    Ok(d.requeue)
}

/// The Job for the run scheduled at `t`, from the CronJob's template.
pub fn job_for(cj: &Value, t: chrono::DateTime<chrono::Utc>) -> Value {
    let tpl = &cj["spec"]["jobTemplate"];
    let name = meta_str(cj, "name").unwrap_or("");
    let mut meta = json!({
        "name": job_name(name, t),
        "namespace": cj["metadata"]["namespace"],
        "labels": tpl.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        "annotations": tpl.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
            "uid": cj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
    });
    meta["annotations"][SCHEDULED_ANNOTATION] = json!(rfc3339(t));
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": tpl["spec"]})
}

async fn create_job(ctx: &Ctx, cj: &Value, t: chrono::DateTime<chrono::Utc>) -> ApiResult<Value> {
    let job_kind = kind("jobs")?;
    let ns = meta_str(cj, "namespace");
    let body = job_for(cj, t);
    let name = meta_str(&body, "name").unwrap_or("").to_string();
    match ctx.reg.create(job_kind, ns, body, false).await {
        Ok(j) => {
            ctx.event(
                cj,
                "Normal",
                "SuccessfulCreate",
                format!("Created job {name}"),
            )
            .await;
            Ok(j)
        }
        // Created by an earlier reconcile whose status write was lost.
        Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
            ctx.reg.get(job_kind, ns, &name).await
        }
        Err(e) => {
            let msg = format!("Error creating job: {}", e.message);
            ctx.event(cj, "Warning", "FailedCreate", msg).await;
            Err(e)
        }
    }
}

async fn delete_job(ctx: &Ctx, cj: &Value, job: &Value) -> ApiResult<()> {
    let name = meta_str(job, "name").unwrap_or("");
    let opts = DeleteOptions {
        propagation_policy: Some("Background".into()),
        precondition_uid: meta_str(job, "uid").map(String::from),
        ..Default::default()
    };
    match ctx
        .reg
        .delete(kind("jobs")?, meta_str(job, "namespace"), name, &opts)
        .await
    {
        Ok(_) => {
            ctx.event(
                cj,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            )
            .await;
            Ok(())
        }
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delete the oldest finished Jobs beyond `successfulJobsHistoryLimit` /
/// `failedJobsHistoryLimit`.
async fn prune_history(ctx: &Ctx, cj: &Value, done: &[Value]) -> ApiResult<()> {
    let mut first_err: Option<ApiError> = None;
    for (type_, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = cj["spec"][field].as_i64().unwrap_or(default).max(0) as usize;
        let mut these: Vec<&Value> = done.iter().filter(|j| finished(j) == Some(type_)).collect();
        if these.len() <= limit {
            continue;
        }
        these.sort_by_key(|j| {
            (
                finish_time(j),
                meta_str(j, "creationTimestamp").map(String::from),
            )
        });
        let extra = these.len() - limit;
        for j in &these[..extra] {
            if let Err(e) = delete_job(ctx, cj, j).await {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
