//! `selur exec` and `selur port-forward` end to end: the CLI upgrades its
//! connection to the server, which splices it through the node's tunnel to
//! the agent, which runs `runc exec` or connects inside the pod's network
//! namespace.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, write_file, Server};
use serde_json::Value;

/// An all-in-one server (node "main") whose store holds `localhost/sh:1`:
/// static busybox with `/bin/sh`, running as 65532.
fn node_with_shell_image() -> Server {
    let s = Server::start(&["--node-name", "main"]);
    let ctx = s.data_dir().join("ctx");
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", ctx.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin /bin\nUSER 65532\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    s.ok(&[
        "image",
        "build",
        "-t",
        "localhost/sh:1",
        ctx.to_str().unwrap(),
    ]);
    s
}

/// A pod on node "main" whose containers run the given scripts.
fn apply_pod(s: &Server, name: &str, containers: &[(&str, &str)], extra: &str) -> String {
    let mut y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: main\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n");
    for (c, script) in containers {
        y.push_str(&format!("  - name: {c}\n    image: localhost/sh:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"{script}\"]\n"));
        if extra.contains("volumes") {
            y.push_str("    volumeMounts: [{name: www, mountPath: /www}]\n");
        }
    }
    let f = write_file(s, &format!("{name}.yaml"), &y);
    s.ok(&["apply", "-f", &f]);
    f
}

fn wait_running(s: &Server, name: &str) {
    let start = Instant::now();
    loop {
        let out = s.selur(&["get", "pod", name, "-o", "json"]);
        if out.status.success() {
            let p: Value = serde_json::from_slice(&out.stdout).unwrap();
            let all_running = p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()));
            if p["status"]["phase"] == "Running" && all_running {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{name} never ran: {}",
                p["status"]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Delete the pod from `file` and wait until the agent stopped its
/// containers and removed its mounts (the API forgets it sooner).
fn delete_and_wait(s: &Server, file: &str, name: &str) {
    s.ok(&["delete", "-f", file]);
    let root = s.data_dir().join("agent/runc");
    let dir = s.data_dir().to_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let listed = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .count();
        if listed.is_empty() && mounts == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{name} not cleaned up: containers {listed:?}, {mounts} mounts"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A CLI process killed when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_cli(s: &Server, args: &[&str]) -> Running {
    Running(
        common::selur_cmd()
            .args(args)
            .env("SELUR_CONFIG", s.kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn selur"),
    )
}

/// Run the CLI with `stdin` (or none) and a deadline, so a hung stream fails the test.
fn cli(s: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = common::selur_cmd()
        .args(args)
        .env("SELUR_CONFIG", s.kubeconfig())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn selur");
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).expect("stdin");
    }
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !d2.load(std::sync::atomic::Ordering::Relaxed) {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let out = child.wait_with_output().expect("selur output");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        !watchdog.join().unwrap(),
        "selur {args:?} hung: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Host processes whose command line holds `needle` (NUL-separated args).
fn processes_with(needle: &[u8]) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .count()
}

#[test]
fn exec_streams_stdin_stdout_stderr_and_the_exit_code() {
    let s = node_with_shell_image();
    let f = apply_pod(
        &s,
        "sh",
        &[("main", "sleep 3600"), ("side", "sleep 3600")],
        "",
    );
    wait_running(&s, "sh");

    // stdin in, stdout out, the remote exit code becomes the CLI's.
    let out = cli(
        &s,
        &[
            "exec",
            "-i",
            "sh",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "cat; exit 3",
        ],
        Some("hello"),
    );
    assert_eq!(stdout(&out), "hello", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("exit code 3"), "{}", stderr(&out));

    // stderr lands on stderr; without -c the first container is used, and said so.
    let out = cli(
        &s,
        &[
            "exec",
            "sh",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; id -u",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n65532\n");
    assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Defaulted container \"main\" out of: main, side"),
        "{}",
        stderr(&out)
    );

    // Without -i the command's stdin is empty, not the CLI's.
    let out = cli(
        &s,
        &["exec", "sh", "-c", "side", "--", "cat"],
        Some("ignored"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    // A command that does not exist: runc's error on stderr, a nonzero code.
    let out = cli(
        &s,
        &["exec", "sh", "-c", "main", "--", "no-such-command"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));

    delete_and_wait(&s, &f, "sh");
}

#[test]
fn exec_terminal_and_errors() {
    let s = node_with_shell_image();
    let f = apply_pod(&s, "tty", &[("main", "sleep 3600")], "");
    wait_running(&s, "tty");

    // -t gives the command a terminal even though the CLI's stdin is not one.
    let out = cli(
        &s,
        &[
            "exec",
            "-t",
            "tty",
            "--",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("tty"), "{:?}", stdout(&out));
    let out = cli(
        &s,
        &["exec", "tty", "--", "sh", "-c", "test -t 0 || echo no-tty"],
        None,
    );
    assert_eq!(stdout(&out), "no-tty\n", "{}", stderr(&out));
    // Input reaches a terminal too, and its EOF ends `cat`.
    let out = cli(
        &s,
        &["exec", "-i", "-t", "tty", "--", "cat"],
        Some("typed\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("typed"), "{:?}", stdout(&out));

    // A missing container, a missing pod: clear errors, nonzero exits.
    let out = cli(&s, &["exec", "tty", "-c", "nope", "--", "true"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container \"nope\" not found in pod tty"),
        "{}",
        stderr(&out)
    );
    let out = cli(&s, &["exec", "ghost", "--", "true"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // The command dies with its client.
    let mut proc_ = spawn_cli(&s, &["exec", "tty", "--", "sleep", "3217"]);
    let needle = b"sleep\x003217\x00";
    let start = Instant::now();
    while processes_with(needle) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "exec never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = proc_.0.kill();
    let _ = proc_.0.wait();
    let start = Instant::now();
    while processes_with(needle) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the exec'd process outlived its client"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    delete_and_wait(&s, &f, "tty");
}

/// `GET path` over plain HTTP/1.0 to `[::1]:port`; the whole answer.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut c = std::net::TcpStream::connect(("::1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn port_forward_reaches_the_pods_ipv6_loopback() {
    let s = node_with_shell_image();
    let f = apply_pod(
        &s,
        "web",
        &[(
            "web",
            "echo served-by-pod > /www/index.html; exec /bin/busybox httpd -f -p [::]:8080 -h /www",
        )],
        "  volumes: [{name: www, emptyDir: {}}]\n",
    );
    wait_running(&s, "web");

    let mut proc_ = spawn_cli(&s, &["port-forward", "web", "0:8080", ":9"]);
    let mut lines = BufReader::new(proc_.0.stdout.take().unwrap()).lines();
    let mut ports = Vec::new();
    for remote in ["8080", "9"] {
        let line = lines.next().expect("a Forwarding line").unwrap();
        let rest = line
            .strip_prefix("Forwarding from [::1]:")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let (local, to) = rest.split_once(" -> ").unwrap();
        assert_eq!(to, remote);
        ports.push(local.parse::<u16>().unwrap());
    }
    assert!(ports[0] != 0 && ports[0] != 8080);

    // httpd may still be starting: retry briefly, then two connections in a row.
    let start = Instant::now();
    let body = loop {
        match http_get(ports[0], "/index.html") {
            Ok(b) if b.contains("200 OK") => break b,
            other => {
                assert!(start.elapsed() < Duration::from_secs(20), "{other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(body.ends_with("served-by-pod\n"), "{body}");
    let again = http_get(ports[0], "/index.html").unwrap();
    assert!(again.ends_with("served-by-pod\n"), "{again}");

    // Nothing listens on 9: the local connection closes and the CLI says why.
    let refused = http_get(ports[1], "/").unwrap_or_default();
    assert_eq!(refused, "");
    let _ = proc_.0.kill();
    let _ = proc_.0.wait();
    let mut err = String::new();
    proc_
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("nothing listens on port 9"), "{err}");

    // A pod that is not running cannot be forwarded to.
    let out = cli(&s, &["port-forward", "ghost", "8080"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    delete_and_wait(&s, &f, "web");
}
