//! The larger configurations, pinned like the CI ones but too slow for CI.
//! Run with `cargo nextest run -p shoal-model --release --run-ignored only`.

use shoal_model::check::check;
use shoal_model::config::named;

fn pinned(name: &str, unique: usize, generated: usize) {
    let cfg = named(name).expect("named configuration");
    let report = check(&cfg, 1);
    for o in &report.outcomes {
        assert!(o.ok, "{name}: property {:?} failed", o.name);
    }
    assert_eq!((report.unique, report.generated), (unique, generated));
}

#[test]
#[ignore = "about a minute in release; run by hand"]
fn lossy_rmw() {
    pinned("lossy-rmw", 1_814_932, 13_824_501);
}
