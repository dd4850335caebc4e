//! The seeded simulation in CI: 2,000 seeds of a 4-node cluster (N = 3, R = W = 2, sloppy
//! quorum, anti-entropy) under message loss, duplication, reordering, crashes that lose
//! unsynced writes, and restarts; every step checked against the model's invariants, and
//! convergence once the faults stop. `SHOAL_SIM_SEEDS` changes the count; a failure prints the
//! seed and the one command that reproduces it.

use shoal_conformance::sim::{Sim, SimConfig};
use std::time::Instant;

fn seeds() -> u64 {
    std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// Runs half of the seeds (nextest runs the halves in parallel).
fn half(which: u64) {
    let total = seeds();
    let (from, to) = if which == 0 {
        (0, total / 2)
    } else {
        (total / 2, total)
    };
    let started = Instant::now();
    let mut acked = 0;
    let mut crashes = 0;
    for seed in from..to {
        match Sim::new(seed, SimConfig::default()).run() {
            Ok(r) => {
                acked += r.acked;
                crashes += r.crashes;
            }
            Err(v) => panic!("{v}"),
        }
    }
    println!(
        "simulation: seeds {from}..{to}: 0 violations, {acked} writes acknowledged, {crashes} crashes, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        acked > (to - from) as usize,
        "the workload acknowledged too little to mean much"
    );
}

/// Runs built to exercise forgetting deleted keys (frequent deletes, the shortest safe grace,
/// expiring messages): no forgotten value comes back, and every deleted key is forgotten once
/// the faults stop. `SHOAL_SIM_FORGET_SEEDS` changes the count (default 500).
#[test]
fn forgetting_seeds() {
    let total: u64 = std::env::var("SHOAL_SIM_FORGET_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let started = Instant::now();
    let (mut forgotten, mut expired) = (0, 0);
    for seed in 0..total {
        match Sim::new(seed, SimConfig::forgetting()).run() {
            Ok(r) => {
                forgotten += r.forgotten;
                expired += r.expired;
            }
            Err(v) => panic!("{v}"),
        }
    }
    println!(
        "simulation (forgetting): {total} seeds: 0 violations, {forgotten} histories forgotten, {expired} messages expired, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        forgotten as u64 > total / 4,
        "too few keys were forgotten to mean much"
    );
}

#[test]
fn seeds_first_half() {
    half(0);
}

#[test]
fn seeds_second_half() {
    half(1);
}
