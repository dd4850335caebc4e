//! Node → model: a recorded history of a real run (see `shoal::recorder`) held to the model's
//! invariants, knowing only what clients saw.
//!
//! Writes are named by their values (a workload writes each value once). What a write
//! *supersedes* is learned from observation, as the context it carried reveals it: a context
//! was handed out by a read (or a put's reply), and it covers the values that read returned
//! and, transitively, what those values superseded. A node only lets a write drop a value its
//! context covers, and a client only gets a context from an answer, so this is exactly what
//! the node may drop. The checks (the model's properties, `model/src/properties.rs`):
//!
//! - **no acknowledged write is lost**: every acknowledged put is live at the end, or a write
//!   that may have taken effect superseded it (and is itself live, a delete, or superseded
//!   in turn);
//! - **no superseded or deleted value comes back**: at the end no replica holds live a value
//!   that a write known to have taken effect superseded;
//! - **siblings only for concurrent writes**: no read returns two values one of which
//!   superseded the other;
//! - **replicas converge**: at the end every primary of every key holds the same values and
//!   context (a forgotten delete and a values-free history count as the same).
//!
//! Reads that return a value superseded by a write acknowledged before the read began are
//! counted as *stale reads* and reported: with sloppy quorum or `R + W <= N` Dynamo allows them.

use serde::Deserialize;
use shoal::recorder::{Entry, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Why a history could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a history entry.
    #[error("{path}:{line}: not a history entry: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// Two writes wrote the same value: writes could not be told apart.
    #[error("the value {0:?} was written twice; the checker needs unique values")]
    DuplicateValue(String),
}

/// What kind of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read.
    Get,
    /// A write of a value.
    Put,
    /// A delete.
    Delete,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The node's outcome (`found`, `stored`, `unavailable`, ...).
    pub outcome: String,
    /// Values read.
    pub values: BTreeSet<String>,
    /// Context returned.
    pub context: Option<String>,
    /// When.
    pub at_us: u64,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The serving node.
    pub node: u64,
    /// What it was.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The value written (puts).
    pub value: Option<String>,
    /// The context sent.
    pub context: Option<String>,
    /// When it was invoked.
    pub invoked_us: u64,
    /// How it ended; `None`: the node died first (indeterminate).
    pub completed: Option<Completion>,
}

impl Op {
    fn outcome(&self) -> Option<&str> {
        self.completed.as_ref().map(|c| c.outcome.as_str())
    }

    /// Whether the write certainly took effect.
    fn acknowledged(&self) -> bool {
        self.outcome() == Some("stored")
    }

    /// Whether the write may have taken effect (acknowledged, or no clear refusal).
    fn possibly_applied(&self) -> bool {
        !matches!(
            self.outcome(),
            Some("stale") | Some("invalid") | Some("too_large") | Some("found")
        )
    }
}

/// The operations of a run, from every node's history file.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// In invocation order.
    pub ops: Vec<Op>,
}

impl History {
    /// Reads and pairs the entries of `files`.
    pub fn load(files: &[impl AsRef<Path>]) -> Result<History, HistoryError> {
        let mut open: HashMap<(u64, u64, u64), Op> = HashMap::new();
        let mut done = Vec::new();
        for file in files {
            let path = file.as_ref().display().to_string();
            let text = std::fs::read_to_string(file).map_err(|source| HistoryError::Read {
                path: path.clone(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                // A kill -9 may cut the last line.
                if line.trim().is_empty()
                    || (i + 1 == text.lines().count() && !text.ends_with('\n'))
                {
                    continue;
                }
                let entry: Entry = serde_json::from_str(line).map_err(|e| HistoryError::Parse {
                    path: path.clone(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
                let id = (entry.node, entry.boot, entry.id);
                match entry.event {
                    Event::Invoke {
                        op,
                        key,
                        value,
                        context,
                    } => {
                        let kind = match op.as_str() {
                            "get" => Kind::Get,
                            "delete" => Kind::Delete,
                            _ => Kind::Put,
                        };
                        open.insert(
                            id,
                            Op {
                                node: entry.node,
                                kind,
                                key,
                                value,
                                context,
                                invoked_us: entry.at_us,
                                completed: None,
                            },
                        );
                    }
                    Event::Complete {
                        outcome,
                        values,
                        context,
                        ..
                    } => {
                        if let Some(mut op) = open.remove(&id) {
                            op.completed = Some(Completion {
                                outcome,
                                values: values.into_iter().collect(),
                                context,
                                at_us: entry.at_us,
                            });
                            done.push(op);
                        }
                    }
                }
            }
        }
        done.extend(open.into_values());
        done.sort_by_key(|o| o.invoked_us);
        let mut seen = BTreeSet::new();
        for op in &done {
            if let (Kind::Put, Some(v)) = (op.kind, &op.value) {
                if !seen.insert(v.clone()) {
                    return Err(HistoryError::DuplicateValue(v.clone()));
                }
            }
        }
        Ok(History { ops: done })
    }
}

/// One replica's own durable view of a key at the end (`GET /admin/local/{key}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct LocalView {
    /// Its history, as a context.
    pub context: Option<String>,
    /// Its live values, as the recorder writes values.
    pub values: BTreeSet<String>,
}

/// The end state: per key, each primary's view (`None`: it holds nothing of the key).
pub type FinalState = BTreeMap<String, Vec<(u64, Option<LocalView>)>>;

/// What a history showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations.
    pub ops: usize,
    /// Writes (puts and deletes) acknowledged.
    pub acknowledged: usize,
    /// Writes with no clear outcome.
    pub indeterminate: usize,
    /// Reads that returned a value superseded by a write acknowledged before they began.
    pub stale_reads: usize,
    /// Writes whose context no recorded answer had handed out (their supersessions are
    /// unknown; they justify nothing).
    pub unknown_contexts: usize,
    /// Keys checked at the end.
    pub keys: usize,
}

/// A set of writes, by index: histories have thousands of writes, each superseding many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn union(&mut self, other: &Bits) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}

/// What the observation says each write and each context covers.
struct Knowledge<'a> {
    /// Writes of values, by value, with their index.
    index: HashMap<&'a str, usize>,
    /// Values each handed-out context covers directly (what the answer returned).
    context_values: HashMap<&'a str, Vec<usize>>,
    /// Per write of a value (by index): every write its context covered.
    sup: Vec<Bits>,
}

impl<'a> Knowledge<'a> {
    fn new(history: &'a History) -> Self {
        let mut index = HashMap::new();
        let mut puts = Vec::new();
        for op in &history.ops {
            if let (Kind::Put, Some(v)) = (op.kind, &op.value) {
                index.insert(v.as_str(), puts.len());
                puts.push(op);
            }
        }
        let mut context_values: HashMap<&str, Vec<usize>> = HashMap::new();
        for op in &history.ops {
            let Some(c) = &op.completed else { continue };
            let Some(ctx) = &c.context else { continue };
            let returned: Vec<&str> = match op.kind {
                Kind::Get => c.values.iter().map(String::as_str).collect(),
                // A put's answer covers its value unless the node had to answer with the
                // request's own context (the new value has siblings the writer never saw).
                Kind::Put if op.context.as_ref() != Some(ctx) => {
                    op.value.as_deref().into_iter().collect()
                }
                Kind::Put | Kind::Delete => Vec::new(),
            };
            let covered = context_values.entry(ctx.as_str()).or_default();
            covered.extend(returned.into_iter().filter_map(|v| index.get(v).copied()));
        }
        let mut know = Knowledge {
            index,
            context_values,
            sup: Vec::with_capacity(puts.len()),
        };
        // In invocation order: what a write's context covers was written before it.
        for (i, op) in puts.iter().enumerate() {
            let mut covered = know.covers(op.context.as_deref()).unwrap_or_default();
            // A value never supersedes itself (a context from a later answer cannot be used).
            if covered.contains(i) {
                covered.0[i / 64] &= !(1 << (i % 64));
            }
            know.sup.push(covered);
        }
        know
    }

    /// Every write a context covers: what its answer returned, and what those superseded
    /// (as far as known yet); `None` if no recorded answer handed it out.
    fn covers(&self, context: Option<&str>) -> Option<Bits> {
        let direct = self.context_values.get(context?)?;
        let mut all = Bits::default();
        for &i in direct {
            all.insert(i);
            if let Some(s) = self.sup.get(i) {
                all.union(s);
            }
        }
        Some(all)
    }

    /// Whether the write of `v` superseded the write of `a`.
    fn superseded(&self, v: &str, a: &str) -> bool {
        match (self.index.get(v), self.index.get(a)) {
            (Some(&v), Some(&a)) => self.sup.get(v).is_some_and(|s| s.contains(a)),
            _ => false,
        }
    }
}

/// Checks `history` and the end state `end` against the invariants; every broken one is
/// described in the error.
pub fn check(history: &History, end: &FinalState) -> Result<Report, Vec<String>> {
    let know = Knowledge::new(history);
    let mut violations = Vec::new();
    let mut report = Report {
        ops: history.ops.len(),
        keys: end.len(),
        ..Report::default()
    };
    let writes: Vec<&Op> = history.ops.iter().filter(|o| o.kind != Kind::Get).collect();
    for w in &writes {
        if w.acknowledged() {
            report.acknowledged += 1;
        } else if w.possibly_applied() {
            report.indeterminate += 1;
        }
        if w.context.is_some() && know.covers(w.context.as_deref()).is_none() {
            report.unknown_contexts += 1;
        }
    }
    // What each write that may have taken effect covered.
    let superseders: Vec<(&Op, Bits)> = writes
        .iter()
        .filter(|w| w.possibly_applied())
        .map(|w| (*w, know.covers(w.context.as_deref()).unwrap_or_default()))
        .collect();
    let observed: BTreeSet<&str> = history
        .ops
        .iter()
        .filter_map(|o| o.completed.as_ref())
        .flat_map(|c| c.values.iter().map(String::as_str))
        .collect();
    // Certainly took effect: acknowledged, or seen by a read.
    let certain =
        |op: &Op| op.acknowledged() || op.value.as_deref().is_some_and(|v| observed.contains(v));
    // No acknowledged write lost: a write is accounted for if it is live at the end, or a
    // later write that may have taken effect covered it and is accounted for (or deletes).
    // Later writes first, so each one's answer is known when an earlier one asks.
    let n = know.sup.len();
    let mut accounted = vec![false; n];
    let mut order: Vec<(usize, &Op)> = writes
        .iter()
        .filter_map(|w| Some((*know.index.get(w.value.as_deref()?)?, *w)))
        .collect();
    order.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (i, w) in &order {
        let live = end
            .get(&w.key)
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_ref())
            .any(|v| w.value.as_ref().is_some_and(|x| v.values.contains(x)));
        accounted[*i] = live
            || superseders.iter().any(|(s, covered)| {
                s.key == w.key
                    && covered.contains(*i)
                    && match s.value.as_deref().and_then(|v| know.index.get(v)) {
                        Some(&j) => j != *i && accounted[j],
                        None => s.kind == Kind::Delete,
                    }
            });
        if w.acknowledged() && !accounted[*i] {
            violations.push(format!(
                "acknowledged write {:?} of key {} (via node {}) is lost: no replica holds it and no write that took effect superseded it",
                w.value.as_deref().unwrap_or_default(),
                w.key,
                w.node
            ));
        }
    }
    // Nothing superseded or deleted is live on any replica at the end.
    for (op, covered) in &superseders {
        if !certain(op) {
            continue;
        }
        for (node, view) in end.get(&op.key).into_iter().flatten() {
            let Some(view) = view else { continue };
            for v in &view.values {
                let Some(&i) = know.index.get(v.as_str()) else {
                    continue;
                };
                if covered.contains(i) && Some(v.as_str()) != op.value.as_deref() {
                    let what = if op.kind == Kind::Delete {
                        "deleted"
                    } else {
                        "superseded"
                    };
                    violations.push(format!(
                        "{what} value {v:?} of key {} is live on node {node} at the end",
                        op.key
                    ));
                }
            }
        }
    }
    // Siblings only for concurrent writes, and stale reads.
    for r in history.ops.iter().filter(|o| o.kind == Kind::Get) {
        let Some(c) = &r.completed else { continue };
        for a in &c.values {
            for b in &c.values {
                if a != b && know.superseded(b, a) {
                    violations.push(format!(
                        "a read of {} through node {} returned {a:?} and {b:?} as siblings, but {b:?} was written over {a:?}",
                        r.key, r.node
                    ));
                }
            }
            let Some(&ai) = know.index.get(a.as_str()) else {
                continue;
            };
            let superseded_before = superseders.iter().any(|(w, cov)| {
                w.key == r.key
                    && w.acknowledged()
                    && w.completed.as_ref().is_some_and(|d| d.at_us < r.invoked_us)
                    && cov.contains(ai)
            });
            report.stale_reads += usize::from(superseded_before);
        }
    }
    // Replicas converged.
    for (key, views) in end {
        let norm: Vec<(u64, LocalView)> = views
            .iter()
            .map(|(n, v)| {
                let v = v.clone().unwrap_or_default();
                // A history without values and no record read the same.
                let v = if v.values.is_empty() {
                    LocalView::default()
                } else {
                    v
                };
                (*n, v)
            })
            .collect();
        if let Some(w) = norm.windows(2).find(|w| w[0].1 != w[1].1) {
            violations.push(format!(
                "key {key} did not converge: node {} holds {:?}, node {} holds {:?}",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    if violations.is_empty() {
        Ok(report)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, key: &str, value: Option<&str>, ctx: Option<&str>, at: u64) -> Op {
        Op {
            node: 1,
            kind,
            key: key.into(),
            value: value.map(str::to_owned),
            context: ctx.map(str::to_owned),
            invoked_us: at,
            completed: None,
        }
    }

    fn done(mut o: Op, outcome: &str, values: &[&str], ctx: Option<&str>, at: u64) -> Op {
        o.completed = Some(Completion {
            outcome: outcome.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            context: ctx.map(str::to_owned),
            at_us: at,
        });
        o
    }

    fn view(values: &[&str], ctx: &str) -> Option<LocalView> {
        Some(LocalView {
            context: Some(ctx.into()),
            values: values.iter().map(|v| v.to_string()).collect(),
        })
    }

    /// a, then a read of a (context C1), then b written over it with C1.
    fn rmw() -> History {
        History {
            ops: vec![
                done(
                    op(Kind::Put, "k", Some("a"), None, 1),
                    "stored",
                    &[],
                    Some("P1"),
                    2,
                ),
                done(
                    op(Kind::Get, "k", None, None, 3),
                    "found",
                    &["a"],
                    Some("C1"),
                    4,
                ),
                done(
                    op(Kind::Put, "k", Some("b"), Some("C1"), 5),
                    "stored",
                    &[],
                    Some("P2"),
                    6,
                ),
            ],
        }
    }

    #[test]
    fn a_clean_read_modify_write_passes() {
        let end: FinalState = [(
            "k".to_string(),
            vec![(1, view(&["b"], "X")), (2, view(&["b"], "X"))],
        )]
        .into();
        let report = check(&rmw(), &end).expect("clean");
        assert_eq!(report.acknowledged, 2);
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        // b is gone and nothing superseded it.
        let end: FinalState = [("k".to_string(), vec![(1, view(&[], "X"))])].into();
        let err = check(&rmw(), &end).expect_err("lost");
        assert!(
            err.iter()
                .any(|e| e.contains("\"b\"") && e.contains("lost")),
            "{err:?}"
        );
    }

    #[test]
    fn a_superseded_value_live_at_the_end_is_found() {
        let end: FinalState = [(
            "k".to_string(),
            vec![(1, view(&["a", "b"], "X")), (2, view(&["a", "b"], "X"))],
        )]
        .into();
        let err = check(&rmw(), &end).expect_err("came back");
        assert!(
            err.iter().any(|e| e.contains("superseded value \"a\"")),
            "{err:?}"
        );
    }

    #[test]
    fn siblings_one_of_which_superseded_the_other_are_found() {
        let mut h = rmw();
        h.ops.push(done(
            op(Kind::Get, "k", None, None, 7),
            "found",
            &["a", "b"],
            Some("C2"),
            8,
        ));
        let end: FinalState = [("k".to_string(), vec![(1, view(&["b"], "X"))])].into();
        let err = check(&h, &end).expect_err("siblings");
        assert!(err.iter().any(|e| e.contains("as siblings")), "{err:?}");
    }

    #[test]
    fn replicas_that_differ_at_the_end_are_found() {
        let end: FinalState = [(
            "k".to_string(),
            vec![(1, view(&["b"], "X")), (2, view(&["b"], "Y"))],
        )]
        .into();
        let err = check(&rmw(), &end).expect_err("diverged");
        assert!(
            err.iter().any(|e| e.contains("did not converge")),
            "{err:?}"
        );
    }

    #[test]
    fn a_delete_accounts_for_what_it_covered() {
        let mut h = rmw();
        h.ops.push(done(
            op(Kind::Get, "k", None, None, 7),
            "found",
            &["b"],
            Some("C2"),
            8,
        ));
        h.ops.push(done(
            op(Kind::Delete, "k", None, Some("C2"), 9),
            "stored",
            &[],
            Some("D"),
            10,
        ));
        let end: FinalState = [("k".to_string(), vec![(1, None), (2, view(&[], "D"))])].into();
        check(&h, &end).expect("deleted, converged");
        // The deleted value live again is caught.
        let end: FinalState = [("k".to_string(), vec![(1, view(&["b"], "Z"))])].into();
        let err = check(&h, &end).expect_err("came back");
        assert!(
            err.iter().any(|e| e.contains("deleted value \"b\"")),
            "{err:?}"
        );
    }
}
