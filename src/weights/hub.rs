//! The Hugging Face Hub: the only module that talks to the network (hf-hub's blocking `ureq`
//! client, no async runtime).
//!
//! It follows the hub's conventions: `HF_ENDPOINT` (default <https://huggingface.co>),
//! `HF_HUB_CACHE` or `HF_HOME`/hub (default ~/.cache/huggingface/hub) with the hub's own cache
//! layout (so files are shared with Python tools), `HF_HUB_OFFLINE=1` (never touch the network),
//! and a token from `HF_TOKEN` or the token file `HF_HOME/token`. Downloads go to a temporary
//! `.part` file that is renamed only when complete, so a partial download never looks complete.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

/// A repository on the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// `OWNER/NAME`.
    pub id: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
    /// Model repositories by default; `spaces/OWNER/NAME` selects a Space.
    pub space: bool,
}

impl RepoSpec {
    /// Parses `OWNER/NAME` or `spaces/OWNER/NAME`, with an optional revision.
    pub fn parse(id: &str, revision: Option<&str>) -> Result<Self> {
        let bad = |msg: &str| Error::Parse {
            what: "hub repository".into(),
            msg: format!("`{id}`: {msg}"),
        };
        let (space, rest) = match id.strip_prefix("spaces/") {
            Some(r) => (true, r),
            None => (false, id.strip_prefix("models/").unwrap_or(id)),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(bad("expected OWNER/NAME (letters, digits, - _ .)"));
        }
        let revision = revision.unwrap_or("main");
        if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
            return Err(Error::Parse {
                what: "revision".into(),
                msg: format!("`{revision}` is not a branch, tag or commit"),
            });
        }
        Ok(RepoSpec {
            id: rest.to_string(),
            revision: revision.to_string(),
            space,
        })
    }

    fn repo(&self) -> Repo {
        let kind = if self.space {
            RepoType::Space
        } else {
            RepoType::Model
        };
        Repo::with_revision(self.id.clone(), kind, self.revision.clone())
    }

    /// A folder name for this repository and revision (`OWNER--NAME@REV`, path-safe).
    pub fn slug(&self) -> String {
        let rev: String = self
            .revision
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{}{}@{rev}",
            if self.space { "spaces--" } else { "" },
            self.id.replace('/', "--")
        )
    }
}

impl std::fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}@{}",
            if self.space { "spaces/" } else { "" },
            self.id,
            self.revision
        )
    }
}

/// Where and how to reach the hub, from the environment.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// `HF_ENDPOINT`, or the public hub.
    pub endpoint: String,
    /// The hub cache folder.
    pub cache_dir: PathBuf,
    /// A token, if any.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` set to 1/true/yes.
    pub offline: bool,
    /// Show a progress bar per file on stderr.
    pub progress: bool,
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HOME`, `HF_TOKEN` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home_dir().join(".cache").join("huggingface"));
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        HubConfig {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://huggingface.co".into()),
            cache_dir,
            token,
            offline,
            progress: true,
        }
    }

    /// The cached copy of `file` at the repository's revision, without any request.
    pub fn cached(&self, repo: &RepoSpec, file: &str) -> Option<PathBuf> {
        Cache::new(self.cache_dir.clone())
            .repo(repo.repo())
            .get(file)
    }

    /// The file from the cache, or downloaded into it (unless offline).
    pub fn fetch(&self, repo: &RepoSpec, file: &str) -> Result<PathBuf> {
        if let Some(p) = self.cached(repo, file) {
            return Ok(p);
        }
        if self.offline {
            return Err(Error::Hub {
                repo: repo.to_string(),
                msg: format!(
                    "{file} is not in the cache ({}) and HF_HUB_OFFLINE is set: run once online, \
                     or give local files",
                    self.cache_dir.display()
                ),
            });
        }
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .with_retries(0)
            .build()
            .map_err(|e| Error::Hub {
                repo: repo.to_string(),
                msg: format!("cannot set up the hub client: {e}"),
            })?;
        api.repo(repo.repo())
            .download(file)
            .map_err(|e| Error::Hub {
                repo: repo.to_string(),
                msg: describe(&e.to_string(), file, &self.endpoint),
            })
    }
}

/// A one-line explanation of a download error.
fn describe(e: &str, file: &str, endpoint: &str) -> String {
    if e.contains("status code 404") {
        format!("{file} was not found (404) at {endpoint}: check the repository name, revision and file name")
    } else if e.contains("status code 401") || e.contains("status code 403") {
        format!("{file}: access denied (set HF_TOKEN for private or gated repositories)")
    } else if e.contains("Connection refused")
        || e.contains("Dns")
        || e.contains("dns")
        || e.contains("timed out")
    {
        format!(
            "cannot reach {endpoint} to download {file} ({}); set HF_HUB_OFFLINE=1 to use the cache only",
            e.lines().next().unwrap_or(e)
        )
    } else {
        format!(
            "downloading {file} failed: {}",
            e.lines().next().unwrap_or(e)
        )
    }
}

/// The user's home folder (`HOME`, or `USERPROFILE` on Windows).
pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_parse_strictly() {
        let r = RepoSpec::parse("test/adain", None).unwrap();
        assert_eq!(
            (r.id.as_str(), r.revision.as_str(), r.space),
            ("test/adain", "main", false)
        );
        assert_eq!(r.slug(), "test--adain@main");
        let s = RepoSpec::parse("spaces/a/b", Some("v1.0")).unwrap();
        assert!(s.space);
        assert_eq!(s.to_string(), "spaces/a/b@v1.0");
        for bad in ["adain", "a/b/c", "a/../b", "../x", "a b/c", ""] {
            assert!(RepoSpec::parse(bad, None).is_err(), "{bad}");
        }
        assert!(RepoSpec::parse("a/b", Some("../x")).is_err());
    }
}
