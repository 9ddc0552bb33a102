//! One build stage: its base (scratch, a stored image or an earlier stage),
//! its layers so far, its config, and the instructions that change them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::image::{Arch, Descriptor, History, MediaType, Os};

use super::args::{self, declare_args, exec_form, key_values, ports};
use super::copy;
use super::image::{history, oci_digest, store_msg, ExecConfig};
use super::layer::{self, EntryKind};
use super::parse::Instruction;
use super::place::{self, Overrides};
use super::tree::{Kind, Node, Tree};
use super::words;
use crate::digest::Digest;
use crate::store::{ImageStore, StoreError};

/// What every stage of one build shares.
pub(crate) struct Ctx<'a> {
    pub store: &'a ImageStore,
    /// The build context, canonicalised.
    pub context: PathBuf,
    /// RFC 3339 time written into config and history.
    pub created: String,
    /// Seconds since the epoch written as every file's mtime.
    pub mtime: u64,
    pub build_args: &'a BTreeMap<String, String>,
    /// ARGs declared before the first FROM, with their values.
    pub global_args: BTreeMap<String, String>,
}

#[derive(Clone)]
pub(crate) struct Stage {
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<String>,
    pub history: Vec<History>,
    pub exec: ExecConfig,
    pub author: Option<String>,
    pub arch: Arch,
    pub os: Os,
    /// Metadata view of the file system, read when first needed.
    fs: Option<Tree<()>>,
    /// CMD was set in this stage (so ENTRYPOINT does not reset it).
    cmd_set: bool,
    /// ARGs declared in this stage and their values.
    args: BTreeMap<String, String>,
}

impl Stage {
    pub fn scratch(name: Option<String>) -> Self {
        Stage {
            name,
            layers: Vec::new(),
            diff_ids: Vec::new(),
            history: Vec::new(),
            exec: ExecConfig::default(),
            author: None,
            arch: Arch::Amd64,
            os: Os::Linux,
            fs: Some(Tree::empty()),
            cmd_set: false,
            args: BTreeMap::new(),
        }
    }

    /// Start from the stored image with manifest `d`.
    pub fn from_image(
        store: &ImageStore,
        d: &Digest,
        name: Option<String>,
    ) -> Result<Self, StoreError> {
        let m = store.manifest(d)?;
        let (_, c) = store.config(&m)?;
        let diff_ids = c.rootfs().diff_ids().clone();
        if diff_ids.len() != m.layers().len() {
            return Err(StoreError::Invalid {
                what: format!("image {d}"),
                reason: format!(
                    "{} layers but {} diff_ids in its config",
                    m.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        Ok(Stage {
            name,
            layers: m.layers().clone(),
            diff_ids,
            history: c.history().clone().unwrap_or_default(),
            exec: c
                .config()
                .as_ref()
                .map(ExecConfig::from_oci)
                .unwrap_or_default(),
            author: c.author().clone(),
            arch: c.architecture().clone(),
            os: c.os().clone(),
            fs: None,
            cmd_set: false,
            args: BTreeMap::new(),
        })
    }

    /// A new stage starting where this one ended.
    pub fn derive(&self, name: Option<String>) -> Self {
        Stage {
            name,
            cmd_set: false,
            args: BTreeMap::new(),
            ..self.clone()
        }
    }

    pub fn layer_digests(&self) -> Result<Vec<Digest>, String> {
        self.layers
            .iter()
            .map(|l| {
                Digest::parse(l.digest().as_ref()).map_err(|e| format!("base image layer: {e}"))
            })
            .collect()
    }

    /// The metadata view of the stage's file system.
    pub fn fs(&mut self, store: &ImageStore) -> Result<&mut Tree<()>, String> {
        if self.fs.is_none() {
            let layers = self.layer_digests()?;
            let t = Tree::read(store, &layers, &mut |_, _, _, _| Ok(None))
                .map_err(|e| e.to_string())?;
            self.fs = Some(t);
        }
        Ok(self.fs.get_or_insert_with(Tree::empty))
    }

    /// Variables for substitution: ENV first, then ARG.
    fn var(&self, name: &str) -> Option<String> {
        self.exec
            .env_var(name)
            .map(str::to_string)
            .or_else(|| self.args.get(name).cloned())
    }

    /// Apply one instruction (anything but FROM).
    pub fn apply(
        &mut self,
        ins: &Instruction,
        ctx: &Ctx<'_>,
        done: &mut [Stage],
    ) -> Result<(), String> {
        let kw = ins.keyword.as_str();
        let args = ins.args.as_str();
        let snapshot = self.clone_vars();
        let vars = |n: &str| snapshot.get(n).cloned();
        match kw {
            "RUN" => {
                return Err("RUN is not supported: Lago Grey images have no shell; build the binary outside (statically linked) and COPY it in".into())
            }
            "SHELL" => return Err("SHELL is not supported: Lago Grey images have no shell; write ENTRYPOINT and CMD in exec (JSON) form".into()),
            "ONBUILD" => return Err("ONBUILD is not supported: put the instructions into the Containerfile that builds on this image".into()),
            "HEALTHCHECK" if args.eq_ignore_ascii_case("none") => {}
            "HEALTHCHECK" => {
                return Err("HEALTHCHECK is not supported: a check command needs a shell or extra binaries in the image; use the pod's liveness and readiness probes (or HEALTHCHECK NONE)".into())
            }
            "ARG" => return self.arg(args, ctx),
            "ENV" => {
                for (k, v) in key_values(args, &vars, "ENV")? {
                    self.exec.set_env(k, v);
                }
            }
            "LABEL" => {
                for (k, v) in key_values(args, &vars, "LABEL")? {
                    self.exec.labels.insert(k, v);
                }
            }
            "MAINTAINER" => self.author = Some(words::word(args, &vars)?),
            "USER" => {
                let u = words::word(args, &vars)?;
                if u.is_empty() || u.contains(char::is_whitespace) {
                    return Err("USER needs one user: USER 65532 or USER 65532:65532".into());
                }
                self.exec.user = Some(u);
            }
            "WORKDIR" => {
                let w = words::word(args, &vars)?;
                if w.is_empty() {
                    return Err("WORKDIR needs a path: WORKDIR /app".into());
                }
                let base = self.exec.working_dir.clone().unwrap_or_else(|| "/".into());
                let joined = if w.starts_with('/') { w } else { format!("{base}/{w}") };
                self.exec.working_dir = Some(format!("/{}", super::tree::normalize(&joined).unwrap_or_default()));
            }
            "EXPOSE" => {
                for w in words::split(args, &vars)? {
                    self.exec.exposed_ports.extend(ports(&w)?);
                }
            }
            "VOLUME" => {
                let vols = match words::json_array(args) {
                    Some(v) => v,
                    None => words::split(args, &vars)?,
                };
                self.exec.volumes.extend(vols.into_iter().filter(|v| !v.is_empty()));
            }
            "STOPSIGNAL" => self.exec.stop_signal = Some(words::word(args, &vars)?),
            "ENTRYPOINT" => {
                let v = exec_form(kw, args)?;
                self.exec.entrypoint = (!v.is_empty()).then_some(v);
                if !self.cmd_set {
                    self.exec.cmd = None;
                }
            }
            "CMD" => {
                let v = exec_form(kw, args)?;
                self.exec.cmd = (!v.is_empty()).then_some(v);
                self.cmd_set = true;
            }
            "COPY" | "ADD" => return self.copy(ins, ctx, done, &vars),
            "FROM" => return Err("FROM inside a stage: this is a bug in the build driver".into()),
            other => {
                return Err(format!(
                    "unknown instruction {other}: Selur builds support FROM, COPY, ADD, ENTRYPOINT, CMD, ENV, ARG, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL and MAINTAINER"
                ))
            }
        }
        self.history.push(history(&ctx.created, &ins.text(), true)?);
        Ok(())
    }

    fn clone_vars(&self) -> BTreeMap<String, String> {
        let mut m = self.args.clone();
        for (k, v) in &self.exec.env {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    fn arg(&mut self, args: &str, ctx: &Ctx<'_>) -> Result<(), String> {
        let declared = declare_args(args, &|n| self.var(n))?;
        for (name, default) in declared {
            let value = ctx
                .build_args
                .get(&name)
                .cloned()
                .or(default)
                .or_else(|| ctx.global_args.get(&name).cloned());
            if let Some(v) = value {
                self.args.insert(name, v);
            }
        }
        Ok(())
    }

    fn copy(
        &mut self,
        ins: &Instruction,
        ctx: &Ctx<'_>,
        done: &mut [Stage],
        vars: words::Vars<'_>,
    ) -> Result<(), String> {
        let kw = ins.keyword.as_str();
        let (flags, rest) = words::flags(&ins.args);
        let (mut from, mut chown, mut o) = (None, None, Overrides::default());
        for (name, value) in flags {
            let v = || {
                value
                    .clone()
                    .ok_or_else(|| format!("--{name} needs a value: --{name}=..."))
            };
            match name.as_str() {
                "from" if kw == "COPY" => from = Some(words::word(&v()?, vars)?),
                "chown" => chown = Some(words::word(&v()?, vars)?),
                "chmod" => {
                    let s = words::word(&v()?, vars)?;
                    let m = u32::from_str_radix(&s, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("--chmod={s}: give an octal mode such as --chmod=0755"))?;
                    o.chmod = Some(m);
                }
                "link" => {}
                other => {
                    return Err(format!(
                        "{kw} --{other} is not supported; supported flags are {}--chown, --chmod and --link",
                        if kw == "COPY" { "--from, " } else { "" }
                    ))
                }
            }
        }
        let items = match words::json_array(rest) {
            Some(a) => a
                .iter()
                .map(|w| words::word(w, vars))
                .collect::<Result<Vec<_>, _>>()?,
            None => words::split(rest, vars)?,
        };
        let Some((dest, srcs)) = items.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(format!(
                "{kw} needs at least one source and a destination: {kw} <src>... <dest>"
            ));
        };
        let sources = match &from {
            None => copy::from_context(&ctx.context, srcs, kw == "ADD")?,
            Some(f) => {
                let found = done
                    .iter()
                    .position(|s| s.name.as_deref() == Some(f.to_lowercase().as_str()));
                let idx = found.or_else(|| f.parse::<usize>().ok().filter(|&i| i < done.len()));
                let mut stored;
                let (other, what) = match idx {
                    Some(i) => (&mut done[i], format!("stage {f}")),
                    None if f.parse::<usize>().is_ok() => {
                        return Err(format!("--from={f}: there is no earlier stage with that index (stages count from 0)"))
                    }
                    None => {
                        let d = ctx.store.resolve(f).map_err(|e| match e {
                            StoreError::NotFound(_) | StoreError::Reference(_) => format!(
                                "--from={f}: no earlier stage is named {f} and no image of that name is in the node's store; name the stage with FROM ... AS {f} or import the image"
                            ),
                            e => store_msg(e),
                        })?;
                        stored = Stage::from_image(ctx.store, &d, None).map_err(store_msg)?;
                        (&mut stored, format!("image {f}"))
                    }
                };
                let layers = other.layer_digests()?;
                let meta = other.fs(ctx.store)?;
                copy::from_image(ctx.store, &layers, meta, srcs, &what)?
            }
        };
        if let Some(spec) = &chown {
            o.chown = Some(args::owner(spec, ctx.store, &self.layer_digests()?)?);
        }
        let workdir = self.exec.working_dir.clone();
        let fs = self.fs(ctx.store)?;
        let plan = place::place(sources, dest, workdir.as_deref(), fs, o)?;
        let written = layer::write_layer(ctx.store, &plan, ctx.mtime)?;
        for (path, e) in &plan {
            let kind = match &e.kind {
                EntryKind::Dir => Kind::Dir,
                EntryKind::File { size, .. } => Kind::File { size: *size },
                EntryKind::Symlink(t) => Kind::Symlink(t.clone()),
            };
            let node = Node {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                data: None,
            };
            fs.insert(path.clone(), node);
        }
        let desc = Descriptor::new(
            MediaType::ImageLayerGzip,
            written.size,
            oci_digest(&written.digest)?,
        );
        self.layers.push(desc);
        self.diff_ids.push(written.diff_id.to_string());
        self.history
            .push(history(&ctx.created, &ins.text(), false)?);
        Ok(())
    }
}
