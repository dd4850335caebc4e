//! The `shoal` command line: one module per subcommand.

pub mod ring_cmd;
