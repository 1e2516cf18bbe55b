//! `--profile`: where the time of a call goes, per stage, printed on stderr at the end.
//!
//! Stages are timed with [`scope`] guards; when profiling is off a guard costs one relaxed
//! atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<Vec<(&'static str, Duration, usize)>> = Mutex::new(Vec::new());

/// Turns profiling on for the process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Times `stage` until the guard is dropped.
pub fn scope(stage: &'static str) -> Scope {
    Scope {
        stage,
        start: ENABLED.load(Ordering::Relaxed).then(Instant::now),
    }
}

/// A running stage timer.
pub struct Scope {
    stage: &'static str,
    start: Option<Instant>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(start) = self.start else { return };
        let d = start.elapsed();
        if let Ok(mut t) = TIMES.lock() {
            match t.iter_mut().find(|(s, _, _)| *s == self.stage) {
                Some(e) => {
                    e.1 += d;
                    e.2 += 1;
                }
                None => t.push((self.stage, d, 1)),
            }
        }
    }
}

/// The stages in first-use order: name, total seconds, calls. Empty when profiling is off.
pub fn report() -> String {
    let Ok(t) = TIMES.lock() else {
        return String::new();
    };
    let width = t
        .iter()
        .map(|(s, _, _)| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(22);
    let mut out = String::new();
    for (stage, d, n) in t.iter() {
        out += &format!("{stage:<width$} {:>9.3} s  ({n}×)\n", d.as_secs_f64());
    }
    out
}
