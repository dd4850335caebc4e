//! The FUSE filesystem: a passthrough over a backing directory whose file *data* is volatile.
//!
//! Why this shape: a `kill -9` test cannot see a missing fsync, because the kernel's page
//! cache outlives the process. Here the page cache is ours, so a test can throw it away.
//!
//! - **Metadata is treated as journaled**: create, mkdir, mknod, symlink, link, rename,
//!   unlink, rmdir, chmod, chown and utimes are applied to the backing directory at once and
//!   survive a power cut, as if every metadata change were committed immediately. A real
//!   filesystem may lose a rename or a create that was not followed by an fsync of the
//!   directory; that is *not* simulated (it is the optimistic side).
//! - **File data and file length are volatile**: writes, truncations and extensions are kept
//!   in an [`Overlay`] per inode and reach the backing file only when the file is fsynced
//!   (`fsync`/`fdatasync`, both write back data and length). `close` does not sync, as on
//!   real kernels (and as in LazyFS). `syncfs(2)`/`sync(2)` never reach a FUSE filesystem,
//!   so only the control channel's `sync` writes everything back.
//! - **A power cut** ([`State::cut`]) drops every overlay and turns the power off: until
//!   [`State::power_on`], every operation that would change something fails with `EIO`, so
//!   a process that is still running cannot write after the cut.
//!
//! Inodes are held as `O_PATH` descriptors of the backing files and every operation uses the
//! `*at()` system calls relative to them (as libfuse's `passthrough_ll` does), so renames and
//! hard links need no path bookkeeping. Files are opened with `FOPEN_DIRECT_IO`: the kernel
//! keeps no page cache of its own for them, so every read sees the overlay and nothing
//! survives a cut in the kernel either (a consequence: shared writable `mmap` is refused).

use crate::overlay::Overlay;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use nix::fcntl::{openat, readlinkat, renameat2, OFlag};
use nix::sys::stat::{fstat, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache a name → inode entry: names change only through us.
const ENTRY_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may cache attributes: never, since a cut changes file sizes.
const ATTR_TTL: Duration = Duration::ZERO;

/// A backing file or directory, held open as an `O_PATH` descriptor.
struct Inode {
    ino: u64,
    /// The backing file's identity, `(st_dev, st_ino)`.
    key: (u64, u64),
    fd: OwnedFd,
    kind: FileType,
    /// A regular file's data, created on first open.
    data: RwLock<Option<FileData>>,
}

/// A regular file's backing descriptor and its un-synced state.
struct FileData {
    file: File,
    overlay: Overlay,
}

/// The inode table: FUSE inode numbers to backing inodes, with the kernel's lookup counts.
struct Inodes {
    by_ino: HashMap<u64, (Arc<Inode>, u64)>,
    by_key: HashMap<(u64, u64), u64>,
    next: u64,
}

/// An open file or directory.
enum Handle {
    File {
        append: bool,
    },
    Dir {
        entries: Vec<(u64, FileType, OsString)>,
    },
}

/// Counters reported by the control channel.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Bytes written by applications.
    pub written_bytes: u64,
    /// fsync/fdatasync calls on files.
    pub syncs: u64,
    /// Bytes written back to backing files by syncs.
    pub synced_bytes: u64,
    /// Power cuts so far.
    pub cuts: u64,
    /// Un-synced bytes dropped by all cuts.
    pub dropped_bytes: u64,
    /// Files whose un-synced state was dropped, summed over all cuts.
    pub dropped_files: u64,
}

/// The un-synced state of the whole filesystem at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dirty {
    /// Files with un-synced data or length.
    pub files: u64,
    /// Un-synced bytes in them.
    pub bytes: u64,
}

/// What a `setattr` changes.
struct Changes {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

/// The filesystem's shared state: the FUSE handlers and the control channel both hold it.
pub struct State {
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    powered: AtomicBool,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

/// `/proc/self/fd/N`: reopens an `O_PATH` descriptor as a real one.
fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::new(0, libc::UTIME_OMIT),
        Some(TimeOrNow::Now) => TimeSpec::new(0, libc::UTIME_NOW),
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(_) => TimeSpec::new(0, 0),
        },
    }
}

impl State {
    /// The state over the backing directory `root`.
    pub fn new(root: &Path) -> std::io::Result<State> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        let root = Inode {
            ino: INodeNo::ROOT.0,
            key: (st.st_dev, st.st_ino),
            fd,
            kind: FileType::Directory,
            data: RwLock::new(None),
        };
        let mut by_ino = HashMap::new();
        let mut by_key = HashMap::new();
        by_key.insert(root.key, root.ino);
        // The root is never forgotten.
        by_ino.insert(root.ino, (Arc::new(root), u64::MAX / 2));
        Ok(State {
            inodes: Mutex::new(Inodes {
                by_ino,
                by_key,
                next: INodeNo::ROOT.0 + 1,
            }),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            powered: AtomicBool::new(true),
            stats: Mutex::new(Stats::default()),
        })
    }

    fn inode(&self, ino: INodeNo) -> Result<Arc<Inode>, Errno> {
        lock(&self.inodes)
            .by_ino
            .get(&ino.0)
            .map(|(i, _)| i.clone())
            .ok_or(Errno::ESTALE)
    }

    fn check_power(&self) -> Result<(), Errno> {
        if self.powered.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }

    /// Registers `parent/name` (once per kernel lookup) and returns its inode and stat.
    fn remember(&self, parent: &Inode, name: &OsStr) -> Result<(Arc<Inode>, FileStat), Errno> {
        let fd = openat(
            &parent.fd,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let st = fstat(&fd).map_err(errno)?;
        let key = (st.st_dev, st.st_ino);
        let mut inodes = lock(&self.inodes);
        if let Some(&ino) = inodes.by_key.get(&key) {
            if let Some((inode, lookups)) = inodes.by_ino.get_mut(&ino) {
                *lookups += 1;
                return Ok((inode.clone(), st));
            }
        }
        let ino = inodes.next;
        inodes.next += 1;
        let inode = Arc::new(Inode {
            ino,
            key,
            fd,
            kind: kind_of(st.st_mode),
            data: RwLock::new(None),
        });
        inodes.by_key.insert(key, ino);
        inodes.by_ino.insert(ino, (inode.clone(), 1));
        Ok((inode, st))
    }

    /// The attributes the kernel sees: the backing file's, with the volatile length.
    fn attr(&self, inode: &Inode, st: &FileStat) -> FileAttr {
        let mut size = st.st_size as u64;
        let mut blocks = st.st_blocks as u64;
        if let Ok(data) = inode.data.read() {
            if let Some(d) = data.as_ref() {
                size = d.overlay.len();
                blocks = blocks.max(size.div_ceil(512));
            }
        }
        FileAttr {
            ino: INodeNo(inode.ino),
            size,
            blocks,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: inode.kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    fn stat_attr(&self, inode: &Inode) -> Result<FileAttr, Errno> {
        let st = fstat(&inode.fd).map_err(errno)?;
        Ok(self.attr(inode, &st))
    }

    /// Makes sure a regular file has its data state (opening the backing file read-write).
    fn ensure_data(&self, inode: &Inode) -> Result<(), Errno> {
        if inode.kind != FileType::RegularFile {
            return Err(Errno::EINVAL);
        }
        if inode.data.read().map_err(|_| Errno::EIO)?.is_some() {
            return Ok(());
        }
        let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
        if data.is_none() {
            let path = proc_path(&inode.fd);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(io_errno)?;
            let len = file.metadata().map_err(io_errno)?.len();
            *data = Some(FileData {
                file,
                overlay: Overlay::new(len),
            });
        }
        Ok(())
    }

    fn new_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        fh
    }

    fn forget_one(&self, ino: u64, n: u64) {
        let mut inodes = lock(&self.inodes);
        let Some((inode, lookups)) = inodes.by_ino.get_mut(&ino) else {
            return;
        };
        *lookups = lookups.saturating_sub(n);
        if *lookups > 0 {
            return;
        }
        // An inode with un-synced data stays, so that the data is found again on the next
        // lookup — unless the file is gone from the namespace, when no one can reach it.
        // A file busy in a sync is kept too, rather than waited for under the table's lock.
        let keep = match inode.data.try_read() {
            Ok(d) => d.as_ref().is_some_and(|d| d.overlay.is_dirty()),
            Err(_) => true,
        } && fstat(&inode.fd).is_ok_and(|st| st.st_nlink > 0);
        if !keep {
            let key = inode.key;
            inodes.by_ino.remove(&ino);
            if inodes.by_key.get(&key) == Some(&ino) {
                inodes.by_key.remove(&key);
            }
        }
    }

    fn all_inodes(&self) -> Vec<Arc<Inode>> {
        lock(&self.inodes)
            .by_ino
            .values()
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// Files and bytes not yet synced.
    pub fn dirty(&self) -> Dirty {
        let mut dirty = Dirty::default();
        for inode in self.all_inodes() {
            if let Ok(data) = inode.data.read() {
                if let Some(d) = data.as_ref().filter(|d| d.overlay.is_dirty()) {
                    dirty.files += 1;
                    dirty.bytes += d.overlay.dirty_bytes();
                }
            }
        }
        dirty
    }

    /// Whether the power is on.
    pub fn powered(&self) -> bool {
        self.powered.load(Ordering::SeqCst)
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// The power cut: turns the power off (every later change fails with `EIO`), then drops
    /// every un-synced write and length change. Returns what was dropped.
    pub fn cut(&self) -> Dirty {
        self.powered.store(false, Ordering::SeqCst);
        let mut dropped = Dirty::default();
        for inode in self.all_inodes() {
            let Ok(mut data) = inode.data.write() else {
                continue;
            };
            if let Some(d) = data.as_mut().filter(|d| d.overlay.is_dirty()) {
                dropped.files += 1;
                dropped.bytes += d.overlay.drop_unsynced();
            }
        }
        let mut stats = lock(&self.stats);
        stats.cuts += 1;
        stats.dropped_bytes += dropped.bytes;
        stats.dropped_files += dropped.files;
        dropped
    }

    /// Turns the power back on after a cut.
    pub fn power_on(&self) {
        self.powered.store(true, Ordering::SeqCst);
    }

    /// Writes back and syncs every file (a checkpoint, or a clean shutdown). Returns what
    /// was written back; fails with the first error after trying every file.
    pub fn sync_all(&self) -> std::io::Result<Dirty> {
        let mut synced = Dirty::default();
        let mut first_error = None;
        for inode in self.all_inodes() {
            let Ok(mut data) = inode.data.write() else {
                continue;
            };
            if !self.powered() {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            if let Some(d) = data.as_mut().filter(|d| d.overlay.is_dirty()) {
                match d.overlay.sync(&mut d.file, false) {
                    Ok(bytes) => {
                        synced.files += 1;
                        synced.bytes += bytes;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        lock(&self.stats).synced_bytes += synced.bytes;
        match first_error {
            Some(e) => Err(e),
            None => Ok(synced),
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, parent: &Inode, name: &OsStr) {
        match self.remember(parent, name) {
            Ok((inode, st)) => {
                let attr = self.attr(&inode, &st);
                reply.entry_with_ttls(&ATTR_TTL, &ENTRY_TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn do_setattr(&self, ino: INodeNo, c: Changes) -> Result<FileAttr, Errno> {
        let inode = self.inode(ino)?;
        self.check_power()?;
        let Changes {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = c;
        if let Some(mode) = mode {
            let perm = std::fs::Permissions::from_mode(mode & 0o7777);
            std::fs::set_permissions(proc_path(&inode.fd), perm).map_err(io_errno)?;
        }
        if uid.is_some() || gid.is_some() {
            fchownat(
                &inode.fd,
                "",
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            )
            .map_err(errno)?;
        }
        if let Some(size) = size {
            self.ensure_data(&inode)?;
            let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
            self.check_power()?;
            if let Some(d) = data.as_mut() {
                d.overlay.set_len(size);
            }
        }
        if atime.is_some() || mtime.is_some() {
            utimensat(
                nix::fcntl::AT_FDCWD,
                &proc_path(&inode.fd),
                &timespec(atime),
                &timespec(mtime),
                UtimensatFlags::FollowSymlink,
            )
            .map_err(errno)?;
        }
        self.stat_attr(&inode)
    }

    fn do_create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let parent = self.inode(parent)?;
        self.check_power()?;
        let oflags = OFlag::from_bits_truncate(flags & (libc::O_CREAT | libc::O_EXCL))
            | OFlag::O_CREAT
            | OFlag::O_RDWR
            | OFlag::O_CLOEXEC
            | OFlag::O_NOFOLLOW;
        let fd = openat(
            &parent.fd,
            name,
            oflags,
            Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(errno)?;
        let (inode, st) = self.remember(&parent, name)?;
        if inode.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        {
            let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
            if data.is_none() {
                *data = Some(FileData {
                    file: File::from(fd),
                    overlay: Overlay::new(st.st_size as u64),
                });
            }
            if flags & libc::O_TRUNC != 0 {
                if let Some(d) = data.as_mut() {
                    d.overlay.set_len(0);
                }
            }
        }
        let attr = self.attr(&inode, &st);
        let fh = self.new_handle(Handle::File {
            append: flags & libc::O_APPEND != 0,
        });
        Ok((attr, fh))
    }

    fn do_read(&self, ino: INodeNo, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let inode = self.inode(ino)?;
        self.ensure_data(&inode)?;
        let data = inode.data.read().map_err(|_| Errno::EIO)?;
        match data.as_ref() {
            Some(d) => d
                .overlay
                .read(&d.file, offset, size as usize)
                .map_err(io_errno),
            None => Err(Errno::EIO),
        }
    }

    fn do_write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        buf: &[u8],
    ) -> Result<u32, Errno> {
        let inode = self.inode(ino)?;
        let append = matches!(
            lock(&self.handles).get(&fh.0),
            Some(Handle::File { append: true, .. })
        );
        self.ensure_data(&inode)?;
        let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
        // Checked under the file's lock: a cut that has started either sees this write (and
        // drops it) or makes it fail.
        self.check_power()?;
        let d = data.as_mut().ok_or(Errno::EIO)?;
        let at = if append { d.overlay.len() } else { offset };
        d.overlay.write(at, buf);
        drop(data);
        lock(&self.stats).written_bytes += buf.len() as u64;
        Ok(buf.len() as u32)
    }

    fn do_fsync(&self, ino: INodeNo, datasync: bool) -> Result<(), Errno> {
        let inode = self.inode(ino)?;
        self.check_power()?;
        let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
        self.check_power()?;
        let mut synced = 0;
        if let Some(d) = data.as_mut() {
            synced = d.overlay.sync(&mut d.file, datasync).map_err(io_errno)?;
        }
        drop(data);
        let mut stats = lock(&self.stats);
        stats.syncs += 1;
        stats.synced_bytes += synced;
        Ok(())
    }

    fn read_dir(&self, ino: INodeNo) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        let inode = self.inode(ino)?;
        let mut entries = vec![
            (inode.key.1, FileType::Directory, OsString::from(".")),
            (inode.key.1, FileType::Directory, OsString::from("..")),
        ];
        for entry in std::fs::read_dir(proc_path(&inode.fd)).map_err(io_errno)? {
            let entry = entry.map_err(io_errno)?;
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            entries.push((entry.ino(), kind, entry.file_name()));
        }
        Ok(entries)
    }
}

/// The FUSE filesystem: every handler works on the shared [`State`].
pub struct LazyFs {
    state: Arc<State>,
}

impl LazyFs {
    /// A filesystem over `state`.
    pub fn new(state: Arc<State>) -> LazyFs {
        LazyFs { state }
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFs {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> std::io::Result<()> {
        Ok(())
    }

    fn destroy(&mut self) {
        // A clean unmount writes everything back, as a real filesystem's would.
        if self.state.powered() {
            if let Err(e) = self.state.sync_all() {
                eprintln!("shoal-lazyfs: writing back at unmount failed: {e}");
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.state.inode(parent) {
            Ok(p) => self.state.reply_entry(reply, &p, name),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state.forget_one(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state.inode(ino).and_then(|i| self.state.stat_attr(&i)) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.state.do_setattr(
            ino,
            Changes {
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
            },
        ) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .state
            .inode(ino)
            .and_then(|i| readlinkat(&i.fd, "").map_err(errno))
        {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let made = self.state.inode(parent).and_then(|p| {
            self.state.check_power()?;
            mknodat(
                &p.fd,
                name,
                SFlag::from_bits_truncate(mode & libc::S_IFMT),
                Mode::from_bits_truncate(mode & 0o7777),
                rdev as libc::dev_t,
            )
            .map_err(errno)?;
            Ok(p)
        });
        match made {
            Ok(p) => self.state.reply_entry(reply, &p, name),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.state.inode(parent).and_then(|p| {
            self.state.check_power()?;
            mkdirat(&p.fd, name, Mode::from_bits_truncate(mode & 0o7777)).map_err(errno)?;
            Ok(p)
        });
        match made {
            Ok(p) => self.state.reply_entry(reply, &p, name),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.state.inode(parent).and_then(|p| {
            self.state.check_power()?;
            unlinkat(&p.fd, name, UnlinkatFlags::NoRemoveDir).map_err(errno)
        });
        reply_empty(reply, result);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.state.inode(parent).and_then(|p| {
            self.state.check_power()?;
            unlinkat(&p.fd, name, UnlinkatFlags::RemoveDir).map_err(errno)
        });
        reply_empty(reply, result);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let made = self.state.inode(parent).and_then(|p| {
            self.state.check_power()?;
            symlinkat(target, &p.fd, link_name).map_err(errno)?;
            Ok(p)
        });
        match made {
            Ok(p) => self.state.reply_entry(reply, &p, link_name),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let from = self.state.inode(parent)?;
            let to = self.state.inode(newparent)?;
            self.state.check_power()?;
            let flags = nix::fcntl::RenameFlags::from_bits_truncate(flags.bits());
            renameat2(&from.fd, name, &to.fd, newname, flags).map_err(errno)
        })();
        reply_empty(reply, result);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let made = (|| {
            let inode = self.state.inode(ino)?;
            let to = self.state.inode(newparent)?;
            self.state.check_power()?;
            linkat(
                nix::fcntl::AT_FDCWD,
                &proc_path(&inode.fd),
                &to.fd,
                newname,
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(errno)?;
            Ok(to)
        })();
        match made {
            Ok(to) => self.state.reply_entry(reply, &to, newname),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opened = self.state.inode(ino).and_then(|inode| {
            self.state.ensure_data(&inode)?;
            Ok(self.state.new_handle(Handle::File {
                append: flags.0 & libc::O_APPEND != 0,
            }))
        });
        match opened {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state.do_read(ino, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state.do_write(ino, fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) does not make data durable on a real kernel either.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.state.handles).remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.state.do_fsync(ino, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state.read_dir(ino) {
            Ok(entries) => {
                let fh = self.state.new_handle(Handle::Dir { entries });
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let handles = lock(&self.state.handles);
        let Some(Handle::Dir { entries }) = handles.get(&fh.0) else {
            drop(handles);
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        drop(handles);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.state.handles).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is applied at once (treated as journaled): nothing to write back.
        reply_empty(reply, self.state.check_power());
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let stat = self
            .state
            .inode(ino)
            .and_then(|i| nix::sys::statvfs::statvfs(&proc_path(&i.fd)).map_err(errno));
        match stat {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The mount uses `default_permissions`: the kernel checks permissions itself.
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.state.do_create(parent, name, mode, flags) {
            Ok((attr, fh)) => reply.created(
                &ATTR_TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let inode = self.state.inode(ino)?;
            if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            self.state.ensure_data(&inode)?;
            let mut data = inode.data.write().map_err(|_| Errno::EIO)?;
            self.state.check_power()?;
            if let Some(d) = data.as_mut() {
                let end = offset.saturating_add(length);
                if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > d.overlay.len() {
                    d.overlay.set_len(end);
                }
            }
            Ok(())
        })();
        reply_empty(reply, result);
    }
}
