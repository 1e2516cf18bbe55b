//! Command-line interface: clap definitions, one module per subcommand.

mod batch;
mod bench;
mod compare;
mod convert;
mod engine;
mod import_magenta;
mod norms;
mod presets;
mod stylize;
mod weights;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Neural style transfer with swappable normalization (IN, BN, LN, GN).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Paint content photos in the style of a painting (or a built-in preset).
    Stylize(Box<stylize::Args>),
    /// Stylize photos with each normalization variant side by side: a labeled grid and numbers.
    Compare(Box<compare::Args>),
    /// Render the 26 built-in styles on one photo as a labeled contact sheet.
    Presets(presets::Args),
    /// Time a model on random inputs (for the side-by-side benchmark scripts).
    Bench(bench::Args),
    /// Show what each normalization normalizes over, or run one on a random tensor.
    Norms(norms::Args),
    /// Download, import, list, verify and locate model weights.
    Weights(weights::Args),
    /// Convert a checkpoint (PyTorch legacy or zip .pth, safetensors) to safetensors.
    Convert(convert::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "Examples:
  normstyle completions bash > ~/.local/share/bash-completion/completions/normstyle
  normstyle completions zsh > ~/.zfunc/_normstyle
  normstyle completions fish > ~/.config/fish/completions/normstyle.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Convert the Magenta ONNX files (int8 dequantized) to float32 safetensors.
    ImportMagenta(import_magenta::Args),
}

/// Runs a parsed command line. Errors carry their context chain; `main` prints them.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Stylize(args) => stylize::run(*args),
        Command::Convert(args) => convert::run(args),
        Command::Weights(args) => weights::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "normstyle", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Norms(args) => norms::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Presets(args) => presets::run(args),
        Command::Compare(args) => compare::run(*args),
        Command::ImportMagenta(args) => import_magenta::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
