//! Durable storage in fjall: one keyspace per concern, and a group-commit writer.
//!
//! Keyspaces: `data` (a key's clock under [`crate::core::storage_key`], so a partition is one
//! range) and `meta` (the node's identity and the partition count). Writes go to one
//! writer thread that takes everything queued, commits it as one fjall batch, persists the
//! journal once (`fdatasync` in the default mode) and only then reports the writes durable —
//! so many concurrent writes share one fsync and none is acknowledged early. A failed commit
//! is fatal: the process exits and recovers from the journal rather than continue on an
//! unknown disk state (fjall poisons the database for the same reason).

use crate::config::Durability;
use crate::core::{PersistId, Store, StoreError, Write};
use crate::driver::fatal;
use crate::ids::NodeId;
use crate::protocol::Clock;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::mpsc;

/// Why storage could not be opened or its metadata used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// fjall refused to open or create the database.
    #[error("cannot open the database in {path}: {source}")]
    Open {
        /// The data directory.
        path: String,
        /// The cause.
        source: fjall::Error,
    },
    /// The storage engine failed.
    #[error("storage: {0}")]
    Engine(#[from] fjall::Error),
    /// A metadata record has the wrong size: refuse to guess (an identity, a partition count).
    #[error("metadata record {0:?} is corrupt; refusing to start with a guessed value")]
    Corrupt(String),
    /// The identity file beside the data directory could not be written.
    #[error("cannot write the identity file {path}: {source}")]
    IdentityFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The node's fjall database and its keyspaces.
#[derive(Clone)]
pub struct Storage {
    db: Database,
    data: Keyspace,
    /// Hints held for other nodes: the owner's id (8 bytes, big-endian), then the storage key.
    hints: Keyspace,
    /// The node's identity and the partition count.
    meta: Keyspace,
}

/// One write for the group-commit thread.
pub struct WriteJob {
    /// Completion token for the core.
    pub id: PersistId,
    /// What to write.
    pub write: Write,
}

/// The partition count the data was written with.
const PARTITIONS_KEY: &[u8] = b"partitions";

/// The epoch lease: no epoch at or beyond it was used (see [`crate::core`]'s actors).
pub(crate) const EPOCH_LEASE_KEY: &[u8] = b"epoch_lease";

/// Most writes committed in one batch.
const MAX_BATCH: usize = 4096;

impl Storage {
    /// Opens (or creates) the database under `dir`, with fjall's default memtable size.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        Storage::open_with(dir, crate::config::defaults::MEMTABLE_BYTES)
    }

    /// Opens (or creates) the database under `dir`; the clocks' memtables hold at most
    /// `memtable_bytes` each, which bounds the engine's write buffers in bytes.
    pub fn open_with(dir: &Path, memtable_bytes: u64) -> Result<Storage, StorageError> {
        let err = |source| StorageError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = Database::builder(dir).open().map_err(err)?;
        let data = db
            .keyspace("data", || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes)
            })
            .map_err(err)?;
        let hints = db
            .keyspace("hints", KeyspaceCreateOptions::default)
            .map_err(err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(err)?;
        Ok(Storage {
            db,
            data,
            hints,
            meta,
        })
    }

    /// A metadata record.
    pub(crate) fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a metadata record (durable only after [`Storage::persist_all`]).
    pub(crate) fn meta_insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        Ok(self.meta.insert(key, value)?)
    }

    /// A metadata record holding one big-endian `u64`.
    pub(crate) fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.meta_get(key)? {
            None => Ok(None),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| StorageError::Corrupt(String::from_utf8_lossy(key).into_owned())),
        }
    }

    /// Records the partition count `q` on first start and returns the one recorded before if
    /// it differs: `Q` is fixed at cluster creation, since it decides where every key's clock
    /// is stored (and a node that could not find its clocks could reissue its dots).
    pub fn check_partitions(&self, q: u32) -> Result<Option<u32>, StorageError> {
        match self.meta.get(PARTITIONS_KEY)? {
            Some(bytes) => {
                let stored = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt("partitions".into()))?;
                Ok((stored != q).then_some(stored))
            }
            None => {
                self.meta.insert(PARTITIONS_KEY, q.to_be_bytes())?;
                self.db.persist(PersistMode::SyncAll)?;
                Ok(None)
            }
        }
    }

    /// Bytes on disk, for metrics.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Number of keys stored (approximate), for metrics.
    pub fn approximate_keys(&self) -> usize {
        self.data.approximate_len()
    }

    /// Starts the group-commit thread; `done` is called with each committed batch's ids after
    /// the batch is durable per `durability`, and how long the commit took.
    pub fn spawn_writer(
        &self,
        durability: Durability,
        done: impl Fn(Vec<PersistId>, std::time::Duration) + Send + 'static,
    ) -> mpsc::Sender<WriteJob> {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let storage = self.clone();
        let mode = match durability {
            Durability::Sync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        };
        let spawned = std::thread::Builder::new()
            .name("shoal-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let ids: Vec<PersistId> = jobs.iter().map(|j| j.id).collect();
                    let started = std::time::Instant::now();
                    if let Err(e) = storage.commit(jobs.into_iter().map(|j| j.write), mode) {
                        fatal(&format!("commit failed: {e}"));
                    }
                    done(ids, started.elapsed());
                }
            });
        if let Err(e) = spawned {
            fatal(&format!("cannot start the writer thread: {e}"));
        }
        tx
    }

    /// Commits `writes` as one batch, durable per `mode` when this returns (the writer
    /// thread's step).
    fn commit(
        &self,
        writes: impl IntoIterator<Item = Write>,
        mode: PersistMode,
    ) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(mode));
        for write in writes {
            match write {
                Write::Clock { key, clock } => batch.insert(&self.data, key, clock.encode()),
                Write::EpochLease(lease) => {
                    batch.insert(&self.meta, EPOCH_LEASE_KEY, lease.to_be_bytes())
                }
                Write::Hint { owner, key, clock } => {
                    batch.insert(&self.hints, hint_key(owner, &key), clock.encode())
                }
                Write::DropHint { owner, key } => batch.remove(&self.hints, hint_key(owner, &key)),
                Write::DropClock { key } => batch.remove(&self.data, key),
            }
        }
        Ok(batch.commit()?)
    }

    /// Commits `writes` durably (fdatasync), synchronously: for harnesses that drive a core
    /// without the writer thread.
    pub fn commit_sync(&self, writes: impl IntoIterator<Item = Write>) -> Result<(), StorageError> {
        self.commit(writes, PersistMode::SyncData)
    }

    /// Commits `writes` to the operating system's buffers only (no fsync): for harnesses
    /// that decide themselves what a crash loses.
    pub fn commit_buffered(
        &self,
        writes: impl IntoIterator<Item = Write>,
    ) -> Result<(), StorageError> {
        self.commit(writes, PersistMode::Buffer)
    }

    /// Flushes everything to disk (on shutdown).
    pub fn persist_all(&self) -> Result<(), StorageError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}

/// The key of a hint held for `owner` under storage key `key`.
fn hint_key(owner: NodeId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&owner.0.to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn load_from(keyspace: &Keyspace, key: &[u8]) -> Result<Option<Clock>, StoreError> {
    match keyspace.get(key) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => Ok(Some(Clock::decode(&bytes)?)),
        Err(e) => Err(StoreError::Engine(Box::new(e))),
    }
}

impl Store for Storage {
    fn load(&self, storage_key: &[u8]) -> Result<Option<Clock>, StoreError> {
        load_from(&self.data, storage_key)
    }

    fn load_hint(&self, owner: NodeId, storage_key: &[u8]) -> Result<Option<Clock>, StoreError> {
        load_from(&self.hints, &hint_key(owner, storage_key))
    }

    fn scan(&self, partition: u32) -> Result<Vec<(bytes::Bytes, Clock)>, StoreError> {
        let prefix = (partition as u16).to_be_bytes();
        let mut out = Vec::new();
        for guard in self.data.prefix(prefix) {
            let (key, value) = guard
                .into_inner()
                .map_err(|e| StoreError::Engine(Box::new(e)))?;
            let user_key = bytes::Bytes::copy_from_slice(key.get(2..).unwrap_or_default());
            out.push((user_key, Clock::decode(&value)?));
        }
        Ok(out)
    }

    fn hints(&self) -> Result<Vec<(NodeId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.hints.iter() {
            let key = guard.key().map_err(|e| StoreError::Engine(Box::new(e)))?;
            let Some((owner, skey)) = key.split_first_chunk::<8>() else {
                continue;
            };
            out.push((NodeId(u64::from_be_bytes(*owner)), skey.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_count_is_fixed_at_the_first_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Storage::open(dir.path()).expect("open");
        assert_eq!(s.check_partitions(64).expect("first"), None);
        assert_eq!(s.check_partitions(64).expect("same"), None);
        assert_eq!(s.check_partitions(128).expect("changed"), Some(64));
    }

    #[test]
    fn the_writer_reports_writes_only_after_they_are_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Storage::open(dir.path()).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = s.spawn_writer(Durability::Sync, move |ids, _| {
            let _ = tx.send(ids);
        });
        let clock = Clock::new(crate::value::Value::Tombstone);
        for i in 0..100u64 {
            let job = WriteJob {
                id: PersistId(i),
                write: Write::Clock {
                    key: i.to_be_bytes().to_vec(),
                    clock: clock.clone(),
                },
            };
            writer.send(job).expect("send");
        }
        let mut done = Vec::new();
        while done.len() < 100 {
            let ids = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("durable");
            for id in &ids {
                assert_eq!(
                    s.load(&id.0.to_be_bytes()).expect("load"),
                    Some(clock.clone())
                );
            }
            done.extend(ids);
        }
        done.sort();
        assert_eq!(done, (0..100).map(PersistId).collect::<Vec<_>>());
    }
}
