//! The node's identity: whose history its data directory holds, decided once per start.
//!
//! A node issues its dots under actors `(identity, epoch)` (see the core's `actors`). Keeping
//! the identity across restarts keeps version vectors from growing per crash, and is safe as
//! long as the data directory holds every dot the identity issued — which the core's
//! persist-before-send rule guarantees for crashes. It is *not* true of a data directory that
//! was wiped, restored from a backup, or copied to seed another node or a cloned machine:
//! those would reissue dots their peers have already seen, and the peers would silently drop
//! the new writes. Such a directory must take a fresh identity.
//!
//! To tell, the identity is kept twice: in the data directory's `meta` keyspace and in an
//! *identity file* beside it (by default `<data_dir>.identity`), each with the node id and a
//! generation that every start increments — data first, then the file. The identity is kept
//! only when both agree exactly and name this node:
//!
//! | what happened | data | file | outcome |
//! |---|---|---|---|
//! | restart, crash or clean | `g` | `g` | keep, generation `g + 1` |
//! | first start, or wiped data | none | any | fresh identity |
//! | data restored from a backup taken before the last start | `g` | `g' > g` | fresh |
//! | data copied to a new place (seeding a node), file left behind | `g` | none | fresh |
//! | data copied to another node's directory | node `1` | node `4` | fresh |
//! | crash between the two writes of a start | `g + 1` | `g` | fresh (safe, rare) |
//!
//! Backups are of a stopped node: a copy taken after its last start carries the current
//! generation, so restoring it could not be told from a restart. The model checks the rule
//! (`model/src/server/restore.rs`: "no dot names two writes" under wipes and restores).
//!
//! A copy of the whole machine (data and file together) cannot be told from the original by
//! the node alone; peers refuse a second live process with the same identity and generation
//! (see the transport's hello).

use crate::core::Incarnation;
use crate::ids::NodeId;
use crate::storage::{Storage, StorageError, EPOCH_LEASE_KEY};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Metadata key of the identity record: node id, identity and generation.
const IDENTITY_KEY: &[u8] = b"identity";

/// Metadata key of the boot counter (request ids are drawn from it).
const BOOT_KEY: &[u8] = b"boot";

/// The identity as both copies record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    node: u64,
    identity: u64,
    generation: u64,
}

impl Record {
    fn to_bytes(self) -> Vec<u8> {
        [self.node, self.identity, self.generation]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Record> {
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(b))
        };
        (bytes.len() == 24).then_some(())?;
        Some(Record {
            node: word(0)?,
            identity: word(1)?,
            generation: word(2)?,
        })
    }

    fn to_text(self) -> String {
        format!(
            "# shoal node identity: do not copy this file with a data directory\nnode = {}\nidentity = {:016x}\ngeneration = {}\n",
            self.node, self.identity, self.generation
        )
    }

    fn from_text(text: &str) -> Option<Record> {
        let mut node = None;
        let mut identity = None;
        let mut generation = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line.split_once('=')?;
            let value = value.trim();
            match name.trim() {
                "node" => node = Some(value.parse().ok()?),
                "identity" => identity = Some(u64::from_str_radix(value, 16).ok()?),
                "generation" => generation = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        Some(Record {
            node: node?,
            identity: identity?,
            generation: generation?,
        })
    }
}

/// Why a start took a fresh identity instead of keeping the stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FreshIdentity {
    /// The data directory holds no identity: a first start, or wiped data.
    NewData,
    /// The identity file is missing or unreadable.
    NoIdentityFile,
    /// The data directory belongs to another node id.
    OtherNode(u64),
    /// The data and the identity file disagree: the data was restored or copied.
    Mismatch {
        /// The generation the data directory holds.
        data: u64,
        /// The generation the identity file holds.
        file: u64,
    },
}

impl std::fmt::Display for FreshIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreshIdentity::NewData => write!(f, "the data directory holds no identity"),
            FreshIdentity::NoIdentityFile => write!(f, "the identity file is missing or unreadable"),
            FreshIdentity::OtherNode(n) => write!(f, "the data directory belongs to node {n}"),
            FreshIdentity::Mismatch { data, file } => write!(
                f,
                "the data directory (generation {data}) does not match its identity file (generation {file}): it was restored or copied"
            ),
        }
    }
}

/// The identity file of a data directory when none is configured: `<data_dir>.identity`.
pub fn default_identity_file(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".identity");
    PathBuf::from(name)
}

/// Decides this start's incarnation for node `node` (see the module documentation), makes it
/// durable in the data directory and then in `file`, and says why the identity is fresh if it
/// is. Call once per start, before the node serves.
pub fn establish(
    storage: &Storage,
    node: NodeId,
    file: &Path,
) -> Result<(Incarnation, Option<FreshIdentity>), StorageError> {
    let stored = match storage.meta_get(IDENTITY_KEY)? {
        None => None,
        Some(bytes) => Some(
            Record::from_bytes(&bytes).ok_or_else(|| StorageError::Corrupt("identity".into()))?,
        ),
    };
    let on_file = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| Record::from_text(&t));
    let fresh = match (stored, on_file) {
        (None, _) => Some(FreshIdentity::NewData),
        (Some(d), _) if d.node != node.0 => Some(FreshIdentity::OtherNode(d.node)),
        (Some(_), None) => Some(FreshIdentity::NoIdentityFile),
        (Some(d), Some(f)) if d != f => Some(FreshIdentity::Mismatch {
            data: d.generation,
            file: f.generation,
        }),
        (Some(_), Some(_)) => None,
    };
    let (record, first_epoch) = match (fresh.is_none(), stored) {
        (true, Some(d)) => {
            let lease = storage.meta_u64(EPOCH_LEASE_KEY)?.unwrap_or(0);
            let next = Record {
                generation: d.generation + 1,
                ..d
            };
            (next, lease)
        }
        _ => {
            let identity = loop {
                let candidate: u64 = rand::random();
                if candidate != 0 && Some(candidate) != stored.map(|d| d.identity) {
                    break candidate;
                }
            };
            let record = Record {
                node: node.0,
                identity,
                generation: 1,
            };
            (record, 0)
        }
    };
    let boot = storage.meta_u64(BOOT_KEY)?.unwrap_or(0) + 1;
    storage.meta_insert(IDENTITY_KEY, &record.to_bytes())?;
    storage.meta_insert(EPOCH_LEASE_KEY, &first_epoch.to_be_bytes())?;
    storage.meta_insert(BOOT_KEY, &boot.to_be_bytes())?;
    storage.persist_all()?;
    write_file(file, &record.to_text()).map_err(|source| StorageError::IdentityFile {
        path: file.display().to_string(),
        source,
    })?;
    let incarnation = Incarnation {
        identity: record.identity,
        first_epoch,
        boot,
    };
    Ok((incarnation, fresh))
}

/// Replaces `path` atomically and durably: a temporary file, fsync, rename, fsync of the
/// directory.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
