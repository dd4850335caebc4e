//! Power-loss rigs: one `shoal-lazyfs` mount per node, so a test can cut the power.
//!
//! `shoal-lazyfs` (the `lazyfs/` crate) keeps every file's written data in memory until the
//! file is fsynced, and drops whatever was not synced when told to cut the power — the
//! page cache that a `kill -9` test can never lose. See `docs/POWER_LOSS.md`.
//!
//! The binary belongs to another package of the workspace, so Cargo gives this test no
//! `CARGO_BIN_EXE_shoal-lazyfs`, and a dev-dependency cannot carry a binary (artifact
//! dependencies are unstable). [`binary`] takes the one beside the `shoal` binary under test
//! when it is newer than every source it is built from — as after `cargo nextest run
//! --workspace`, which builds every package — and otherwise runs `cargo build -p
//! shoal-lazyfs` with the same profile (in a fresh clone tested with `-p shoal`, or after an
//! edit of `lazyfs/`). It does not call cargo when the binary is fresh, because a build of one
//! package resolves its dependencies' features differently from a workspace build and would
//! rebuild several of them for nothing.

use super::Cluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why this machine cannot mount a FUSE filesystem, if it cannot.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent (no FUSE in this kernel or container)".into());
    }
    None
}

/// The `shoal-lazyfs` binary beside the `shoal` binary under test, built if need be.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let shoal = Path::new(env!("CARGO_BIN_EXE_shoal"));
    let dir = shoal.parent().expect("the shoal binary's directory");
    let bin = dir.join("shoal-lazyfs");
    // target/debug is the `dev` profile; any other profile's directory bears its name.
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(name) => name.to_string(),
    };
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if is_fresh(&bin, &workspace) {
        return bin;
    }
    let manifest = workspace.join("Cargo.toml");
    let started = Instant::now();
    let status = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "shoal-lazyfs",
            "--bin",
            "shoal-lazyfs",
        ])
        .arg("--profile")
        .arg(&profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other if bin.exists() => eprintln!(
            "building shoal-lazyfs failed ({other:?}); using the existing {}",
            bin.display()
        ),
        other => panic!(
            "cannot build shoal-lazyfs with {cargo:?} ({other:?}); run `cargo build -p shoal-lazyfs`"
        ),
    }
    eprintln!(
        "shoal-lazyfs: {} (cargo build took {:.1} s)",
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    bin
}

/// Whether `bin` exists and is newer than the workspace manifest, the lock file and every
/// file of the `lazyfs` package.
fn is_fresh(bin: &Path, workspace: &Path) -> bool {
    fn modified(p: &Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(p).and_then(|m| m.modified()).ok()
    }
    fn newest(dir: &Path, acc: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                newest(&path, acc);
            } else if let Some(t) = modified(&path) {
                *acc = (*acc).max(Some(t));
            }
        }
    }
    let Some(built) = modified(bin) else {
        return false;
    };
    let mut sources = modified(&workspace.join("Cargo.toml"));
    sources = sources.max(modified(&workspace.join("Cargo.lock")));
    newest(&workspace.join("lazyfs"), &mut sources);
    sources.is_some_and(|s| s <= built)
}

/// What one control request answered: `key=value` fields.
#[derive(Debug, Clone, Default)]
pub struct Answer(Vec<(String, String)>);

impl Answer {
    /// A numeric field, 0 if absent.
    pub fn get(&self, key: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

/// One mounted `shoal-lazyfs`: unmounted, and its process ended, when dropped.
pub struct LazyFs {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The backing directory: the state that survives a power cut.
    pub backing: PathBuf,
    control: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl LazyFs {
    /// Mounts a fresh instance at `root/NAME` over `root/NAME.backing`, and waits until it
    /// answers on its control socket `root/NAME.sock`.
    pub fn mount(root: &Path, name: &str) -> LazyFs {
        let bin = binary();
        let mountpoint = root.join(name);
        let backing = root.join(format!("{name}.backing"));
        let control = root.join(format!("{name}.sock"));
        let log = root.join(format!("{name}.fs.log"));
        std::fs::create_dir_all(&mountpoint).expect("mount point");
        std::fs::create_dir_all(&backing).expect("backing directory");
        let log_file = std::fs::File::create(&log).expect("fs log");
        let child = Command::new(&bin)
            .arg("mount")
            .arg(&backing)
            .arg(&mountpoint)
            .arg("--control")
            .arg(&control)
            .arg("--die-with-parent")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("fs log"))
            .stderr(log_file)
            .spawn()
            .expect("start shoal-lazyfs");
        let mut fs = LazyFs {
            mountpoint,
            backing,
            control,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while fs.request("status").is_err() {
            let exited = fs.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "shoal-lazyfs did not mount {} ({exited:?}); its log:\n{}",
                fs.mountpoint.display(),
                std::fs::read_to_string(&fs.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fs
    }

    fn request(&self, command: &str) -> std::io::Result<Answer> {
        let mut stream = UnixStream::connect(&self.control)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        let Some(fields) = line.trim().strip_prefix("ok") else {
            return Err(std::io::Error::other(format!("{command}: {line:?}")));
        };
        Ok(Answer(
            fields
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn ask(&self, command: &str) -> Answer {
        self.request(command).unwrap_or_else(|e| {
            panic!(
                "shoal-lazyfs at {}: {e}; its log:\n{}",
                self.mountpoint.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// Un-synced files and bytes, and the counters (`dirty_files`, `dirty_bytes`, `syncs`…).
    pub fn status(&self) -> Answer {
        self.ask("status")
    }

    /// Cuts the power: drops every un-synced write; every change fails until [`power_on`].
    /// Answers `dropped_files` and `dropped_bytes`.
    ///
    /// [`power_on`]: LazyFs::power_on
    pub fn cut(&self) -> Answer {
        self.ask("cut")
    }

    /// Turns the power back on.
    pub fn power_on(&self) {
        self.ask("on");
    }

    /// Unmounts (SIGTERM) and waits for the process; forces it if it hangs.
    pub fn unmount(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM makes it detach the mount and exit.
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
        let _ = Command::new(binary())
            .arg("umount")
            .arg(&self.mountpoint)
            .status();
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

impl Cluster {
    /// Starts one node per directory in `dirs` (node `i + 1` keeps its data in
    /// `dirs[i]/db` and its identity file beside it), with replication `n`, quorums `r` and
    /// `w`, and `extra` TOML lines in every configuration. Configurations and logs stay in the
    /// cluster's own temporary directory.
    ///
    /// The nodes are first started as [`Cluster::start_with`] starts them, so that this
    /// follows every change of the test configuration; they are stopped before any client
    /// writes, pointed at their new data directories, and started again.
    pub async fn start_in(dirs: &[PathBuf], n: usize, r: usize, w: usize, extra: &str) -> Cluster {
        let count = dirs.len() as u64;
        let mut cluster = Cluster::start_with(count, n, r, w, extra).await;
        for id in 1..=count {
            cluster.stop(id);
        }
        for (node, dir) in cluster.nodes.iter().zip(dirs) {
            let text = std::fs::read_to_string(&node.config).expect("read config");
            let data = dir.join("db");
            let mut replaced = false;
            let text: Vec<String> = text
                .lines()
                .map(|line| {
                    if line.starts_with("data_dir") {
                        replaced = true;
                        format!("data_dir = \"{}\"", data.display())
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            assert!(replaced, "no data_dir line in {}", node.config.display());
            std::fs::write(&node.config, text.join("\n")).expect("write config");
        }
        for id in 1..=count {
            cluster.spawn(id);
        }
        for id in 1..=count {
            cluster.wait_ready(id).await;
        }
        cluster
    }
}
