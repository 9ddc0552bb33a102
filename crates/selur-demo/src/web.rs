//! The web personalities (`web-server`, `frontend-service`,
//! `backend-service`, `my-service`): their settings, routes and metrics.
//! Sockets live in `server`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{Request, Response};
use crate::log::{object, quote, Val};

/// Settings of a web personality, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The personality's name, echoed by `/api/...`.
    pub service: String,
    /// TCP port on `[::]`.
    pub port: u16,
    /// `/health` answers 503 until this long after start.
    pub ready_after: Duration,
    /// While this file exists `/health` answers 500.
    pub fail_file: Option<PathBuf>,
}

impl Config {
    /// Settings for `service` from `env` (`PORT`, `READY_AFTER_SECONDS`,
    /// `FAIL_HEALTH_FILE`).
    ///
    /// `backend-service` defaults to port 8081 because the seed's Pattern 2
    /// runs it in one pod (one network namespace) with `frontend-service`,
    /// which keeps 8080; everything else defaults to 8080.
    pub fn from_env(service: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let port = match env("PORT") {
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| format!("PORT={p:?} is not a TCP port number"))?,
            None if service == "backend-service" => 8081,
            None => 8080,
        };
        let ready_after = match env("READY_AFTER_SECONDS") {
            Some(s) => {
                let secs: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("READY_AFTER_SECONDS={s:?} is not a number of seconds"))?;
                Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("READY_AFTER_SECONDS={s:?} is out of range"))?
            }
            None => Duration::ZERO,
        };
        Ok(Config {
            service: service.to_string(),
            port,
            ready_after,
            fail_file: env("FAIL_HEALTH_FILE")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// State shared by every connection of one server.
#[derive(Debug)]
pub struct App {
    /// Settings.
    pub config: Config,
    /// The container's host name, echoed by `/api/...`.
    pub hostname: String,
    started: Instant,
    started_wall: SystemTime,
    /// Requests served, by (route, status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl App {
    /// A fresh server state, started now.
    pub fn new(config: Config, hostname: String) -> Self {
        App {
            config,
            hostname,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// Count one served request.
    pub fn record(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_insert(0) += 1;
        }
    }

    /// `/health`'s status and state word.
    fn health(&self, now: Instant) -> (u16, &'static str) {
        if self.config.fail_file.as_ref().is_some_and(|f| f.exists()) {
            (500, "failing")
        } else if now.duration_since(self.started) < self.config.ready_after {
            (503, "starting")
        } else {
            (200, "ok")
        }
    }

    /// Answer `req`; also returns the route label used in metrics.
    pub fn route(&self, req: &Request, now: Instant) -> (Response, &'static str) {
        let route = route_of(&req.path);
        if route != "other" && req.method != "GET" && req.method != "HEAD" {
            let mut r = Response::json(405, object(&[("error", Val::Str("method not allowed"))]));
            r.headers.push(("Allow", "GET, HEAD".into()));
            return (r, route);
        }
        let resp = match route {
            "/health" => {
                let (status, word) = self.health(now);
                Response::json(status, object(&[("status", Val::Str(word))]))
            }
            "/api" => {
                let mut fields = vec![
                    ("service", Val::Str(&self.config.service)),
                    ("path", Val::Str(&req.path)),
                    ("hostname", Val::Str(&self.hostname)),
                    ("method", Val::Str(&req.method)),
                ];
                if let Some(q) = &req.query {
                    fields.push(("query", Val::Str(q)));
                }
                Response::json(200, object(&fields))
            }
            "/metrics" => Response::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics(now),
            ),
            _ => Response::json(
                404,
                object(&[
                    ("error", Val::Str("not found")),
                    ("path", Val::Str(&req.path)),
                ]),
            ),
        };
        (resp, route)
    }

    /// The Prometheus text exposition of this server.
    pub fn metrics(&self, now: Instant) -> String {
        let svc = quote(&self.config.service);
        let mut out = String::new();
        out.push_str("# HELP selur_demo_http_requests_total HTTP requests served, by route and status code.\n");
        out.push_str("# TYPE selur_demo_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "selur_demo_http_requests_total{{service={svc},path=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let healthy = u8::from(self.health(now).0 == 200);
        let start = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let _ = write!(
            out,
            "# HELP selur_demo_up 1 while the server is serving.\n\
             # TYPE selur_demo_up gauge\n\
             selur_demo_up{{service={svc}}} 1\n\
             # HELP selur_demo_healthy 1 while /health answers 200.\n\
             # TYPE selur_demo_healthy gauge\n\
             selur_demo_healthy{{service={svc}}} {healthy}\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds {start:.3}\n"
        );
        out
    }
}

/// The metrics label of `path` (bounded, so clients cannot grow the series).
fn route_of(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p == "/api" || p.starts_with("/api/") => "/api",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn app(env: &[(&str, &str)]) -> App {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        App::new(Config::from_env("web-server", get).unwrap(), "pod-a".into())
    }

    fn get(app: &App, target: &str) -> (Response, &'static str) {
        let head = format!("GET {target} HTTP/1.1\r\n\r\n");
        app.route(&parse_head(head.as_bytes()).unwrap(), Instant::now())
    }

    #[test]
    fn ports_default_apart_for_the_two_services_of_one_pod() {
        let none = |_: &str| None;
        assert_eq!(
            Config::from_env("frontend-service", none).unwrap().port,
            8080
        );
        assert_eq!(
            Config::from_env("backend-service", none).unwrap().port,
            8081
        );
        let port = |k: &str| (k == "PORT").then(|| "9000".to_string());
        assert_eq!(
            Config::from_env("backend-service", port).unwrap().port,
            9000
        );
        let bad = |k: &str| (k == "PORT").then(|| "x".to_string());
        assert!(Config::from_env("web-server", bad).is_err());
    }

    #[test]
    fn health_is_ok_by_default() {
        let (r, route) = get(&app(&[]), "/health");
        assert_eq!(
            (r.status, r.body.as_str(), route),
            (200, r#"{"status":"ok"}"#, "/health")
        );
    }

    #[test]
    fn health_waits_for_ready_after_seconds() {
        let a = app(&[("READY_AFTER_SECONDS", "3600")]);
        assert_eq!(get(&a, "/health").0.status, 503);
        let later = Instant::now() + Duration::from_secs(3601);
        let req = parse_head(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(a.route(&req, later).0.status, 200);
    }

    #[test]
    fn health_fails_while_the_fail_file_exists() {
        let dir = std::env::temp_dir().join(format!("selur-demo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("fail");
        let a = app(&[("FAIL_HEALTH_FILE", f.to_str().unwrap())]);
        assert_eq!(get(&a, "/health").0.status, 200);
        std::fs::write(&f, "").unwrap();
        assert_eq!(get(&a, "/health").0.status, 500);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(get(&a, "/health").0.status, 200);
    }

    #[test]
    fn api_echoes_service_path_and_host() {
        let (r, route) = get(&app(&[]), "/api/v1/items?limit=2");
        assert_eq!((r.status, route), (200, "/api"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["service"], "web-server");
        assert_eq!(v["path"], "/api/v1/items");
        assert_eq!(v["hostname"], "pod-a");
        assert_eq!(v["query"], "limit=2");
    }

    #[test]
    fn other_paths_and_methods() {
        let a = app(&[]);
        assert_eq!(get(&a, "/").0.status, 404);
        assert_eq!(get(&a, "/apix").1, "other");
        let req = parse_head(b"POST /health HTTP/1.1\r\n\r\n").unwrap();
        let (r, _) = a.route(&req, Instant::now());
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, vec![("Allow", "GET, HEAD".to_string())]);
    }

    #[test]
    fn metrics_count_requests_by_route_and_status() {
        let a = app(&[]);
        a.record("/health", 200);
        a.record("/health", 200);
        a.record("other", 404);
        let (r, _) = get(&a, "/metrics");
        assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
        let m = r.body;
        assert!(m.contains(
            "selur_demo_http_requests_total{service=\"web-server\",path=\"/health\",status=\"200\"} 2\n"
        ));
        assert!(m.contains("path=\"other\",status=\"404\"} 1\n"));
        assert!(m.contains("selur_demo_up{service=\"web-server\"} 1\n"));
        assert!(m.contains("# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
