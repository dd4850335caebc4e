//! The volatile part of one file: what was written since its last fsync, kept in memory.
//!
//! A real disk's page cache holds written data until the kernel writes it back or the
//! application fsyncs; a power cut loses whatever was not yet on the platter. The kernel's
//! write-back timing cannot be controlled from a test, so this module keeps the worst case:
//! nothing reaches the backing file until [`Overlay::sync`], and [`Overlay::drop_unsynced`]
//! forgets everything written (and every change of length) since then.
//!
//! The overlay holds no file: reads and syncs are given the backing file through the small
//! [`Backing`] trait, so the logic is tested here on a `Vec<u8>`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::os::unix::fs::FileExt;

/// The durable file under an overlay: the state as of the last sync.
pub trait Backing {
    /// Reads at `offset` into `buf`, returning how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The current length.
    fn current_len(&self) -> io::Result<u64>;
    /// Makes what was written durable (`fdatasync` when `data_only`, else `fsync`).
    fn sync(&mut self, data_only: bool) -> io::Result<()>;
}

impl Backing for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn current_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn sync(&mut self, data_only: bool) -> io::Result<()> {
        if data_only {
            self.sync_data()
        } else {
            self.sync_all()
        }
    }
}

impl Backing for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = to_usize(offset)?;
        let end = start + buf.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.resize(to_usize(len)?, 0);
        Ok(())
    }
    fn current_len(&self) -> io::Result<u64> {
        Ok(Vec::len(self) as u64)
    }
    fn sync(&mut self, _data_only: bool) -> io::Result<()> {
        Ok(())
    }
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// The un-synced state of one file over its backing file.
///
/// Invariants: extents are disjoint, not adjacent, and lie inside `[0, len)`;
/// `shown <= base_len` and `shown <= len`.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Length of the backing file, which holds exactly the last synced content.
    base_len: u64,
    /// How much of the backing file is still visible: a truncation below `base_len` hides the
    /// rest, which reads as zeros if the file grows again before the next sync.
    shown: u64,
    /// The file's length as applications see it.
    len: u64,
    /// Data written since the last sync: start offset → bytes.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Total bytes in `extents`.
    dirty_bytes: u64,
}

impl Overlay {
    /// A clean overlay over a backing file of `base_len` bytes.
    pub fn new(base_len: u64) -> Overlay {
        Overlay {
            base_len,
            shown: base_len,
            len: base_len,
            extents: BTreeMap::new(),
            dirty_bytes: 0,
        }
    }

    /// The file's current (volatile) length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file's length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written since the last sync (overwrites of the same byte count once).
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// Whether a sync would change the backing file (data written or length changed).
    pub fn is_dirty(&self) -> bool {
        self.dirty_bytes > 0 || self.len != self.base_len || self.shown != self.base_len
    }

    /// Records a write of `data` at `offset`, growing the file if it ends past its end.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // The extent that starts at or before `offset` and reaches it (overlap or adjacency)
        // absorbs the write; otherwise the write starts a new extent.
        let (start, mut bytes) = match self.extents.range(..=offset).next_back() {
            Some((&s, v)) if s + v.len() as u64 >= offset => {
                let v = self.extents.remove(&s).unwrap_or_default();
                (s, v)
            }
            _ => (offset, Vec::new()),
        };
        self.dirty_bytes -= bytes.len() as u64;
        let rel = (offset - start) as usize;
        if bytes.len() < rel + data.len() {
            bytes.resize(rel + data.len(), 0);
        }
        bytes[rel..rel + data.len()].copy_from_slice(data);
        // Later extents that the grown extent now overlaps or touches: their bytes below its
        // end are superseded by this write, the rest is appended.
        loop {
            let ext_end = start + bytes.len() as u64;
            let next = self
                .extents
                .range((Excluded(start), Included(ext_end)))
                .next()
                .map(|(&s, _)| s);
            let Some(s) = next else { break };
            let v = self.extents.remove(&s).unwrap_or_default();
            self.dirty_bytes -= v.len() as u64;
            let v_end = s + v.len() as u64;
            if v_end > ext_end {
                bytes.extend_from_slice(&v[(ext_end - s) as usize..]);
            }
        }
        self.dirty_bytes += bytes.len() as u64;
        self.extents.insert(start, bytes);
        self.len = self.len.max(end);
    }

    /// Truncates or extends the file to `len` (new bytes read as zeros).
    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            let beyond: Vec<u64> = self.extents.range(len..).map(|(&s, _)| s).collect();
            for s in beyond {
                if let Some(v) = self.extents.remove(&s) {
                    self.dirty_bytes -= v.len() as u64;
                }
            }
            if let Some((&s, v)) = self.extents.range_mut(..len).next_back() {
                let keep = (len - s) as usize;
                if v.len() > keep {
                    self.dirty_bytes -= (v.len() - keep) as u64;
                    v.truncate(keep);
                }
            }
            self.shown = self.shown.min(len);
        }
        self.len = len;
    }

    /// Reads up to `size` bytes at `offset` as the application sees the file: the visible
    /// part of the backing file, zeros past it, and the un-synced writes on top.
    pub fn read<B: Backing + ?Sized>(
        &self,
        backing: &B,
        offset: u64,
        size: usize,
    ) -> io::Result<Vec<u8>> {
        if offset >= self.len {
            return Ok(Vec::new());
        }
        let end = self.len.min(offset.saturating_add(size as u64));
        let mut buf = vec![0u8; (end - offset) as usize];
        // The backing file's part; a short read leaves zeros.
        if offset < self.shown {
            let b_end = end.min(self.shown);
            let part = &mut buf[..(b_end - offset) as usize];
            let mut done = 0;
            while done < part.len() {
                let n = backing.read_at(&mut part[done..], offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
        }
        // The extent starting before `offset` may reach into the range; then those inside.
        let first = self
            .extents
            .range(..offset)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(offset);
        for (&s, v) in self.extents.range((Included(first), Unbounded)) {
            if s >= end {
                break;
            }
            let v_end = s + v.len() as u64;
            let lo = s.max(offset);
            let hi = v_end.min(end);
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&v[(lo - s) as usize..(hi - s) as usize]);
            }
        }
        Ok(buf)
    }

    /// Writes everything un-synced to the backing file and syncs it (`fdatasync` when
    /// `data_only`), after which the overlay is clean. Returns the bytes written. On an
    /// error the overlay keeps its data and re-reads the backing length.
    pub fn sync<B: Backing + ?Sized>(
        &mut self,
        backing: &mut B,
        data_only: bool,
    ) -> io::Result<u64> {
        if !self.is_dirty() {
            return Ok(0);
        }
        match self.write_back(backing, data_only) {
            Ok(written) => {
                self.base_len = self.len;
                self.shown = self.len;
                self.extents.clear();
                self.dirty_bytes = 0;
                Ok(written)
            }
            Err(e) => {
                if let Ok(len) = backing.current_len() {
                    self.base_len = len;
                    self.shown = self.shown.min(len);
                }
                Err(e)
            }
        }
    }

    fn write_back<B: Backing + ?Sized>(&self, backing: &mut B, data_only: bool) -> io::Result<u64> {
        let mut current = self.base_len;
        if self.shown < current {
            backing.set_len(self.shown)?;
            current = self.shown;
        }
        if self.len != current {
            backing.set_len(self.len)?;
        }
        let mut written = 0;
        for (&s, v) in &self.extents {
            backing.write_all_at(v, s)?;
            written += v.len() as u64;
        }
        backing.sync(data_only)?;
        Ok(written)
    }

    /// Forgets every write and length change since the last sync (the power cut), returning
    /// how many written bytes were dropped.
    pub fn drop_unsynced(&mut self) -> u64 {
        let dropped = self.dirty_bytes;
        self.extents.clear();
        self.dirty_bytes = 0;
        self.len = self.base_len;
        self.shown = self.base_len;
        dropped
    }

    /// Checks the invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut prev_end = None;
        let mut total = 0;
        for (&s, v) in &self.extents {
            assert!(!v.is_empty(), "empty extent at {s}");
            if let Some(e) = prev_end {
                assert!(s > e, "extents overlap or touch at {s}");
            }
            prev_end = Some(s + v.len() as u64);
            total += v.len() as u64;
        }
        assert!(prev_end.unwrap_or(0) <= self.len, "extent past the end");
        assert_eq!(total, self.dirty_bytes);
        assert!(self.shown <= self.base_len && self.shown <= self.len);
    }
}

#[cfg(test)]
mod tests;
