#!/usr/bin/env python3
"""Reproduces the figures of docs/AVAILABILITY.md, in one run on one machine.

Starts clusters of release `shoal serve` processes on loopback (fsync'd writes, the default
`request_timeout_ms = 2000`), inflicts crashes with `kill -9`, and measures:

  1. the share of writes acknowledged with k of 5 nodes down (N=3, W=2 and W=3, k=0..3,
     sloppy quorum on and off), against the share of partitions that still have W live
     primaries;
  2. how long the hints take to reach two nodes that return after missing writes, and how
     many hints there were;
  3. throughput and p99 with `shoal bench` in steady state, with a node killed mid-run, and
     while it recovers (restarted, its hints coming home);
  4. acknowledged writes lost over all runs: every write acknowledged in (1) and (2) is read
     back (R=2) once every node is up again and no hint is left.

Usage:  python3 scripts/availability.py [--quick]      (--quick: fewer writes, shorter benches)
Needs python3 (standard library only) and cargo; prints Markdown tables on stdout.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target", "release", "shoal")
SECRET = "an availability-measurement secret of 32+ bytes"

# Every process this script started, killed at exit whatever happens.
PROCS = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """One keep-alive connection per thread and node."""

    def __init__(self, timeout=10.0):
        self.local = threading.local()
        self.timeout = timeout

    def _conn(self, addr):
        conns = self.local.__dict__.setdefault("conns", {})
        if addr not in conns:
            host, port = addr.rsplit(":", 1)
            conns[addr] = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return conns[addr]

    def request(self, addr, method, path, body=None, headers=None):
        """(status, headers, body) or (None, None, error) when the node does not answer."""
        conn = self._conn(addr)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conns.pop(addr, None)
            return None, None, str(e)

    def put(self, addr, key, value, w=None):
        path = f"/kv/{key}" + (f"?w={w}" if w else "")
        return self.request(addr, "PUT", path, body=value.encode())[0]

    def get(self, addr, key):
        """(status, values) with the values decoded."""
        import base64

        status, _, body = self.request(addr, "GET", f"/kv/{key}", headers={"accept": "application/json"})
        if status in (200, 300, 404):
            try:
                values = [base64.b64decode(v).decode() for v in json.loads(body).get("values", [])]
            except ValueError:
                values = []
            return status, values
        return status, []

    def text(self, addr, path):
        status, _, body = self.request(addr, "GET", path)
        return body.decode() if status == 200 else None


HTTP = Http()


class Cluster:
    """`count` release nodes on loopback, each with its own data directory."""

    def __init__(self, count, n=3, r=2, w=2, sloppy=True, timeout_ms=2000, extra=""):
        self.dir = tempfile.mkdtemp(prefix="shoal-availability-")
        self.count = count
        self.addrs = {i: (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}") for i in range(1, count + 1)}
        with open(os.path.join(self.dir, "secret"), "w") as f:
            f.write(SECRET)
        members = "".join(
            f'\n[[nodes]]\nid = {i}\nhttp = "{h}"\npeer = "{p}"\n' for i, (h, p) in self.addrs.items()
        )
        self.procs = {}
        for i, (h, p) in self.addrs.items():
            os.makedirs(os.path.join(self.dir, f"n{i}"))
            with open(self.config(i), "w") as f:
                f.write(
                    f'id = {i}\nhttp = "{h}"\npeer = "{p}"\ndata_dir = "{self.dir}/n{i}/db"\n'
                    f'secret_file = "{self.dir}/secret"\npartitions = 64\nn = {n}\nr = {r}\nw = {w}\n'
                    f"request_timeout_ms = {timeout_ms}\nsloppy_quorum = {'true' if sloppy else 'false'}\n"
                    f"{extra}\n{members}"
                )
        for i in self.addrs:
            self.spawn(i)
        for i in self.addrs:
            self.wait_ready(i)
        self.wait_states(self.ids(), self.ids(), ("up",))

    def config(self, i):
        return os.path.join(self.dir, f"n{i}", "node.toml")

    def ids(self):
        return list(self.addrs)

    def http(self, i):
        return self.addrs[i][0]

    def spawn(self, i):
        logf = open(os.path.join(self.dir, f"n{i}", "node.log"), "a")
        p = subprocess.Popen(
            # One runtime worker per node, as `shoal dev` gives nodes that share two cores.
            [SHOAL, "serve", "--config", self.config(i), "--threads", "1"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        PROCS.append(p)
        self.procs[i] = p

    def wait_ready(self, i, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if HTTP.text(self.http(i), "/health") is not None:
                return
            time.sleep(0.02)
        raise RuntimeError(f"node {i} did not start")

    def kill9(self, i):
        p = self.procs.pop(i)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def restart(self, i):
        self.spawn(i)
        self.wait_ready(i)

    def wipe(self, i):
        """Deletes a stopped node's data directory and identity file (a new disk)."""
        shutil.rmtree(os.path.join(self.dir, f"n{i}", "db"))
        os.remove(os.path.join(self.dir, f"n{i}", "db.identity"))

    def cpu_seconds(self, i):
        """User + system CPU time of node `i` so far."""
        fields = open(f"/proc/{self.procs[i].pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def state(self, frm, of):
        text = HTTP.text(self.http(frm), "/admin/nodes")
        if text is None:
            return None
        for node in json.loads(text):
            if node["id"] == of:
                return node["status"]["state"]
        return None

    def wait_states(self, observers, peers, states, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(self.state(o, p) in states for o in observers for p in peers if p != o):
                return
            time.sleep(0.05)
        raise RuntimeError(f"peers {peers} not {states} as seen from {observers}")

    def metric(self, ids, name):
        total = 0.0
        for i in ids:
            text = HTTP.text(self.http(i), "/metrics")
            if text is None:
                return None
            for line in text.splitlines():
                if line.startswith(name + " "):
                    total += float(line.split()[1])
        return total

    def running(self):
        return sorted(self.procs)

    def hints(self):
        """Hints held by the running nodes."""
        return self.metric(self.running(), "shoal_hints_held")

    def await_drained(self, timeout=120, poll=0.02):
        """Seconds until no node holds a hint."""
        start = time.time()
        while time.time() - start < timeout:
            if self.hints() == 0:
                return time.time() - start
            time.sleep(poll)
        raise RuntimeError("hints not drained")

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs = {}
        shutil.rmtree(self.dir, ignore_errors=True)


def ring_owners(nodes, q):
    """The owner of every partition, from `shoal ring` (placement is the node's own code)."""
    out = subprocess.run([SHOAL, "ring", "--nodes", str(nodes), "-q", str(q), "-n", "3"], check=True,
                         capture_output=True, text=True).stdout
    owners = []
    rows = out.split("owners by partition:")[1]
    for line in rows.strip().splitlines():
        owners += [int(c[1:]) for c in line.split(":", 1)[1].split()]
    return owners


def preference(owners, p, n):
    chosen = []
    for k in range(len(owners)):
        o = owners[(p + k) % len(owners)]
        if o not in chosen:
            chosen.append(o)
        if len(chosen) == n:
            break
    return chosen


def write_all(cluster, via, keys, value_of, w=None, threads=64):
    """Puts every key through the nodes of `via` in turn; returns [(key, value, status, secs)]."""
    def one(i_key):
        i, key = i_key
        value = value_of(key)
        t = time.time()
        status = HTTP.put(cluster.http(via[i % len(via)]), key, value, w)
        return key, value, status, time.time() - t

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, enumerate(keys)))


def lost_writes(cluster, acked, threads=32):
    """Acknowledged (key, value) pairs not readable (R=2) through the nodes in turn."""
    ids = cluster.ids()

    def one(i_kv):
        i, (key, value) = i_kv
        status, values = HTTP.get(cluster.http(ids[i % len(ids)]), key)
        return None if value in values else (key, value, status, values)

    with ThreadPoolExecutor(threads) as pool:
        return [m for m in pool.map(one, enumerate(acked)) if m]


LOST = {"acked": 0, "lost": 0}


def account(cluster, acked, what):
    lost = lost_writes(cluster, acked)
    LOST["acked"] += len(acked)
    LOST["lost"] += len(lost)
    if lost:
        log(f"LOST {len(lost)} acknowledged writes in {what}, e.g. {lost[:3]}")


def ack_share(writes_per_run):
    owners = ring_owners(5, 64)
    rows = []
    for sloppy in (True, False):
        for w in (2, 3):
            for k in range(4):
                down = [5, 4, 3][:k]
                live = [i for i in range(1, 6) if i not in down]
                c = Cluster(5, w=w, sloppy=sloppy)
                try:
                    for i in down:
                        c.kill9(i)
                    if down:
                        c.wait_states(live, down, ("down", "suspected"))
                    tag = f"s{int(sloppy)}w{w}k{k}"
                    t = time.time()
                    res = write_all(c, live, [f"{tag}-{i}" for i in range(writes_per_run)], lambda key: "v-" + key)
                    secs = time.time() - t
                    acked = [(key, v) for key, v, s, _ in res if s == 204]
                    other = {}
                    for _, _, s, _ in res:
                        if s != 204:
                            other[s] = other.get(s, 0) + 1
                    hints = c.hints() if down else 0
                    for i in down:
                        c.restart(i)
                    c.await_drained()
                    account(c, acked, tag)
                finally:
                    c.stop()
                expected = sum(
                    1 for p in range(64) if len([x for x in preference(owners, p, 3) if x in live]) >= w
                ) / 64
                share = len(acked) / len(res)
                rows.append((sloppy, w, k, share, expected, other, hints, secs))
                log(f"sloppy={sloppy} W={w} k={k}: {share:.3f} acknowledged (partitions with W live primaries: "
                    f"{expected:.3f}); failures {other}; {hints:.0f} hints; {secs:.1f} s")
    return rows


def hint_drain(writes):
    rows = []
    for w in (2, 3):
        c = Cluster(5, w=w)
        try:
            down = [4, 5]
            for i in down:
                c.kill9(i)
            c.wait_states([1, 2, 3], down, ("down", "suspected"))
            res = write_all(c, [1, 2, 3], [f"h{w}-{i}" for i in range(writes)], lambda key: "v-" + key + "x" * 1000)
            acked = [(key, v) for key, v, s, _ in res if s == 204]
            hints = c.hints()
            t = time.time()
            for i in down:
                c.restart(i)
            restarted = time.time() - t
            drained = c.await_drained() + restarted
            handed = c.metric(c.ids(), "shoal_hints_handed_off_total")
            account(c, acked, f"hint drain W={w}")
        finally:
            c.stop()
        rows.append((w, writes, len(acked), hints, handed, restarted, drained))
        log(f"W={w}: {hints:.0f} hints from {len(acked)} writes; drained {drained:.2f} s after the restarts began "
            f"({restarted:.2f} s of them restarting)")
    return rows


def refill(keys):
    """A 3-node cluster (N=3, W=3) holding `keys` keys; node 3 loses its disk and comes back
    empty; anti-entropy alone (no client request at all) refills it."""
    c = Cluster(3, w=3)
    try:
        t = time.time()
        res = write_all(c, [1, 2], [f"aae-{i}" for i in range(keys)], lambda key: "v-" + key + "x" * 100)
        acked = [(key, v) for key, v, s_, _ in res if s_ == 204]
        log(f"wrote {len(acked)} of {keys} keys in {time.time() - t:.1f} s")
        time.sleep(2)
        idle_window = 10
        before = {i: c.cpu_seconds(i) for i in c.ids()}
        time.sleep(idle_window)
        idle = {i: (c.cpu_seconds(i) - before[i]) / idle_window for i in c.ids()}
        exchanges = c.metric(c.ids(), "shoal_aae_exchanges_total")
        c.procs[3].send_signal(signal.SIGTERM)
        c.procs.pop(3).wait()
        c.wipe(3)
        moved_before = c.metric([1, 2], "shoal_aae_keys_repaired_total")
        start = time.time()
        c.restart(3)
        progress = []
        while time.time() - start < 600:
            n = c.metric([3], "shoal_storage_keys")
            progress.append((time.time() - start, n))
            if n is not None and n >= len(acked):
                break
            time.sleep(0.1)
        approx = time.time() - start
        # Then every key, exactly: one pass over node 3's own store, repeated on what is missing.
        missing = [k for k, _ in acked]
        passes = 0
        while missing and time.time() - start < 900:
            passes += 1
            with ThreadPoolExecutor(32) as pool:
                missing = [k for k, st in zip(missing, pool.map(
                    lambda k: HTTP.request(c.http(3), "GET", f"/admin/local/{k}")[0], missing)) if st != 200]
        exact = time.time() - start
        moved = c.metric(c.ids(), "shoal_aae_keys_repaired_total") - moved_before
        repairs = c.metric(c.ids(), "shoal_read_repairs_total")
        half = next((t for t, n in progress if n is not None and n >= len(acked) / 2), None)
    finally:
        c.stop()
    log(f"refill of {len(acked)} keys: approx count reached in {approx:.1f} s, every key checked present after "
        f"{exact:.1f} s ({passes} passes), {len(missing)} missing; idle CPU {idle}")
    return {"keys": len(acked), "approx": approx, "half": half, "exact": exact, "missing": len(missing),
            "moved": moved, "read_repairs": repairs, "idle_cpu": idle, "idle_exchanges": exchanges}


def bench(cluster, ids, secs, seed):
    out = subprocess.run(
        [SHOAL, "bench", "--nodes", ",".join(cluster.http(i) for i in ids), "--duration", f"{secs}s",
         "--concurrency", "32", "--value-size", "1024", "--keys", "10000", "--read-ratio", "0.5",
         "--seed", str(seed), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def aae_cost(secs, rounds=2):
    """Anti-entropy's cost: the same 3-node cluster shape (N=3, R=W=2) with anti-entropy at its
    default interval and switched off (`anti_entropy_interval_ms = 0`), side by side, `rounds`
    times each, alternating in ABBA order: idle CPU over 10 s, then `shoal bench` throughput
    and p99."""
    runs = []
    for r in range(rounds):
        # ABBA: which goes first alternates, so that a machine settling down favours neither.
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            c = Cluster(3, extra="" if on else "anti_entropy_interval_ms = 0")
            try:
                write_all(c, [1, 2, 3], [f"idle-{i}" for i in range(2000)], lambda key: "v" * 100)
                time.sleep(1)
                before = {i: c.cpu_seconds(i) for i in c.ids()}
                time.sleep(10)
                idle = sum(c.cpu_seconds(i) - before[i] for i in c.ids()) / 10 / len(c.ids())
                d = bench(c, c.ids(), secs, 10 + r)
                exchanges = c.metric(c.ids(), "shoal_aae_exchanges_total")
                repaired = c.metric(c.ids(), "shoal_aae_keys_repaired_total")
                unconfirmed = c.metric(c.ids(), "shoal_aae_unconfirmed_total")
            finally:
                c.stop()
            log(f"anti-entropy {'on' if on else 'off'}: idle {idle * 100:.2f} % per node, "
                f"{d['throughput_ops_s']:.0f} ops/s, put p99 {d['put']['p99_us'] / 1000:.2f} ms, "
                f"{repaired or 0:.0f} keys repaired, {unconfirmed or 0:.0f} differences gone when compared again")
            runs.append((on, idle, d, exchanges, repaired, unconfirmed))
    return runs


def throughput(secs):
    c = Cluster(5)
    phases = []
    try:
        via = [1, 2, 3, 4]  # clients never talk to node 5, the one that fails
        phases.append(("steady state, 5 nodes up", bench(c, via, secs, 1), None))
        killer = threading.Timer(2.0, lambda: c.kill9(5))
        killer.start()
        phases.append(("node 5 killed (kill -9) 2 s into the run", bench(c, via, secs, 2), None))
        killer.join()
        hints = c.hints()
        drain = {}

        def restart_and_time():
            t = time.time()
            c.restart(5)
            c.await_drained(timeout=secs * 4, poll=0.05)
            drain["secs"] = time.time() - t

        restarter = threading.Thread(target=restart_and_time)
        restarter.start()
        phases.append((f"node 5 restarted at 0 s, {hints:.0f} hints to hand over", bench(c, via, secs, 3), None))
        restarter.join()
        phases.append(("after recovery, 5 nodes up", bench(c, via, secs, 4), None))
    finally:
        c.stop()
    return phases, drain.get("secs")


def print_refill(aae):
    print(f"\n## Anti-entropy: a wiped replica refilled ({aae['keys']} keys, 3 nodes, N=3, W=3, Q=64)\n")
    half = f"{aae['half']:.1f} s" if aae["half"] is not None else "?"
    print(f"- half the keys back after {half}; the node's (approximate) key count reached {aae['keys']} after "
          f"{aae['approx']:.1f} s; every key checked present in its own store after {aae['exact']:.1f} s "
          f"(that includes the checking passes), {aae['missing']} missing;")
    print(f"- keys moved by anti-entropy (counted at both ends): {aae['moved']:.0f}; read repairs: "
          f"{aae['read_repairs']:.0f} (no client read);")
    cpu = ", ".join(f"node {i} {v * 100:.1f} %" for i, v in aae["idle_cpu"].items())
    print(f"- idle cluster holding the keys (anti-entropy and heartbeats only): CPU {cpu} of one core; "
          f"{aae['idle_exchanges']:.0f} exchanges started so far.")


def print_aae_cost(cost, secs):
    print(f"\n## Anti-entropy's cost (3 nodes, N=3 R=2 W=2, 32 clients, 1 KiB, 50 % reads, {secs} s "
          "per run, alternating on and off in ABBA order)\n")
    print("| anti-entropy | idle CPU per node | ops/s | get p99 ms | put p99 ms | exchanges started | "
          "differences gone when compared again | keys repaired |")
    print("|---|---|---|---|---|---|---|---|")
    for on, idle, d, exchanges, repaired, unconfirmed in cost:
        print(f"| {'every 500 ms' if on else 'off'} | {idle * 100:.2f} % | {d['throughput_ops_s']:.0f} | "
              f"{d['get']['p99_us'] / 1000:.2f} | {d['put']['p99_us'] / 1000:.2f} | {exchanges or 0:.0f} | "
              f"{unconfirmed or 0:.0f} | {repaired or 0:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer writes and keys, 5 s benches")
    ap.add_argument("--only", choices=["aae-cost", "anti-entropy"],
                    help="run only anti-entropy's cost, or it and the wiped replica's refill")
    args = ap.parse_args()
    writes, drain_writes, secs, aae_keys = (200, 2000, 5, 5000) if args.quick else (1000, 20000, 20, 100_000)
    started = time.time()
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "-p", "shoal"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        if args.only:
            if args.only == "anti-entropy":
                print_refill(refill(aae_keys))
            print_aae_cost(aae_cost(secs, rounds=4), secs)
            print(f"\n(measured in {time.time() - started:.0f} s)")
            return 0
        shares = ack_share(writes)
        drains = hint_drain(drain_writes)
        phases, recovery = throughput(secs)
        aae = refill(aae_keys)
        cost = aae_cost(secs)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "impl/src"], cwd=ROOT, capture_output=True,
                           text=True).stdout.count("\n")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Measured on {os.cpu_count()} cores ({cpu}), Linux {os.uname().release}, loopback; "
          f"commit {commit}" + (f" with {dirty} uncommitted files under impl/src" if dirty else "") + ".\n")
    print(f"## Writes acknowledged with k of 5 nodes down (N=3, R=2; {writes} writes per cell)\n")
    print("| sloppy quorum | W | k=0 | k=1 | k=2 | k=3 |")
    print("|---|---|---|---|---|---|")
    for sloppy in (True, False):
        for w in (2, 3):
            cells = []
            for (s, ww, k, share, expected, other, hints, secs_) in shares:
                if s == sloppy and ww == w:
                    cells.append(f"{share * 100:.1f} %" + ("" if sloppy else f" ({expected * 100:.1f} %)"))
            print(f"| {'on' if sloppy else 'off'} | {w} | " + " | ".join(cells) + " |")
    print("\nFailures and hints per cell:\n")
    for (s, w, k, share, expected, other, hints, secs_) in shares:
        print(f"- sloppy {'on' if s else 'off'}, W={w}, k={k}: failures {other or 'none'}, "
              f"{hints:.0f} hints, {secs_:.1f} s")
    print("\n## Hinted handoff: 2 of 5 nodes down, then back (N=3, 1 KiB values)\n")
    print("| W | writes acknowledged | hints held | handed off | restart (s) | all hints home (s) | hints/s |")
    print("|---|---|---|---|---|---|---|")
    for (w, n, acked, hints, handed, restarted, drained) in drains:
        print(f"| {w} | {acked} of {n} | {hints:.0f} | {handed:.0f} | {restarted:.2f} | {drained:.2f} | "
              f"{hints / max(drained - restarted, 1e-9):.0f} |")
    print(f"\n## Throughput (5 nodes, N=3 R=2 W=2, 32 clients on nodes 1-4, 1 KiB, 50 % reads, {secs} s each)\n")
    print("| phase | ops/s | get p50 / p99 ms | put p50 / p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, d, _ in phases:
        g, p = d["get"], d["put"]
        print(f"| {name} | {d['throughput_ops_s']:.0f} | {g['p50_us'] / 1000:.2f} / {g['p99_us'] / 1000:.2f} | "
              f"{p['p50_us'] / 1000:.2f} / {p['p99_us'] / 1000:.2f} | {d['errors']} {d.get('errors_by_kind') or ''} |")
    print(f"\nNode 5's hints were all home {recovery:.2f} s after its restart began (under load).")
    print_refill(aae)
    print_aae_cost(cost, secs)
    print(f"\n## Acknowledged writes lost\n\n{LOST['lost']} of {LOST['acked']} acknowledged writes "
          f"(every write acknowledged above, read back with R=2 once every node was up and no hint was left).")
    print(f"\n(measured in {time.time() - started:.0f} s)")
    return 1 if LOST["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
