//! Every CI configuration passes every property, with its state counts pinned: a change to
//! the model that changes the explored space shows here. Counts are single-threaded (DFS with
//! symmetry reduction; the reduction is not canonical, so a multi-threaded order can differ).

use shoal_model::check::check;
use shoal_model::config::named;

fn pinned(name: &str, unique: usize, generated: usize) {
    let cfg = named(name).expect("named configuration");
    let report = check(&cfg, 1);
    for o in &report.outcomes {
        assert!(o.ok, "{name}: property {:?} failed", o.name);
    }
    assert_eq!(
        (report.unique, report.generated),
        (unique, generated),
        "{name}: (unique, generated) states"
    );
}

#[test]
fn quorum() {
    pinned("quorum", 2141, 5497);
}

#[test]
fn three() {
    pinned("three", 195215, 793861);
}

#[test]
fn siblings() {
    pinned("siblings", 21511, 75461);
}

#[test]
fn duplicating() {
    pinned("duplicating", 14916, 75993);
}

#[test]
fn lossy() {
    pinned("lossy", 69634, 407941);
}

#[test]
fn crash() {
    pinned("crash", 194763, 681113);
}

#[test]
fn chaos() {
    pinned("chaos", 646439, 4699545);
}

#[test]
fn sloppy() {
    pinned("sloppy", 178291, 776275);
}

#[test]
fn repair() {
    pinned("repair", 9434, 32171);
}

#[test]
fn reap() {
    pinned("reap", 101078, 260824);
}

#[test]
fn entropy() {
    pinned("entropy", 37193, 151620);
}

#[test]
fn entropy_loss() {
    pinned("entropy-loss", 1073, 3242);
}

#[test]
fn forward() {
    pinned("forward", 15890, 38746);
}

#[test]
fn every_ci_configuration_is_pinned_here() {
    let names: Vec<String> = shoal_model::config::ci()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let pinned = [
        "classic",
        "quorum",
        "three",
        "siblings",
        "duplicating",
        "lossy",
        "crash",
        "chaos",
        "sloppy",
        "repair",
        "reap",
        "entropy",
        "entropy-loss",
        "forward",
    ];
    assert_eq!(names, pinned);
}

#[test]
fn restore() {
    pinned("restore", 55391, 115789);
}

#[test]
fn forget() {
    pinned("forget", 471261, 3087685);
}
