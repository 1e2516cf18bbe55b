//! The `normstyle` command line: parse, run, print errors as one line with their full chain.

#[cfg(feature = "accelerate")]
extern crate accelerate_src;
#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

use std::process::ExitCode;

/// mimalloc keeps freed activation buffers for reuse: with the system allocator every layer's
/// output is a fresh mmap whose pages fault in one by one (~300 000 faults per 512² AdaIN run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

mod cli;

/// mimalloc's `purge_delay` option: its index in `mi_option_t` in mimalloc 2.x and 3.x (the
/// locked libmimalloc-sys 0.1.49 builds 3.3.2, where it defaults to 1000 ms).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_version() -> std::ffi::c_int;
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Freed activation buffers stay committed for the next layer instead of being returned to the
/// OS and faulted in (and zeroed by the kernel) again: page faults per AdaIN 512² run 16 000 →
/// 600, a 2-thread Magenta 1024² run 7 % faster; the peak is unchanged (BENCHMARKS.md).
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain option calls of the linked allocator, made only for the major versions
    // whose option table we know, and only on a value that is a delay.
    unsafe {
        let known = (20_000..40_000).contains(&mi_version());
        if known && mi_option_get(MI_OPTION_PURGE_DELAY) > 0 {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
