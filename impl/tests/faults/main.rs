//! Proven under real faults: clusters of real `shoal serve` processes, and faults a test can
//! inflict on processes and networks — `kill -9`, `SIGSTOP`, a network partition between
//! network namespaces — with what must hold through them. One scenario per module:
//!
//! - [`handoff`]: two of five nodes down, every write acknowledged (sloppy quorum), and the
//!   hints reach the nodes when they return;
//! - [`restart`]: a restarted node's first requests succeed;
//! - [`pause`]: a paused node stalls no one, and catches up once resumed;
//! - [`partition`]: a partition refuses minority writes without sloppy quorum, accepts them
//!   with it, and the two sides converge once healed;
//! - [`kill_mid_stream`]: a node killed while clients write loses no acknowledged write;
//! - [`set_workload`]: read-modify-write clients under rolling crashes lose no acknowledged
//!   element, and the replicas converge without reads;
//! - [`wiped_node`]: a node that lost its disk is refilled by anti-entropy alone.
//!
//! Each scenario is bounded in time, prints its seed (`SHOAL_FAULTS_SEED=N` replays the choices
//! it draws; the machine's interleaving stays the machine's) and cleans up every process and
//! namespace it made, also when it fails. `SHOAL_FAULTS_LONG=1` runs longer variants (more
//! keys, rounds and time). `docs/AVAILABILITY.md` has the figures these faults give.

#[path = "../common/mod.rs"]
mod common;

mod handoff;
mod kill_mid_stream;
mod partition;
mod pause;
mod restart;
mod set_workload;
mod wiped_node;
