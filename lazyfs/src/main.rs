//! `shoal-lazyfs`: mount the power-loss filesystem, or talk to a mounted one.
//!
//! ```text
//! shoal-lazyfs mount BACKING MOUNTPOINT --control SOCKET   # runs until unmounted or signalled
//! shoal-lazyfs ctl --control SOCKET cut                    # status | cut | on | sync
//! shoal-lazyfs umount MOUNTPOINT                           # lazy unmount (a dead instance)
//! ```
//!
//! `mount` stays in the foreground. SIGTERM, SIGINT or SIGHUP unmount (lazily) and end it;
//! a clean unmount writes un-synced data back, a power cut before it does not.

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use shoal_lazyfs::control;
use shoal_lazyfs::fs::{LazyFs, State};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "shoal-lazyfs",
    version,
    about = "A FUSE filesystem that loses un-synced data at a simulated power cut"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mounts BACKING at MOUNTPOINT and serves it until unmounted or signalled.
    Mount {
        /// The directory that holds the durable (synced) state.
        backing: PathBuf,
        /// Where to mount.
        mountpoint: PathBuf,
        /// The control socket to create (`status`, `cut`, `on`, `sync`).
        #[arg(long)]
        control: PathBuf,
        /// FUSE worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Unmount when the process that started this one dies (so a killed test leaves
        /// no mount behind).
        #[arg(long)]
        die_with_parent: bool,
    },
    /// Sends one command to a mounted instance and prints its answer.
    Ctl {
        /// The instance's control socket.
        #[arg(long)]
        control: PathBuf,
        /// `status`, `cut` (drop un-synced data, power off), `on` or `sync`.
        command: String,
    },
    /// Detaches a mount (`umount -l`), e.g. one whose filesystem process died.
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Mount {
            backing,
            mountpoint,
            control,
            threads,
            die_with_parent,
        } => {
            if die_with_parent {
                die_with_parent_process()?;
            }
            mount(&backing, &mountpoint, &control, threads)
        }
        Command::Ctl { control, command } => {
            let answer = control::request(&control, &command)
                .with_context(|| format!("control socket {}", control.display()))?;
            println!("{answer}");
            if answer.starts_with("ok") {
                Ok(())
            } else {
                bail!("the filesystem refused {command:?}")
            }
        }
        Command::Umount { mountpoint } => {
            nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH)
                .with_context(|| format!("umount {}", mountpoint.display()))
        }
    }
}

/// Asks for SIGTERM (which unmounts) when the parent dies.
fn die_with_parent_process() -> Result<()> {
    let parent = nix::unistd::getppid();
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    if rc != 0 {
        bail!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        );
    }
    if nix::unistd::getppid() != parent {
        bail!("the parent process is already gone");
    }
    Ok(())
}

fn mount(backing: &Path, mountpoint: &Path, control_path: &Path, threads: usize) -> Result<()> {
    // The kernel has already applied the caller's umask to the modes it sends.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    // One O_PATH descriptor per inode the kernel remembers.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    // Signals are taken by one thread with sigwait: block them before any thread starts.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;

    let state = Arc::new(
        State::new(backing).with_context(|| format!("backing directory {}", backing.display()))?,
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("shoal-lazyfs".into()),
        fuser::MountOption::Subtype("shoal-lazyfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(threads.max(1));
    config.clone_fd = threads > 1;
    let session = fuser::Session::new(LazyFs::new(state.clone()), mountpoint, &config)
        .with_context(|| {
            format!(
                "mounting at {} (needs /dev/fuse and root, or fusermount3)",
                mountpoint.display()
            )
        })?;
    // The socket appears only once the filesystem is mounted: a test waits for it.
    control::serve(control_path, state.clone())
        .with_context(|| format!("control socket {}", control_path.display()))?;
    let target = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                eprintln!("shoal-lazyfs: {signal}: unmounting {}", target.display());
                if let Err(e) = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
                    eprintln!("shoal-lazyfs: umount: {e}");
                    std::process::exit(1);
                }
            }
        })
        .context("signal thread")?;
    eprintln!(
        "shoal-lazyfs: {} mounted at {}, control {}",
        backing.display(),
        mountpoint.display(),
        control_path.display()
    );
    let result = session.run();
    let _ = std::fs::remove_file(control_path);
    let s = state.stats();
    eprintln!(
        "shoal-lazyfs: unmounted; written {} B, synced {} B in {} fsyncs, {} cuts dropped {} B",
        s.written_bytes, s.synced_bytes, s.syncs, s.cuts, s.dropped_bytes
    );
    result.context("FUSE session")
}
