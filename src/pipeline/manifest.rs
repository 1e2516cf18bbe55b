//! Provenance manifests: one JSON line per finished output (inputs and output with their
//! sha256, the settings, the time), appended atomically so that the shards of a run can share
//! one file (or write their own, to be concatenated), and checked later against the files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::weights::sha256_hex;
use crate::{Error, Result};

/// One style input of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StyleRecord {
    /// The style image's path relative to the style folder (or as given).
    pub path: String,
    /// sha256 of the style file.
    pub sha256: String,
    /// Blend weight.
    pub weight: f64,
}

/// One line of a manifest: a finished output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The content's path relative to the content folder (or as given).
    pub content: String,
    /// sha256 of the content file.
    pub content_sha256: String,
    /// The style label (`mondrian`, `a+b`, `preset3`).
    pub style: String,
    /// The style images (empty for presets).
    pub styles: Vec<StyleRecord>,
    /// The model and options ([`Stylizer::settings`](super::Stylizer::settings)), plus output
    /// format and quality.
    pub settings: serde_json::Value,
    /// The output, relative to the manifest's folder when it lies below it, else absolute.
    pub output: String,
    /// sha256 of the output file.
    pub output_sha256: String,
    /// Seconds from reading the content to writing the output.
    pub seconds: f64,
    /// The shard that made it (`K/N`), if the run was sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// An open manifest: records are appended under an exclusive lock, one `write` per line, so
/// concurrent writers (shards on one machine) never interleave.
#[derive(Debug)]
pub struct Manifest {
    path: PathBuf,
    dir: PathBuf,
}

impl Manifest {
    /// Opens (creating if needed) a manifest for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |err| Error::Io {
            path: path.to_path_buf(),
            err,
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Manifest {
            path: path.to_path_buf(),
            dir: dir.canonicalize().map_err(io)?,
        })
    }

    /// `output` as a record names it: relative to the manifest's folder when below it.
    pub fn name_of(&self, output: &Path) -> String {
        let abs = output
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(output.file_name())
            .map(|(d, n)| d.join(n))
            .unwrap_or_else(|| output.to_path_buf());
        abs.strip_prefix(&self.dir)
            .unwrap_or(&abs)
            .to_string_lossy()
            .into_owned()
    }

    /// Appends one record as one line.
    pub fn append(&self, record: &Record) -> Result<()> {
        let io = |err| Error::Io {
            path: self.path.clone(),
            err,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| Error::Parse {
            what: self.path.display().to_string(),
            msg: e.to_string(),
        })?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.lock().map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Outputs present with the recorded hash.
    pub ok: usize,
    /// Outputs that do not exist (as their records name them).
    pub missing: Vec<String>,
    /// Outputs whose sha256 differs from the record.
    pub modified: Vec<String>,
    /// Lines that are not records (`file:line: why`).
    pub bad_lines: Vec<String>,
}

impl CheckReport {
    /// Whether every record's output is there, unchanged, and every line was a record.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.modified.is_empty() && self.bad_lines.is_empty()
    }
}

/// Checks every record of the manifests: the output exists (relative names resolve against the
/// manifest's folder) and hashes as recorded. Unreadable manifests are errors; bad lines are
/// reported.
pub fn check(manifests: &[PathBuf]) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    for m in manifests {
        let text = std::fs::read_to_string(m).map_err(|err| Error::Io {
            path: m.clone(),
            err,
        })?;
        let dir = m.parent().unwrap_or(Path::new("."));
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(e) => {
                    report
                        .bad_lines
                        .push(format!("{}:{}: {e}", m.display(), i + 1));
                    continue;
                }
            };
            let path = dir.join(&record.output);
            match std::fs::read(&path) {
                Err(_) => report.missing.push(path.display().to_string()),
                Ok(bytes) if sha256_hex(&bytes) != record.output_sha256 => {
                    report.modified.push(path.display().to_string())
                }
                Ok(_) => report.ok += 1,
            }
        }
    }
    Ok(report)
}
