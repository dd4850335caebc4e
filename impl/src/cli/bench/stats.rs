//! What a run observed: per-operation HDR histograms and counts, merged across workers, and
//! the two reports (a table for people, JSON for scripts).

use super::BenchArgs;
use anyhow::Context as _;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency and counts for one kind of operation.
#[derive(Clone)]
pub(super) struct OpStats {
    /// Operations attempted.
    pub(super) count: u64,
    /// Of which failed (a transport error, a timeout or an unexpected status).
    pub(super) errors: u64,
    /// Latency of successful operations, in microseconds.
    pub(super) hist: Histogram<u64>,
}

impl OpStats {
    /// An empty record; the histogram spans 1 µs to an hour at 3 significant digits.
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(OpStats {
            count: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("creating a latency histogram")?,
        })
    }

    /// Adds another worker's record to this one.
    pub(super) fn merge(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.count += other.count;
        self.errors += other.errors;
        self.hist
            .add(&other.hist)
            .context("merging latency histograms")
    }

    /// The numbers that are printed, in microseconds.
    pub(super) fn summary(&self) -> serde_json::Value {
        let h = &self.hist;
        serde_json::json!({
            "count": self.count,
            "errors": self.errors,
            "p50_us": h.value_at_quantile(0.50),
            "p99_us": h.value_at_quantile(0.99),
            "p999_us": h.value_at_quantile(0.999),
            "max_us": h.max(),
            "mean_us": (h.mean() * 10.0).round() / 10.0,
        })
    }
}

/// Everything one worker (and, merged, the whole run) observed.
#[derive(Clone)]
pub(super) struct Stats {
    /// GET latencies and counts.
    pub(super) get: OpStats,
    /// PUT latencies and counts.
    pub(super) put: OpStats,
    /// Failures by kind: `status 503`, `timeout`, `connect: ConnectionRefused`, ...
    pub(super) errors: BTreeMap<String, u64>,
    /// GETs answered `200`.
    pub(super) found: u64,
    /// GETs answered `404`.
    pub(super) not_found: u64,
    /// GETs answered `300` (siblings).
    pub(super) sibling_answers: u64,
    /// Sum of the sibling counts of those answers.
    pub(super) siblings_total: u64,
    /// Most siblings seen in one answer.
    pub(super) siblings_max: u64,
}

impl Stats {
    /// An empty record.
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            get: OpStats::new()?,
            put: OpStats::new()?,
            errors: BTreeMap::new(),
            found: 0,
            not_found: 0,
            sibling_answers: 0,
            siblings_total: 0,
            siblings_max: 0,
        })
    }

    /// Adds another worker's record to this one.
    pub(super) fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        self.get.merge(&other.get)?;
        self.put.merge(&other.put)?;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.found += other.found;
        self.not_found += other.not_found;
        self.sibling_answers += other.sibling_answers;
        self.siblings_total += other.siblings_total;
        self.siblings_max = self.siblings_max.max(other.siblings_max);
        Ok(())
    }
}

/// The run as one JSON object (what `--json` prints).
pub(super) fn report_json(
    args: &BenchArgs,
    nodes: &[String],
    seed: u64,
    elapsed: Duration,
    cpu: Option<Duration>,
    s: &Stats,
) -> serde_json::Value {
    let ops = s.get.count + s.put.count;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut get = s.get.summary();
    if let Some(obj) = get.as_object_mut() {
        obj.insert("found".into(), s.found.into());
        obj.insert("not_found".into(), s.not_found.into());
        obj.insert("sibling_answers".into(), s.sibling_answers.into());
    }
    serde_json::json!({
        "seed": seed,
        "nodes": nodes,
        "concurrency": args.concurrency,
        "value_size": args.value_size,
        "keys": args.keys,
        "read_ratio": args.read_ratio,
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "ops": ops,
        "throughput_ops_s": (ops as f64 / secs * 10.0).round() / 10.0,
        "errors": s.get.errors + s.put.errors,
        "errors_by_kind": s.errors,
        "get": get,
        "put": s.put.summary(),
        "siblings_seen": s.siblings_total,
        "siblings_max": s.siblings_max,
        "generator_cpu_s": cpu.map(|c| c.as_secs_f64()),
        "generator_cores": cpu.map(|c| (c.as_secs_f64() / secs * 100.0).round() / 100.0),
    })
}

/// The run as a short table for people.
pub(super) fn report_text(elapsed: Duration, cpu: Option<Duration>, s: &Stats) -> String {
    use std::fmt::Write as _;
    let ops = s.get.count + s.put.count;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let errors = s.get.errors + s.put.errors;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{ops} ops in {secs:.2} s: {:.0} ops/s, {errors} errors",
        ops as f64 / secs
    );
    let _ = writeln!(
        out,
        "{:<4} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "op", "count", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, o) in [("get", &s.get), ("put", &s.put)] {
        let h = &o.hist;
        let _ = writeln!(
            out,
            "{name:<4} {:>10} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            o.count,
            o.errors,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        );
    }
    let _ = writeln!(
        out,
        "gets: {} found, {} not found, {} with siblings ({} siblings seen, at most {} at once)",
        s.found, s.not_found, s.sibling_answers, s.siblings_total, s.siblings_max
    );
    for (kind, n) in &s.errors {
        let _ = writeln!(out, "error {kind}: {n}");
    }
    if let Some(cpu) = cpu {
        let _ = writeln!(
            out,
            "generator CPU: {:.2} s ({:.2} cores)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs
        );
    }
    out
}
