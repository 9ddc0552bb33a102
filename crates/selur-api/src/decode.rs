//! Reading manifests: multi-document YAML or JSON into JSON values (with
//! line:column for text that does not parse), then strict decoding into
//! [`TypedObject`], where every unknown field is an error naming its path (as
//! `kubectl` does by default) and type errors name theirs.
//!
//! `k8s-openapi` skips unknown fields silently, so decoding runs through
//! `serde_ignored` (paths of skipped fields) and `serde_path_to_error` (path of
//! a type error).

use serde_json::Value;

use crate::kinds::{self, ResourceKind};
use crate::object::{DecodeFn, TypedObject};

/// Text that is not valid YAML/JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("document {document}: line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 0-based index of the document in the file.
    pub document: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a parsed document is not an acceptable object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "Object 'apiVersion' is missing: add e.g. `apiVersion: v1` at the top of the document"
    )]
    MissingApiVersion,
    #[error("Object 'Kind' is missing: add e.g. `kind: Pod` at the top of the document")]
    MissingKind,
    #[error("the document is not a mapping of fields (it is {0})")]
    NotAnObject(&'static str),
    #[error("no matches for kind \"{kind}\" in version \"{api_version}\"{hint}")]
    UnknownKind {
        api_version: String,
        kind: String,
        hint: String,
    },
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}", unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect::<Vec<_>>().join(", "))]
    UnknownFields {
        kind: String,
        version: String,
        unknown: Vec<String>,
    },
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {path}: {message}")]
    Type {
        kind: String,
        version: String,
        path: String,
        message: String,
    },
}

impl DecodeError {
    /// The field path the error is about, if any.
    pub fn paths(&self) -> Vec<String> {
        match self {
            DecodeError::UnknownFields { unknown, .. } => unknown.clone(),
            DecodeError::Type { path, .. } => vec![path.clone()],
            DecodeError::MissingApiVersion => vec!["apiVersion".into()],
            DecodeError::MissingKind => vec!["kind".into()],
            _ => vec![],
        }
    }
}

fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Split a file into documents. YAML (`---` separated) or JSON; empty
/// documents are skipped; a `kind: List` is expanded into its items.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let trimmed = text.trim_start();
    let mut docs = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (index, item) in stream.enumerate() {
            match item {
                Ok(v) => push_doc(&mut docs, v),
                Err(e) => {
                    return Err(ParseError {
                        document: index,
                        line: e.line(),
                        column: e.column(),
                        message: e.to_string(),
                    })
                }
            }
        }
        return Ok(docs);
    }
    for (index, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
        match <Value as serde::Deserialize>::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(mut v) => {
                octal_modes(&mut v);
                push_doc(&mut docs, v)
            }
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                let message = e.to_string();
                // yaml errors repeat the location at the end; keep the message short.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string();
                return Err(ParseError {
                    document: index,
                    line,
                    column,
                    message,
                });
            }
        }
    }
    Ok(docs)
}

/// File modes written the YAML 1.1 way (`defaultMode: 0400`), as
/// Kubernetes reads them, are octal; a YAML 1.2 parser hands them over as
/// strings, so `mode` and `defaultMode` strings of octal digits with a
/// leading zero become their octal value.
fn octal_modes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "mode" || k == "defaultMode" {
                    if let Some(n) = x
                        .as_str()
                        .filter(|s| s.len() > 1 && s.starts_with('0'))
                        .and_then(|s| u32::from_str_radix(s, 8).ok())
                    {
                        *x = Value::from(n);
                        continue;
                    }
                }
                octal_modes(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

fn push_doc(docs: &mut Vec<Value>, v: Value) {
    match v {
        Value::Array(items) => docs.extend(items),
        Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
            if let Some(Value::Array(items)) = m.get("items") {
                docs.extend(items.iter().cloned());
            }
        }
        other => docs.push(other),
    }
}

/// Which kind a document claims to be.
pub fn kind_of(value: &Value) -> Result<&'static ResourceKind, DecodeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| DecodeError::NotAnObject(value_type(value)))?;
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingApiVersion)?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingKind)?;
    kinds::by_api_version_kind(api_version, kind).ok_or_else(|| {
        let served: Vec<String> = kinds::KINDS
            .iter()
            .filter(|k| k.kind == kind)
            .map(|k| k.api_version())
            .collect();
        let hint = if !served.is_empty() {
            format!(
                "; Selur serves {kind} as apiVersion {}",
                served.join(" or ")
            )
        } else if kinds::known_api_version(api_version) {
            format!("; {api_version} has no kind {kind} (check the spelling)")
        } else {
            String::new()
        };
        DecodeError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            hint,
        }
    })
}

struct Strict<'a> {
    kind: &'a ResourceKind,
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let base = ignored_path(parent);
            if base.is_empty() {
                key.clone()
            } else {
                format!("{base}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

impl DecodeFn<DecodeError> for Strict<'_> {
    fn run<T: serde::de::DeserializeOwned>(&self, value: Value) -> Result<T, DecodeError> {
        let mut unknown = Vec::new();
        let result: Result<T, _> = {
            let mut cb = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
            let de = serde_ignored::Deserializer::new(value, &mut cb);
            serde_path_to_error::deserialize(de)
        };
        match result {
            Ok(v) if unknown.is_empty() => Ok(v),
            Ok(_) => Err(DecodeError::UnknownFields {
                kind: self.kind.kind.to_string(),
                version: self.kind.version.to_string(),
                unknown,
            }),
            Err(e) => Err(DecodeError::Type {
                kind: self.kind.kind.to_string(),
                version: self.kind.version.to_string(),
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            }),
        }
    }
}

/// Strictly decode one document into its typed form.
pub fn decode(value: Value) -> Result<(&'static ResourceKind, TypedObject), DecodeError> {
    let kind = kind_of(&value)?;
    let strict = Strict { kind };
    match TypedObject::decode_as(kind.kind, value, strict) {
        Some(r) => r.map(|o| (kind, o)),
        None => Err(DecodeError::UnknownKind {
            api_version: kind.api_version(),
            kind: kind.kind.to_string(),
            hint: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicax": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}});
        let e = decode(v).unwrap_err();
        assert_eq!(
            e.paths(),
            vec![
                "spec.replicax".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        assert!(e
            .to_string()
            .contains("strict decoding error: unknown field \"spec.replicax\""));
    }

    #[test]
    fn type_errors_name_the_path() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let e = decode(v).unwrap_err();
        assert_eq!(e.paths(), vec!["spec.replicas".to_string()]);
    }

    #[test]
    fn unknown_kind_and_version() {
        let e = decode(json!({"apiVersion": "apps/v2", "kind": "Deployment"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("Selur serves Deployment as apiVersion apps/v1"),
            "{e}"
        );
        assert!(matches!(
            decode(json!({"kind": "Pod"})),
            Err(DecodeError::MissingApiVersion)
        ));
    }

    #[test]
    fn yaml_octal_modes_are_octal() {
        let docs = parse_documents("kind: Pod\nspec:\n  volumes:\n  - secret: {defaultMode: 0400, items: [{key: k, path: p, mode: 0644}]}\n    mode: 420\n").unwrap();
        assert_eq!(docs[0]["spec"]["volumes"][0]["secret"]["defaultMode"], 256);
        assert_eq!(
            docs[0]["spec"]["volumes"][0]["secret"]["items"][0]["mode"],
            420
        );
        assert_eq!(docs[0]["spec"]["volumes"][0]["mode"], 420);
    }

    #[test]
    fn yaml_errors_have_line_and_column() {
        let e = parse_documents("a: 1\n---\nb: [1, 2\nc: d\n").unwrap_err();
        assert_eq!(e.document, 1);
        assert!(e.line >= 3, "{e:?}");
        let docs = parse_documents("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn seed_forms_decode() {
        let psp = json!({"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy",
            "metadata": {"name": "p"}, "spec": {"allowedImages": ["ghcr.io/x:*"], "runAsUser": {"rule": "MustRunAsNonRoot"},
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "hostNetwork": false, "hostIPC": false, "hostPID": false}});
        decode(psp).unwrap();
        let vs = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "v"}, "spec": {"hosts": ["h"], "http": [{"match": [{"uri": {"prefix": "/api"}}],
            "route": [{"destination": {"host": "h", "port": {"number": 8080}}}]}], "tls": {"mode": "ISTIO_MUTUAL"}}});
        let (_, o) = decode(vs).unwrap();
        assert_eq!(o.to_value().unwrap()["spec"]["tls"]["mode"], "ISTIO_MUTUAL");
    }
}
