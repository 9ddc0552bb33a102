//! Argument forms of single instructions: ARG declarations, ENV/LABEL
//! pairs, EXPOSE ports, the exec form of ENTRYPOINT/CMD and `--chown`.

use super::tree::Tree;
use super::words;
use crate::digest::Digest;
use crate::store::ImageStore;

/// `--chown=uid[:gid]`, or names looked up in the stage's /etc/passwd and /etc/group.
pub(crate) fn owner(
    spec: &str,
    store: &ImageStore,
    layers: &[Digest],
) -> Result<(u64, u64), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if let (Ok(uid), None) = (u.parse::<u64>(), g) {
        return Ok((uid, uid));
    }
    if let (Ok(uid), Some(Ok(gid))) = (u.parse::<u64>(), g.map(str::parse::<u64>)) {
        return Ok((uid, gid));
    }
    let files: Tree<Vec<u8>> = Tree::read(store, layers, &mut |p, _, r, _| {
        if p != "etc/passwd" && p != "etc/group" {
            return Ok(None);
        }
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(Some(v))
    })
    .map_err(|e| e.to_string())?;
    let lookup = |file: &str, name: &str| -> Option<(u64, Option<u64>)> {
        let text = files.nodes.get(file)?.data.as_ref()?;
        String::from_utf8_lossy(text).lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name)
                .then(|| {
                    f[2].parse()
                        .ok()
                        .map(|id| (id, f.get(3).and_then(|g| g.parse().ok())))
                })
                .flatten()
        })
    };
    let hint = "use numeric ids such as --chown=65532:65532";
    let (uid, primary) = match u.parse::<u64>() {
        Ok(uid) => (uid, Some(uid)),
        Err(_) => lookup("etc/passwd", u).ok_or_else(|| {
            format!("--chown: user {u:?} is not in the image's /etc/passwd; {hint}")
        })?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", g).map(|x| x.0).ok_or_else(|| {
                format!("--chown: group {g:?} is not in the image's /etc/group; {hint}")
            })?,
        },
        None => primary.unwrap_or(uid),
    };
    Ok((uid, gid))
}

/// `ARG A=1 B` into names and optional defaults.
pub(crate) fn declare_args(
    args: &str,
    vars: words::Vars<'_>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let ws = words::split(args, vars)?;
    if ws.is_empty() {
        return Err("ARG needs a name: ARG NAME or ARG NAME=default".into());
    }
    Ok(ws
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect())
}

/// `K=V K2="v 2"` or the legacy `K value with spaces`.
pub(crate) fn key_values(
    args: &str,
    vars: words::Vars<'_>,
    kw: &str,
) -> Result<Vec<(String, String)>, String> {
    let first = args.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return Err(format!("{kw} needs at least one pair: {kw} name=value"));
    }
    if !first.contains('=') {
        let rest = args[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!(
                "{kw} {first} has no value: write {kw} {first}=value"
            ));
        }
        return Ok(vec![(words::word(first, vars)?, words::word(rest, vars)?)]);
    }
    words::split(args, vars)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!(
                "{kw}: {w:?} is not name=value; quote values with spaces: {kw} name=\"a b\""
            )),
        })
        .collect()
}

/// An EXPOSE word: `8080`, `8080/tcp`, `53/udp`, `8000-8002/tcp`.
pub(crate) fn ports(w: &str) -> Result<Vec<String>, String> {
    let (p, proto) = match w.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (w, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {w}: the protocol must be tcp, udp or sctp"));
    }
    let bad = || format!("EXPOSE {w}: ports are numbers 1-65535 (or a range such as 8000-8010)");
    let num = |s: &str| s.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(bad);
    let (lo, hi) = match p.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(p)?, num(p)?),
    };
    if hi < lo || hi - lo > 1024 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

/// ENTRYPOINT / CMD must be in exec form: there is no shell to run a string.
pub(crate) fn exec_form(kw: &str, args: &str) -> Result<Vec<String>, String> {
    if let Some(v) = words::json_array(args) {
        return Ok(v);
    }
    if args.trim_start().starts_with('[') {
        return Err(format!(
            "{kw} is not a valid JSON array of strings: write {kw} [\"/usr/bin/app\", \"--flag\"] with double quotes"
        ));
    }
    let suggestion =
        serde_json::to_string(&args.split_whitespace().collect::<Vec<_>>()).unwrap_or_default();
    Err(format!(
        "{kw} in shell form needs /bin/sh, which Lago Grey images do not have; use the exec (JSON) form: {kw} {suggestion}"
    ))
}
