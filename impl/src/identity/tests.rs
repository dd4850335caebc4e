use super::*;
use crate::config::Durability;
use crate::core::{PersistId, Write};
use crate::storage::WriteJob;

/// Starts node `node` on `dir` (identity file beside it) and stops it again.
fn start(dir: &Path, node: u64) -> (Incarnation, Option<FreshIdentity>) {
    let storage = Storage::open(dir).expect("open");
    establish(&storage, NodeId(node), &default_identity_file(dir)).expect("identity")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn a_restart_keeps_the_identity_and_counts_the_boot() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let (first, why) = start(&dir, 1);
    assert_eq!(why, Some(FreshIdentity::NewData));
    let (second, why) = start(&dir, 1);
    assert_eq!(why, None);
    assert_eq!(second.identity, first.identity);
    assert_eq!(second.boot, first.boot + 1);
    assert_eq!(second.first_epoch, first.first_epoch);
}

#[test]
fn the_epoch_lease_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let (_, _) = start(&dir, 1);
    {
        let storage = Storage::open(&dir).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = storage.spawn_writer(Durability::Sync, move |ids, _| {
            let _ = tx.send(ids);
        });
        let job = WriteJob {
            id: PersistId(1),
            write: Write::EpochLease(20_000),
        };
        writer.send(job).expect("send");
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("durable");
    }
    let (again, why) = start(&dir, 1);
    assert_eq!(why, None);
    assert_eq!(again.first_epoch, 20_000);
}

#[test]
fn a_data_directory_restored_from_a_backup_takes_a_fresh_identity() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let (first, _) = start(&dir, 1);
    let backup = tmp.path().join("backup");
    copy_dir(&dir, &backup);
    let (second, _) = start(&dir, 1);
    assert_eq!(second.identity, first.identity);
    std::fs::remove_dir_all(&dir).expect("remove");
    copy_dir(&backup, &dir);
    let (restored, why) = start(&dir, 1);
    assert!(
        matches!(why, Some(FreshIdentity::Mismatch { data: 1, file: 2 })),
        "{why:?}"
    );
    assert_ne!(restored.identity, first.identity);
    assert_eq!(restored.first_epoch, 0);
}

#[test]
fn a_data_directory_copied_elsewhere_takes_a_fresh_identity() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("n1");
    let (first, _) = start(&dir, 1);
    // Seeding another node: the data goes, the identity file stays behind.
    let other = tmp.path().join("n2");
    copy_dir(&dir, &other);
    let (seeded, why) = start(&other, 2);
    assert_eq!(why, Some(FreshIdentity::OtherNode(1)));
    assert_ne!(seeded.identity, first.identity);
    // The same node id on a copy without its identity file.
    let copy = tmp.path().join("copy");
    copy_dir(&dir, &copy);
    let (copied, why) = start(&copy, 1);
    assert_eq!(why, Some(FreshIdentity::NoIdentityFile));
    assert_ne!(copied.identity, first.identity);
    // The original is untouched by all this.
    let (again, why) = start(&dir, 1);
    assert_eq!((again.identity, why), (first.identity, None));
}

#[test]
fn a_corrupt_identity_record_refuses_to_start() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let storage = Storage::open(&dir).expect("open");
    storage.meta_insert(IDENTITY_KEY, b"abc").expect("insert");
    let got = establish(&storage, NodeId(1), &default_identity_file(&dir));
    assert!(matches!(got, Err(StorageError::Corrupt(_))));
}

#[test]
fn the_identity_file_round_trips_and_refuses_garbage() {
    let r = Record {
        node: 7,
        identity: 0xdead_beef_0123_4567,
        generation: 42,
    };
    assert_eq!(Record::from_text(&r.to_text()), Some(r));
    assert_eq!(Record::from_bytes(&r.to_bytes()), Some(r));
    assert_eq!(
        Record::from_text("node = 7\nidentity = zz\ngeneration = 1\n"),
        None
    );
    assert_eq!(Record::from_text("node = 7\n"), None);
    assert_eq!(Record::from_bytes(&[0; 23]), None);
}
