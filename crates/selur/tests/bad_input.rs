//! Bad manifests fail with one clear line naming file, document and field
//! path (or line:column), a non-zero exit, and nothing applied from the file.

mod common;

use common::{stderr, write_file, Server};

const GOOD_CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\ndata:\n  a: b\n";

fn assert_rejected(s: &Server, name: &str, bad_doc: &str, needles: &[&str]) {
    let text = format!("{GOOD_CM}---\n{bad_doc}");
    let path = write_file(s, name, &text);
    let out = s.selur(&["apply", "-f", &path]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{name}: should fail");
    let first = err.lines().next().unwrap_or("");
    assert!(first.contains(name), "{name}: error names the file: {err}");
    for n in needles {
        assert!(
            first.contains(n),
            "{name}: error should contain {n:?}: {err}"
        );
    }
    // Nothing applied: the good first document was not created.
    let got = s.selur(&["get", "configmap", "first"]);
    assert!(
        !got.status.success(),
        "{name}: first document must not be applied"
    );
}

#[test]
fn bad_documents_are_refused_whole() {
    let s = Server::start(&[]);
    assert_rejected(
        &s,
        "parse.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n",
        &["parse.yaml:", "document 2"],
    );
    assert_rejected(
        &s,
        "kind.yaml",
        "apiVersion: v1\nkind: Podd\nmetadata:\n  name: x\n",
        &[
            "document 2",
            "no matches for kind \"Podd\" in version \"v1\"",
        ],
    );
    assert_rejected(
        &s,
        "version.yaml",
        "apiVersion: apps/v2\nkind: Deployment\nmetadata:\n  name: x\n",
        &[
            "document 2",
            "apps/v2",
            "Selur serves Deployment as apiVersion apps/v1",
        ],
    );
    assert_rejected(
        &s,
        "unknown.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: x\n        imagePullPolicyy: Always\n",
        &["document 2", "Deployment \"web\"", "unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""],
    );
    assert_rejected(
        &s,
        "required.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n",
        &["document 2", "spec.template.spec.containers[0].image: Required value"],
    );
    assert_rejected(
        &s,
        "type.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: three\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: x\n",
        &["document 2", "spec.replicas"],
    );
    assert_rejected(
        &s,
        "ipv4.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ipFamilies: [IPv4]\n  ports:\n  - port: 80\n",
        &["document 2", "spec.ipFamilies[0]", "IPv6"],
    );
}

#[test]
fn yaml_parse_errors_give_line_and_column() {
    let s = Server::start(&[]);
    let path = write_file(
        &s,
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n   bad: indent\n",
    );
    let out = s.selur(&["apply", "-f", &path]);
    let err = stderr(&out);
    assert!(!out.status.success());
    // file:line:column
    assert!(err.contains("broken.yaml:5:"), "{err}");
}

#[test]
fn namespace_and_its_objects_share_a_file_and_failures_roll_back() {
    let s = Server::start(&[]);
    let ok = write_file(
        &s,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: team-a\ndata: {k: v}\n",
    );
    let out = s.ok(&["apply", "-f", &ok]);
    assert!(
        out.contains("namespace/team-a created") && out.contains("configmap/c created"),
        "{out}"
    );

    // Passes the dry run (neither Deployment exists yet), fails for real on the
    // second because a Deployment's selector is immutable: everything created is undone.
    let dep = |sel: &str| {
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: twice\nspec:\n  selector:\n    matchLabels: {{app: {sel}}}\n  template:\n    metadata:\n      labels: {{app: {sel}}}\n    spec:\n      containers:\n      - name: c\n        image: x:1\n")
    };
    let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rollme\ndata: {{k: v}}\n---\n{}---\n{}", dep("a"), dep("b"));
    let path = write_file(&s, "rollback.yaml", &text);
    let out = s.selur(&["apply", "-f", &path]);
    let err = stderr(&out);
    assert!(!out.status.success(), "should fail");
    assert!(
        err.contains("document 3") && err.contains("spec.selector"),
        "{err}"
    );
    assert!(err.contains("rolled back"), "{err}");
    assert!(
        !s.selur(&["get", "cm", "rollme"]).status.success(),
        "configmap rolled back"
    );
    assert!(
        !s.selur(&["get", "deploy", "twice"]).status.success(),
        "deployment rolled back"
    );
}

#[test]
fn an_oversized_object_is_refused_with_413_and_named() {
    let s = Server::start(&["--disable-agent"]);
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
        "a".repeat(4 << 20)
    );
    assert_rejected(
        &s,
        "big.yaml",
        &big,
        &["ConfigMap \"big\"", "Request entity too large", "3145728"],
    );
    // The API answers a Kubernetes Status with code 413.
    let url = format!("{}/api/v1/namespaces/default/configmaps", s.url);
    let body = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}", "a".repeat(4 << 20));
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            &url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["code"], 413);
    assert_eq!(v["reason"], "RequestEntityTooLarge");
}

#[test]
fn yaml_bombs_are_refused_quickly_and_named() {
    let s = Server::start(&["--disable-agent"]);
    // Alias expansion ("billion laughs"): refused, not expanded.
    let mut laughs = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        laughs.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    let start = std::time::Instant::now();
    let f = write_file(&s, "laughs.yaml", &laughs);
    let out = s.selur(&["apply", "-f", &f]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("laughs.yaml") && err.contains("repetition limit exceeded"),
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    // Nesting depth.
    let deep = format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    let f = write_file(&s, "deep.yaml", &deep);
    let out = s.selur(&["apply", "-f", &f]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("deep.yaml") && err.contains("recursion limit exceeded"),
        "{err}"
    );
}
