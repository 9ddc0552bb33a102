//! Label selectors (equality- and set-based, in their string form and as
//! `metav1.LabelSelector`) and field selectors, matched against JSON objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

/// A selector string that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to parse requirement {input:?}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> SelectorError {
    SelectorError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// All requirements must hold; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(input: &str, k: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(err(input, format!("invalid label key {k:?}")))
    }
}

fn check_value(input: &str, v: &str) -> Result<String, SelectorError> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(err(input, format!("invalid label value {v:?}")))
    }
}

fn parse_set(input: &str, rest: &str) -> Result<Vec<String>, SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            err(
                input,
                "expected a parenthesised list of values, e.g. in (a,b)",
            )
        })?;
    inner
        .split(',')
        .map(|v| check_value(input, v))
        .collect::<Result<Vec<_>, _>>()
}

impl LabelSelector {
    /// Parse kubectl's `-l` syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(err(s, "empty requirement"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(p, k)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEquals(check_key(p, k)?, check_value(p, v)?)
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Equals(check_key(p, k)?, check_value(p, v)?)
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Equals(check_key(p, k)?, check_value(p, v)?)
            } else if let Some(idx) = p.find(" notin ") {
                Requirement::NotIn(check_key(p, &p[..idx])?, parse_set(p, &p[idx + 7..])?)
            } else if let Some(idx) = p.find(" in ") {
                Requirement::In(check_key(p, &p[..idx])?, parse_set(p, &p[idx + 4..])?)
            } else {
                Requirement::Exists(check_key(p, p)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// From an object's `spec.selector` (`matchLabels` and `matchExpressions`).
    pub fn from_k8s(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let r = match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                op => {
                    return Err(err(
                        &e.key,
                        format!("{op:?} is not a valid label selector operator (In, NotIn, Exists, DoesNotExist)"),
                    ))
                }
            };
            requirements.push(r);
        }
        Ok(Self { requirements })
    }

    /// Does `labels` satisfy every requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Match against an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&labels_of(obj))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// `metadata.labels` of a JSON object.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A field selector: `metadata.name=x,spec.nodeName!=y`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field path, value, must equal)
    pub terms: Vec<(String, String, bool)>,
}

/// Fields every kind can be selected by.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

impl FieldSelector {
    /// Parse; only the fields the kind supports (`extra`) and metadata.name/namespace are allowed.
    pub fn parse(s: &str, extra: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(err(part, "expected field=value or field!=value"));
            };
            let field = field.trim();
            if !COMMON_FIELDS.contains(&field) && !extra.contains(&field) {
                let mut supported: Vec<&str> = COMMON_FIELDS.to_vec();
                supported.extend_from_slice(extra);
                return Err(err(
                    part,
                    format!(
                        "field label not supported: {field} (supported: {})",
                        supported.join(", ")
                    ),
                ));
            }
            terms.push((field.to_string(), value.trim().to_string(), eq));
        }
        Ok(Self { terms })
    }

    /// Does the object's field (missing = "") satisfy every term?
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, value, eq)| {
            let ptr = format!("/{}", field.replace('.', "/"));
            let actual = obj.pointer(&ptr).and_then(Value::as_str).unwrap_or("");
            (actual == value) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based() {
        let s =
            LabelSelector::parse("app=web,tier!=db,env in (prod, staging),!legacy,team").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev"), ("team", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        let n = LabelSelector::parse("env notin (prod)").unwrap();
        assert!(n.matches(&labels(&[])));
        assert!(!n.matches(&labels(&[("env", "prod")])));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse(
            "spec.nodeName=n1,status.phase!=Failed",
            &["spec.nodeName", "status.phase"],
        )
        .unwrap();
        assert!(f.matches(&json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})));
        assert!(!f.matches(&json!({"spec": {"nodeName": "n2"}})));
        assert!(FieldSelector::parse("spec.foo=1", &[]).is_err());
    }
}
