//! Field-level errors in Kubernetes' wording (`spec.replicas: Invalid value: -1: must be ...`).

use std::fmt;

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// The field must be set.
    Required,
    /// The value is not acceptable; carries the value as shown to the user.
    Invalid(String),
    /// The value is not one of the supported ones.
    NotSupported(String, Vec<String>),
    /// The value repeats one given earlier in a list.
    Duplicate(String),
    /// The field may not be set (or changed) here.
    Forbidden,
    /// The field is not known to the schema.
    Unknown,
}

/// One problem at one field path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path with list indices, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    pub kind: FieldErrorKind,
    /// Why, and how to fix it when that is not obvious.
    pub detail: String,
}

impl FieldError {
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }
    pub fn invalid(
        path: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Invalid(value.to_string()),
            detail: detail.into(),
        }
    }
    pub fn not_supported(
        path: impl Into<String>,
        value: impl fmt::Display,
        supported: &[&str],
    ) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::NotSupported(
                value.to_string(),
                supported.iter().map(|s| s.to_string()).collect(),
            ),
            detail: String::new(),
        }
    }
    pub fn duplicate(path: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Duplicate(value.to_string()),
            detail: String::new(),
        }
    }
    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    pub fn unknown(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Unknown,
            detail: String::new(),
        }
    }
    /// Kubernetes' `StatusCause.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Unknown => "FieldValueInvalid",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FieldErrorKind::Required => write!(f, "{}: Required value", self.path)?,
            FieldErrorKind::Invalid(v) => write!(f, "{}: Invalid value: {}", self.path, v)?,
            FieldErrorKind::NotSupported(v, s) => {
                let list: Vec<String> = s.iter().map(|x| format!("\"{x}\"")).collect();
                write!(
                    f,
                    "{}: Unsupported value: \"{}\": supported values: {}",
                    self.path,
                    v,
                    list.join(", ")
                )?
            }
            FieldErrorKind::Duplicate(v) => write!(f, "{}: Duplicate value: {}", self.path, v)?,
            FieldErrorKind::Forbidden => write!(f, "{}: Forbidden", self.path)?,
            FieldErrorKind::Unknown => write!(f, "unknown field \"{}\"", self.path)?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Join errors the way `kubectl` shows them: `[a, b]` for several, the error alone for one.
pub fn join(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kubernetes() {
        let e = FieldError::required("spec.template.spec.containers[0].image", "");
        assert_eq!(
            e.to_string(),
            "spec.template.spec.containers[0].image: Required value"
        );
        let e = FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0");
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
    }
}
