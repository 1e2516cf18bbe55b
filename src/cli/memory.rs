//! The binary's allocator policy (mimalloc, `main.rs`): freed memory stays committed for reuse,
//! except in runs on large images, where what it cannot reuse would raise the peak.

use std::sync::atomic::{AtomicBool, Ordering};

use normstyle::pipeline::Family;

/// mimalloc's `purge_delay` option: its index in `mi_option_t` in mimalloc 2.x and 3.x (the
/// locked libmimalloc-sys 0.1.49 builds 3.3.2, where it defaults to 1000 ms).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Above this many pixels in an AdaIN content, freed memory goes back to the OS after
/// [`LARGE_RUN_DELAY_MS`]. (Magenta holds less: a 4096×3072 run peaks at 1.47 GiB with freed
/// memory kept, 1.3 GiB without, far under the 3 GiB bound.)
pub const LARGE_PIXELS: u64 = 2048 * 2048;

/// The purge delay of large runs. A 4096×3072 AdaIN run (tiled, 2 threads; ~2.0 GiB live at
/// its peak) with freed memory kept committed: 40–42 s, peak 2.91–3.06 GiB (freed blocks of
/// other sizes are not reused); after 1000 ms (mimalloc's default): 43–46 s, 2.3–2.9 GiB,
/// depending on what was freed in the last second; after 100 ms: 47–48 s, 2.10 GiB.
const LARGE_RUN_DELAY_MS: std::ffi::c_long = 100;

/// Whether [`keep_freed_memory`] set the delay (and so [`fit_to`] may change it).
static MANAGED: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn mi_version() -> std::ffi::c_int;
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Freed activation buffers stay committed for the next layer instead of being returned to the
/// OS and faulted in (and zeroed by the kernel) again: page faults per AdaIN 512² run 18 000 →
/// 600, 3 % faster at 2 threads, the same peak. `MIMALLOC_PURGE_DELAY` in the environment
/// still wins.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain option calls of the linked allocator, made only for the major versions
    // whose option table we know, and only on a value that is a delay.
    unsafe {
        let known = (20_000..40_000).contains(&mi_version());
        if known && mi_option_get(MI_OPTION_PURGE_DELAY) > 0 {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
            MANAGED.store(true, Ordering::Relaxed);
        }
    }
}

/// Sets the policy for a run of `family` whose largest content has `pixels` (None: not known
/// in advance, as for a folder at its original sizes): AdaIN above [`LARGE_PIXELS`] returns
/// freed memory to the OS after [`LARGE_RUN_DELAY_MS`]. One way: a run that may meet a large
/// image stays so.
pub fn fit_to(family: Family, pixels: Option<u64>) {
    let large = pixels.is_none_or(|p| p > LARGE_PIXELS);
    if MANAGED.load(Ordering::Relaxed) && family == Family::Adain && large {
        // SAFETY: as in `keep_freed_memory`, which set MANAGED only for a known version.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, LARGE_RUN_DELAY_MS) };
    }
}
