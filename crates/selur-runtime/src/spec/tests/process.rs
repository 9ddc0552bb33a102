//! argv, `$(VAR)` expansion, environment, working directory and user.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};
use serde_json::{json, Value};

use super::super::process::expand;
use super::super::{build_spec, SpecError, DEFAULT_PATH};
use super::{build, distroless, image, input, one, pod, spec};

fn process(spec: &Spec) -> &Process {
    spec.process().as_ref().expect("process")
}

fn argv(command: Value, args: Value, entrypoint: Value, cmd: Value) -> Result<Vec<String>, String> {
    let mut c = json!({"name": "web", "image": "x"});
    if !command.is_null() {
        c["command"] = command;
    }
    if !args.is_null() {
        c["args"] = args;
    }
    let p = one(c);
    let img = image(json!({"Entrypoint": entrypoint, "Cmd": cmd}));
    build(&p, &img)
        .map(|s| process(&s).args().clone().unwrap_or_default())
        .map_err(|e| e.to_string())
}

#[test]
fn command_args_entrypoint_cmd_matrix() {
    let n = Value::Null;
    let ep = json!(["/ep", "--flag"]);
    let cmd = json!(["serve"]);
    let cases: Vec<(Value, Value, Value, Value, Vec<&str>)> = vec![
        // Neither: ENTRYPOINT + CMD.
        (
            n.clone(),
            n.clone(),
            ep.clone(),
            cmd.clone(),
            vec!["/ep", "--flag", "serve"],
        ),
        // command: replaces ENTRYPOINT and drops CMD.
        (
            json!(["/bin/x"]),
            n.clone(),
            ep.clone(),
            cmd.clone(),
            vec!["/bin/x"],
        ),
        // command + args.
        (
            json!(["/bin/x"]),
            json!(["a", "b"]),
            ep.clone(),
            cmd.clone(),
            vec!["/bin/x", "a", "b"],
        ),
        // args alone: ENTRYPOINT + args, CMD dropped.
        (
            n.clone(),
            json!(["a"]),
            ep.clone(),
            cmd.clone(),
            vec!["/ep", "--flag", "a"],
        ),
        // args alone without ENTRYPOINT.
        (
            n.clone(),
            json!(["/bin/a"]),
            n.clone(),
            cmd.clone(),
            vec!["/bin/a"],
        ),
        // CMD alone.
        (n.clone(), n.clone(), n.clone(), cmd.clone(), vec!["serve"]),
        // ENTRYPOINT alone.
        (
            n.clone(),
            n.clone(),
            ep.clone(),
            n.clone(),
            vec!["/ep", "--flag"],
        ),
        // Empty lists count as unset.
        (
            json!([]),
            json!([]),
            ep.clone(),
            cmd.clone(),
            vec!["/ep", "--flag", "serve"],
        ),
        // `ENTRYPOINT [""]` resets the entrypoint.
        (
            n.clone(),
            n.clone(),
            json!([""]),
            cmd.clone(),
            vec!["serve"],
        ),
    ];
    for (command, args, entrypoint, cmd, want) in cases {
        let got = argv(
            command.clone(),
            args.clone(),
            entrypoint.clone(),
            cmd.clone(),
        );
        assert_eq!(
            got,
            Ok(want.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "command={command} args={args} entrypoint={entrypoint} cmd={cmd}"
        );
    }
}

#[test]
fn no_command_anywhere_is_an_error_naming_the_field() {
    let err = argv(Value::Null, Value::Null, Value::Null, Value::Null).unwrap_err();
    assert_eq!(
        err,
        "spec.containers[0].command: Required value: the image has no ENTRYPOINT or CMD; set command"
    );
}

#[test]
fn errors_name_init_containers_by_their_own_path() {
    let p = pod(json!({
        "initContainers": [{"name": "init", "image": "x"}],
        "containers": [{"name": "web", "image": "x", "command": ["/web"]}],
    }));
    let img = image(json!({}));
    let mut inp = input(&p, &img);
    inp.container = &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    let err = build_spec(&inp).unwrap_err();
    assert_eq!(err.field(), "spec.initContainers[0].command");
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn expansion_follows_kubernetes() {
    let v = vars(&[("A", "alpha"), ("B", "beta"), ("EMPTY", "")]);
    let cases = [
        ("$(A)", "alpha"),
        ("x$(A)y$(B)z", "xalphaybetaz"),
        ("$(EMPTY)", ""),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$$$", "$$"),
        ("$", "$"),
        ("a$", "a$"),
        ("$x", "$x"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("price: 5€ $(A)", "price: 5€ alpha"),
        ("$€", "$€"),
        ("no refs", "no refs"),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, &v), want, "input {input:?}");
    }
}

#[test]
fn command_and_args_expand_from_env_but_image_entrypoint_does_not() {
    let p = one(json!({
        "name": "web", "image": "x",
        "args": ["--greeting=$(GREETING)", "--port=$(PORT)", "$$(GREETING)"],
    }));
    let img = image(json!({"Entrypoint": ["/app", "$(GREETING)"]}));
    let mut inp = input(&p, &img);
    inp.env_resolved = vec![
        ("GREETING".into(), "hi".into()),
        ("GREETING".into(), "hello".into()),
    ];
    let s = build_spec(&inp).unwrap();
    assert_eq!(
        process(&s).args().as_deref().unwrap(),
        [
            "/app",
            "$(GREETING)",
            "--greeting=hello",
            "--port=$(PORT)",
            "$(GREETING)"
        ]
    );
}

#[test]
fn env_merges_defaults_image_and_pod_in_order() {
    let p = one(json!({"name": "web", "image": "x", "command": ["/app"]}));
    let img = image(json!({"Env": ["LANG=C.UTF-8", "MODE=image", "EQ=a=b"]}));
    let mut inp = input(&p, &img);
    inp.env_resolved = vec![("MODE".into(), "pod".into()), ("EXTRA".into(), "1".into())];
    let s = build_spec(&inp).unwrap();
    assert_eq!(
        process(&s).env().as_deref().unwrap(),
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=web".to_string(),
            "LANG=C.UTF-8".to_string(),
            "MODE=pod".to_string(),
            "EQ=a=b".to_string(),
            "EXTRA=1".to_string(),
        ]
    );
}

#[test]
fn image_path_replaces_the_default() {
    let p = one(json!({"name": "web", "image": "x", "command": ["/app"]}));
    let img = image(json!({"Env": ["PATH=/opt/bin"]}));
    let s = spec(&p, &img);
    let env = process(&s).env().clone().unwrap();
    assert_eq!(env[0], "PATH=/opt/bin");
    assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
}

#[test]
fn working_dir_container_then_image_then_root() {
    let with_dir =
        one(json!({"name": "web", "image": "x", "command": ["/a"], "workingDir": "/srv"}));
    let without = one(json!({"name": "web", "image": "x", "command": ["/a"]}));
    let img_dir = image(json!({"WorkingDir": "/app"}));
    let img_none = image(json!({}));
    assert_eq!(
        process(&spec(&with_dir, &img_dir)).cwd(),
        &PathBuf::from("/srv")
    );
    assert_eq!(
        process(&spec(&without, &img_dir)).cwd(),
        &PathBuf::from("/app")
    );
    assert_eq!(
        process(&spec(&without, &img_none)).cwd(),
        &PathBuf::from("/")
    );

    let relative =
        one(json!({"name": "web", "image": "x", "command": ["/a"], "workingDir": "srv"}));
    let err = build(&relative, &img_none).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].workingDir");
}

/// (uid, gid, additional gids) for a pod spec and image USER.
fn ids(pod_spec: Value, user: Option<&str>) -> Result<(u32, u32, Vec<u32>), SpecError> {
    let p = pod(pod_spec);
    let img = match user {
        Some(u) => image(json!({"Entrypoint": ["/app"], "User": u})),
        None => image(json!({"Entrypoint": ["/app"]})),
    };
    build(&p, &img).map(|s| {
        let u = process(&s).user().clone();
        (
            u.uid(),
            u.gid(),
            u.additional_gids().clone().unwrap_or_default(),
        )
    })
}

fn plain() -> Value {
    json!({"containers": [{"name": "web", "image": "x"}]})
}

#[test]
fn image_user_forms() {
    assert_eq!(ids(plain(), None).unwrap(), (0, 0, vec![]));
    assert_eq!(ids(plain(), Some("")).unwrap(), (0, 0, vec![]));
    assert_eq!(ids(plain(), Some("65532")).unwrap(), (65532, 0, vec![]));
    assert_eq!(
        ids(plain(), Some("1000:1000")).unwrap(),
        (1000, 1000, vec![])
    );
    assert_eq!(ids(plain(), Some("1000:50")).unwrap(), (1000, 50, vec![]));
}

#[test]
fn image_user_name_is_refused_with_a_fix() {
    let err = ids(plain(), Some("nginx")).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].securityContext.runAsUser");
    let msg = err.to_string();
    assert!(msg.contains("numeric USER"), "{msg}");
    assert!(msg.contains("distroless"), "{msg}");
    assert!(msg.contains("runAsUser"), "{msg}");

    let err = ids(plain(), Some("1000:staff")).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].securityContext.runAsGroup");
}

#[test]
fn run_as_user_and_group_override_the_image() {
    let c = json!({"containers": [{"name": "web", "image": "x",
        "securityContext": {"runAsUser": 1001, "runAsGroup": 2002}}]});
    assert_eq!(ids(c, Some("nginx:nginx")).unwrap(), (1001, 2002, vec![]));

    // runAsGroup alone keeps the image's uid and ignores its group.
    let c = json!({"containers": [{"name": "web", "image": "x",
        "securityContext": {"runAsGroup": 3}}]});
    assert_eq!(ids(c, Some("1000:staff")).unwrap(), (1000, 3, vec![]));
}

#[test]
fn container_security_context_wins_over_pod() {
    let c = json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000,
            "supplementalGroups": [5, 6, 5], "fsGroup": 2000},
        "containers": [{"name": "web", "image": "x", "securityContext": {"runAsUser": 1500}}],
    });
    assert_eq!(
        ids(c, Some("65532")).unwrap(),
        (1500, 1000, vec![5, 6, 2000])
    );
}

#[test]
fn run_as_non_root_violations() {
    let c = json!({"containers": [{"name": "web", "image": "x",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 0}}]});
    let err = ids(c, Some("65532")).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].securityContext.runAsUser");
    assert!(
        err.to_string()
            .contains("container's runAsUser breaks non-root policy"),
        "{err}"
    );

    // Pod-level runAsNonRoot and an image that runs as root.
    let c = json!({"securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "web", "image": "x"}]});
    let err = ids(c.clone(), None).unwrap_err();
    assert_eq!(
        err.field(),
        "spec.containers[0].securityContext.runAsNonRoot"
    );
    assert!(err.to_string().contains("image will run as root"), "{err}");
    assert!(ids(c.clone(), Some("0:0")).is_err());
    assert_eq!(ids(c, Some("65532")).unwrap().0, 65532);
}

#[test]
fn out_of_range_ids_are_invalid() {
    let c = json!({"containers": [{"name": "web", "image": "x",
        "securityContext": {"runAsUser": -1}}]});
    let err = ids(c, None).unwrap_err();
    assert!(matches!(err, SpecError::Invalid { .. }), "{err}");
    assert_eq!(err.field(), "spec.containers[0].securityContext.runAsUser");

    let c = json!({"securityContext": {"fsGroup": 4294967296i64},
        "containers": [{"name": "web", "image": "x"}]});
    assert_eq!(
        ids(c, None).unwrap_err().field(),
        "spec.securityContext.fsGroup"
    );
}

#[test]
fn distroless_runs_as_its_numeric_user() {
    let p = one(json!({"name": "web", "image": "x"}));
    let s = spec(&p, &distroless());
    assert_eq!(process(&s).user().uid(), 65532);
    assert_eq!(process(&s).args().as_deref().unwrap(), ["/app"]);
    assert_eq!(process(&s).terminal(), Some(false));
    assert_eq!(process(&s).rlimits(), &None);
}
