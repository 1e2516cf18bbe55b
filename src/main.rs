//! The `normstyle` command line: parse, run, print errors as one line with their full chain.

use std::process::ExitCode;

/// mimalloc keeps freed activation buffers for reuse: with the system allocator every layer's
/// output is a fresh mmap whose pages fault in one by one (~300 000 faults per 512² AdaIN run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    cli::memory::keep_freed_memory();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (e.g. `| head`) is not an error worth reporting.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", cli::report(&e));
            ExitCode::FAILURE
        }
    }
}
