//! The history recorder: every client operation's invocation and completion, with values and
//! contexts, as JSON lines — what a checker needs to hold a real run to the model's
//! invariants (`shoal-conformance check-history`, conformance/README.md).
//!
//! Off by default (`record_history` unset): then the HTTP layer pays one branch per request.
//! On, each event is one line appended with a single `write` to a file opened for appending,
//! so a `kill -9` loses at most the line being written, never an earlier one; an operation
//! invoked but never completed is *indeterminate* (it may or may not have taken effect).

use crate::dvvset::VersionVector;
use crate::protocol::{ClientOp, ClientReply};
use crate::value::Value;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// One line of a recorded history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node that served the operation.
    pub node: u64,
    /// The operation, numbered per node process (with `boot`, unique in a run).
    pub id: u64,
    /// A number unique to the node process that wrote the line (its start time in µs).
    pub boot: u64,
    /// Wall-clock time in µs since the Unix epoch: orders events across nodes of one host.
    pub at_us: u64,
    /// What happened.
    pub event: Event,
}

/// An invocation or a completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A client asked.
    Invoke {
        /// `get`, `put` or `delete`.
        op: String,
        /// The key, as text (keys from the HTTP API are UTF-8).
        key: String,
        /// The value written (`None` for gets and deletes), see [`encode_value`].
        value: Option<String>,
        /// The context sent, in its header form (`None`: none).
        context: Option<String>,
    },
    /// The node answered.
    Complete {
        /// `found`, `stored`, `unavailable`, `stale`, `invalid`, `too_large` or `no_answer`.
        outcome: String,
        /// The values read (gets), see [`encode_value`].
        values: Vec<String>,
        /// The context returned, in its header form.
        context: Option<String>,
        /// Values the key holds after a write, as the node reported it.
        siblings: Option<usize>,
    },
}

/// A value as recorded: its text if it is UTF-8, else `b64:` and its base64.
pub fn encode_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("b64:") => text.to_string(),
        _ => format!(
            "b64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

fn context_string(vv: &VersionVector) -> Option<String> {
    (!vv.is_empty()).then(|| vv.to_context_string())
}

/// Appends a node's history to a file.
pub struct Recorder {
    node: u64,
    boot: u64,
    next: AtomicU64,
    file: Mutex<std::fs::File>,
}

impl Recorder {
    /// Opens (creating or appending to) the history file of node `node`.
    pub fn open(path: &Path, node: u64) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            node,
            boot: now_us(),
            next: AtomicU64::new(1),
            file: Mutex::new(file),
        })
    }

    fn write(&self, id: u64, event: Event) {
        let entry = Entry {
            node: self.node,
            id,
            boot: self.boot,
            at_us: now_us(),
            event,
        };
        let Ok(mut line) = serde_json::to_vec(&entry) else {
            return;
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "cannot append to the history file");
        }
    }

    /// Records that a client invoked `op`; returns the id its completion must carry.
    pub fn invoke(&self, op: &ClientOp) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let event = match op {
            ClientOp::Get { key, .. } => Event::Invoke {
                op: "get".into(),
                key: String::from_utf8_lossy(key).into_owned(),
                value: None,
                context: None,
            },
            ClientOp::Put {
                key,
                value,
                context,
                ..
            } => Event::Invoke {
                op: if value.is_tombstone() {
                    "delete"
                } else {
                    "put"
                }
                .into(),
                key: String::from_utf8_lossy(key).into_owned(),
                value: match value {
                    Value::Data(b) => Some(encode_value(b)),
                    Value::Tombstone => None,
                },
                context: context_string(context),
            },
        };
        self.write(id, event);
        id
    }

    /// Records the answer to operation `id` (`None`: the node gave none).
    pub fn complete(&self, id: u64, reply: Option<&ClientReply>) {
        let (outcome, values, context, siblings) = match reply {
            Some(ClientReply::Found { values, context }) => (
                "found",
                values.iter().map(|v| encode_value(v)).collect(),
                context_string(context),
                None,
            ),
            Some(ClientReply::Stored { context, siblings }) => (
                "stored",
                Vec::new(),
                context_string(context),
                Some(*siblings),
            ),
            Some(ClientReply::Unavailable { .. }) => ("unavailable", Vec::new(), None, None),
            Some(ClientReply::Stale(_)) => ("stale", Vec::new(), None, None),
            Some(ClientReply::Invalid(_)) => ("invalid", Vec::new(), None, None),
            Some(ClientReply::TooLarge(_)) => ("too_large", Vec::new(), None, None),
            None => ("no_answer", Vec::new(), None, None),
        };
        let event = Event::Complete {
            outcome: outcome.into(),
            values,
            context,
            siblings,
        };
        self.write(id, event);
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn an_invocation_and_its_completion_are_two_lines_that_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.jsonl");
        let rec = Recorder::open(&path, 3).expect("open");
        let op = ClientOp::Put {
            key: Bytes::from_static(b"k"),
            value: Value::Data(Bytes::from_static(&[0xff, 0x00])),
            context: VersionVector::new(),
            w: None,
            pw: None,
        };
        let id = rec.invoke(&op);
        rec.complete(id, None);
        let text = std::fs::read_to_string(&path).expect("read");
        let entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a line parses"))
            .collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.node == 3 && e.id == id));
        assert!(
            matches!(&entries[0].event, Event::Invoke { op, value: Some(v), .. }
            if op == "put" && v == "b64:/wA=")
        );
        assert!(
            matches!(&entries[1].event, Event::Complete { outcome, .. } if outcome == "no_answer")
        );
    }
}
