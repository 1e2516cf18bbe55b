//! Batch runs over many files: every content × every style, one file each, safe to interrupt
//! and resume.
//!
//! Photos are processed one at a time (each is its own batch, so `bn` statistics would equal
//! `in`). An output that already exists is skipped unless `force`, so an interrupted run
//! resumes; a photo that fails is reported and the run goes on; a stop request ends the run
//! after the current photo. Outputs are written to a temporary file and renamed, so nothing
//! half-written remains. Each style is decoded and encoded once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::spec::{stem, StyleSpec};
use super::stylizer::{Style, Stylizer};
use crate::imaging;
use crate::model::adain::Mask;
use crate::{Error, Result};

/// A batch: the files, the styles and where the outputs go.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Content images.
    pub contents: Vec<PathBuf>,
    /// The folder the contents were found in: output names then join the relative path with `_`
    /// (keeping names from different subfolders apart); otherwise the file stem is used.
    pub content_root: Option<PathBuf>,
    /// One output per content and spec.
    pub specs: Vec<StyleSpec>,
    /// The folder the styles were found in (names as for `content_root`).
    pub style_root: Option<PathBuf>,
    /// The mask of [`StyleSpec::Masked`] specs.
    pub mask: Option<Mask>,
    /// The output folder (created if missing).
    pub out_dir: PathBuf,
    /// Extension of the outputs, which sets their format: `png`, `jpg` or `webp`.
    pub ext: String,
    /// JPEG quality, 1–100.
    pub quality: u8,
    /// Overwrite existing outputs instead of skipping them.
    pub force: bool,
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
    /// The number of outputs (contents × specs).
    pub fn len(&self) -> usize {
        self.contents.len() * self.specs.len()
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
        self.out_dir
            .join(format!("{content}_stylized_{style}.{}", self.ext))
    }

    /// Runs the batch with `st`, reporting each pair to `on`. `stop` is polled between photos.
    /// Errors of single files are events, not errors of the run; the run fails only when the
    /// output folder cannot be created.
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
        let styles = self.load_styles(st, &mut on);
        let mut sum = Summary::default();
        for c in 0..self.contents.len() {
            if stop.load(Ordering::SeqCst) {
                sum.not_started = self.len() - sum.done - sum.skipped - sum.failed;
                break;
            }
            let mut pending = Vec::new();
            for s in 0..self.specs.len() {
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
                self.run_content(st, c, &pending, &styles, &mut sum, &mut on);
            }
        }
        Ok(sum)
    }

    /// Decodes and prepares every style once; a broken one is reported and fails its pairs.
    fn load_styles(&self, st: &Stylizer, on: &mut impl FnMut(Event)) -> HashMap<PathBuf, Style> {
        let mut styles = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for p in self.specs.iter().flat_map(StyleSpec::paths) {
            if !seen.insert(p.clone()) {
                continue;
            }
            let style = imaging::load_rgb(p).and_then(|img| st.style_from_rgb(img));
            match style {
                Ok(s) => {
                    styles.insert(p.clone(), s);
                }
                Err(e) => {
                    let uses = self.specs.iter().filter(|s| s.paths().contains(&p)).count();
                    let error = e.in_file(p);
                    on(Event::Failed {
                        file: p,
                        error: &error,
                        outputs: uses * self.contents.len(),
                    });
                }
            }
        }
        styles
    }

    /// Renders the pending specs of content `c`.
    fn run_content(
        &self,
        st: &Stylizer,
        c: usize,
        pending: &[(usize, PathBuf)],
        styles: &HashMap<PathBuf, Style>,
        sum: &mut Summary,
        on: &mut impl FnMut(Event),
    ) {
        let path = &self.contents[c];
        let content = match imaging::load_rgb(path).and_then(|img| st.content_from_rgb(img)) {
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
        for (s, out) in pending {
            let t0 = Instant::now();
            let result = self.specs[*s]
                .styling(styles, self.mask.as_ref())
                .and_then(|styling| st.render(std::slice::from_ref(&content), &styling))
                .and_then(|mut v| v.pop().ok_or_else(|| Error::input("batch", "no output")))
                .and_then(|rgb| {
                    imaging::save(&rgb, out, self.quality)?;
                    Ok(rgb.dimensions())
                });
            match result {
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
