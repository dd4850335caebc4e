//! Durable storage in fjall: one keyspace per concern, and a group-commit writer.
//!
//! Keyspaces: `data` (a key's clock under [`crate::core::storage_key`], so a partition is one
//! range), `hints` (for hinted handoff) and `meta` (ring and node metadata). Writes go to one
//! writer thread that takes everything queued, commits it as one fjall batch, persists the
//! journal once (`fdatasync` in the default mode) and only then reports the writes durable —
//! so many concurrent writes share one fsync and none is acknowledged early. A failed commit
//! is fatal: the process exits and recovers from the journal rather than continue on an
//! unknown disk state (fjall poisons the database for the same reason).

use crate::config::Durability;
use crate::core::{PersistId, Store, StoreError};
use crate::protocol::Clock;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::mpsc;

/// Why storage could not be opened.
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
}

/// The node's fjall database and its keyspaces.
#[derive(Clone)]
pub struct Storage {
    db: Database,
    data: Keyspace,
    /// Reserved for hinted handoff.
    pub hints: Keyspace,
    /// Ring and node metadata.
    pub meta: Keyspace,
}

/// One write for the group-commit thread.
pub struct WriteJob {
    /// Completion token for the core.
    pub id: PersistId,
    /// Storage key.
    pub key: Vec<u8>,
    /// Encoded clock.
    pub value: Vec<u8>,
}

/// Key of the incarnation epoch in the `meta` keyspace.
const EPOCH_KEY: &[u8] = b"epoch";

/// Most writes committed in one batch.
const MAX_BATCH: usize = 4096;

impl Storage {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        let err = |source| StorageError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = Database::builder(dir).open().map_err(err)?;
        let data = db
            .keyspace("data", KeyspaceCreateOptions::default)
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

    /// Bumps and durably stores this node's incarnation epoch, returning the new one. Called
    /// once per start, before the node serves: writes of this incarnation are named by it.
    pub fn next_epoch(&self) -> Result<u32, fjall::Error> {
        let previous = match self.meta.get(EPOCH_KEY)? {
            Some(bytes) => <[u8; 4]>::try_from(bytes.as_ref())
                .map(u32::from_be_bytes)
                .unwrap_or(0),
            None => 0,
        };
        let epoch = previous.wrapping_add(1).max(1);
        self.meta.insert(EPOCH_KEY, epoch.to_be_bytes())?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(epoch)
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
    /// the batch is durable per `durability`.
    pub fn spawn_writer(
        &self,
        durability: Durability,
        done: impl Fn(Vec<PersistId>) + Send + 'static,
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
                    let mut batch = storage.db.batch().durability(Some(mode));
                    let mut ids = Vec::with_capacity(jobs.len());
                    for j in jobs {
                        batch.insert(&storage.data, j.key, j.value);
                        ids.push(j.id);
                    }
                    if let Err(e) = batch.commit() {
                        tracing::error!(error = %e, "commit failed; exiting to recover from the journal");
                        std::process::exit(70);
                    }
                    done(ids);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the writer thread");
            std::process::exit(70);
        }
        tx
    }

    /// Flushes everything to disk (on shutdown).
    pub fn persist_all(&self) -> Result<(), fjall::Error> {
        self.db.persist(PersistMode::SyncAll)
    }
}

impl Store for Storage {
    fn load(&self, storage_key: &[u8]) -> Result<Option<Clock>, StoreError> {
        match self.data.get(storage_key) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => Clock::decode(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            Err(e) => Err(StoreError::Io(e.to_string())),
        }
    }
}
