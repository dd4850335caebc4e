//! Storage for cores driven by a harness: an in-memory store for volume, and the node's real
//! fjall store in a temporary directory.
//!
//! A harness holds each node's writes itself until it decides they are durable (so a crash can
//! lose the ones it has not completed), then applies them in order with [`TestStore::apply`].

use bytes::Bytes;
use shoal::{Clock, NodeId, Storage, Store, StoreError, Write};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A store a harness can write to directly.
pub trait TestStore: Store + Clone {
    /// Makes `writes` durable, in order.
    fn apply(&self, writes: Vec<Write>);
    /// Every key's clock (storage key → clock), for checking invariants.
    fn all(&self) -> Vec<(Vec<u8>, Clock)>;
    /// Every hint (owner, storage key) → clock.
    fn all_hints(&self) -> Vec<((NodeId, Vec<u8>), Clock)>;
    /// Forgets everything (a wiped disk).
    fn wipe(&self);
}

/// Hints by owner and storage key.
type Hints = BTreeMap<(NodeId, Vec<u8>), Clock>;

/// In-memory durable storage, shared between a core and its harness.
#[derive(Clone, Default)]
pub struct MemStore {
    data: Rc<RefCell<BTreeMap<Vec<u8>, Clock>>>,
    hints: Rc<RefCell<Hints>>,
}

impl Store for MemStore {
    fn load(&self, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        Ok(self.data.borrow().get(key).cloned())
    }

    fn load_hint(&self, owner: NodeId, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        Ok(self.hints.borrow().get(&(owner, key.to_vec())).cloned())
    }

    fn hints(&self) -> Result<Vec<(NodeId, Vec<u8>)>, StoreError> {
        Ok(self.hints.borrow().keys().cloned().collect())
    }

    fn scan(&self, partition: u32) -> Result<Vec<(Bytes, Clock)>, StoreError> {
        let prefix = (partition as u16).to_be_bytes();
        Ok(self
            .data
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, c)| {
                (
                    Bytes::copy_from_slice(k.get(2..).unwrap_or_default()),
                    c.clone(),
                )
            })
            .collect())
    }
}

impl TestStore for MemStore {
    fn apply(&self, writes: Vec<Write>) {
        for write in writes {
            match write {
                Write::Clock { key, clock } => {
                    self.data.borrow_mut().insert(key, clock);
                }
                Write::Hint { owner, key, clock } => {
                    self.hints.borrow_mut().insert((owner, key), clock);
                }
                Write::DropHint { owner, key } => {
                    self.hints.borrow_mut().remove(&(owner, key));
                }
                Write::DropClock { key } => {
                    self.data.borrow_mut().remove(&key);
                }
                Write::EpochLease(_) => {}
            }
        }
    }

    fn all(&self) -> Vec<(Vec<u8>, Clock)> {
        self.data
            .borrow()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    fn all_hints(&self) -> Vec<((NodeId, Vec<u8>), Clock)> {
        self.hints
            .borrow()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    fn wipe(&self) {
        self.data.borrow_mut().clear();
        self.hints.borrow_mut().clear();
    }
}

/// The node's real fjall storage in a temporary directory.
#[derive(Clone)]
pub struct FjallStore {
    storage: Storage,
    /// Keeps the directory alive as long as a clone of the store is.
    _dir: Rc<tempfile::TempDir>,
    /// The partitions the harness's ring has (to list every key).
    partitions: u32,
}

impl FjallStore {
    /// A new, empty store in a fresh temporary directory.
    pub fn new(partitions: u32) -> FjallStore {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let storage =
            Storage::open(dir.path()).unwrap_or_else(|e| panic!("open fjall in a temp dir: {e}"));
        FjallStore {
            storage,
            _dir: Rc::new(dir),
            partitions,
        }
    }
}

impl Store for FjallStore {
    fn load(&self, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        self.storage.load(key)
    }

    fn load_hint(&self, owner: NodeId, key: &[u8]) -> Result<Option<Clock>, StoreError> {
        self.storage.load_hint(owner, key)
    }

    fn hints(&self) -> Result<Vec<(NodeId, Vec<u8>)>, StoreError> {
        self.storage.hints()
    }

    fn scan(&self, partition: u32) -> Result<Vec<(Bytes, Clock)>, StoreError> {
        self.storage.scan(partition)
    }
}

impl TestStore for FjallStore {
    fn apply(&self, writes: Vec<Write>) {
        // Buffered: the harness decides what is durable; an fsync per step would only slow it.
        if let Err(e) = self.storage.commit_buffered(writes) {
            panic!("fjall commit failed: {e}");
        }
    }

    fn all(&self) -> Vec<(Vec<u8>, Clock)> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            for (key, clock) in self.storage.scan(p).unwrap_or_default() {
                out.push((shoal::storage_key(p, &key), clock));
            }
        }
        out
    }

    fn all_hints(&self) -> Vec<((NodeId, Vec<u8>), Clock)> {
        self.storage
            .hints()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(owner, key)| {
                let clock = self.storage.load_hint(owner, &key).ok().flatten()?;
                Some(((owner, key), clock))
            })
            .collect()
    }

    fn wipe(&self) {
        let keys: Vec<Vec<u8>> = self.all().into_iter().map(|(k, _)| k).collect();
        let hints: Vec<(NodeId, Vec<u8>)> = self.storage.hints().unwrap_or_default();
        let mut writes = Vec::new();
        for key in keys {
            writes.push(Write::DropClock { key });
        }
        for (owner, key) in hints {
            writes.push(Write::DropHint { owner, key });
        }
        self.apply(writes);
    }
}
