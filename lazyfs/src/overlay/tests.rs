use super::*;

/// Reads the whole file as the application sees it.
fn contents(o: &Overlay, backing: &Vec<u8>) -> Vec<u8> {
    o.read(backing, 0, usize::MAX / 2).expect("read")
}

#[test]
fn writes_are_read_back_but_reach_the_backing_file_only_at_sync() {
    let mut backing = b"hello world".to_vec();
    let mut o = Overlay::new(backing.len() as u64);
    o.write(6, b"there, friend");
    assert_eq!(contents(&o, &backing), b"hello there, friend");
    assert_eq!(backing, b"hello world");
    assert_eq!(o.dirty_bytes(), 13);
    assert_eq!(o.sync(&mut backing, true).expect("sync"), 13);
    assert_eq!(backing, b"hello there, friend");
    assert!(!o.is_dirty());
    o.check();
}

#[test]
fn a_power_cut_drops_unsynced_writes_and_length_changes() {
    let mut backing = b"0123456789".to_vec();
    let mut o = Overlay::new(10);
    o.write(2, b"ab");
    o.sync(&mut backing, false).expect("sync");
    o.write(8, b"XYZW");
    o.set_len(3);
    o.set_len(20);
    assert!(o.is_dirty());
    let dropped = o.drop_unsynced();
    assert_eq!(dropped, 0, "the write was truncated away before the cut");
    assert_eq!(contents(&o, &backing), b"01ab456789");
    assert!(!o.is_dirty());
    o.write(0, b"zz");
    assert_eq!(o.drop_unsynced(), 2);
    assert_eq!(contents(&o, &backing), b"01ab456789");
    o.check();
}

#[test]
fn a_truncate_then_regrow_reads_zeros_where_the_old_data_was() {
    let mut backing = b"abcdefgh".to_vec();
    let mut o = Overlay::new(8);
    o.set_len(2);
    o.set_len(6);
    assert_eq!(contents(&o, &backing), b"ab\0\0\0\0");
    o.write(7, b"!");
    assert_eq!(contents(&o, &backing), b"ab\0\0\0\0\0!");
    o.sync(&mut backing, true).expect("sync");
    assert_eq!(backing, b"ab\0\0\0\0\0!");
    o.check();
}

#[test]
fn adjacent_and_overlapping_writes_merge_into_one_extent() {
    let backing = Vec::new();
    let mut o = Overlay::new(0);
    o.write(0, b"aaaa");
    o.write(4, b"bbbb");
    o.write(10, b"cc");
    o.write(8, b"dd");
    assert_eq!(o.extents.len(), 1);
    o.write(2, b"EEEEEEEEEE");
    assert_eq!(contents(&o, &backing), b"aaEEEEEEEEEE");
    assert_eq!(o.dirty_bytes(), 12);
    o.check();
}

#[test]
fn an_extended_preallocated_file_reads_zeros_and_syncs_its_length() {
    // fjall's journal: set_len to a preallocated size, sync_all, then appends and fdatasync.
    let mut backing = Vec::new();
    let mut o = Overlay::new(0);
    o.set_len(64);
    o.sync(&mut backing, false).expect("sync");
    assert_eq!(backing.len(), 64);
    o.write(0, b"batch-1");
    o.sync(&mut backing, true).expect("sync");
    o.write(7, b"batch-2");
    assert_eq!(o.drop_unsynced(), 7);
    assert_eq!(&contents(&o, &backing)[..14], b"batch-1\0\0\0\0\0\0\0");
    o.check();
}

#[test]
fn reads_past_the_end_are_short() {
    let backing = b"abc".to_vec();
    let mut o = Overlay::new(3);
    assert_eq!(o.read(&backing, 1, 10).expect("read"), b"bc");
    assert!(o.read(&backing, 3, 10).expect("read").is_empty());
    o.write(5, b"x");
    assert_eq!(o.read(&backing, 2, 10).expect("read"), b"c\0\0x");
}

/// A tiny deterministic generator (xorshift64*), enough to drive the model test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The overlay against the obvious model — two byte vectors, the file as seen and the file
/// as synced — over random writes, truncations, reads, syncs and power cuts.
#[test]
fn the_overlay_behaves_like_a_file_that_only_persists_at_sync() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let initial: Vec<u8> = (0..rng.below(50)).map(|i| i as u8).collect();
        let mut backing = initial.clone();
        let mut durable = initial.clone();
        let mut seen = initial;
        let mut o = Overlay::new(backing.len() as u64);
        for step in 0..200 {
            match rng.below(10) {
                0..=4 => {
                    let off = rng.below(80) as usize;
                    let len = 1 + rng.below(20) as usize;
                    let byte = (step % 250 + 1) as u8;
                    let data = vec![byte; len];
                    o.write(off as u64, &data);
                    if seen.len() < off + len {
                        seen.resize(off + len, 0);
                    }
                    seen[off..off + len].copy_from_slice(&data);
                }
                5 => {
                    let len = rng.below(90) as usize;
                    o.set_len(len as u64);
                    seen.resize(len, 0);
                }
                6 => {
                    o.sync(&mut backing, rng.below(2) == 0).expect("sync");
                    durable = seen.clone();
                    assert_eq!(backing, durable, "seed {seed} step {step}: synced content");
                }
                7 => {
                    o.drop_unsynced();
                    seen = durable.clone();
                }
                _ => {
                    let off = rng.below(100);
                    let size = rng.below(40) as usize;
                    let got = o.read(&backing, off, size).expect("read");
                    let lo = (off as usize).min(seen.len());
                    let hi = (lo + size).min(seen.len());
                    assert_eq!(got, &seen[lo..hi], "seed {seed} step {step}: read");
                }
            }
            o.check();
            assert_eq!(
                o.len(),
                seen.len() as u64,
                "seed {seed} step {step}: length"
            );
            assert_eq!(backing, durable, "seed {seed} step {step}: backing changed");
        }
        assert_eq!(contents(&o, &backing), seen, "seed {seed}: final content");
    }
}
