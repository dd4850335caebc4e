//! The driver: the task that runs the protocol core, after quinn's `ConnectionDriver`.
//!
//! One loop, three named steps. [`Driver::dispatch`] feeds the core one input (taking what is
//! already queued in one go, so effects go out in batches); [`Driver::execute`] carries out
//! every effect the core produced, in order — a message that depends on a write was queued
//! only after the write was reported durable, so order is all it needs; and
//! [`Driver::release_drains`] answers clean-shutdown requests once every write they wait for
//! is durable. [`fatal`] is the node's one exit path for a state it must not continue in.

use crate::core::{ClientId, Core, Effect, PersistId};
use crate::node::Input;
use crate::protocol::ClientReply;
use crate::storage::{Storage, WriteJob};
use crate::transport::{Event, Transport};
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Inputs taken from the queue before effects are executed.
const BATCH: usize = 256;

/// Exit status of a node that stopped on an unrecoverable error (EX_SOFTWARE).
const EXIT_FATAL: i32 = 70;

/// Stops the process: the node is in a state it must not continue in (a failed commit, a dead
/// writer or core). It recovers on restart from its journal, as fjall's `Poisoned` asks.
pub fn fatal(reason: &str) -> ! {
    tracing::error!(reason, "fatal error; exiting to recover on restart");
    std::process::exit(EXIT_FATAL)
}

/// Runs the core: inputs in, effects out.
pub struct Driver {
    core: Core<Storage>,
    inputs: mpsc::Receiver<Input>,
    persisted: mpsc::UnboundedReceiver<Vec<PersistId>>,
    transport: Transport,
    writer: std::sync::mpsc::Sender<WriteJob>,
    /// Client requests waiting for their answer.
    clients: HashMap<ClientId, oneshot::Sender<ClientReply>>,
    next_client: u64,
    /// Clean-shutdown requests, each with the mark it waits for.
    drains: Vec<(u64, oneshot::Sender<()>)>,
    /// The core's time zero.
    epoch: Instant,
}

impl Driver {
    /// A driver for `core`, reading `inputs`, sending through `transport` and writing
    /// through `writer`.
    pub fn new(
        core: Core<Storage>,
        inputs: mpsc::Receiver<Input>,
        persisted: mpsc::UnboundedReceiver<Vec<PersistId>>,
        transport: Transport,
        writer: std::sync::mpsc::Sender<WriteJob>,
    ) -> Self {
        Driver {
            core,
            inputs,
            persisted,
            transport,
            writer,
            clients: HashMap::new(),
            next_client: 0,
            drains: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// The loop: wait for an input or the core's next deadline, dispatch, execute, release.
    /// Returns when every input sender is gone.
    pub async fn run(mut self) {
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(|t| tokio::time::Instant::from_std(self.epoch + t));
            // While too much waits for the disk, take nothing but durability reports.
            let saturated = self.core.saturated();
            let input = tokio::select! {
                biased;
                ids = self.persisted.recv() => {
                    let now = self.epoch.elapsed();
                    if let Some(ids) = ids {
                        self.core.handle_persisted(now, ids);
                    }
                    while let Ok(ids) = self.persisted.try_recv() {
                        self.core.handle_persisted(now, ids);
                    }
                    None
                }
                input = self.inputs.recv(), if !saturated => match input {
                    Some(i) => Some(i),
                    None => return,
                },
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => None,
            };
            let now = self.epoch.elapsed();
            if let Some(first) = input {
                let mut next = Some(first);
                let mut taken = 0;
                while let Some(input) = next {
                    self.dispatch(now, input);
                    taken += 1;
                    next = if taken < BATCH {
                        self.inputs.try_recv().ok()
                    } else {
                        None
                    };
                }
            }
            self.core.handle_timeout(now);
            while let Some(effect) = self.core.poll_effect() {
                self.execute(effect);
            }
            self.release_drains();
        }
    }

    /// Feeds one input to the core.
    fn dispatch(&mut self, now: std::time::Duration, input: Input) {
        match input {
            Input::Client { op, reply } => {
                self.next_client += 1;
                let id = ClientId(self.next_client);
                self.clients.insert(id, reply);
                self.core.handle_client(now, id, op);
            }
            Input::Peer {
                from,
                msg,
                permit,
                expires,
            } => {
                if Instant::now() > expires {
                    self.transport.count_expired();
                } else {
                    self.core.handle_peer(now, from, msg);
                }
                drop(permit);
            }
            Input::Link(Event::Up { peer, boot }) => {
                self.core.handle_link(now, peer, true, Some(boot))
            }
            Input::Link(Event::Down { peer }) => self.core.handle_link(now, peer, false, None),
            Input::Stats(tx) => {
                let _ = tx.send((self.core.stats(), self.core.peer_health()));
            }
            Input::Drain(tx) => {
                let mark = self.core.set_draining(true);
                self.drains.push((mark, tx));
            }
        }
    }

    /// Carries out one effect.
    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, msg } => {
                if let Err(e) = self.transport.send(to, msg) {
                    // The peer's buffer is full: it is unreachable or not keeping up. Tell the
                    // failure detector now rather than let requests wait for their deadline.
                    tracing::debug!(peer = %to, error = %e, "cannot send");
                    let now = self.epoch.elapsed();
                    self.core.handle_unreachable(now, to);
                }
            }
            Effect::Reply { client, reply } => {
                if let Some(tx) = self.clients.remove(&client) {
                    let _ = tx.send(reply);
                }
            }
            Effect::Persist { id, write } => {
                if self.writer.send(WriteJob { id, write }).is_err() {
                    fatal("the storage writer stopped");
                }
            }
        }
    }

    /// Answers every drain whose writes are all durable.
    fn release_drains(&mut self) {
        if self.drains.is_empty() {
            return;
        }
        let core = &self.core;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.drains)
            .into_iter()
            .partition(|(mark, _)| core.durable_up_to(*mark));
        self.drains = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }
}
