//! The one abstraction function from node state to model state: values named by the write
//! that made them, and causality as the set of writes a clock's history covers.
//!
//! A model and a node name writes differently — the model's dots are `(server, counter)`,
//! the node's `(identity, epoch)` actors with per-key counters — so dots are never compared.
//! Instead every write gets a [`WriteId`] (client, request number, key, tombstone); a node's
//! data value carries it in its bytes, and the dot a coordinator gave a write is learned from
//! the clock it produced. A clock then abstracts to an [`Abstract`]: which writes are live in
//! it (its siblings) and which writes its version vector covers (its causal history). Two
//! clocks, one from each side, agree when their abstractions are equal.

use bytes::Bytes;
use shoal::{Clock, Dot, Value, VersionVector};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One client write, named independently of dots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId {
    /// The client that wrote it.
    pub client: u64,
    /// The client's request number.
    pub seq: u64,
    /// The key (an index).
    pub key: u64,
    /// Whether it is a delete's tombstone.
    pub tomb: bool,
}

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = if self.tomb { "†" } else { "" };
        write!(f, "{t}c{}#{}k{}", self.client, self.seq, self.key)
    }
}

impl WriteId {
    /// The bytes a data write stores: they name the write.
    pub fn bytes(&self) -> Bytes {
        Bytes::from(format!("c{}.s{}.k{}", self.client, self.seq, self.key))
    }

    /// The write a data value's bytes name.
    pub fn parse(bytes: &[u8]) -> Option<WriteId> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('.');
        let client = parts.next()?.strip_prefix('c')?.parse().ok()?;
        let seq = parts.next()?.strip_prefix('s')?.parse().ok()?;
        let key = parts.next()?.strip_prefix('k')?.parse().ok()?;
        parts.next().is_none().then_some(WriteId {
            client,
            seq,
            key,
            tomb: false,
        })
    }

    /// The node value this write stores.
    pub fn value(&self) -> Value {
        if self.tomb {
            Value::Tombstone
        } else {
            Value::Data(self.bytes())
        }
    }
}

/// A clock seen through the abstraction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abstract {
    /// The writes live in it (siblings, tombstones included).
    pub live: BTreeSet<WriteId>,
    /// The writes its version vector covers (its causal history).
    pub covered: BTreeSet<WriteId>,
}

impl fmt::Display for Abstract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &BTreeSet<WriteId>| {
            s.iter()
                .map(WriteId::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "live {{{}}} history {{{}}}",
            show(&self.live),
            show(&self.covered)
        )
    }
}

/// What is known of the node's dots: which write each one names.
#[derive(Clone, Debug, Default)]
pub struct Dots {
    by_dot: BTreeMap<Dot, WriteId>,
    by_write: BTreeMap<WriteId, Dot>,
    /// Every dot seen in any clock so far: a dot not among them is new.
    seen: BTreeSet<Dot>,
}

impl Dots {
    /// Learns the dots of the data values of `clock` from their bytes.
    pub fn learn_data(&mut self, clock: &Clock) {
        for (dot, value) in clock.dotted_values() {
            if let (Some(dot), Value::Data(bytes)) = (dot, value) {
                if let Some(w) = WriteId::parse(bytes) {
                    self.record(dot, w);
                }
            }
        }
    }

    /// Learns the dot of `write` from a clock its coordinator produced for it in the step
    /// that handled it: a dot never seen before, holding the write's value. (A coordinator
    /// that executes one write twice gives it two dots: both name it.)
    pub fn learn(&mut self, write: WriteId, clock: &Clock) {
        let value = write.value();
        for (dot, v) in clock.dotted_values() {
            if let Some(dot) = dot {
                if *v == value && !self.seen.contains(&dot) && !self.by_dot.contains_key(&dot) {
                    self.record(dot, write);
                }
            }
        }
    }

    /// Forgets the dots of `lost` that no clock of `remaining` covers: writes a crashed node
    /// handed to its disk and never made durable nor sent anywhere, so it may issue those
    /// dots again (see the node's `core::actors`).
    pub fn forget_unless_covered<'a>(
        &mut self,
        lost: &[Dot],
        remaining: impl IntoIterator<Item = &'a Clock>,
    ) {
        let histories: Vec<VersionVector> = remaining.into_iter().map(Clock::join).collect();
        for dot in lost {
            if histories.iter().any(|h| h.covers(*dot)) {
                continue;
            }
            self.seen.remove(dot);
            if let Some(w) = self.by_dot.remove(dot) {
                if self.by_write.get(&w) == Some(dot) {
                    self.by_write.remove(&w);
                }
            }
        }
    }

    /// Notes every dot of `clock` as seen: from now on none of them is new.
    pub fn note_seen(&mut self, clock: &Clock) {
        for (dot, _) in clock.dotted_values() {
            if let Some(dot) = dot {
                self.seen.insert(dot);
            }
        }
    }

    fn record(&mut self, dot: Dot, write: WriteId) {
        self.by_dot.insert(dot, write);
        self.by_write.insert(write, dot);
    }

    /// The dot of `write`, once learned.
    pub fn dot_of(&self, write: WriteId) -> Option<Dot> {
        self.by_write.get(&write).copied()
    }

    /// The writes a version vector covers.
    pub fn covered_by(&self, vv: &VersionVector) -> BTreeSet<WriteId> {
        self.by_dot
            .iter()
            .filter(|(d, _)| vv.covers(**d))
            .map(|(_, w)| *w)
            .collect()
    }

    /// A node clock through the abstraction; `Err` names a live value no write is known for.
    pub fn abstract_clock(&self, clock: &Clock) -> Result<Abstract, String> {
        let mut live = BTreeSet::new();
        for (dot, value) in clock.dotted_values() {
            let by_dot = dot.and_then(|d| self.by_dot.get(&d).copied());
            let by_bytes = value.data().and_then(|b| WriteId::parse(b));
            match by_dot.or(by_bytes) {
                Some(w) => {
                    live.insert(w);
                }
                None => return Err(format!("a live value no write is known for: {value:?}")),
            }
        }
        Ok(Abstract {
            live,
            covered: self.covered_by(&clock.join()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::ActorId;

    #[test]
    fn writes_round_trip_through_bytes_and_dots_are_learned() {
        let w = WriteId {
            client: 3,
            seq: 7,
            key: 1,
            tomb: false,
        };
        assert_eq!(WriteId::parse(&w.bytes()), Some(w));
        assert_eq!(WriteId::parse(b"c3.s7"), None);
        let a = ActorId::new(9, 1);
        let clock = Clock::empty().update(&VersionVector::new(), w.value(), a);
        let mut dots = Dots::default();
        dots.learn(w, &clock);
        let del = WriteId {
            tomb: true,
            seq: 8,
            ..w
        };
        let deleted = clock.update(&clock.join(), del.value(), a);
        dots.learn(del, &deleted);
        let abs = dots.abstract_clock(&deleted).expect("known");
        assert_eq!(abs.live, BTreeSet::from([del]));
        assert_eq!(abs.covered, BTreeSet::from([w, del]));
    }
}
