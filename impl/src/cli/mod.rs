//! The `shoal` command line: one module per subcommand.

pub mod baseline;
pub mod bench;
pub mod client_cmd;
pub mod dev;
pub mod quorum_args;
pub mod ring_cmd;
pub mod serve;
