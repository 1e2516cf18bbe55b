//! `normstyle weights`: download, import, list, verify and locate model weights.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::weights::hub::{HubConfig, RepoSpec};
use crate::weights::store::{self, Origin};
use crate::weights::{sha256_hex, TensorMap};

/// Arguments of `normstyle weights`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle weights pull adain --hf-repo OWNER/NAME
  normstyle weights add vgg_normalised.pth decoder.pth
  normstyle weights list
  normstyle weights verify
  normstyle weights path adain")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Download a model's files from a hub repository, check and store them.
    Pull {
        /// The model (adain).
        model: String,
        #[command(flatten)]
        repo: RepoArgs,
        /// No progress bars.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Import local files (any supported format) into the store, converted to safetensors.
    Add {
        /// The files: the AdaIN encoder and/or decoder, told apart by their tensors.
        #[arg(required = true, value_hint = clap::ValueHint::FilePath)]
        files: Vec<PathBuf>,
    },
    /// List the stored weights: folders, files, sizes, sha256.
    List,
    /// Re-check every stored file's structure (and the cards' known hashes).
    Verify,
    /// Print the folder a model's weights are read from.
    Path {
        /// The model (adain).
        model: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
}

/// Where AdaIN weights come from on the hub.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// Hub repository with vgg_normalised.pth and decoder.pth (OWNER/NAME, or spaces/OWNER/NAME);
    /// default: NORMSTYLE_ADAIN_REPO.
    #[arg(long, value_name = "OWNER/NAME")]
    pub hf_repo: Option<String>,
    /// Branch, tag or commit of --hf-repo.
    #[arg(long, requires = "hf_repo")]
    pub revision: Option<String>,
}

impl RepoArgs {
    /// The repository from the flags or `NORMSTYLE_ADAIN_REPO`, if any.
    pub fn spec(&self) -> anyhow::Result<Option<RepoSpec>> {
        let id = self.hf_repo.clone().or_else(|| {
            std::env::var("NORMSTYLE_ADAIN_REPO")
                .ok()
                .filter(|v| !v.is_empty())
        });
        Ok(match id {
            Some(id) => Some(RepoSpec::parse(&id, self.revision.as_deref())?),
            None => None,
        })
    }
}

fn check_model(model: &str) -> anyhow::Result<()> {
    match model {
        "adain" => Ok(()),
        "magenta" => {
            bail!("magenta: the Magenta weights are embedded in the binary; nothing to download")
        }
        other => bail!("`{other}` is not a downloadable model (adain)"),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Pull { model, repo, quiet } => {
            check_model(&model)?;
            let Some(spec) = repo.spec()? else {
                bail!("--hf-repo: say which repository holds vgg_normalised.pth and decoder.pth (no official one exists)");
            };
            let mut hub = HubConfig::from_env();
            hub.progress = !quiet;
            let paths = store::resolve_adain(Some(&spec), &hub, &|m| eprintln!("warning: {m}"))?;
            println!("{}", paths.vgg.display());
            println!("{}", paths.decoder.display());
        }
        Action::Add { files } => {
            let dir = store::adain_dir(&Origin::Local);
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let name = f.display().to_string();
                let map = TensorMap::from_bytes(&bytes, &name, &candle::Device::Cpu)?;
                let Some(role) = store::identify_adain(&map) else {
                    bail!("{name}: neither the AdaIN encoder (vgg_normalised) nor its decoder");
                };
                let (path, warnings) = store::store_adain_part(&dir, role, &bytes, &name)?;
                warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                eprintln!("{name} → {} ({role})", path.display());
            }
            if store::cached_adain(&Origin::Local).is_none() {
                eprintln!(
                    "note: add the other AdaIN part too (encoder and decoder are both needed)"
                );
            }
        }
        Action::List => {
            let root = store::root();
            let mut any = false;
            for dir in walk_dirs(&root.join("adain")) {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|r| {
                        r.filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.is_file())
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                for f in files {
                    let bytes =
                        std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                    println!(
                        "{}\t{}\t{}\tsafetensors",
                        f.display(),
                        human(bytes.len() as u64),
                        sha256_hex(&bytes)
                    );
                    any = true;
                }
            }
            if !any {
                eprintln!(
                    "no stored weights under {} (magenta is embedded)",
                    root.display()
                );
            }
        }
        Action::Verify => {
            let root = store::root();
            let mut bad = 0;
            let mut n = 0;
            for dir in walk_dirs(&root.join("adain")) {
                for (role, name) in store::ADAIN_PARTS {
                    let f = dir.join(format!("{name}.safetensors"));
                    if !f.is_file() {
                        continue;
                    }
                    n += 1;
                    let ok = TensorMap::load(&f, &candle::Device::Cpu)
                        .map_err(|e| e.to_string())
                        .and_then(|m| match store::identify_adain(&m) {
                            Some(r) if r == role => Ok(()),
                            _ => Err(format!("not a valid AdaIN {role}")),
                        });
                    match ok {
                        Ok(()) => println!("ok\t{}", f.display()),
                        Err(e) => {
                            bad += 1;
                            println!("FAILED\t{}\t{e}", f.display());
                        }
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of {n} stored files failed verification");
            }
            eprintln!("{n} stored files verified");
        }
        Action::Path { model, repo } => {
            check_model(&model)?;
            let origin = match repo.spec()? {
                Some(r) => Origin::Hub(r),
                None => Origin::Local,
            };
            println!("{}", store::adain_dir(&origin).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every folder under `root` that directly holds files (the store is two or three levels deep).
fn walk_dirs(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut has_file = false;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                has_file = true;
            }
        }
        if has_file {
            out.push(d);
        }
    }
    out.sort();
    out
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
