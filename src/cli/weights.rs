//! `normstyle weights`: download, import, list, verify and locate model weights.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use normstyle::weights::hub::HubConfig;
use normstyle::weights::sha256_hex;
use normstyle::weights::store::{self, Origin};

use super::RepoArgs;

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
    let parts = normstyle::model::adain::layouts();
    match args.action {
        Action::Pull { model, repo, quiet } => {
            check_model(&model)?;
            let Some(spec) = repo.spec()? else {
                bail!("--hf-repo: say which repository holds vgg_normalised.pth and decoder.pth (no official one exists)");
            };
            let mut hub = HubConfig::from_env();
            hub.progress = !quiet;
            let paths =
                store::resolve_adain(Some(&spec), &hub, &parts, &|m| eprintln!("warning: {m}"))?;
            println!("{}\n{}", paths.vgg.display(), paths.decoder.display());
        }
        Action::Add { files } => {
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let name = f.display().to_string();
                let (role, path, warnings) = store::add_local(&bytes, &name, &parts)?;
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
            let files = store::stored_files();
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let size = human(bytes.len() as u64);
                println!(
                    "{}\t{size}\t{}\tsafetensors",
                    f.display(),
                    sha256_hex(&bytes)
                );
            }
            if files.is_empty() {
                eprintln!(
                    "no stored weights under {} (magenta is embedded)",
                    store::root().display()
                );
            }
        }
        Action::Verify => {
            let results = store::verify(&parts);
            for (f, problem) in &results {
                match problem {
                    None => println!("ok\t{}", f.display()),
                    Some(e) => println!("FAILED\t{}\t{e}", f.display()),
                }
            }
            let bad = results.iter().filter(|(_, p)| p.is_some()).count();
            if bad > 0 {
                bail!(
                    "{bad} of {} stored files failed verification",
                    results.len()
                );
            }
            eprintln!("{} stored files verified", results.len());
        }
        Action::Path { model, repo } => {
            check_model(&model)?;
            let origin = repo.spec()?.map_or(Origin::Local, Origin::Hub);
            println!("{}", store::adain_dir(&origin).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
