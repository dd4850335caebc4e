//! shoal-lazyfs: a FUSE filesystem that loses un-synced data at a simulated power cut.
//!
//! Tests that `kill -9` a process cannot tell whether it fsynced before acknowledging: the
//! kernel's page cache outlives the process and hands the data back on restart. Mounted
//! over a backing directory, this filesystem keeps every file's written data in its own
//! memory until the file is fsynced, and on a *power cut* (requested through the control
//! socket) throws away everything not yet synced — what a machine losing power would lose
//! if the kernel had never written anything back on its own. Metadata (names, directories,
//! renames) is applied at once and survives, as if journaled. The idea is LazyFS's
//! (Ramos et al., dsrhaslab/lazyfs); this is a small independent implementation in Rust.
//!
//! - [`overlay`]: the un-synced state of one file (pure logic, unit-tested without FUSE);
//! - [`fs`]: the passthrough filesystem and its power switch;
//! - [`control`]: the control socket (`status`, `cut`, `on`, `sync`).

pub mod control;
pub mod fs;
pub mod overlay;
