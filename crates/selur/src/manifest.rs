//! Reading `-f FILE|DIR|-` into documents, remembering where each came from
//! so errors can name the file and the document.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use selur_api::decode::{self, ParseError};

/// One document of one file.
#[derive(Debug, Clone)]
pub struct Doc {
    /// File name as given (`-` for stdin).
    pub source: String,
    /// 1-based index of the document in its file.
    pub index: usize,
    pub value: Value,
}

impl Doc {
    /// `seed.yaml: document 2 (Deployment "web-service")`
    pub fn location(&self) -> String {
        let kind = self
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?");
        match self.value.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) => format!("{}: document {} ({kind} \"{n}\")", self.source, self.index),
            None => format!("{}: document {} ({kind})", self.source, self.index),
        }
    }
}

/// Why files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}:{}:{}: document {}: {}", .err.line, .err.column, .err.document + 1, .err.message)]
    Parse { path: String, err: ParseError },
    #[error("{path}: no objects found (is it empty, or only comments?)")]
    Empty { path: String },
}

fn read_text(path: &str) -> Result<String, ManifestError> {
    let io = |e: std::io::Error| ManifestError::Io {
        path: path.to_string(),
        reason: e.to_string(),
    };
    if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(io)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

fn files_of(path: &str) -> Result<Vec<String>, ManifestError> {
    let p = Path::new(path);
    if path != "-" && p.is_dir() {
        let mut files: Vec<String> = std::fs::read_dir(p)
            .map_err(|e| ManifestError::Io {
                path: path.to_string(),
                reason: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            })
            .map(|f| f.display().to_string())
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_string()])
    }
}

/// Read every document of every file, in order; any parse error fails the whole read.
pub fn read_all(paths: &[String]) -> Result<Vec<Doc>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        for file in files_of(p)? {
            let text = read_text(&file)?;
            let docs = decode::parse_documents(&text).map_err(|err| ManifestError::Parse {
                path: file.clone(),
                err,
            })?;
            if docs.is_empty() {
                return Err(ManifestError::Empty { path: file });
            }
            out.extend(docs.into_iter().enumerate().map(|(i, value)| Doc {
                source: file.clone(),
                index: i + 1,
                value,
            }));
        }
    }
    Ok(out)
}
