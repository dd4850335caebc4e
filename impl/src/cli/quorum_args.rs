//! Replication flags shared by `shoal serve` and `shoal dev`.

/// `-n`, `-r`, `-w`: replicas per key and the default quorums.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct QuorumArgs {
    /// Replicas per key N (serve: the file's; dev: min(3, nodes)).
    #[arg(short = 'n', long)]
    pub replicas: Option<usize>,
    /// Default read quorum R (serve: the file's; dev: a majority of N).
    #[arg(short = 'r', long)]
    pub read_quorum: Option<usize>,
    /// Default write quorum W (serve: the file's; dev: a majority of N).
    #[arg(short = 'w', long)]
    pub write_quorum: Option<usize>,
}
