//! `selur port-forward`: local ports forwarded to a pod's, each connection
//! over its own upgraded connection to the pod's `portforward` streaming
//! subresource ([`crate::upgrade`]).

use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::exec::{pod_name, pod_path};
use crate::client::Client;
use crate::upgrade;

#[derive(Args, Debug)]
pub struct PortForwardArgs {
    /// The pod: NAME or pod/NAME.
    pub pod: String,
    /// `[LOCAL:]REMOTE` port pairs; LOCAL 0 or empty (`:8080`) picks a free port.
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    pub ports: Vec<String>,
}

/// `LOCAL:REMOTE`, `:REMOTE` or `REMOTE`.
fn parse_port_pair(s: &str) -> anyhow::Result<(u16, u16)> {
    let port = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("{s:?}: {p:?} is not a port number"))
    };
    let (local, remote) = match s.split_once(':') {
        Some(("", r)) => (0, port(r)?),
        Some((l, r)) => (port(l)?, port(r)?),
        None => (port(s)?, port(s)?),
    };
    anyhow::ensure!(remote != 0, "{s:?}: the remote port cannot be 0");
    Ok((local, remote))
}

/// `selur port-forward`: listen on `[::1]:LOCAL` and forward each accepted
/// connection to the pod's `[::1]:REMOTE` over its own server connection,
/// until Ctrl-C.
pub async fn run(client: &Client, ns: &str, a: PortForwardArgs) -> anyhow::Result<()> {
    let pairs = a
        .ports
        .iter()
        .map(|p| parse_port_pair(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = pod_name(&a.pod).to_string();
    let pod = client.get(&pod_path(ns, &name)).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    anyhow::ensure!(
        phase == "Running",
        "unable to forward port because pod is not running. Current status={phase}"
    );
    let mut listeners = Vec::new();
    for (local, remote) in pairs {
        let l = tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, local)))
            .await
            .with_context(|| format!("listening on [::1]:{local}"))?;
        let port = l.local_addr()?.port();
        println!("Forwarding from [::1]:{port} -> {remote}");
        listeners.push((l, port, remote));
    }
    let _ = std::io::stdout().flush();
    let path = format!("{}/portforward", pod_path(ns, &name));
    for (l, local, remote) in listeners {
        let (client, path) = (client.clone(), path.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = l.accept().await else {
                    continue;
                };
                println!("Handling connection for {local}");
                let (client, path) = (client.clone(), path.clone());
                tokio::spawn(async move { forward_one(&client, &path, conn, remote).await });
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Forward one accepted connection; errors are reported before it is closed.
async fn forward_one(client: &Client, path: &str, mut conn: tokio::net::TcpStream, remote: u16) {
    let mut up = match upgrade::open(client, path, &[("ports", remote.to_string())]).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: forwarding port {remote}: {e}");
            return;
        }
    };
    let _ = conn.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut up).await {
        eprintln!("error: forwarding port {remote}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(parse_port_pair("8080").unwrap(), (8080, 8080));
        assert_eq!(parse_port_pair("0:80").unwrap(), (0, 80));
        assert_eq!(parse_port_pair(":80").unwrap(), (0, 80));
        assert_eq!(parse_port_pair("9000:80").unwrap(), (9000, 80));
        assert!(parse_port_pair("x").is_err());
        assert!(parse_port_pair("80:0").is_err());
    }
}
