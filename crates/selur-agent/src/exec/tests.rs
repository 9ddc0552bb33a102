//! [`super::exec_capture`] against a stand-in runtime: a shell script that
//! answers `state` and runs `exec`'s command itself (writing its pid file
//! as runc does), so exit codes, capture and the timeout kill are checked
//! without containers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{exec_capture, ExecError};
use crate::{Agent, AgentConfig};

const FAKE_RUNC: &str = r#"#!/bin/sh
# fake runtime: --root R state ID | --root R exec [--tty] --pid-file P ID CMD...
shift 2
verb=$1; shift
case $verb in
state)
  case $1 in
    *-stopped) echo '{"status":"stopped"}' ;;
    *) echo '{"status":"running"}' ;;
  esac ;;
exec)
  [ "$1" = --tty ] && shift
  pid_file=$2; shift 3
  echo $$ > "$pid_file"
  exec "$@" ;;
esac
"#;

fn agent(dir: &std::path::Path) -> Arc<Agent> {
    let runtime = dir.join("fake-runc");
    std::fs::write(&runtime, FAKE_RUNC).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = AgentConfig::new("http://[::1]:1".into(), "n1".into(), dir.join("data"));
    config.runtime = runtime;
    let images = Arc::new(selur_image::ImageStore::open(&dir.join("images")).unwrap());
    Arc::new(Agent::new(config, images).unwrap())
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn captures_output_and_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let a = agent(d.path());
    let (code, out, err) = exec_capture(
        &a,
        "uid-1",
        "c",
        &cmd(&["sh", "-c", "echo out; echo err >&2; exit 7"]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, out.as_slice(), err.as_slice()),
        (7, &b"out\n"[..], &b"err\n"[..])
    );
    let (code, _, _) = exec_capture(
        &a,
        "uid-1",
        "c",
        &cmd(&["sh", "-c", "kill -KILL $$"]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(code, 128 + 9);
    // Nothing is left behind in the data dir.
    let left = std::fs::read_dir(d.path().join("data/exec"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn kills_the_command_at_the_timeout() {
    let d = tempfile::tempdir().unwrap();
    let a = agent(d.path());
    let marker = d.path().join("still-running");
    let script = format!("sleep 2; touch {}", marker.display());
    let start = Instant::now();
    let res = exec_capture(
        &a,
        "uid-1",
        "c",
        &cmd(&["sh", "-c", &script]),
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(res, Err(ExecError::Timeout(_))), "{res:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The shell was killed: its `touch` never runs (its `sleep` ends by itself).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!marker.exists());
}

#[tokio::test]
async fn refuses_stopped_containers_and_empty_commands() {
    let d = tempfile::tempdir().unwrap();
    let a = agent(d.path());
    let res = exec_capture(
        &a,
        "uid-1",
        "stopped",
        &cmd(&["true"]),
        Duration::from_secs(5),
    )
    .await;
    match res {
        Err(ExecError::NotRunning { container, state }) => {
            assert_eq!((container.as_str(), state.as_str()), ("stopped", "stopped"))
        }
        other => panic!("{other:?}"),
    }
    let res = exec_capture(&a, "uid-1", "c", &[], Duration::from_secs(5)).await;
    assert!(matches!(res, Err(ExecError::NoCommand)), "{res:?}");
}
