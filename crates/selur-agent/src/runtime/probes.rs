//! Container probes as the kubelet runs them: startup, liveness and
//! readiness, each `exec`, `httpGet` or `tcpSocket`, with
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold` and `failureThreshold`. Everything reaches the pod
//! through its own network namespace at `[::1]` (pods are IPv6-only).
//!
//! A fresh container's readiness: a readiness probe that has never
//! succeeded is, for its first period, retried quickly after a failure
//! (25 ms, doubling) rather than a whole period later, and those early
//! failures are not counted (no `Unhealthy` event): a container is marked
//! ready as soon as it answers, typically a few milliseconds after it
//! starts, where the kubelet would wait `periodSeconds` after a first probe
//! that raced the program's `listen`. After that first period (or the first
//! success) the probe runs every `periodSeconds` as in Kubernetes.
//!
//! The Lago Grey health check: an exec probe whose command is
//! `obli-pkg status` is judged by its JSON output, healthy only when
//! `status` is `healthy` and `integrity` is `ok`. A container whose image
//! holds `/usr/bin/obli-pkg` and that declares no readiness probe gets that
//! check as its readiness probe (unless the pod is annotated
//! `selur.io/obli-pkg-health: "false"`).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// The settings of the implicit obli-pkg readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObliSettings {
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl Default for ObliSettings {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failure_threshold: 3,
        }
    }
}

/// One probe of one container and its running tally.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kind: Kind,
    /// The probe spec (`exec`/`httpGet`/`tcpSocket` and timings).
    pub spec: Value,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    successes: u32,
    failures: u32,
    next: Option<Instant>,
    /// The current verdict once thresholds were reached (`None`: not yet).
    pub verdict: Option<bool>,
    /// Whether this run of the container ever passed this probe.
    ever_ok: bool,
    /// A fresh readiness probe's quick retries: when they end, and the next
    /// retry delay.
    warmup: Option<(Instant, Duration)>,
}

/// The first quick retry of a fresh readiness probe.
const WARMUP_FIRST_RETRY: Duration = Duration::from_millis(25);

/// What one probe result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The verdict changed.
    pub changed: bool,
    /// A failure that counts (not a fresh readiness probe's quick retry).
    pub counted_failure: bool,
}

fn secs(v: &Value, default: u64) -> Duration {
    Duration::from_secs(v.as_u64().unwrap_or(default))
}

fn count(v: &Value, default: u32) -> u32 {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Probe {
    pub fn from_spec(kind: Kind, spec: &Value) -> Self {
        Self {
            kind,
            spec: spec.clone(),
            initial_delay: secs(&spec["initialDelaySeconds"], 0),
            period: secs(&spec["periodSeconds"], 10).max(Duration::from_secs(1)),
            timeout: secs(&spec["timeoutSeconds"], 1).max(Duration::from_secs(1)),
            // Liveness and startup probes must use 1, as Kubernetes validates.
            success_threshold: if kind == Kind::Readiness {
                count(&spec["successThreshold"], 1)
            } else {
                1
            },
            failure_threshold: count(&spec["failureThreshold"], 3),
            successes: 0,
            failures: 0,
            next: None,
            verdict: None,
            ever_ok: false,
            warmup: None,
        }
    }

    /// The implicit `obli-pkg status` readiness probe.
    pub fn obli(settings: &ObliSettings) -> Self {
        let spec = json!({"exec": {"command": ["/usr/bin/obli-pkg", "status"]}});
        let mut p = Self::from_spec(Kind::Readiness, &spec);
        p.period = settings.period;
        p.timeout = settings.timeout;
        p.failure_threshold = settings.failure_threshold.max(1);
        p
    }

    /// When the probe should run next (`started`: when the container started).
    pub fn due_at(&self, started: Instant) -> Instant {
        self.next.unwrap_or(started + self.initial_delay)
    }

    /// Whether the probe should run now (`started`: when the container started).
    pub fn due(&self, now: Instant, started: Instant) -> bool {
        now >= self.due_at(started)
    }

    /// Count one result.
    pub fn record(&mut self, ok: bool, now: Instant) -> Recorded {
        if self.kind == Kind::Readiness && !self.ever_ok && !ok {
            let (end, delay) = *self
                .warmup
                .get_or_insert((now + self.period, WARMUP_FIRST_RETRY));
            if now < end {
                self.next = Some((now + delay).min(end));
                self.warmup = Some((end, delay.saturating_mul(2)));
                return Recorded {
                    changed: false,
                    counted_failure: false,
                };
            }
        }
        self.ever_ok |= ok;
        self.next = Some(now + self.period);
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if self.successes >= self.success_threshold {
            Some(true)
        } else if self.failures >= self.failure_threshold {
            Some(false)
        } else {
            self.verdict
        };
        let changed = verdict != self.verdict;
        self.verdict = verdict;
        Recorded {
            changed,
            counted_failure: !ok,
        }
    }

    /// Start over (a new run of the container).
    pub fn reset(&mut self) {
        self.successes = 0;
        self.failures = 0;
        self.next = None;
        self.verdict = None;
        self.ever_ok = false;
        self.warmup = None;
    }
}

/// Whether `cmd` is the Lago Grey health check (`[/usr/bin/]obli-pkg status`).
pub fn is_obli(cmd: &[String]) -> bool {
    cmd.len() == 2 && cmd[0].rsplit('/').next() == Some("obli-pkg") && cmd[1] == "status"
}

/// The parsed `obli-pkg status` output and whether it is healthy, or why
/// it cannot be judged.
pub fn judge_obli(stdout: &[u8]) -> Result<(bool, Value), String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.trim();
    let v: Value = serde_json::from_str(line).map_err(|_| {
        let shown: String = line.chars().take(120).collect();
        format!("obli-pkg status: output is not JSON: {shown:?}")
    })?;
    Ok((obli_healthy(&v), v))
}

/// The Lago Grey rule: healthy only when `status` is `healthy` and
/// `integrity` is `ok`.
pub fn obli_healthy(v: &Value) -> bool {
    v["status"] == "healthy" && v["integrity"] == "ok"
}

/// Why a parsed obli-pkg status is unhealthy.
pub fn obli_reason(v: &Value) -> String {
    format!(
        "obli-pkg status: status={} integrity={}",
        v["status"].as_str().unwrap_or("<missing>"),
        v["integrity"].as_str().unwrap_or("<missing>")
    )
}

/// The probes a container has: its declared ones, plus the implicit
/// obli-pkg readiness check when `has_obli` and none is declared.
pub fn probes_of(container: &Value, has_obli: bool, obli: Option<&ObliSettings>) -> Vec<Probe> {
    let mut out = Vec::new();
    for (field, kind) in [
        ("startupProbe", Kind::Startup),
        ("livenessProbe", Kind::Liveness),
        ("readinessProbe", Kind::Readiness),
    ] {
        if let Some(spec) = container.get(field).filter(|v| v.is_object()) {
            out.push(Probe::from_spec(kind, spec));
        }
    }
    if let (true, Some(settings)) = (has_obli, obli) {
        if container.get("readinessProbe").is_none_or(Value::is_null) {
            out.push(Probe::obli(settings));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_verdicts() {
        let mut p = Probe::from_spec(
            Kind::Readiness,
            &json!({"exec": {"command": ["x"]}, "successThreshold": 2, "failureThreshold": 2, "periodSeconds": 1}),
        );
        let t = Instant::now();
        assert!(p.due(t, t));
        assert!(!p.record(true, t).changed);
        assert_eq!(p.verdict, None);
        assert!(p.record(true, t).changed);
        assert_eq!(p.verdict, Some(true));
        assert!(!p.due(t, t), "next run one period later");
        let r = p.record(false, t);
        assert!(!r.changed && r.counted_failure);
        assert!(p.record(false, t).changed);
        assert_eq!(p.verdict, Some(false));
        let live = Probe::from_spec(Kind::Liveness, &json!({"successThreshold": 5}));
        assert_eq!(live.success_threshold, 1);
        assert_eq!(live.failure_threshold, 3);
        assert_eq!(live.timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_fresh_readiness_probe_retries_quickly_for_its_first_period_only() {
        let mut p = Probe::from_spec(
            Kind::Readiness,
            &json!({"httpGet": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1}),
        );
        let t = Instant::now();
        // Failures in the first period: retried after 25, 50, 100 ms ...,
        // not counted.
        let r = p.record(false, t);
        assert_eq!(
            r,
            Recorded {
                changed: false,
                counted_failure: false
            }
        );
        assert_eq!(p.due_at(t), t + Duration::from_millis(25));
        let t1 = t + Duration::from_millis(25);
        assert!(!p.record(false, t1).counted_failure);
        assert_eq!(p.due_at(t), t1 + Duration::from_millis(50));
        assert_eq!(p.verdict, None);
        // Retries never go past the end of the first period ...
        let t2 = t + Duration::from_millis(990);
        p.record(false, t2);
        assert_eq!(p.due_at(t), t + Duration::from_secs(1));
        // ... where a failure counts as usual.
        let t3 = t + Duration::from_secs(1);
        let r = p.record(false, t3);
        assert!(r.counted_failure && r.changed);
        assert_eq!(p.verdict, Some(false));
        assert_eq!(p.due_at(t), t3 + Duration::from_secs(1));

        // A success ends the quick retries for this run of the container.
        let mut p = Probe::from_spec(Kind::Readiness, &json!({"periodSeconds": 5}));
        p.record(false, t);
        assert!(p.record(true, t1).changed);
        let r = p.record(false, t2);
        assert!(r.counted_failure);
        assert_eq!(p.due_at(t), t2 + Duration::from_secs(5));
        // A restarted container starts afresh.
        p.reset();
        assert!(!p.record(false, t3).counted_failure);

        // Liveness failures always count.
        let mut l = Probe::from_spec(Kind::Liveness, &json!({"periodSeconds": 5}));
        assert!(l.record(false, t).counted_failure);
    }

    #[test]
    fn initial_delay_is_from_the_container_start() {
        let p = Probe::from_spec(Kind::Liveness, &json!({"initialDelaySeconds": 5}));
        let t = Instant::now();
        assert!(!p.due(t + Duration::from_secs(4), t));
        assert!(p.due(t + Duration::from_secs(5), t));
    }

    #[test]
    fn obli_pkg_is_judged_by_its_json() {
        assert!(is_obli(&["/usr/bin/obli-pkg".into(), "status".into()]));
        assert!(is_obli(&["obli-pkg".into(), "status".into()]));
        assert!(!is_obli(&["obli-pkg".into(), "list".into()]));
        let ok = br#"{"status":"healthy","packages":3,"last_operation":"x","integrity":"ok"}"#;
        assert!(judge_obli(ok).unwrap().0);
        let bad = br#"{"status":"healthy","packages":3,"integrity":"failed"}"#;
        let (healthy, v) = judge_obli(bad).unwrap();
        assert!(!healthy);
        assert_eq!(
            obli_reason(&v),
            "obli-pkg status: status=healthy integrity=failed"
        );
        assert!(judge_obli(b"oops").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn implicit_obli_readiness_only_without_a_declared_one() {
        let s = ObliSettings::default();
        let plain = json!({"name": "c"});
        assert_eq!(probes_of(&plain, true, Some(&s)).len(), 1);
        assert_eq!(probes_of(&plain, false, Some(&s)).len(), 0);
        assert_eq!(probes_of(&plain, true, None).len(), 0);
        let declared = json!({"readinessProbe": {"tcpSocket": {"port": 80}}, "livenessProbe": {"exec": {"command": ["true"]}}});
        let ps = probes_of(&declared, true, Some(&s));
        assert_eq!(
            ps.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [Kind::Liveness, Kind::Readiness]
        );
    }
}
