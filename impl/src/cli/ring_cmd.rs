//! `shoal ring`: print an assignment and its balance, or the balance table for the docs.

use shoal::NodeId;
use shoal::{NodeSpec, Ring};
use std::fmt::Write as _;

/// Arguments of `shoal ring`.
#[derive(clap::Args, Debug)]
pub struct RingArgs {
    /// Number of nodes (ids 1..=nodes).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Partition count Q (a power of two).
    #[arg(long, short = 'q', default_value_t = 256)]
    pub partitions: u32,
    /// Replicas per key N.
    #[arg(long, short = 'n', default_value_t = 3)]
    pub replicas: usize,
    /// Zones, assigned to nodes round-robin (e.g. `a,b,c`).
    #[arg(long, value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Weights, one per node in id order (missing weights are 1).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<u32>,
    /// Also show what a join of one more node would move.
    #[arg(long)]
    pub then_join: bool,
    /// Print the load-balance table for S = 3..=30 nodes instead (the docs' table).
    #[arg(long)]
    pub table: bool,
}

/// Runs `shoal ring` and returns what it prints.
pub fn run(args: &RingArgs) -> anyhow::Result<String> {
    if args.table {
        return balance_table(args.partitions, args.replicas);
    }
    let specs: Vec<NodeSpec> = (1..=args.nodes)
        .enumerate()
        .map(|(i, id)| {
            let mut n = NodeSpec::new(id).with_weight(args.weights.get(i).copied().unwrap_or(1));
            if !args.zones.is_empty() {
                if let Some(z) = args.zones.get(i % args.zones.len()) {
                    n = n.in_zone(z.clone());
                }
            }
            n
        })
        .collect();
    let ring = Ring::new(args.partitions, specs)?;
    let mut out = describe(&ring, args.replicas);
    if args.then_join {
        let new_id = NodeId(args.nodes + 1);
        let after = ring.with_node(NodeSpec::new(new_id))?;
        let moved = ring
            .owners()
            .iter()
            .zip(after.owners())
            .filter(|(a, b)| a != b)
            .count();
        writeln!(
            out,
            "\njoining {new_id} moves {moved} of {} partitions (its fair share: {:.1})\n",
            ring.partitions(),
            f64::from(ring.partitions()) / (args.nodes + 1) as f64
        )?;
        out.push_str(&describe(&after, args.replicas));
    }
    Ok(out)
}

/// A human-readable dump of a ring: per-node load and the owner of every partition.
pub fn describe(ring: &Ring, n: usize) -> String {
    let b = ring.balance(n);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring v{}: Q={} partitions, {} nodes, N={n}",
        ring.version(),
        ring.partitions(),
        ring.nodes().len()
    );
    let _ = writeln!(
        out,
        "{:<6} {:<6} {:>6} {:>6} {:>8} {:>9}",
        "node", "zone", "weight", "owned", "fair", "replicas"
    );
    for (spec, load) in ring.nodes().iter().zip(&b.nodes) {
        let _ = writeln!(
            out,
            "{:<6} {:<6} {:>6} {:>6} {:>8.1} {:>9}",
            spec.id.to_string(),
            spec.zone.as_deref().unwrap_or("-"),
            spec.weight,
            load.owned,
            load.fair_share,
            load.replicas
        );
    }
    let _ = writeln!(
        out,
        "load balance (mean/max): ownership {:.3}, replicas {:.3}",
        b.ownership_efficiency, b.replica_efficiency
    );
    let _ = writeln!(out, "owners by partition:");
    for (row, chunk) in ring.owners().chunks(16).enumerate() {
        let cells: Vec<String> = chunk
            .iter()
            .map(|id| format!("{:>4}", id.to_string()))
            .collect();
        let _ = writeln!(out, "  {:>5}: {}", row * 16, cells.join(""));
    }
    out
}

/// The Figure 8 measure for S = 3..=30 equal nodes at `q` partitions.
pub fn balance_table(q: u32, n: usize) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "| S | ownership mean/max | replica load mean/max (N={n}) |"
    )?;
    writeln!(out, "|---|---|---|")?;
    for s in 3..=30u64 {
        let ring = Ring::new(q, (1..=s).map(NodeSpec::new).collect())?;
        let b = ring.balance(n);
        writeln!(
            out,
            "| {s} | {:.3} | {:.3} |",
            b.ownership_efficiency, b.replica_efficiency
        )?;
    }
    Ok(out)
}
