//! Dotted version vector sets (DVVSet): the per-key container of versions.
//!
//! This follows the reference library of Almeida, Baquero, Gonçalves, Preguiça and Fonte,
//! "Scalable and Accurate Causality Tracking for Eventually Consistent Stores" (DAIS 2014),
//! the scheme Riak adopted in 2.0.
//!
//! A DVVSet is a sorted list of entries `(actor, counter, values)`. The entry says that the
//! key's causal history contains the dots `(actor, 1) ..= (actor, counter)`, and that the
//! `values` (newest first) are the still-live values with the *last* dots of that range:
//! value `k` of the list carries the dot `(actor, counter - k)`. Every older dot of the range
//! has been superseded. So one compact structure holds both the causal history (a version
//! vector, `join`) and the concurrent values (siblings), each tagged by its dot.
//!
//! * A client reads values and the version vector (its *context*). A write carries that
//!   context; the coordinator discards exactly the values whose dots the context covers and
//!   adds the new value with a fresh dot of its own (`update`). Two clients writing through
//!   the same coordinator with the same context therefore get two siblings — the lost update
//!   of Dynamo's per-coordinator vector clocks cannot happen.
//! * Replicas merge with `sync`: a value survives unless the other side's history covers its
//!   dot without still holding it. `sync` is commutative, associative and idempotent, so
//!   replicas converge whatever order messages arrive in.
//!
//! Values are opaque here; shoal stores [`crate::value::Value`], where deletes are tombstone
//! values that take part in causality like any other write.

use crate::ids::ActorId;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Leading byte of every encoded DVVSet and context; bump it when the layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// Most entries (distinct actor ids) a decoded DVVSet or context may hold. A real cluster has
/// one entry per actor that ever issued a write of the key, far fewer than this.
pub const MAX_ENTRIES: usize = 1024;

/// Most values (siblings, including tombstones) a decoded DVVSet may hold.
pub const MAX_VALUES: usize = 4096;

/// Largest counter accepted from outside the process; keeps `counter + 1` far from overflow.
pub const MAX_COUNTER: u64 = 1 << 48;

/// Longest client context string accepted, in bytes of base64url text.
pub const MAX_CONTEXT_LEN: usize = 16 * 1024;

/// Why bytes or a context string could not be decoded into a clock. Decoding never panics and
/// never allocates more than the input's size (bounded by the limits above) would justify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input was empty; a clock always carries at least its format byte.
    #[error("empty input: expected a format byte")]
    Empty,
    /// The format byte names a layout this version of shoal does not know.
    #[error("unknown encoding version {0} (this node understands version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    /// The context string is longer than [`MAX_CONTEXT_LEN`].
    #[error("context is {0} bytes long; the limit is {MAX_CONTEXT_LEN}")]
    TooLong(usize),
    /// The context string is not base64url.
    #[error("context is not valid base64url: {0}")]
    Base64(String),
    /// The body is not a valid encoding of the expected structure.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// Bytes remain after a complete structure: the input is truncated garbage or a wrong type.
    #[error("{0} trailing bytes after the encoded clock")]
    TrailingBytes(usize),
    /// The structure decoded but breaks an invariant (order, limits, counters).
    #[error("invalid clock: {0}")]
    Invalid(&'static str),
}

/// One actor's part of a DVVSet: history `1..=counter` and the live values of its last dots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<V> {
    id: ActorId,
    counter: u64,
    /// Newest first: `values[k]` has the dot `(id, counter - k)`.
    values: Vec<V>,
}

/// A dot: one event (a write issued by `actor`, its `counter`-th for this key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The actor that issued the write.
    pub actor: ActorId,
    /// Its per-actor sequence number for this key, from 1.
    pub counter: u64,
}

/// A version vector: the causal history of a key, handed to clients as their context.
/// Sorted by actor id, one entry per actor, counters at least 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(ActorId, u64)>")]
pub struct VersionVector(Vec<(ActorId, u64)>);

impl TryFrom<Vec<(ActorId, u64)>> for VersionVector {
    type Error = DecodeError;

    fn try_from(pairs: Vec<(ActorId, u64)>) -> Result<Self, DecodeError> {
        if pairs.len() > MAX_ENTRIES {
            return Err(DecodeError::Invalid("too many entries"));
        }
        if !pairs.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
            return Err(DecodeError::Invalid("actor ids not strictly increasing"));
        }
        if pairs.iter().any(|(_, c)| *c == 0 || *c > MAX_COUNTER) {
            return Err(DecodeError::Invalid("counter out of range"));
        }
        Ok(VersionVector(pairs))
    }
}

impl VersionVector {
    /// The empty history: the context of a blind write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from pairs in any order; duplicate actors keep the larger counter and
    /// zero counters are dropped (a zero counter says nothing).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ActorId, u64)>) -> Self {
        let mut v: Vec<(ActorId, u64)> = pairs.into_iter().filter(|(_, c)| *c > 0).collect();
        v.sort();
        let mut out: Vec<(ActorId, u64)> = Vec::with_capacity(v.len());
        for (id, c) in v {
            match out.last_mut() {
                Some(last) if last.0 == id => last.1 = last.1.max(c),
                _ => out.push((id, c)),
            }
        }
        VersionVector(out)
    }

    /// The (actor, counter) pairs, sorted by actor.
    pub fn pairs(&self) -> &[(ActorId, u64)] {
        &self.0
    }

    /// The counter recorded for `actor` (0 when absent).
    pub fn get(&self, actor: ActorId) -> u64 {
        self.0
            .binary_search_by_key(&actor, |(id, _)| *id)
            .ok()
            .and_then(|i| self.0.get(i))
            .map_or(0, |(_, c)| *c)
    }

    /// Whether this history contains the event `dot`.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// Whether every event of `other` is in `self` (`other ≤ self`).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(id, c)| self.get(*id) >= *c)
    }

    /// Whether this is the empty history.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client-facing form: base64url (no padding) of the versioned binary encoding.
    pub fn to_context_string(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode())
    }

    /// Parses a context string from a client. Untrusted input: every failure is a typed error.
    pub fn from_context_str(s: &str) -> Result<Self, DecodeError> {
        if s.len() > MAX_CONTEXT_LEN {
            return Err(DecodeError::TooLong(s.len()));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|e| DecodeError::Base64(e.to_string()))?;
        Self::decode(&bytes)
    }

    /// The versioned binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&self.0)
    }

    /// Decodes and validates the binary encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        VersionVector::try_from(decode_versioned::<Vec<(ActorId, u64)>>(bytes)?)
    }
}

/// The per-key version container. See the module documentation for the mechanism.
///
/// Deserialising (from disk or a peer, in any serde format) validates the invariants, so a
/// malformed clock is an error at the edge and never reaches the algebra.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDvvSet<V>", bound(deserialize = "V: Deserialize<'de>"))]
pub struct DvvSet<V> {
    /// Sorted by id, unique ids, `values.len() <= counter`.
    entries: Vec<Entry<V>>,
    /// Values without a dot (only from [`DvvSet::new`] before any update); shoal's servers
    /// always dot their values, but the algebra keeps them as the reference library does.
    anonymous: Vec<V>,
}

/// The unvalidated wire shape of a [`DvvSet`].
#[derive(Deserialize)]
struct RawDvvSet<V> {
    entries: Vec<Entry<V>>,
    anonymous: Vec<V>,
}

impl<V> TryFrom<RawDvvSet<V>> for DvvSet<V> {
    type Error = DecodeError;

    fn try_from(raw: RawDvvSet<V>) -> Result<Self, DecodeError> {
        let clock = DvvSet {
            entries: raw.entries,
            anonymous: raw.anonymous,
        };
        clock.validate()?;
        Ok(clock)
    }
}

impl<V> DvvSet<V> {
    /// Checks the invariants and limits every decoder enforces, so that a clock that passes
    /// can be stored, sent and read back. Every clock a node builds (by `update` or `sync`)
    /// is checked with this before it is stored or sent.
    pub fn check(&self) -> Result<(), DecodeError> {
        self.validate()
    }

    /// Checks the invariants every clock from outside must satisfy.
    fn validate(&self) -> Result<(), DecodeError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(DecodeError::Invalid("too many entries"));
        }
        let values: usize =
            self.entries.iter().map(|e| e.values.len()).sum::<usize>() + self.anonymous.len();
        if values > MAX_VALUES {
            return Err(DecodeError::Invalid("too many values"));
        }
        if !self
            .entries
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.id < b.id))
        {
            return Err(DecodeError::Invalid("actor ids not strictly increasing"));
        }
        for e in &self.entries {
            if e.counter == 0 || e.counter > MAX_COUNTER {
                return Err(DecodeError::Invalid("counter out of range"));
            }
            if e.values.len() as u64 > e.counter {
                return Err(DecodeError::Invalid("more values than the counter allows"));
            }
        }
        Ok(())
    }
}

impl<V> Default for DvvSet<V> {
    fn default() -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: Vec::new(),
        }
    }
}

impl<V: Clone + PartialEq> DvvSet<V> {
    /// An empty clock: no history, no values (a key never written).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A clock holding one value and no history (reference `new/1`): a blind write.
    pub fn new(value: V) -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: vec![value],
        }
    }

    /// A clock holding one value whose causal past is `context` (reference `new/2`): what a
    /// client's write looks like before a coordinator gives it a dot.
    pub fn with_context(context: &VersionVector, value: V) -> Self {
        DvvSet {
            entries: context
                .0
                .iter()
                .map(|(id, c)| Entry {
                    id: *id,
                    counter: *c,
                    values: Vec::new(),
                })
                .collect(),
            anonymous: vec![value],
        }
    }

    /// Merges two replicas' clocks (reference `sync/2`). A value survives unless the other
    /// side's history covers its dot and no longer holds it. Commutative, associative and
    /// idempotent (up to the order of anonymous values, which servers never hold).
    pub fn sync(&self, other: &Self) -> Self {
        if self == other {
            return self.clone();
        }
        let anonymous = if self.less(other) {
            other.anonymous.clone()
        } else if other.less(self) {
            self.anonymous.clone()
        } else {
            let mut v = self.anonymous.clone();
            for x in &other.anonymous {
                if !v.contains(x) {
                    v.push(x.clone());
                }
            }
            v
        };
        DvvSet {
            entries: sync_entries(&self.entries, &other.entries),
            anonymous,
        }
    }

    /// Merges any number of clocks (reference `sync/1`).
    pub fn sync_all<'a>(clocks: impl IntoIterator<Item = &'a Self>) -> Self
    where
        V: 'a,
    {
        clocks.into_iter().fold(Self::empty(), |acc, c| acc.sync(c))
    }

    /// A coordinator applies a client write (reference `update/3`): the values of `self` that
    /// `context` covers are discarded, every other value stays as a sibling, and `value` gets
    /// the next dot of `coordinator`. The result's history strictly dominates `context`.
    pub fn update(&self, context: &VersionVector, value: V, coordinator: ActorId) -> Self {
        let client = DvvSet {
            entries: Self::with_context(context, value.clone()).entries,
            anonymous: Vec::new(),
        };
        let synced = client.sync(self);
        DvvSet {
            entries: event(synced.entries, coordinator, value),
            anonymous: synced.anonymous,
        }
    }

    /// The causal history as a version vector (reference `join/1`): the client's context.
    pub fn join(&self) -> VersionVector {
        VersionVector(self.entries.iter().map(|e| (e.id, e.counter)).collect())
    }

    /// All live values: the siblings (reference `values/1`).
    pub fn values(&self) -> Vec<&V> {
        self.entries
            .iter()
            .flat_map(|e| e.values.iter())
            .chain(self.anonymous.iter())
            .collect()
    }

    /// Every live value with its dot (`None` for anonymous values), for inspection and tests.
    pub fn dotted_values(&self) -> Vec<(Option<Dot>, &V)> {
        let mut out = Vec::new();
        for e in &self.entries {
            for (k, v) in e.values.iter().enumerate() {
                let counter = e.counter.saturating_sub(k as u64);
                out.push((
                    Some(Dot {
                        actor: e.id,
                        counter,
                    }),
                    v,
                ));
            }
        }
        out.extend(self.anonymous.iter().map(|v| (None, v)));
        out
    }

    /// Number of live values (reference `size/1`).
    pub fn size(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum::<usize>() + self.anonymous.len()
    }

    /// The actor ids in the history (reference `ids/1`).
    pub fn ids(&self) -> Vec<ActorId> {
        self.entries.iter().map(|e| e.id).collect()
    }

    /// Whether `self`'s history is strictly older than `other`'s (reference `less/2`).
    pub fn less(&self, other: &Self) -> bool {
        greater(&other.entries, &self.entries)
    }

    /// Keeps only the values for which `keep` is true, leaving the history unchanged. Used to
    /// drop reaped tombstones: the history still covers their dots, so they cannot return.
    pub fn retain_values(&mut self, mut keep: impl FnMut(&V) -> bool) {
        // Dropping a value from the middle of an entry's list would shift the dots of the
        // older values; only the tail (oldest) can be cut without renaming dots, so an entry
        // whose kept values are not a prefix keeps its dropped ones.
        for e in &mut self.entries {
            while e.values.last().is_some_and(|v| !keep(v)) {
                e.values.pop();
            }
        }
        self.anonymous.retain(|v| keep(v));
    }
}

impl<V: Clone + PartialEq + Serialize + DeserializeOwned> DvvSet<V> {
    /// The versioned binary encoding used on disk and on the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes and validates bytes from disk or a peer; never panics on bad input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // Decode the raw shape, then validate, so the caller gets the typed reason (serde
        // would flatten it into a string).
        DvvSet::try_from(decode_versioned::<RawDvvSet<V>>(bytes)?)
    }
}

fn encode_versioned<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serialising plain structs into a Vec cannot fail; fall back to an empty body (which
    // decodes as an error) rather than panic if it ever did.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if *version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(*version));
    }
    // postcard never pre-allocates more than serde's cautious size hint (1 MiB) for a
    // sequence whatever length it claims, and every element consumes input bytes.
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Merges two sorted entry lists (reference `sync2/2`).
fn sync_entries<V: Clone>(a: &[Entry<V>], b: &[Entry<V>]) -> Vec<Entry<V>> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(x), None) => {
                out.push(x.clone());
                i += 1;
            }
            (None, Some(y)) => {
                out.push(y.clone());
                j += 1;
            }
            (Some(x), Some(y)) => {
                if x.id < y.id {
                    out.push(x.clone());
                    i += 1;
                } else if x.id > y.id {
                    out.push(y.clone());
                    j += 1;
                } else {
                    out.push(merge_entry(x, y));
                    i += 1;
                    j += 1;
                }
            }
        }
    }
    out
}

/// Merges two entries of the same actor (reference `merge/5`): the longer history wins, and
/// of its values only those the other side has not seen, or still holds, survive.
fn merge_entry<V: Clone>(x: &Entry<V>, y: &Entry<V>) -> Entry<V> {
    let (big, small) = if x.counter >= y.counter {
        (x, y)
    } else {
        (y, x)
    };
    // Validated clocks hold at most `counter` values; saturate rather than trust that.
    let big_floor = big.counter.saturating_sub(big.values.len() as u64);
    let small_floor = small.counter.saturating_sub(small.values.len() as u64);
    if big_floor >= small_floor {
        big.clone()
    } else {
        // Keep the values with dots above the small side's floor: it has either not seen
        // them or still holds them.
        let keep = big.counter.saturating_sub(small_floor) as usize;
        Entry {
            id: big.id,
            counter: big.counter,
            values: big.values.iter().take(keep).cloned().collect(),
        }
    }
}

/// Adds a new event of `id` carrying `value` (reference `event/3`).
fn event<V>(mut entries: Vec<Entry<V>>, id: ActorId, value: V) -> Vec<Entry<V>> {
    match entries.binary_search_by_key(&id, |e| e.id) {
        Ok(i) => {
            if let Some(e) = entries.get_mut(i) {
                // Counters from outside are capped far below u64::MAX, so this never
                // saturates in practice; saturating keeps a forged clock from panicking.
                e.counter = e.counter.saturating_add(1);
                e.values.insert(0, value);
            }
        }
        Err(i) => entries.insert(
            i,
            Entry {
                id,
                counter: 1,
                values: vec![value],
            },
        ),
    }
    entries
}

/// Whether history `a` strictly dominates history `b` (reference `greater/3`).
fn greater<V>(a: &[Entry<V>], b: &[Entry<V>]) -> bool {
    let mut strict = false;
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return strict,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            (Some(x), Some(y)) => {
                if x.id == y.id {
                    if x.counter < y.counter {
                        return false;
                    }
                    if x.counter > y.counter {
                        strict = true;
                    }
                    i += 1;
                    j += 1;
                } else if x.id < y.id {
                    strict = true;
                    i += 1;
                } else {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
