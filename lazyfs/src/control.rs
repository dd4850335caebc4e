//! The control channel: a Unix socket through which a test cuts the power.
//!
//! A socket rather than a signal because a test needs an answer — *when* the cut has
//! happened and *what* it dropped — before it restarts anything. The protocol is one line
//! per request and one line per answer, so `socat` or the `ctl` subcommand will do by hand:
//!
//! | request | answer |
//! |---|---|
//! | `status` | `ok powered=1 dirty_files=… dirty_bytes=… written_bytes=… syncs=… synced_bytes=… cuts=… dropped_files=… dropped_bytes=…` |
//! | `cut` | `ok dropped_files=… dropped_bytes=… powered=0` (power stays off) |
//! | `on` | `ok powered=1` |
//! | `sync` | `ok synced_files=… synced_bytes=…` (writes every file back, like `sync(1)`) |
//!
//! Anything else answers `err …`.

use crate::fs::State;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Longest request line accepted.
const MAX_LINE: u64 = 1024;

/// Binds the socket at `path` (replacing a stale one) and answers requests on a thread.
pub fn serve(path: &Path, state: Arc<State>) -> io::Result<JoinHandle<()>> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = session(stream, &state) {
                            eprintln!("shoal-lazyfs: control connection: {e}");
                        }
                    }
                    Err(e) => eprintln!("shoal-lazyfs: control accept: {e}"),
                }
            }
        })
}

fn session(stream: UnixStream, state: &State) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if (&mut reader).take(MAX_LINE).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let answer = execute(line.trim(), state);
        out.write_all(answer.as_bytes())?;
        out.write_all(b"\n")?;
    }
}

/// Carries out one request and returns the answer line (without its newline).
pub fn execute(command: &str, state: &State) -> String {
    match command {
        "status" => {
            let dirty = state.dirty();
            let s = state.stats();
            format!(
                "ok powered={} dirty_files={} dirty_bytes={} written_bytes={} syncs={} synced_bytes={} cuts={} dropped_files={} dropped_bytes={}",
                u8::from(state.powered()),
                dirty.files,
                dirty.bytes,
                s.written_bytes,
                s.syncs,
                s.synced_bytes,
                s.cuts,
                s.dropped_files,
                s.dropped_bytes
            )
        }
        "cut" => {
            let dropped = state.cut();
            format!(
                "ok dropped_files={} dropped_bytes={} powered=0",
                dropped.files, dropped.bytes
            )
        }
        "on" => {
            state.power_on();
            "ok powered=1".to_string()
        }
        "sync" => match state.sync_all() {
            Ok(synced) => format!(
                "ok synced_files={} synced_bytes={}",
                synced.files, synced.bytes
            ),
            Err(e) => format!("err sync: {e}"),
        },
        other => format!("err unknown command {other:?} (status, cut, on, sync)"),
    }
}

/// An answer: `key=value` fields after `ok`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The fields in order.
    pub fields: Vec<(String, String)>,
}

impl Answer {
    /// Parses an answer line; an `err` line becomes an error.
    pub fn parse(line: &str) -> io::Result<Answer> {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("ok") else {
            return Err(io::Error::other(line.to_string()));
        };
        let fields = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Answer { fields })
    }

    /// A numeric field.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// Sends one request to the socket at `path` and returns the raw answer line.
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.write_all(command.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(64 * 1024)
        .read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the filesystem closed the control connection without answering",
        ));
    }
    Ok(line.trim_end().to_string())
}
