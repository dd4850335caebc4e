//! Black-box test of the client-side commands: the real `shoal` binary runs `shoal baseline`
//! on a free loopback port, then `shoal bench` and `shoal put/get/delete` run against it as
//! separate processes, exactly as a user would run them.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test, built by cargo for this test.
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// Kills and reaps the child when dropped, so no server outlives the test, even on failure.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `shoal baseline` on port 0 and returns it with the address it printed.
fn start_baseline() -> (KillOnDrop, String) {
    let mut child = Command::new(SHOAL)
        .args(["baseline", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn shoal baseline");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the baseline's first line");
    let addr = line
        .trim()
        .strip_prefix("shoal baseline listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (guard, addr)
}

/// Runs `shoal ARGS` to completion, with `stdin` fed in, and returns its output.
fn shoal(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(SHOAL)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    // Standard input was taken and dropped above, so the child sees its end.
    child.wait_with_output().expect("wait for shoal")
}

/// Runs `shoal ARGS`, asserts it succeeded, and returns its standard output.
fn shoal_ok(args: &[&str]) -> String {
    let out = shoal(args, b"");
    assert!(
        out.status.success(),
        "shoal {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a 2000-op bench with the given seed and returns its JSON report.
fn bench(addr: &str, seed: &str) -> serde_json::Value {
    let stdout = shoal_ok(&[
        "bench",
        "--nodes",
        addr,
        "--ops",
        "2000",
        "--concurrency",
        "8",
        "--keys",
        "50",
        "--read-ratio",
        "0.3",
        "--seed",
        seed,
        "--json",
    ]);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Reads an unsigned integer field by JSON pointer.
fn num(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

#[test]
fn bench_against_the_baseline_adds_up() {
    let (_server, addr) = start_baseline();
    let report = bench(&addr, "7");

    let ops = num(&report, "/ops");
    let gets = num(&report, "/get/count");
    let puts = num(&report, "/put/count");
    assert_eq!(ops, 2000, "--ops 2000 runs exactly 2000 operations");
    assert_eq!(gets + puts, ops, "every op is a get or a put");
    assert_eq!(num(&report, "/errors"), 0, "no errors: {report}");
    assert_eq!(num(&report, "/seed"), 7, "the seed is reported");
    // 30% reads: the binomial standard deviation over 2000 ops is about 20 (1%).
    let read_share = gets as f64 / ops as f64;
    assert!(
        (0.25..=0.35).contains(&read_share),
        "read share {read_share} far from 0.3"
    );
    // Every GET is accounted for: found, not found or siblings (never, on the baseline).
    assert_eq!(
        num(&report, "/get/found") + num(&report, "/get/not_found"),
        gets
    );
    assert_eq!(num(&report, "/get/sibling_answers"), 0);
    // 1400 puts over 50 keys: nearly every later read finds a value.
    assert!(num(&report, "/get/found") > gets / 2, "{report}");
    for op in ["get", "put"] {
        let p50 = num(&report, &format!("/{op}/p50_us"));
        let p99 = num(&report, &format!("/{op}/p99_us"));
        let p999 = num(&report, &format!("/{op}/p999_us"));
        let max = num(&report, &format!("/{op}/max_us"));
        assert!(
            0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{op}: {report}"
        );
    }
    assert!(report["throughput_ops_s"].as_f64().is_some_and(|t| t > 0.0));

    // Same seed, same operation sequence: the same split between gets and puts.
    let again = bench(&addr, "7");
    assert_eq!(num(&again, "/get/count"), gets);
    assert_eq!(num(&again, "/put/count"), puts);
}

#[test]
fn put_get_delete_round_trip_through_the_cli() {
    let (_server, addr) = start_baseline();
    let node = addr.as_str();

    let missing = shoal(&["get", "--node", node, "greeting"], b"");
    assert!(!missing.status.success(), "a missing key is an error");
    assert!(String::from_utf8_lossy(&missing.stdout).contains("not found"));

    let put = shoal_ok(&["put", "--node", node, "greeting", "hello world"]);
    assert!(put.starts_with("ok, context: "), "{put}");
    let got = shoal_ok(&["get", "--node", node, "greeting"]);
    assert!(got.contains("value: hello world\n"), "{got}");
    assert!(got.contains("context: "), "{got}");

    // A key that needs escaping, a value from standard input, read back raw.
    let out = shoal(&["put", "--node", node, "a/b c?", "-"], b"line 1\nline 2");
    assert!(out.status.success(), "{out:?}");
    let raw = shoal(&["get", "--raw", "--node", node, "a/b c?"], b"");
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(raw.stdout, b"line 1\nline 2");
    // The escaped key is its own key, not "a".
    assert!(!shoal(&["get", "--node", node, "a"], b"").status.success());

    // A second put reads the context and replaces the value.
    shoal_ok(&["put", "--node", node, "greeting", "bonjour"]);
    let got = shoal_ok(&["get", "--node", node, "greeting"]);
    assert!(got.contains("value: bonjour\n"), "{got}");

    assert!(shoal_ok(&["delete", "--node", node, "greeting"]).contains("deleted"));
    let gone = shoal(&["get", "--node", node, "greeting"], b"");
    assert!(!gone.status.success(), "a deleted key reads as not found");
    let gone_out = String::from_utf8_lossy(&gone.stdout);
    assert!(gone_out.contains("not found"), "{gone_out}");
    assert!(
        gone_out.contains("context: "),
        "a tombstone keeps its history"
    );

    // The node's reason reaches the user.
    let bad = shoal(
        &[
            "put",
            "--node",
            node,
            "k",
            "v",
            "--context",
            "not-a-counter",
        ],
        b"",
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("400"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
