//! The filesystem mounted for real: what survives a power cut and what does not.
//!
//! Each test mounts its own instance of the `shoal-lazyfs` binary in a temporary directory
//! and always unmounts it (a guard sends SIGTERM, then detaches the mount if need be).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_lazyfs::control::{request, Answer};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mounted instance, unmounted when dropped.
struct Mounted {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mounted {
    /// Mounts a fresh instance, or returns `None` (after saying why) when FUSE is absent.
    fn start() -> Option<Mounted> {
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPED: /dev/fuse is absent, so no FUSE filesystem can be mounted here");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("backing")).expect("backing dir");
        fs::create_dir(dir.path().join("mnt")).expect("mount point");
        let log = File::create(dir.path().join("fs.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_shoal-lazyfs"))
            .arg("mount")
            .arg(dir.path().join("backing"))
            .arg(dir.path().join("mnt"))
            .arg("--control")
            .arg(dir.path().join("control.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start shoal-lazyfs");
        let mut m = Mounted {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while request(&m.control(), "status").is_err() {
            let exited = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the filesystem did not come up: {}",
                fs::read_to_string(m.dir.path().join("fs.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// A path inside the mount.
    fn mnt(&self, name: &str) -> PathBuf {
        self.dir.path().join("mnt").join(name)
    }

    /// A path inside the backing directory (the durable state).
    fn backing(&self, name: &str) -> PathBuf {
        self.dir.path().join("backing").join(name)
    }

    fn ctl(&self, command: &str) -> Answer {
        let line = request(&self.control(), command).expect("control request");
        Answer::parse(&line).expect("an ok answer")
    }

    /// Unmounts with SIGTERM and waits for the process; detaches the mount if it hangs.
    fn unmount(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = nix::mount::umount2(
            &self.dir.path().join("mnt"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn read(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    buf
}

#[test]
fn a_power_cut_keeps_what_was_fsynced_and_drops_the_rest() {
    let Some(m) = Mounted::start() else { return };
    let mut f = File::create(m.mnt("journal")).expect("create");
    f.write_all(b"synced;").expect("write");
    f.sync_data().expect("fdatasync");
    f.write_all(b"lost;").expect("write");
    drop(f); // close does not sync
    assert_eq!(read(&m.mnt("journal")), b"synced;lost;");
    assert_eq!(read(&m.backing("journal")), b"synced;");

    let status = m.ctl("status");
    assert_eq!(status.get("dirty_files"), Some(1));
    assert_eq!(status.get("dirty_bytes"), Some(5));
    let cut = m.ctl("cut");
    assert_eq!(cut.get("dropped_files"), Some(1));
    assert_eq!(cut.get("dropped_bytes"), Some(5));
    // With the power off nothing can change...
    let err = OpenOptions::new()
        .append(true)
        .open(m.mnt("journal"))
        .and_then(|mut f| f.write_all(b"after the cut"))
        .expect_err("writes fail while the power is off");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(File::create(m.mnt("new")).is_err(), "creates fail too");
    // ...and after power-on the file is as last synced, through a fresh open.
    m.ctl("on");
    assert_eq!(read(&m.mnt("journal")), b"synced;");
    assert_eq!(m.ctl("status").get("dirty_files"), Some(0));
}

#[test]
fn metadata_is_durable_at_once_but_a_renamed_file_without_fsync_loses_its_data() {
    let Some(m) = Mounted::start() else { return };
    fs::create_dir_all(m.mnt("a/b")).expect("mkdir");
    // The careful pattern: write, fsync, rename.
    let mut f = File::create(m.mnt("a/b/tmp1")).expect("create");
    f.write_all(b"version 1").expect("write");
    f.sync_all().expect("fsync");
    fs::rename(m.mnt("a/b/tmp1"), m.mnt("a/b/current")).expect("rename");
    // The careless one: write, rename, no fsync.
    fs::write(m.mnt("a/b/tmp2"), b"version 2").expect("write");
    fs::rename(m.mnt("a/b/tmp2"), m.mnt("a/b/careless")).expect("rename");
    fs::write(m.mnt("gone"), b"x").expect("write");
    fs::remove_file(m.mnt("gone")).expect("unlink");
    m.ctl("cut");
    m.ctl("on");
    assert_eq!(read(&m.mnt("a/b/current")), b"version 1");
    assert_eq!(
        read(&m.mnt("a/b/careless")),
        b"",
        "the rename survived, the data did not"
    );
    assert!(!m.mnt("gone").exists());
    let mut names: Vec<String> = fs::read_dir(m.mnt("a/b"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["careless", "current"]);
}

#[test]
fn truncation_and_preallocation_are_volatile_until_fsync() {
    let Some(m) = Mounted::start() else { return };
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(m.mnt("pre"))
        .expect("create");
    f.set_len(4096).expect("preallocate");
    f.sync_all().expect("fsync");
    f.write_all_at(b"abcdef", 0).expect("write");
    f.sync_data().expect("fdatasync");
    f.set_len(3).expect("truncate");
    f.write_all_at(b"XY", 10).expect("write");
    assert_eq!(f.metadata().expect("stat").len(), 12);
    let mut buf = [0u8; 12];
    f.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"abc\0\0\0\0\0\0\0XY");
    drop(f);
    let cut = m.ctl("cut");
    assert_eq!(cut.get("dropped_files"), Some(1));
    m.ctl("on");
    let back = read(&m.mnt("pre"));
    assert_eq!(back.len(), 4096);
    assert_eq!(&back[..7], b"abcdef\0");
}

#[test]
fn links_symlinks_and_a_clean_unmount_which_writes_everything_back() {
    let Some(mut m) = Mounted::start() else {
        return;
    };
    fs::write(m.mnt("data"), b"unsynced but clean unmount").expect("write");
    fs::hard_link(m.mnt("data"), m.mnt("alias")).expect("link");
    std::os::unix::fs::symlink("data", m.mnt("sym")).expect("symlink");
    assert_eq!(read(&m.mnt("alias")), b"unsynced but clean unmount");
    assert_eq!(
        fs::read_link(m.mnt("sym")).expect("readlink"),
        Path::new("data")
    );
    assert_eq!(read(&m.mnt("sym")), b"unsynced but clean unmount");
    assert_eq!(read(&m.backing("data")), b"");
    m.unmount();
    assert_eq!(read(&m.backing("alias")), b"unsynced but clean unmount");
}

#[test]
fn many_files_and_concurrent_writers_survive_a_sync_and_a_cut() {
    let Some(m) = Mounted::start() else { return };
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..50 {
                    let mut f = File::create(m.mnt(&format!("f{t}-{i}"))).expect("create");
                    f.write_all(format!("durable {t} {i}").as_bytes())
                        .expect("write");
                    if i % 2 == 0 {
                        f.sync_all().expect("fsync");
                    }
                    f.write_all(b" + volatile").expect("write");
                }
            });
        }
    });
    let cut = m.ctl("cut");
    assert_eq!(cut.get("dropped_files"), Some(200));
    m.ctl("on");
    for t in 0..4 {
        for i in 0..50 {
            let got = read(&m.mnt(&format!("f{t}-{i}")));
            let want = if i % 2 == 0 {
                format!("durable {t} {i}")
            } else {
                String::new()
            };
            assert_eq!(String::from_utf8_lossy(&got), want, "file f{t}-{i}");
        }
    }
}
