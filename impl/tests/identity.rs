//! A node's identity across crashes and restores: `kill -9` keeps it, so version vectors do
//! not grow per crash; a data directory restored from a backup takes a fresh one, so its new
//! writes are not mistaken for writes the cluster already has.

mod common;

use common::Cluster;
use shoal::VersionVector;

/// How many actors a context names.
fn actors(context: &str) -> usize {
    VersionVector::from_context_str(context)
        .expect("a valid context")
        .pairs()
        .len()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

#[tokio::test]
async fn kill_9_keeps_the_identity_so_version_vectors_do_not_grow() {
    let mut c = Cluster::start(3, 3, 2, 2).await;
    let (status, mut ctx) = c.put(1, "k", "v0", None).await;
    assert_eq!(status, 204);
    for round in 1..=3 {
        c.kill9(1);
        c.restart(1).await;
        let (status, next) = c.put(1, "k", &format!("v{round}"), ctx.as_deref()).await;
        assert_eq!(status, 204, "round {round}");
        ctx = next;
    }
    let (_, values, ctx) = c.get(2, "k").await;
    assert_eq!(values, vec!["v3"]);
    assert_eq!(
        actors(&ctx.expect("context")),
        1,
        "one actor after 3 crashes"
    );
}

#[tokio::test]
async fn a_data_directory_restored_from_a_backup_does_not_lose_new_writes() {
    let mut c = Cluster::start(3, 3, 2, 3).await;
    let (status, _) = c.put(1, "k", "before", None).await;
    assert_eq!(status, 204);
    // A backup of node 1's data directory, taken while it is stopped (its identity file
    // stays where it is, beside the directory).
    c.stop(1);
    let data = c.data_dir(1);
    let backup = c.dir.path().join("backup");
    copy_dir(&data, &backup);
    c.restart(1).await;
    // Node 1 coordinates more writes of k: every replica (W = 3) holds them.
    let (_, _, mut ctx) = c.get(1, "k").await;
    for i in 0..3 {
        let (status, next) = c.put(1, "k", &format!("after-{i}"), ctx.as_deref()).await;
        assert_eq!(status, 204);
        ctx = next;
    }
    // The operator restores the backup: node 1's clock of k goes back in time.
    c.stop(1);
    std::fs::remove_dir_all(&data).expect("remove");
    copy_dir(&backup, &data);
    c.restart(1).await;
    assert!(
        c.log(1).contains("took a fresh identity"),
        "log:\n{}",
        c.log(1)
    );
    // A blind write through node 1: under the old identity it would reuse a dot the other
    // replicas already hold, and they would drop it as old news.
    let (status, _) = c.put(1, "k", "restored", None).await;
    assert_eq!(status, 204);
    let (_, values, _) = c.get(2, "k").await;
    assert_eq!(values, vec!["after-2", "restored"]);
}
