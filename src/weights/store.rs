//! The local model store: model cards (`models/*.toml`, embedded) and validated weights
//! converted to safetensors under the normstyle cache (`NORMSTYLE_CACHE`, or
//! `XDG_CACHE_HOME/normstyle`, or `~/.cache/normstyle`):
//!
//! ```text
//! <cache>/adain/local/{vgg_normalised,decoder}.safetensors       (normstyle weights add)
//! <cache>/adain/hf/<OWNER--NAME@REV>/{…}.safetensors              (downloaded with --hf-repo)
//! ```
//!
//! A file enters the store only after its structure was checked (every tensor the model needs,
//! with the right shape and finite values); it is written through a temporary file and a
//! rename. Known sha256 values of the original files (from the card) give a warning on mismatch.

use std::path::{Path, PathBuf};

use candle::Device;

use super::hub::{home_dir, HubConfig, RepoSpec};
use super::{sha256_hex, write_tensors, Layout, TensorMap};
use crate::{Error, Result};

/// A model card.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Card {
    /// Short name (`adain`).
    pub name: String,
    /// One-line title.
    pub title: String,
    /// The paper.
    pub paper: String,
    /// Where the weights are published.
    pub source: String,
    /// License of code and weights.
    pub license: String,
    /// A default hub repository (empty: none is authoritative).
    pub hf_repo: String,
    /// The files the model needs.
    pub files: Vec<CardFile>,
}

/// One file of a model card.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct CardFile {
    /// Its role (`vgg`, `decoder`, …).
    pub role: String,
    /// The released file name.
    pub name: String,
    /// Accepted formats.
    pub formats: Vec<String>,
    /// Expected tensor layout.
    pub layout: String,
    /// Parameters the model uses from it.
    pub parameters_used: u64,
    /// Known sha256 values of the released file (may be empty).
    pub sha256: Vec<String>,
}

const CARDS: [(&str, &str); 2] = [
    ("adain", include_str!("../../models/adain.toml")),
    ("magenta", include_str!("../../models/magenta.toml")),
];

/// The card of `model` (`adain` or `magenta`).
pub fn card(model: &str) -> Result<Card> {
    let text = CARDS
        .iter()
        .find(|(n, _)| *n == model)
        .map(|(_, t)| *t)
        .ok_or_else(|| Error::Parse {
            what: "model".into(),
            msg: format!("`{model}` is not one of adain, magenta"),
        })?;
    toml::from_str(text).map_err(|e| Error::Parse {
        what: format!("models/{model}.toml"),
        msg: e.to_string(),
    })
}

/// The normstyle cache folder.
pub fn root() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("NORMSTYLE_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("normstyle")))
        .unwrap_or_else(|| home_dir().join(".cache").join("normstyle"))
}

/// Where a set of AdaIN weights came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Imported with `weights add`.
    Local,
    /// Downloaded from a hub repository.
    Hub(RepoSpec),
}

/// The AdaIN parts, in the store's file names.
pub const ADAIN_PARTS: [(&str, &str); 2] = [("vgg", "vgg_normalised"), ("decoder", "decoder")];

/// The store folder of AdaIN weights from `origin`.
pub fn adain_dir(origin: &Origin) -> PathBuf {
    let base = root().join("adain");
    match origin {
        Origin::Local => base.join("local"),
        Origin::Hub(r) => base.join("hf").join(r.slug()),
    }
}

/// The two AdaIN files of a store folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdainPaths {
    /// The encoder (safetensors).
    pub vgg: PathBuf,
    /// The decoder (safetensors).
    pub decoder: PathBuf,
}

/// The AdaIN files of `origin`, when both are in the store.
pub fn cached_adain(origin: &Origin) -> Option<AdainPaths> {
    let dir = adain_dir(origin);
    let p = AdainPaths {
        vgg: dir.join("vgg_normalised.safetensors"),
        decoder: dir.join("decoder.safetensors"),
    };
    (p.vgg.is_file() && p.decoder.is_file()).then_some(p)
}

/// The files of a model by role, with the tensors each must hold (`model::adain::layouts()`).
pub type Parts = [(&'static str, Layout)];

/// Which part a checkpoint is (`vgg`, `decoder`, …), by its tensors.
pub fn identify(map: &TensorMap, parts: &Parts) -> Option<&'static str> {
    parts
        .iter()
        .find(|(_, layout)| layout.check(map).is_ok())
        .map(|(role, _)| *role)
}

/// Validates `bytes` (any supported checkpoint format) as the AdaIN part `role` of `parts` and
/// stores it as safetensors in `dir`. Returns the stored path and warnings (hash mismatches).
pub fn store_adain_part(
    dir: &Path,
    role: &str,
    parts: &Parts,
    bytes: &[u8],
    source: &str,
) -> Result<(PathBuf, Vec<String>)> {
    let map = TensorMap::from_bytes(bytes, source, &Device::Cpu)?;
    let Some((_, layout)) = parts.iter().find(|(r, _)| *r == role) else {
        return Err(Error::Parse {
            what: source.to_string(),
            msg: format!("unknown AdaIN part `{role}`"),
        });
    };
    layout.check(&map).map_err(|e| Error::Parse {
        what: source.to_string(),
        msg: format!("not a valid AdaIN {role} checkpoint: {e}"),
    })?;
    let sha = sha256_hex(bytes);
    let mut warnings = Vec::new();
    if let Ok(c) = card("adain") {
        if let Some(f) = c.files.iter().find(|f| f.role == role) {
            if !f.sha256.is_empty() && !f.sha256.contains(&sha) {
                warnings.push(format!(
                    "{source}: sha256 {sha} differs from the known {} (structure is valid; using it)",
                    f.sha256.join(" or ")
                ));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|err| Error::Io {
        path: dir.to_path_buf(),
        err,
    })?;
    let name = ADAIN_PARTS
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("part", |(_, n)| *n);
    let path = dir.join(format!("{name}.safetensors"));
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("source".to_string(), source.to_string());
    meta.insert("source_sha256".to_string(), sha);
    meta.insert(
        "converted_by".to_string(),
        format!("normstyle {}", env!("CARGO_PKG_VERSION")),
    );
    write_tensors(&path, &map, meta)?;
    Ok((path, warnings))
}

/// Finds the AdaIN weights: the store for `repo` (or the locally added ones without a repo),
/// else downloads both released files from `repo` (unless offline), validates and stores them.
/// `log` receives progress lines and warnings.
pub fn resolve_adain(
    repo: Option<&RepoSpec>,
    hub: &HubConfig,
    parts: &Parts,
    log: &dyn Fn(String),
) -> Result<AdainPaths> {
    let origin = repo.map_or(Origin::Local, |r| Origin::Hub(r.clone()));
    if let Some(p) = cached_adain(&origin) {
        return Ok(p);
    }
    let Some(repo) = repo else {
        return Err(Error::Parse {
            what: "AdaIN weights".into(),
            msg: "no AdaIN weights in the store: load the released vgg_normalised.pth and \
                  decoder.pth directly, name a hub repository to download them from, or add \
                  local copies to the store once"
                .into(),
        });
    };
    let card = card("adain")?;
    let dir = adain_dir(&origin);
    for (role, _) in ADAIN_PARTS {
        let file = card
            .files
            .iter()
            .find(|f| f.role == role)
            .map_or(role, |f| f.name.as_str());
        let path = hub.fetch(repo, file)?;
        let bytes = std::fs::read(&path).map_err(|err| Error::Io {
            path: path.clone(),
            err,
        })?;
        let (_, warnings) = store_adain_part(&dir, role, parts, &bytes, &format!("{repo}/{file}"))
            .map_err(|e| Error::Hub {
                repo: repo.to_string(),
                msg: format!("{file} failed the structure check: {e}"),
            })?;
        warnings.into_iter().for_each(log);
    }
    cached_adain(&origin).ok_or_else(|| Error::Hub {
        repo: repo.to_string(),
        msg: "the store is incomplete after the download".into(),
    })
}

/// Identifies a checkpoint (any supported format) as one of `parts` and stores it with the
/// locally added weights. Returns the role, the stored path and warnings (hash mismatches).
pub fn add_local(
    bytes: &[u8],
    source: &str,
    parts: &Parts,
) -> Result<(&'static str, PathBuf, Vec<String>)> {
    let map = TensorMap::from_bytes(bytes, source, &Device::Cpu)?;
    let role = identify(&map, parts).ok_or_else(|| Error::Parse {
        what: source.to_string(),
        msg: "neither the AdaIN encoder (vgg_normalised) nor its decoder".into(),
    })?;
    let (path, warnings) =
        store_adain_part(&adain_dir(&Origin::Local), role, parts, bytes, source)?;
    Ok((role, path, warnings))
}

/// Every file in the store, sorted.
pub fn stored_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("adain")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in rd.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Re-checks every stored AdaIN part against `parts`: (file, what is wrong, if anything).
pub fn verify(parts: &Parts) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    for f in stored_files() {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let Some((role, _)) = ADAIN_PARTS.iter().find(|(_, name)| *name == stem) else {
            continue;
        };
        let problem = match TensorMap::load(&f, &Device::Cpu) {
            Err(e) => Some(e.to_string()),
            Ok(m) if identify(&m, parts) == Some(*role) => None,
            Ok(_) => Some(format!("not a valid AdaIN {role}")),
        };
        out.push((f, problem));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_parse_and_name_the_released_files() {
        let c = card("adain").unwrap();
        let names: Vec<&str> = c.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["vgg_normalised.pth", "decoder.pth"]);
        assert!(c.source.contains("pytorch-AdaIN"));
        assert_eq!(card("magenta").unwrap().files.len(), 3);
        assert!(card("vgg").is_err());
    }
}
