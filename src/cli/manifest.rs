//! `normstyle manifest check`: are the outputs that manifests record present and unchanged?

use std::path::PathBuf;
use std::process::ExitCode;

use normstyle::pipeline::manifest;

/// Arguments of `normstyle manifest`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  normstyle manifest check out/manifest.jsonl
  normstyle manifest check shard-*.jsonl      (the manifests of every shard)")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Verify that every recorded output exists and has its recorded sha256; list what is
    /// missing or modified (exit 1 if anything is).
    Check {
        /// Manifest files (JSON lines from `stylize --manifest`).
        #[arg(required = true, value_hint = clap::ValueHint::FilePath)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Action::Check { files } = args.action;
    let report = manifest::check(&files)?;
    for p in &report.missing {
        println!("missing\t{p}");
    }
    for p in &report.modified {
        println!("modified\t{p}");
    }
    for l in &report.bad_lines {
        println!("bad line\t{l}");
    }
    let (missing, modified) = (report.missing.len(), report.modified.len());
    eprintln!("{} ok, {missing} missing, {modified} modified", report.ok);
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
