//! Outcome counts for both targets: with `FUZZ_STATS` set, how often each outcome was reached,
//! printed every `every` runs and at exit, so a run shows which paths it exercised.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

static RUNS: AtomicU64 = AtomicU64::new(0);
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var_os("FUZZ_STATS").is_some();
        if on {
            unsafe extern "C" {
                fn atexit(callback: extern "C" fn()) -> i32;
            }
            extern "C" fn at_exit() {
                print("at exit");
            }
            // SAFETY: registers a plain function with the C runtime, once.
            unsafe { atexit(at_exit) };
        }
        on
    })
}

/// One run that came to `outcomes`; prints the counts every `every` runs.
pub fn count(outcomes: &[&str], every: u64) {
    let runs = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    if !on() {
        return;
    }
    let mut counts = COUNTS.lock().unwrap();
    for outcome in outcomes {
        *counts.entry((*outcome).to_owned()).or_default() += 1;
    }
    drop(counts);
    if runs.is_multiple_of(every) {
        print("so far");
    }
}

fn print(when: &str) {
    let runs = RUNS.load(Ordering::Relaxed);
    let mut text = format!("fuzz stats {when}: {runs} runs\n");
    for (outcome, n) in COUNTS.lock().unwrap().iter() {
        text.push_str(&format!("  {n:>10}  {outcome}\n"));
    }
    eprint!("{text}");
}
