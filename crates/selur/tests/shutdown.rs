//! SIGTERM ends `selur server` within its shutdown timeout even when an
//! agent joined to it is stopped (SIGSTOP: tunnel and watches unread) and a
//! client holds a watch open without reading it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{call, ExtraAgent, Server};
use serde_json::json;

fn signal(pid: u32, sig: &str) {
    let out = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .output()
        .expect("run kill");
    assert!(
        out.status.success(),
        "kill -{sig} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lets the stopped agent continue on drop (also when the test fails), so
/// its own drop can end it.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .output();
    }
}

/// Open a watch on the server's ConfigMaps and read only its response head.
fn unread_watch(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect for the watch");
    write!(
        conn,
        "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("send the watch request");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("read the watch response head");
        assert!(
            n == 1,
            "the watch closed early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    conn
}

#[test]
fn sigterm_ends_the_server_despite_a_stopped_agent_and_an_unread_watch() {
    let mut s = Server::start(&["--shutdown-timeout", "2s"]);
    let agent = ExtraAgent::start(&s, "sd-a", &["--shutdown-timeout", "2s"]);
    let agent_pid = agent.0.id();
    let _watch = unread_watch(&s.url);
    // Events the watcher never reads: more than the socket buffers hold.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = s.url.clone();
    let filled = rt.block_on(async move {
        let data = "x".repeat(100 * 1024);
        let fill = async {
            for i in 0..40 {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("big-{i}")}, "data": {"d": data}});
                call(
                    &url,
                    selur_client::Method::POST,
                    "/api/v1/namespaces/default/configmaps",
                    Some(("application/json", &cm)),
                )
                .await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fill)
            .await
            .is_ok()
    });
    assert!(filled, "creating ConfigMaps took too long: {}", s.log());
    signal(agent_pid, "STOP");
    let _cont = Continue(agent_pid);
    std::thread::sleep(Duration::from_millis(500));

    let mut child = s.child.take().expect("server process");
    signal(child.id(), "TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the server") {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = s.log();
    assert!(
        status.is_some(),
        "the server still ran 30 s after SIGTERM (shutdown timeout 2 s): {log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    drop(_cont);
    drop(agent);
}

#[test]
fn sigterm_ends_an_agent_whose_server_stopped_answering() {
    let s = Server::start(&["--shutdown-timeout", "2s"]);
    let mut agent = ExtraAgent::start(&s, "sd-b", &["--shutdown-timeout", "2s"]);
    let server_pid = s.child.as_ref().expect("server process").id();
    signal(server_pid, "STOP");
    let _cont = Continue(server_pid);
    std::thread::sleep(Duration::from_millis(500));
    signal(agent.0.id(), "TERM");
    let start = Instant::now();
    let mut exited = false;
    while start.elapsed() < Duration::from_secs(30) {
        if agent.0.try_wait().expect("wait for the agent").is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(s.data_dir().join("agent-sd-b.log")).unwrap_or_default();
    assert!(
        exited,
        "the agent still ran 30 s after SIGTERM (shutdown timeout 2 s): {log}"
    );
}
