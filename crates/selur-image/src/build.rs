//! Reproducible builds of distroless ("Lago Grey") images from a
//! Containerfile, without running anything: there is no shell in the image,
//! so `RUN` is refused and binaries are built outside (statically linked)
//! and copied in.
//!
//! Supported: `FROM scratch`, `FROM <image in the store>`, `FROM <earlier
//! stage>`, `AS name` stages, `COPY` (globs, directories, `--from=<stage
//! name | index | stored image>`, `--chown`, `--chmod`), `ADD` of local
//! files (no URLs, no archive extraction), `ENTRYPOINT`/`CMD` in exec form,
//! `ENV`, `ARG` (with `$VAR` substitution), `WORKDIR`, `USER`, `LABEL`,
//! `EXPOSE`, `VOLUME`, `STOPSIGNAL`, `MAINTAINER`, `HEALTHCHECK NONE`.
//!
//! Every COPY/ADD makes one gzip-ed tar layer with sorted entries, a fixed
//! mtime (0, or `SOURCE_DATE_EPOCH`), owner 0:0 unless `--chown`, and the
//! source's modes; config and manifest are JSON with sorted keys and a fixed
//! `created`, so the same inputs always give the same manifest digest.

mod args;
mod copy;
mod image;
mod layer;
mod parse;
mod place;
mod stage;
pub(crate) mod tree;
mod words;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::reference;
use crate::store::{ImageStore, StoreError};

use args::declare_args;
use image::{write_image, ImageParts};
use stage::{Ctx, Stage};

/// Knobs of a build besides the Containerfile and context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`: values for `ARG NAME`.
    pub build_args: BTreeMap<String, String>,
    /// Seconds since the epoch used as every file's mtime and the image's
    /// `created`; `None` means 0 (1970-01-01T00:00:00Z).
    pub source_date_epoch: Option<u64>,
    /// Stage to build (name or index); the last stage if `None`.
    pub target: Option<String>,
}

impl BuildOptions {
    /// Options with `source_date_epoch` taken from `$SOURCE_DATE_EPOCH`.
    pub fn from_env() -> Self {
        BuildOptions {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            ..Default::default()
        }
    }
}

/// A built image, stored and tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Manifest digest.
    pub digest: Digest,
    /// Config blob digest.
    pub config_digest: Digest,
    /// Normalised names it was tagged with.
    pub names: Vec<String>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A problem with one instruction (the message says how to fix it).
    #[error("{file}:{line}: {message}")]
    At {
        /// The Containerfile as given.
        file: String,
        /// 1-based line the instruction starts on.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The Containerfile cannot be read.
    #[error("cannot read the Containerfile {path}: {source}; check the path given with -f")]
    Containerfile {
        /// The path given.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The context directory cannot be read.
    #[error("build context {path} is not a readable directory: {source}")]
    Context {
        /// The path given.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The Containerfile has no FROM.
    #[error("{file}: no FROM instruction; start the build with FROM scratch or FROM <image in the node's store>")]
    NoFrom {
        /// The Containerfile as given.
        file: String,
    },
    /// `BuildOptions::target` names no stage.
    #[error("{file}: there is no stage {target:?} to build; stages are {stages}")]
    NoSuchTarget {
        /// The Containerfile as given.
        file: String,
        /// The requested stage.
        target: String,
        /// The stages there are, comma-separated.
        stages: String,
    },
    /// A tag is not a valid image reference (checked before building).
    #[error("tag {tag:?} is not a valid image name: {reason}")]
    Tag {
        /// The tag as given.
        tag: String,
        /// Why it is not valid.
        reason: String,
    },
    /// Config or manifest could not be made or stored.
    #[error("writing the image failed: {0}")]
    Write(String),
    /// Tagging failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Build `containerfile` with the files of `context`, store the image in
/// `store` and tag it with each of `tags`.
pub fn build(
    store: &ImageStore,
    containerfile: &Path,
    context: &Path,
    tags: &[String],
    opts: &BuildOptions,
) -> Result<BuiltImage, BuildError> {
    let file = containerfile.display().to_string();
    let at = |line: usize, message: String| BuildError::At {
        file: file.clone(),
        line,
        message,
    };
    let text = fs::read_to_string(containerfile).map_err(|source| BuildError::Containerfile {
        path: containerfile.to_path_buf(),
        source,
    })?;
    let context_dir = fs::canonicalize(context)
        .and_then(|p| {
            if p.is_dir() {
                Ok(p)
            } else {
                Err(io::Error::other("not a directory"))
            }
        })
        .map_err(|source| BuildError::Context {
            path: context.to_path_buf(),
            source,
        })?;
    for t in tags {
        reference::normalize(t).map_err(|e| BuildError::Tag {
            tag: t.clone(),
            reason: e.reason,
        })?;
    }
    let instructions = parse::parse(&text).map_err(|(line, m)| at(line, m))?;
    let epoch = opts.source_date_epoch.unwrap_or(0);
    let created = i64::try_from(epoch)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or_else(|| BuildError::Write(format!("SOURCE_DATE_EPOCH {epoch} is out of range")))?;

    // ARGs before the first FROM are usable in FROM lines (and re-declared ones).
    let mut global_args: BTreeMap<String, String> = [
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let first_from = instructions.iter().position(|i| i.keyword == "FROM");
    let Some(first_from) = first_from else {
        return Err(BuildError::NoFrom { file });
    };
    for ins in &instructions[..first_from] {
        if ins.keyword != "ARG" {
            return Err(at(
                ins.line,
                format!(
                    "{} before the first FROM: only ARG may come before FROM",
                    ins.keyword
                ),
            ));
        }
        let snapshot = global_args.clone();
        for (name, default) in
            declare_args(&ins.args, &|n| snapshot.get(n).cloned()).map_err(|m| at(ins.line, m))?
        {
            if let Some(v) = opts.build_args.get(&name).cloned().or(default) {
                global_args.insert(name, v);
            }
        }
    }
    let ctx = Ctx {
        store,
        context: context_dir,
        created: created.clone(),
        mtime: epoch,
        build_args: &opts.build_args,
        global_args,
    };

    let mut done: Vec<Stage> = Vec::new();
    let mut current: Option<Stage> = None;
    for ins in &instructions[first_from..] {
        if ins.keyword == "FROM" {
            done.extend(current.take());
            current = Some(from(ins, &ctx, &done).map_err(|m| at(ins.line, m))?);
            continue;
        }
        if let Some(s) = current.as_mut() {
            s.apply(ins, &ctx, &mut done).map_err(|m| at(ins.line, m))?;
        }
    }
    done.extend(current.take());

    let target = match &opts.target {
        None => done.last(),
        Some(t) => done
            .iter()
            .find(|s| s.name.as_deref() == Some(t.to_lowercase().as_str()))
            .or_else(|| t.parse::<usize>().ok().and_then(|i| done.get(i))),
    };
    let Some(stage) = target else {
        let stages: Vec<String> = done
            .iter()
            .enumerate()
            .map(|(i, s)| s.name.clone().unwrap_or_else(|| i.to_string()))
            .collect();
        return Err(BuildError::NoSuchTarget {
            file,
            target: opts.target.clone().unwrap_or_default(),
            stages: stages.join(", "),
        });
    };
    let parts = ImageParts {
        created: &created,
        author: stage.author.as_deref(),
        arch: stage.arch.clone(),
        os: stage.os.clone(),
        exec: &stage.exec,
        layers: &stage.layers,
        diff_ids: &stage.diff_ids,
        history: &stage.history,
    };
    let (digest, config_digest) = write_image(store, &parts).map_err(BuildError::Write)?;
    let mut names = Vec::new();
    for t in tags {
        names.push(store.tag(t, &digest)?);
    }
    Ok(BuiltImage {
        digest,
        config_digest,
        names,
    })
}

/// `FROM [--platform=linux/amd64] <scratch | stage | image> [AS name]`.
fn from(ins: &parse::Instruction, ctx: &Ctx<'_>, done: &[Stage]) -> Result<Stage, String> {
    let vars = |n: &str| ctx.global_args.get(n).cloned();
    let (flags, rest) = words::flags(&ins.args);
    for (name, value) in flags {
        match (name.as_str(), value) {
            ("platform", Some(v)) => {
                let p = words::word(&v, &vars)?;
                if p != "linux/amd64" {
                    return Err(format!(
                        "--platform={p}: Selur builds linux/amd64 images only"
                    ));
                }
            }
            (other, _) => {
                return Err(format!(
                    "FROM --{other} is not supported; only --platform=linux/amd64 is"
                ))
            }
        }
    }
    let ws = words::split(rest, &vars)?;
    let (image, name) = match ws.as_slice() {
        [i] => (i, None),
        [i, as_kw, n] if as_kw.eq_ignore_ascii_case("as") => (i, Some(n.to_lowercase())),
        _ => {
            return Err(
                "FROM takes an image and an optional stage name: FROM <image> [AS <name>]".into(),
            )
        }
    };
    if let Some(n) = &name {
        let ok = n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(format!(
                "stage name {n:?} must start with a letter and use only letters, digits, _ - ."
            ));
        }
        if done.iter().any(|s| s.name.as_ref() == Some(n)) {
            return Err(format!(
                "stage name {n:?} is used twice; give each stage its own name"
            ));
        }
    }
    if image.eq_ignore_ascii_case("scratch") {
        return Ok(Stage::scratch(name));
    }
    if let Some(s) = done
        .iter()
        .find(|s| s.name.as_deref() == Some(image.to_lowercase().as_str()))
    {
        return Ok(s.derive(name));
    }
    let d = ctx.store.resolve(image).map_err(|e| match e {
        StoreError::NotFound(_) | StoreError::Reference(_) => format!(
            "{image} is not in the node's image store; import or pull it first (see `selur image ls`), or start FROM scratch"
        ),
        e => image::store_msg(e),
    })?;
    Stage::from_image(ctx.store, &d, name).map_err(image::store_msg)
}
