//! Batch runs over many files: every content × every style, one file each, safe to interrupt
//! and resume.
//!
//! Photos are processed one at a time (each is its own batch, so `bn` statistics would equal
//! `in`). An output that already exists is skipped unless `force`, so an interrupted run
//! resumes; a photo that fails is reported and the run goes on; a stop request ends the run
//! after the current photo. Outputs are written to a temporary file and renamed, so nothing
//! half-written remains, and a run removes the temporary files that a killed run left. Each
//! style is decoded and encoded once.
//!
//! A [`Shard`] splits the pairs over N workers (Slurm array tasks, Kubernetes Indexed Job pods)
//! that share nothing but the output folder: a pair belongs to shard
//! `sha256(content path + "\n" + style path) mod N`, with paths relative to their folders, so
//! adding photos never moves existing work. A [`Manifest`] records each output's provenance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::manifest::{Manifest, Record, StyleRecord};
use super::spec::{output_name, stem, StyleSpec};
use super::stylizer::{Content, Style, Stylizer};
use crate::imaging;
use crate::model::adain::Mask;
use crate::weights::{remove_stale_temps, sha256_hex, write_atomic};
use crate::{Error, Result};

/// A temporary file older than this is stale even if its process cannot be checked (another
/// machine of a shared folder); writing one output takes seconds.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// What errors of [`Shard::from_env`] name.
const FROM_ENV: &str = "shard from the environment";

/// One of `count` disjoint parts of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This worker's part, 0 ≤ index < count.
    pub index: usize,
    /// The number of parts.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(parse_err(
                "shard",
                format!("{index}/{count}: need 0 ≤ K < N (K/N, e.g. 0/4)"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// `K/N`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || parse_err("shard", format!("`{s}` is not K/N (e.g. 0/4) or auto"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let num = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
        Self::new(num(k)?, num(n)?)
    }

    /// The shard a scheduler gave this process, from `env` (pass `|k| std::env::var(k).ok()`):
    /// a Slurm array job (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`, divided by
    /// `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`), else a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX` of `shards`, or of `NORMSTYLE_SHARDS`). Returns the shard and a
    /// line saying where it came from.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        shards: Option<usize>,
    ) -> Result<(Self, String)> {
        let num = |k: &str| -> Result<Option<usize>> {
            env(k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| parse_err(FROM_ENV, format!("{k}=`{v}` is not a number ≥ 0")))
                })
                .transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                parse_err(
                    FROM_ENV,
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
                )
            })?;
            if id < min || (id - min) % step != 0 {
                return Err(parse_err(
                    FROM_ENV,
                    format!(
                        "SLURM_ARRAY_TASK_ID={id} is not in the array (min {min}, step {step})"
                    ),
                ));
            }
            let shard = Self::new((id - min) / step, count)?;
            let from = format!("Slurm array task {id} (min {min}, step {step}, count {count})");
            return Ok((shard, from));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let (count, from) = match shards {
                Some(n) => (n, "shards"),
                None => (
                    num("NORMSTYLE_SHARDS")?.ok_or_else(|| {
                        parse_err(FROM_ENV, "JOB_COMPLETION_INDEX is set; give the number of shards (the Job's completions), or set NORMSTYLE_SHARDS")
                    })?,
                    "NORMSTYLE_SHARDS",
                ),
            };
            let shard = Self::new(index, count)?;
            return Ok((
                shard,
                format!("Kubernetes JOB_COMPLETION_INDEX={index}, {from}={count}"),
            ));
        }
        Err(parse_err(
            FROM_ENV,
            "neither a Slurm array task (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) in the environment; give the shard as K/N",
        ))
    }

    /// Whether the pair (content, style), named by their relative paths, is this shard's.
    pub fn owns(&self, content: &str, style: &str) -> bool {
        let h = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!("{content}\n{style}"),
        ));
        let v = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        (v % self.count as u64) as usize == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn parse_err(what: &str, msg: impl Into<String>) -> Error {
    Error::Parse {
        what: what.into(),
        msg: msg.into(),
    }
}

/// A batch: the files, the styles and where the outputs go.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Content images.
    contents: Vec<PathBuf>,
    /// The folder the contents were found in: output names then join the relative path with `_`
    /// (keeping names from different subfolders apart); otherwise the file stem is used.
    content_root: Option<PathBuf>,
    /// One output per content and spec.
    specs: Vec<StyleSpec>,
    /// The folder the styles were found in (names as for `content_root`).
    style_root: Option<PathBuf>,
    /// The mask of [`StyleSpec::Masked`] specs.
    mask: Option<Mask>,
    /// The output folder (created if missing).
    out_dir: PathBuf,
    /// Extension of the outputs, which sets their format: `png`, `jpg` or `webp`.
    ext: String,
    /// JPEG quality, 1–100.
    quality: u8,
    /// Overwrite existing outputs instead of skipping them.
    force: bool,
    /// Only this part of the pairs (all of them when `None`).
    shard: Option<Shard>,
    /// Append a provenance record here for every output written.
    manifest: Option<PathBuf>,
}

/// What happened to one (content, style) pair, reported as the run goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The output was written.
    Done {
        /// The content file.
        content: &'a Path,
        /// The style label.
        style: String,
        /// The output file.
        output: &'a Path,
        /// Output size.
        width: u32,
        /// Output size.
        height: u32,
        /// Model time for this output.
        seconds: f64,
    },
    /// The output already existed (resumed run).
    Skipped {
        /// The existing output.
        output: &'a Path,
    },
    /// The pair (or, with `output: None`, a style image for all its pairs) failed.
    Failed {
        /// The file that failed (a content or a style).
        file: &'a Path,
        /// The error.
        error: &'a Error,
        /// How many outputs this failure costs.
        outputs: usize,
    },
}

/// Counts at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Outputs written.
    pub done: usize,
    /// Outputs that already existed.
    pub skipped: usize,
    /// Outputs that failed.
    pub failed: usize,
    /// Outputs not started because the run was stopped.
    pub not_started: usize,
    /// Temporary files of an earlier, killed run that were removed.
    pub stale_removed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "done {}, skipped {}, failed {}",
            self.done, self.skipped, self.failed
        )?;
        if self.not_started > 0 {
            write!(f, ", not started {} (interrupted)", self.not_started)?;
        }
        Ok(())
    }
}

impl Batch {
    /// Every content in `contents` painted with every spec in `specs`, into `out_dir` (created
    /// if missing), as PNG; outputs that exist are skipped. The setters change the rest.
    pub fn new(contents: Vec<PathBuf>, specs: Vec<StyleSpec>, out_dir: impl Into<PathBuf>) -> Self {
        Batch {
            contents,
            content_root: None,
            specs,
            style_root: None,
            mask: None,
            out_dir: out_dir.into(),
            ext: "png".into(),
            quality: 95,
            force: false,
            shard: None,
            manifest: None,
        }
    }

    /// The folder the contents were found in: output names then join the relative path with
    /// `_` (keeping names from different subfolders apart); otherwise the file stem is used.
    pub fn with_content_root(mut self, root: Option<PathBuf>) -> Self {
        self.content_root = root;
        self
    }

    /// The folder the styles were found in (names as for [`Self::with_content_root`]).
    pub fn with_style_root(mut self, root: Option<PathBuf>) -> Self {
        self.style_root = root;
        self
    }

    /// The mask of [`StyleSpec::Masked`] specs.
    pub fn with_mask(mut self, mask: Option<Mask>) -> Self {
        self.mask = mask;
        self
    }

    /// The outputs' extension, which sets their format: `png`, `jpg` or `webp`.
    pub fn with_extension(mut self, ext: impl Into<String>) -> Self {
        self.ext = ext.into();
        self
    }

    /// JPEG quality, 1–100 (default 95).
    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality;
        self
    }

    /// Overwrite existing outputs instead of skipping them.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Only this part of the pairs (all of them when `None`).
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Append a provenance record here for every output written.
    pub fn with_manifest(mut self, manifest: Option<PathBuf>) -> Self {
        self.manifest = manifest;
        self
    }

    /// The content files.
    pub fn contents(&self) -> &[PathBuf] {
        &self.contents
    }

    /// The style specs.
    pub fn specs(&self) -> &[StyleSpec] {
        &self.specs
    }

    /// The output folder.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The number of outputs of this shard (contents × specs without a shard).
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// The (content, spec) index pairs of this shard, content-major.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for c in 0..self.contents.len() {
            let content = rel(&self.contents[c], self.content_root.as_deref());
            for s in 0..self.specs.len() {
                if self
                    .shard
                    .is_none_or(|k| k.owns(&content, &self.style_name(s)))
                {
                    out.push((c, s));
                }
            }
        }
        out
    }

    /// A spec's name for sharding and manifests: a single style's relative path, else its label.
    fn style_name(&self, s: usize) -> String {
        match &self.specs[s] {
            StyleSpec::Images(v) if v.len() == 1 => rel(&v[0].0, self.style_root.as_deref()),
            other => other.label(),
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The output file of content `c` and spec `s`: `<content>_stylized_<style>.<ext>`.
    pub fn output(&self, c: usize, s: usize) -> PathBuf {
        let content = name_in(&self.contents[c], self.content_root.as_deref());
        let style = match &self.specs[s] {
            StyleSpec::Images(v) if v.len() == 1 => name_in(&v[0].0, self.style_root.as_deref()),
            other => other.label(),
        };
        self.out_dir.join(output_name(&content, &style, &self.ext))
    }

    /// Runs the batch with `st`, reporting each pair to `on`. `stop` is polled between photos.
    /// Errors of single files are events, not errors of the run; the run fails only when the
    /// output folder or the manifest cannot be opened.
    pub fn run(
        &self,
        st: &Stylizer,
        stop: &AtomicBool,
        mut on: impl FnMut(Event),
    ) -> Result<Summary> {
        std::fs::create_dir_all(&self.out_dir).map_err(|err| Error::Io {
            path: self.out_dir.clone(),
            err,
        })?;
        let mut sum = Summary {
            stale_removed: remove_stale_temps(&self.out_dir, STALE_AFTER)?.len(),
            ..Summary::default()
        };
        let manifest = self.manifest.as_deref().map(Manifest::open).transpose()?;
        let pairs = self.pairs();
        let styles = self.load_styles(st, &pairs, manifest.is_some(), &mut on);
        let mut next = 0;
        while next < pairs.len() {
            let c = pairs[next].0;
            let end = next + pairs[next..].iter().take_while(|p| p.0 == c).count();
            if stop.load(Ordering::SeqCst) {
                sum.not_started = pairs.len() - sum.done - sum.skipped - sum.failed;
                break;
            }
            let mut pending = Vec::new();
            for &(_, s) in &pairs[next..end] {
                let out = self.output(c, s);
                if out.exists() && !self.force {
                    sum.skipped += 1;
                    on(Event::Skipped { output: &out });
                } else if self.specs[s]
                    .paths()
                    .iter()
                    .all(|p| styles.contains_key(*p))
                {
                    pending.push((s, out));
                } else {
                    sum.failed += 1; // its style failed to load (reported once, above)
                }
            }
            if !pending.is_empty() {
                let job = Job {
                    st,
                    c,
                    styles: &styles,
                    manifest: manifest.as_ref(),
                };
                self.run_content(&job, &pending, &mut sum, &mut on);
            }
            next = end;
        }
        Ok(sum)
    }

    /// Decodes and prepares every style once (with its sha256 when `hash`); a broken one is
    /// reported and fails its pairs.
    fn load_styles(
        &self,
        st: &Stylizer,
        pairs: &[(usize, usize)],
        hash: bool,
        on: &mut impl FnMut(Event),
    ) -> HashMap<PathBuf, (Style, String)> {
        let mut styles = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for p in self.specs.iter().flat_map(StyleSpec::paths) {
            if !seen.insert(p.clone()) {
                continue;
            }
            let style = read(p).and_then(|bytes| {
                let img = imaging::decode_rgb(&bytes, &p.display().to_string())?;
                let sha = if hash {
                    sha256_hex(&bytes)
                } else {
                    String::new()
                };
                Ok((st.style_from_rgb(img)?, sha))
            });
            match style {
                Ok(s) => {
                    styles.insert(p.clone(), s);
                }
                Err(e) => {
                    // This shard's pairs that need the style.
                    let uses = pairs
                        .iter()
                        .filter(|(_, s)| self.specs[*s].paths().contains(&p))
                        .count();
                    on(Event::Failed {
                        file: p,
                        error: &e.in_file(p),
                        outputs: uses,
                    });
                }
            }
        }
        styles
    }

    /// Renders the pending specs of content `job.c`.
    fn run_content(
        &self,
        job: &Job,
        pending: &[(usize, PathBuf)],
        sum: &mut Summary,
        on: &mut impl FnMut(Event),
    ) {
        let path = &self.contents[job.c];
        let t0 = Instant::now();
        let prepared = read(path).and_then(|bytes| {
            let img = imaging::decode_rgb(&bytes, &path.display().to_string())?;
            let sha = if job.manifest.is_some() {
                sha256_hex(&bytes)
            } else {
                String::new()
            };
            Ok((job.st.content_from_rgb(img)?, sha))
        });
        let (content, sha) = match prepared {
            Ok(x) => x,
            Err(e) => {
                sum.failed += pending.len();
                on(Event::Failed {
                    file: path,
                    error: &e.in_file(path),
                    outputs: pending.len(),
                });
                return;
            }
        };
        let setup = t0.elapsed().as_secs_f64() / pending.len() as f64;
        for (s, out) in pending {
            let t0 = Instant::now();
            match self.render_one(job, &content, &sha, *s, out, setup) {
                Ok((width, height)) => {
                    sum.done += 1;
                    on(Event::Done {
                        content: path,
                        style: self.specs[*s].label(),
                        output: out,
                        width,
                        height,
                        seconds: t0.elapsed().as_secs_f64(),
                    });
                }
                Err(e) => {
                    sum.failed += 1;
                    on(Event::Failed {
                        file: path,
                        error: &e.in_file(path),
                        outputs: 1,
                    });
                }
            }
        }
    }

    /// Renders spec `s` for a prepared content, writes it atomically and records it.
    fn render_one(
        &self,
        job: &Job,
        content: &Content,
        content_sha: &str,
        s: usize,
        out: &Path,
        setup: f64,
    ) -> Result<(u32, u32)> {
        let t0 = Instant::now();
        let spec = &self.specs[s];
        let styling =
            spec.styling_with(|p| job.styles.get(p).map(|(st, _)| st), self.mask.as_ref())?;
        let rgb = job
            .st
            .render(std::slice::from_ref(content), &styling)?
            .pop()
            .ok_or_else(|| Error::input("batch", "no output was rendered"))?;
        let bytes = imaging::encode(&rgb, imaging::format_for(out)?, self.quality)?;
        write_atomic(out, &bytes)?;
        if let Some(m) = job.manifest {
            let styles = match spec {
                StyleSpec::Images(v) => v.iter().map(|(p, w)| (p, *w)).collect(),
                StyleSpec::Masked([a, b]) => vec![(a, 0.5), (b, 0.5)],
                StyleSpec::Preset(_) | StyleSpec::Trained(_) => Vec::new(),
            };
            let mut settings = job.st.settings();
            settings["format"] = self.ext.clone().into();
            settings["quality"] = self.quality.into();
            m.append(&Record {
                content: rel(&self.contents[job.c], self.content_root.as_deref()),
                content_sha256: content_sha.to_string(),
                style: self.style_name(s),
                styles: styles
                    .into_iter()
                    .map(|(p, weight)| StyleRecord {
                        path: rel(p, self.style_root.as_deref()),
                        sha256: job
                            .styles
                            .get(p)
                            .map(|(_, h)| h.clone())
                            .unwrap_or_default(),
                        weight,
                    })
                    .collect(),
                settings,
                output: m.name_of(out),
                output_sha256: sha256_hex(&bytes),
                seconds: setup + t0.elapsed().as_secs_f64(),
                shard: self.shard.map(|k| k.to_string()),
            })?;
        }
        Ok(rgb.dimensions())
    }
}

/// What the outputs of one content share.
struct Job<'a> {
    st: &'a Stylizer,
    c: usize,
    styles: &'a HashMap<PathBuf, (Style, String)>,
    manifest: Option<&'a Manifest>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Err(parse_err(
            &path.display().to_string(),
            "is a folder, not an image",
        ));
    }
    std::fs::read(path).map_err(|err| Error::Io {
        path: path.to_path_buf(),
        err,
    })
}

/// `p` relative to `root` with `/` separators, or as given.
fn rel(p: &Path, root: Option<&Path>) -> String {
    root.and_then(|r| p.strip_prefix(r).ok())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The name of `p` in output names: its path relative to `root` with `/` → `_` (no
/// extension), or its stem.
fn name_in(p: &Path, root: Option<&Path>) -> String {
    match root.and_then(|r| p.strip_prefix(r).ok()) {
        Some(rel) => rel
            .with_extension("")
            .to_string_lossy()
            .replace(['/', '\\'], "_"),
        None => stem(p),
    }
}
