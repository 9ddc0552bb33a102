//! The process: argv, environment, working directory and user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::image::Config;
use oci_spec::runtime::User;

use super::{Ctx, SpecError, SpecInput, DEFAULT_PATH};

fn image_config<'a>(input: &SpecInput<'a>) -> Option<&'a Config> {
    input.image.config().as_ref()
}

/// Kubernetes' variable map for `$(VAR)`: the container's resolved env, the
/// last definition of a name winning. Image `ENV` is deliberately absent, as
/// in kubelet, which expands before the runtime ever sees the image.
fn vars(input: &SpecInput) -> HashMap<String, String> {
    input.env_resolved.iter().cloned().collect()
}

/// Expand `$(VAR)` references the way Kubernetes does for `command`, `args`
/// and env values: `$$` is an escaped `$`, a reference to an unknown
/// variable is left as written, and a `$` not followed by `(` or `$` is kept.
pub(crate) fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing `$` stays.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // An unterminated reference is copied through.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

/// argv by Kubernetes' rule: `command` replaces ENTRYPOINT and drops CMD;
/// `args` alone replaces CMD; neither runs ENTRYPOINT + CMD. Only the pod's
/// own `command`/`args` are `$(VAR)`-expanded.
pub(crate) fn args(input: &SpecInput, ctx: &Ctx) -> Result<Vec<String>, SpecError> {
    let vars = vars(input);
    let expand_all =
        |list: &[String]| -> Vec<String> { list.iter().map(|s| expand(s, &vars)).collect() };
    let command = input
        .container
        .command
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(expand_all);
    let args = input
        .container
        .args
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(expand_all);
    let config = image_config(input);
    // `ENTRYPOINT [""]` is how Dockerfiles reset an inherited entrypoint.
    let entrypoint = config
        .and_then(|c| c.entrypoint().clone())
        .filter(|e| !(e.len() == 1 && e[0].is_empty()))
        .unwrap_or_default();
    let cmd = config.and_then(|c| c.cmd().clone()).unwrap_or_default();

    let argv = match (command, args) {
        (Some(mut command), args) => {
            command.extend(args.unwrap_or_default());
            command
        }
        (None, Some(args)) => entrypoint.into_iter().chain(args).collect(),
        (None, None) => entrypoint.into_iter().chain(cmd).collect(),
    };
    if argv.is_empty() {
        return Err(SpecError::required(
            ctx.field("command"),
            "the image has no ENTRYPOINT or CMD; set command",
        ));
    }
    Ok(argv)
}

/// The environment in containerd's order: `PATH` and `HOSTNAME` defaults,
/// then the image's `ENV`, then the pod's env, each replacing earlier
/// definitions of the same name in place.
pub(crate) fn env(input: &SpecInput) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOSTNAME".to_string(), super::container_hostname(input)),
    ];
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    };
    let image_env = image_config(input)
        .and_then(|c| c.env().as_deref())
        .unwrap_or_default();
    for entry in image_env {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        if !name.is_empty() {
            set(name, value);
        }
    }
    for (name, value) in &input.env_resolved {
        set(name, value);
    }
    env.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// `workingDir`, else the image's `WORKDIR`, else `/`.
pub(crate) fn cwd(input: &SpecInput, ctx: &Ctx) -> Result<PathBuf, SpecError> {
    if let Some(dir) = input.container.working_dir.as_deref() {
        if !dir.is_empty() {
            if !Path::new(dir).is_absolute() {
                return Err(SpecError::invalid(
                    ctx.field("workingDir"),
                    dir,
                    "must be an absolute path, e.g. /app",
                ));
            }
            return Ok(PathBuf::from(dir));
        }
    }
    let image_dir = image_config(input)
        .and_then(|c| c.working_dir().as_deref())
        .filter(|d| !d.is_empty());
    // Docker resolves a relative WORKDIR against `/`; so do we.
    Ok(image_dir.map_or_else(|| PathBuf::from("/"), |d| Path::new("/").join(d)))
}

/// Kubernetes accepts user and group ids in 0..=2^31-1.
fn id(field: &str, value: i64) -> Result<u32, SpecError> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v <= i32::MAX as u32)
        .ok_or_else(|| {
            SpecError::invalid(field, value, "must be between 0 and 2147483647, inclusive")
        })
}

/// One side of an image `USER` (`uid`, `uid:gid`): numeric or refused, since
/// Selur does not read the image's `/etc/passwd` (distroless images often
/// have none, and a name lookup would trust files the image controls).
fn image_id(part: &str, field: String, what: &str, fix: &str) -> Result<u32, SpecError> {
    part.parse::<u32>().map_err(|_| {
        SpecError::required(
            field,
            format!(
                "the image's USER has the {what} name {part:?}, and Selur needs a numeric USER \
                 (distroless images have no /etc/passwd to look names up in): build the image \
                 with a numeric USER such as 65532:65532, or set {fix}"
            ),
        )
    })
}

/// uid, gid and supplementary groups: the container's security context over
/// the pod's, over the image's `USER`; supplementary groups from the pod's
/// `supplementalGroups` and `fsGroup`. Enforces `runAsNonRoot`.
pub(crate) fn user(input: &SpecInput, ctx: &Ctx) -> Result<User, SpecError> {
    let pick = |c: Option<i64>, p: Option<i64>, name: &str| match (c, p) {
        (Some(v), _) => Some((v, ctx.field(&format!("securityContext.{name}")))),
        (None, Some(v)) => Some((v, format!("spec.securityContext.{name}"))),
        (None, None) => None,
    };
    let run_as_user = pick(
        ctx.sc.and_then(|s| s.run_as_user),
        ctx.pod_sc.and_then(|s| s.run_as_user),
        "runAsUser",
    );
    let run_as_group = pick(
        ctx.sc.and_then(|s| s.run_as_group),
        ctx.pod_sc.and_then(|s| s.run_as_group),
        "runAsGroup",
    );
    let gid_override = match &run_as_group {
        Some((v, field)) => Some(id(field, *v)?),
        None => None,
    };

    let (uid, image_gid) = match &run_as_user {
        Some((v, field)) => (id(field, *v)?, None),
        None => {
            let image_user = image_config(input)
                .and_then(|c| c.user().as_deref())
                .map(str::trim)
                .unwrap_or_default();
            let (user_part, group_part) = match image_user.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (image_user, None),
            };
            let uid = if user_part.is_empty() {
                0
            } else {
                image_id(
                    user_part,
                    ctx.field("securityContext.runAsUser"),
                    "user",
                    "runAsUser (and runAsGroup) in the securityContext",
                )?
            };
            let gid = match group_part.filter(|g| !g.is_empty()) {
                // runAsGroup wins, so an unusable image group does not matter.
                Some(_) if gid_override.is_some() => None,
                Some(g) => Some(image_id(
                    g,
                    ctx.field("securityContext.runAsGroup"),
                    "group",
                    "runAsGroup in the securityContext",
                )?),
                None => None,
            };
            (uid, gid)
        }
    };
    // A bare uid gets gid 0, as Docker and containerd do when there is no
    // passwd entry to supply one.
    let gid = gid_override.or(image_gid).unwrap_or(0);

    let non_root = ctx
        .sc
        .and_then(|s| s.run_as_non_root)
        .or(ctx.pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err(match run_as_user {
            Some((_, field)) => SpecError::forbidden(
                field,
                "container's runAsUser breaks non-root policy: runAsNonRoot is true but \
                 runAsUser is 0; set runAsUser to a non-zero uid",
            ),
            None => SpecError::forbidden(
                ctx.field("securityContext.runAsNonRoot"),
                "container has runAsNonRoot and image will run as root (its USER is empty or 0); \
                 set runAsUser to a non-zero uid or use an image with a numeric non-root USER",
            ),
        });
    }

    let pod_sc = ctx.pod_sc;
    let mut extra: Vec<u32> = Vec::new();
    let groups = pod_sc
        .and_then(|s| s.supplemental_groups.as_deref())
        .unwrap_or_default();
    for (i, g) in groups.iter().enumerate() {
        extra.push(id(
            &format!("spec.securityContext.supplementalGroups[{i}]"),
            *g,
        )?);
    }
    if let Some(g) = pod_sc.and_then(|s| s.fs_group) {
        extra.push(id("spec.securityContext.fsGroup", g)?);
    }
    let mut seen = std::collections::HashSet::new();
    extra.retain(|g| seen.insert(*g));

    let mut user = User::default();
    user.set_uid(uid)
        .set_gid(gid)
        .set_additional_gids((!extra.is_empty()).then_some(extra));
    Ok(user)
}
