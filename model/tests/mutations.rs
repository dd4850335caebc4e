//! Each mechanism the model relies on, broken on purpose or switched off, makes a property
//! fail: the properties have teeth. Each check stops once the expected property fails.

use shoal_model::check::check_until;
use shoal_model::config::{named, Config, Op};
use shoal_model::msg::Msg;
use shoal_model::mutation::Mutation;
use shoal_model::trace::Event;

fn mutated(name: &str, m: Mutation) -> Config {
    let mut cfg = named(name).expect("named configuration");
    cfg.settings.mutation = Some(m);
    cfg
}

fn fails(cfg: &Config, property: &'static str) {
    let report = check_until(cfg, 1, property);
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| !o.ok && o.trace.is_some())
        .map(|o| o.name)
        .collect();
    assert!(
        failed.contains(&property),
        "{}: expected {property:?} to fail, failed: {failed:?}",
        cfg.name
    );
}

#[test]
fn acknowledging_before_w_breaks_read_your_writes() {
    let cfg = mutated("quorum", Mutation::AckBeforeW);
    fails(&cfg, "a get sees every put acknowledged before it");
}

#[test]
fn reading_fewer_than_r_breaks_read_your_writes() {
    let cfg = mutated("quorum", Mutation::ReadBelowR);
    fails(&cfg, "a get sees every put acknowledged before it");
}

#[test]
fn not_saving_before_acknowledging_loses_writes_on_a_crash() {
    let cfg = mutated("crash", Mutation::VolatileStore);
    fails(&cfg, "no acknowledged write is lost");
}

#[test]
fn dropping_hints_on_recovery_leaves_replicas_diverged() {
    let cfg = mutated("sloppy", Mutation::DropHintsOnRecovery);
    fails(&cfg, "quiescent states are converged");
}

#[test]
fn counting_duplicate_acks_breaks_the_write_quorum() {
    let mut cfg = mutated("duplicating", Mutation::CountDuplicateAcks);
    cfg.settings.ring.n = 3;
    cfg.settings.w = 3;
    cfg.settings.coordinators = 2;
    cfg.scripts = vec![vec![Op::Blind(0)], vec![Op::Get(0)]];
    fails(&cfg, "a get sees every put acknowledged before it");
}

#[test]
fn overwriting_instead_of_merging_leaves_replicas_diverged() {
    let cfg = mutated("siblings", Mutation::OverwriteOnReplicate);
    fails(&cfg, "quiescent states are converged");
}

#[test]
fn reaping_the_causal_context_lets_deleted_values_come_back() {
    let cfg = mutated("reap", Mutation::ReapForgetsContext);
    fails(&cfg, "no superseded or deleted value comes back");
}

#[test]
fn replying_with_the_whole_context_covers_unseen_siblings() {
    let cfg = mutated("siblings", Mutation::ReplyWholeContext);
    fails(
        &cfg,
        "a put's context never covers a value the client did not see",
    );
}

#[test]
fn without_anti_entropy_a_lost_replicate_leaves_replicas_diverged() {
    let mut cfg = named("entropy-loss").expect("named configuration");
    cfg.settings.anti_entropy = false;
    fails(&cfg, "quiescent states are converged");
    let report = check_until(&cfg, 1, "replicas converge");
    let lost = report
        .outcome("replicas converge")
        .and_then(|o| o.trace.as_ref())
        .is_some_and(|t| {
            t.steps.iter().any(
                |s| matches!(&s.event, Event::Drop(e) if matches!(e.msg, Msg::Replicate { .. })),
            )
        });
    assert!(lost, "the counterexample loses a Replicate");
}

#[test]
fn forgetting_after_one_round_lets_a_forgotten_write_come_back() {
    let cfg = mutated("forget", Mutation::ForgetAfterOneRound);
    fails(&cfg, "no forgotten write comes back");
}

#[test]
fn anti_entropy_pushing_a_bare_history_spreads_a_forgotten_one_again() {
    let cfg = mutated("forget", Mutation::SyncRespreadsHistory);
    fails(&cfg, "a forgotten history is not spread again");
}

#[test]
fn keeping_the_identity_after_a_wipe_or_restore_reuses_dots() {
    let cfg = mutated("restore", Mutation::RestoreKeepsIdentity);
    fails(&cfg, "no dot names two writes");
}
