#!/usr/bin/env python3
"""Issue 22, "Measure the fleet at size": HQ's real binary against a simulated enrolled fleet, and
the largest real-consumer fleet this machine holds. Python 3 standard library only; Redis is spoken
in raw RESP over a unix socket.

usage:
  fleet_sim.py report --factoryctl PATH [--sizes 1000,10000] [--update-mean 5 --update-sd 1]
                      [--splay 10] [--workers 4] [--window 10%] [--id-prefix P] [--only wait|window]
                      [--hq-prefix CMD] [--json OUT]
      For each N: a redis-server of its own (temp dir, unix socket), N enrolled factories (the
      `factoryctl:enrolled` row, the ACL user and the inbox group `enroll` creates), run by a few
      worker processes as N light consumers, and on the HQ side the real binary:
        publish update --commit C --wait          (broadcast; /usr/bin/time -v)
        publish update --commit C --splay S --wait
        publish update --commit C --canary 1 --batch 25%   (a rollout, 5 waves)
        status --fleet, status --fleet --json      (median of 5)
        serve, GET / (curl: bytes, time)           (median of 5)
      and prints a Markdown table and notes. `--only wait` runs just the two --wait broadcasts
      (plain and --splay; the status, page, rollout, --window and held runs are skipped, and their
      rows and notes left out); `--only window` (with --window) runs just the --max-in-flight
      rollout. `--hq-prefix
      CMD` runs those two under CMD (split on spaces, e.g. "env MALLOC_ARENA_MAX=1" or
      "heaptrack -o /tmp/h"): for finding where memory goes, not for the recorded figures.
  fleet_sim.py real --factoryctl PATH [--consumers 30] [--splays 0,5]
      Real `factoryctl consume --no-sync` processes (the fake systemctl on PATH), each with its
      own clone of one bare origin served by `git daemon` (git://127.0.0.1), not enrolled; per
      broadcast: publish -> all results, peak concurrent git-upload-pack processes (sampled every
      50 ms), git host CPU per fetch (the daemon's process tree).
  fleet_sim.py worker ...   (internal: one process of simulated factories)

What a simulated factory does, as MissionConsumer does for an enrolled factory:
  - registers: SET factoryctl:f:{ID}:registration <Registration JSON, sorted keys> at start,
    every 15 s (heartbeat), "updating" with metadata.current_job_id (and splay_seconds_left) when
    it takes an update, and "online" again after it; after an update that changed the checkout it
    "exits" and, after --restart-seconds (RestartSec 200 ms + start-up), registers again with the
    new commit, a new pid and a later started_at;
  - reads its inbox with its own group: XREADGROUP GROUP factoryctl:ID ID COUNT 10 STREAMS
    factoryctl:f:{ID}:inbox > (only while idle, as the one-threaded consumer does; a wake-up
    comes from one multi-key XREAD BLOCK per worker, a hint only);
  - filters by target (all / one id / ids / glob), dead-letters entries with a field over 64 KiB
    (StreamEntry.maxFieldBytes) to its own dlq, supersedes older updates read in the same batch;
  - waits the mission's splay (uniform in [0, splay_seconds)) plus a modelled update time, then
    writes its result with MissionBus.ownResultScript (SET NX EX on factoryctl:f:{ID}:job:JOB, XADD
    to factoryctl:f:{ID}:results) in the JSON the real consumer writes, and XACKs.
Each worker sends everything due at once in one pipelined write.
"""
import argparse
import fnmatch
import heapq
import json
import math
import os
import queue
import random
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ENROLLED = b"factoryctl:enrolled"
REGISTRY = b"factoryctl:registry"
INBOX_MAXLEN = b"256"
JOB_RETENTION = b"604800"
MAX_FIELD = 64 * 1024
OWN_RESULT_SCRIPT = (b"if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end\n"
                     b"redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job_id', ARGV[4], 'status', ARGV[5], 'envelope', ARGV[1])\n"
                     b"return 1")
MULTI_TARGET = None  # any target_factory_id with target_factory_ids/glob present


# ---------------------------------------------------------------- RESP

class RedisErr(Exception):
    pass


class Incomplete(Exception):
    pass


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _parse(buf, pos):
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    t = buf[pos]
    if t == 36:  # $
        n = int(buf[pos + 1:end])
        if n < 0:
            return None, end + 2
        start = end + 2
        if len(buf) < start + n + 2:
            raise Incomplete
        return bytes(buf[start:start + n]), start + n + 2
    if t == 42:  # *
        n = int(buf[pos + 1:end])
        if n < 0:
            return None, end + 2
        pos = end + 2
        items = []
        for _ in range(n):
            v, pos = _parse(buf, pos)
            items.append(v)
        return items, pos
    if t == 43:  # +
        return bytes(buf[pos + 1:end]), end + 2
    if t == 58:  # :
        return int(buf[pos + 1:end]), end + 2
    if t == 45:  # -
        return RedisErr(buf[pos + 1:end].decode()), end + 2
    raise ValueError("bad RESP type %r" % chr(t))


class Redis:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = bytearray()
        self.pos = 0

    def send(self, payload):
        self.sock.sendall(payload)

    def read(self):
        # A parse is tried again only when the unparsed part has doubled since the last
        # incomplete try, or when the socket has nothing more for now: a reply of many MB arriving
        # in socket-sized pieces is not parsed from its start once per piece.
        need, drained = 1, False
        while True:
            avail = len(self.buf) - self.pos
            if avail and (avail >= need or drained):
                try:
                    value, pos = _parse(self.buf, self.pos)
                    self.pos = pos
                    if pos > (1 << 20) and pos * 2 > len(self.buf):
                        del self.buf[:pos]
                        self.pos = 0
                    return value
                except Incomplete:
                    need = 2 * avail
            data = self.sock.recv(4 << 20)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
            drained = not select.select([self.sock], [], [], 0)[0]

    def pipeline(self, commands):
        if not commands:
            return []
        self.send(b"".join(commands))
        return [self.read() for _ in commands]

    def call(self, *args):
        self.send(enc(*args))
        value = self.read()
        if isinstance(value, RedisErr):
            raise value
        return value

    def close(self):
        self.sock.close()


# Factory ids are ID_PREFIX + 5 digits ("sim-00042"); --id-prefix makes them longer (issue 22: a
# rollout wave of long ids used to be over the consumer's 64 KiB field limit).
ID_PREFIX = "sim-"


def fid_of(i):
    return ID_PREFIX + "%05d" % i


def key(fid, name):
    return ("factoryctl:f:{%s}:%s" % (fid, name)).encode()


def pyjson(value):
    # JSONValue.pythonJSON: Python's json.dumps with sorted keys.
    return json.dumps(value, sort_keys=True).encode()


# ---------------------------------------------------------------- worker (simulated factories)

class Factory:
    __slots__ = ("fid", "idx", "commit", "started_at", "status", "last_job", "current_job", "pid", "splay_until",
                 "busy", "down", "mail", "group", "inbox", "reg_key", "bfid")

    def __init__(self, fid, idx, commit, pid):
        self.fid = fid
        self.bfid = fid.encode()
        self.idx = idx
        self.commit = commit
        self.started_at = time.time()
        self.status = "online"
        self.last_job = None
        self.current_job = None
        self.pid = pid
        self.splay_until = 0.0
        self.busy = False   # running an update (the consumer thread is in the pipeline)
        self.down = False   # exited for its restart
        self.mail = False   # entries announced while busy: read them once idle
        self.group = ("factoryctl:" + fid).encode()
        self.inbox = key(fid, "inbox")
        self.reg_key = key(fid, "registration")


class Worker:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.version = a.version
        ids = [fid_of(i) for i in range(a.first, a.first + a.count)]
        self.factories = [Factory(fid, i, a.commit, 100000 + a.first + i) for i, fid in enumerate(ids)]
        self.by_inbox = {f.inbox: f for f in self.factories}
        self.redis = Redis(a.sock)
        self.heap = []
        self.seq = 0
        self.events = queue.Queue()
        self.stop = False
        self.hold = False
        self.subscribed = threading.Event()
        self.envelopes = {}  # envelope bytes -> parsed mission (the same copy sits in every inbox)
        self.reset_stats()

    def reset_stats(self):
        self.stats = {"results": 0, "dead_lettered": 0, "ignored": 0, "superseded": 0, "registrations": 0,
                      "pickup_ms": [], "lag_ms": [], "round_ms_max": 0.0, "max_envelope_bytes": 0, "model_max_s": 0.0,
                      "cpu_s0": time.process_time(), "t0": time.time()}

    def at(self, t, kind, f, data=None):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, f, data))

    def registration(self, f, now):
        caps = ["factoryctl", "factoryctl:" + self.version, "system:update_factory", "system:pause_factory",
                "system:resume_factory", "commit:" + f.commit[:7]]
        metadata = {"factory_dir": "/srv/factory", "consumer_group": "factoryctl:" + f.fid}
        if f.current_job:
            metadata["current_job_id"] = f.current_job
        if f.splay_until > now:
            metadata["splay_seconds_left"] = int(math.ceil(f.splay_until - now))
        reg = {"factory_id": f.fid, "factory_role": "LOCAL_WORKER", "deployment_profile": "local_worker",
               "registration_status": f.status, "capabilities": caps, "metadata": metadata, "branch": "main",
               "commit": f.commit, "version": self.version, "pid": f.pid, "host": "sim-host-" + f.fid[len(ID_PREFIX):],
               "started_at": f.started_at, "last_seen_at": now}
        if f.last_job:
            reg["last_job_id"], reg["last_job_status"] = f.last_job
        self.stats["registrations"] += 1
        return enc(b"SET", f.reg_key, pyjson(reg))

    # --- the watcher: keyevent notifications of XADD (the key name only), a hint that mail came.
    # (A multi-key XREAD BLOCK would do too, but it returns every entry a second time: with a
    # rollout wave's 33 KB envelopes that is 80 MB per worker per wave.)
    def watch(self):
        r = Redis(self.a.sock)
        r.call("SUBSCRIBE", "__keyevent@0__:xadd")
        self.subscribed.set()
        while not self.stop:
            got = []
            while True:
                msg = r.read()
                if isinstance(msg, list) and msg[0] == b"message":
                    f = self.by_inbox.get(msg[2])
                    if f:
                        got.append(f)
                if r.pos >= len(r.buf):
                    break
            if got:
                self.events.put(("mail", got))

    def control(self):
        for line in sys.stdin:
            self.events.put(("ctl", line.strip()))
        self.events.put(("ctl", "quit"))

    def run(self):
        now = time.time()
        batch = [self.registration(f, now) for f in self.factories]
        for f in self.factories:
            self.at(now + self.rng.uniform(0, self.a.heartbeat), "hb", f)
        for start in range(0, len(batch), 1000):
            self.redis.pipeline(batch[start:start + 1000])
        threading.Thread(target=self.watch, daemon=True).start()
        threading.Thread(target=self.control, daemon=True).start()
        self.subscribed.wait(10)
        print(json.dumps({"ready": len(self.factories)}), flush=True)
        pending = []  # (command, callback or None)
        while True:
            timeout = max(0.0, self.heap[0][0] - time.time()) if self.heap else 1.0
            if pending:
                timeout = 0
            items = []
            try:
                items.append(self.events.get(timeout=min(timeout, 1.0)))
                while True:
                    items.append(self.events.get_nowait())
            except queue.Empty:
                pass
            for kind, data in items:
                if kind == "mail":
                    for f in data:
                        if f.busy or f.down or self.hold:
                            f.mail = True
                        else:
                            pending.append(self.read_inbox(f))
                elif kind == "ctl":
                    if data == "quit":
                        self.stop = True
                        return
                    if data == "stats":
                        self.report()
                    if data == "hold":
                        self.hold = True
                        print(json.dumps({"hold": True}), flush=True)
                    if data == "release":
                        self.hold = False
                        for f in self.factories:
                            if f.mail and not (f.busy or f.down):
                                f.mail = False
                                pending.append(self.read_inbox(f))
                        print(json.dumps({"release": True}), flush=True)
                    if data == "reset":
                        self.reset_stats()
                        print(json.dumps({"reset": True}), flush=True)
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                t, _, kind, f, data = heapq.heappop(self.heap)
                pending.extend(self.fire(t, now, kind, f, data))
            if not pending:
                continue
            t0 = time.time()
            while pending:
                todo, pending = pending, []
                replies = self.redis.pipeline([c for c, _ in todo])
                for (_, callback), reply in zip(todo, replies):
                    if isinstance(reply, RedisErr):
                        print(json.dumps({"error": str(reply)}), file=sys.stderr, flush=True)
                    if callback:
                        pending.extend(callback(reply))
            self.stats["round_ms_max"] = max(self.stats["round_ms_max"], (time.time() - t0) * 1000)

    def report(self):
        s = self.stats
        pick, lag = sorted(s["pickup_ms"]), sorted(s["lag_ms"])

        def pct(v, p):
            return v[min(len(v) - 1, int(len(v) * p))] if v else None
        out = {k: s[k] for k in ("results", "dead_lettered", "ignored", "superseded", "registrations", "round_ms_max",
                                 "max_envelope_bytes", "model_max_s")}
        out.update({"pickup_ms_p50": pct(pick, .5), "pickup_ms_max": pick[-1] if pick else None,
                    "lag_ms_p50": pct(lag, .5), "lag_ms_p99": pct(lag, .99), "lag_ms_max": lag[-1] if lag else None,
                    "cpu_s": time.process_time() - s["cpu_s0"], "wall_s": time.time() - s["t0"]})
        print(json.dumps({"stats": out}), flush=True)

    def read_inbox(self, f):
        cmd = enc(b"XREADGROUP", b"GROUP", f.group, f.bfid, b"COUNT", b"10", b"STREAMS", f.inbox, b">")
        return cmd, lambda reply: self.entries(f, reply)

    def mission(self, envelope):
        m = self.envelopes.get(envelope)
        if m is None:
            env = json.loads(envelope)
            ctx = env.get("payload", {}).get("context", {})
            m = {"job_id": env["job_id"], "kind": ctx.get("mission_kind", ""), "branch": ctx.get("branch") or "main",
                 "commit": ctx.get("commit"), "splay": int(ctx.get("splay_seconds") or 0),
                 "timeout": env.get("timeout_seconds", 300), "ids": None, "glob": None,
                 "target": ctx.get("target_factory_id", "")}
            if ctx.get("target_factory_ids") is not None:
                m["ids"] = set(ctx["target_factory_ids"])
            elif ctx.get("target_factory_glob") is not None:
                m["glob"] = ctx["target_factory_glob"]
            if len(self.envelopes) > 64:
                self.envelopes.clear()
            self.envelopes[envelope] = m
        return m

    @staticmethod
    def targets(m, fid):
        if m["ids"] is not None:
            return fid in m["ids"]
        if m["glob"] is not None:
            return fnmatch.fnmatchcase(fid, m["glob"])
        return m["target"] in ("", fid)

    def entries(self, f, reply):
        out = []
        if not reply or isinstance(reply, RedisErr):
            return out
        now = time.time()
        updates = []
        if sum(len(items) for _, items in reply) >= 10:
            f.mail = True  # more may be waiting: read again once idle
        for _, items in reply:
            for entry_id, raw in items:
                self.stats["pickup_ms"].append(now * 1000 - int(entry_id.split(b"-")[0]))
                fields = dict(zip(raw[0::2], raw[1::2])) if raw else {}
                size = max((len(v) for v in fields.values()), default=0)
                self.stats["max_envelope_bytes"] = max(self.stats["max_envelope_bytes"], size)
                ack = enc(b"XACK", f.inbox, f.group, entry_id)
                if size > MAX_FIELD:
                    # StreamEntry: a field over 64 KiB is cut and the entry dead-lettered, never run.
                    self.stats["dead_lettered"] += 1
                    out.append((enc(b"XADD", key(f.fid, "dlq"), b"MAXLEN", b"~", b"10000", b"*", b"job_id",
                                    fields.get(b"job_id", b""), b"failure_error", b"field envelope is %d bytes (the limit is 65536)" % size,
                                    b"source_stream", f.inbox, b"source_id", entry_id), None))
                    out.append((ack, None))
                    continue
                m = self.mission(fields.get(b"envelope", b"{}"))
                if not m["kind"].startswith("system:") or not self.targets(m, f.fid):
                    self.stats["ignored"] += 1
                    out.append((ack, None))
                    continue
                if m["kind"] in ("system:pause_factory", "system:resume_factory"):
                    pause = m["kind"] == "system:pause_factory"
                    result = {"factory_id": f.fid, "mission_kind": m["kind"], "outcome": "paused" if pause else "resumed",
                              "changed": False, "received_at": now, "finished_at": now}
                    f.status = "paused" if pause else "online"
                    f.last_job = (m["job_id"], "SUCCESS")
                    out.append(self.result_command(f, m["job_id"], "SUCCESS", result, None))
                    out.append((ack, None))
                    out.append((self.registration(f, now), None))
                    continue
                updates.append((entry_id, m, ack))
        if updates:
            newest = updates[-1]
            for entry_id, m, ack in updates[:-1]:
                self.stats["superseded"] += 1
                result = {"factory_id": f.fid, "mission_kind": m["kind"], "outcome": "superseded", "failure": "superseded",
                          "superseded_by": newest[1]["job_id"], "branch": m["branch"], "changed": False,
                          "received_at": now, "finished_at": now}
                out.append(self.result_command(f, m["job_id"], "FAILED", result, "superseded by " + newest[1]["job_id"]))
                out.append((ack, None))
            out.extend(self.start_update(f, newest[0], newest[1], newest[2], now))
        return out

    def start_update(self, f, entry_id, m, ack, now):
        f.busy = True
        f.status = "updating"
        f.current_job = m["job_id"]
        splay = 0.0
        if m["splay"] > 0:
            splay = min(self.rng.uniform(0, m["splay"]), max(0.0, m["timeout"] - 60))
        f.splay_until = now + splay
        if self.a.update_sd > 0:
            work = max(self.a.update_min, self.rng.gauss(self.a.update_mean, self.a.update_sd))
        else:
            work = self.a.update_mean
        self.stats["model_max_s"] = max(self.stats["model_max_s"], splay + work)
        self.at(now + splay + work, "done", f, (entry_id, m, ack, now, splay, work))
        return [(self.registration(f, now), None)]

    def result_command(self, f, job_id, status, result, error):
        envelope = pyjson({"job_id": job_id, "status": status, "result": result, "error": error})
        self.stats["results"] += 1
        return (enc(b"EVAL", OWN_RESULT_SCRIPT, b"2", key(f.fid, "job:" + job_id), key(f.fid, "results"), envelope,
                    JOB_RETENTION, INBOX_MAXLEN, job_id, status), None)

    def fire(self, t, now, kind, f, data):
        if kind == "hb":
            self.at(t + self.a.heartbeat, "hb", f)
            if f.down:
                return []
            return [(self.registration(f, now), None)]
        if kind == "done":
            entry_id, m, ack, received, splay, work = data
            self.stats["lag_ms"].append((now - t) * 1000)
            target = m["commit"] or ("%040x" % (hash(m["job_id"]) & (2 ** 160 - 1)))
            failed = self.rng.random() < self.a.fail_rate
            changed = not failed and target != f.commit
            steps = {"status": 5, "fetch": int(work * 100), "checkout": 5, "restart": int(work * 850)}
            if splay > 0:
                steps["splay"] = int(splay * 1000)
            result = {
                "factory_id": f.fid, "mission_kind": m["kind"], "branch": m["branch"],
                "from_commit": f.commit, "to_commit": f.commit if failed else target, "attempted_commit": target,
                "from": f.commit, "to": f.commit if failed else target, "attempted": target,
                "upstream": target, "pinned": m["commit"], "needs_attention": False, "changed": changed,
                "rolled_back": failed, "synced": False, "sync_skipped": True, "restarted": changed,
                "soak_seconds": 0.0, "soaked": False,
                "integration": "none" if failed else ("fast_forward" if changed else "up_to_date"),
                "commit_count": 1 if changed else 0, "duration_ms": int(work * 1000), "steps_ms": steps,
                "received_at": received, "finished_at": now, "restart_requested": changed,
                "outcome": "rolled_back" if failed else ("updated" if changed else "up_to_date"),
            }
            if failed:
                result["failure"] = "restart_failed"
            status = "FAILED" if failed else "SUCCESS"
            out = [self.result_command(f, m["job_id"], status, result, "simulated failure" if failed else None), (ack, None)]
            f.last_job = (m["job_id"], status)
            if changed:
                # Exits for systemd's restart; the registration says "updating" until it is back.
                f.down = True
                self.at(now + self.a.restart_seconds, "restart", f, target)
            else:
                f.busy = False
                f.current_job = None
                f.status = "online"
                out.append((self.registration(f, now), None))
                if f.mail:
                    f.mail = False
                    out.append(self.read_inbox(f))
            return out
        if kind == "restart":
            f.commit = data
            f.started_at = now
            f.pid += 1000000
            f.status = "online"
            f.current_job = None
            f.busy = f.down = False
            out = [(self.registration(f, now), None)]
            # A new consumer reads its pending entries, then new ones.
            f.mail = False
            out.append(self.read_inbox(f))
            return out
        return []


def worker_main(argv):
    p = argparse.ArgumentParser(prog="fleet_sim.py worker")
    p.add_argument("--sock", required=True)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--version", default="0.2.0")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--heartbeat", type=float, default=15)
    p.add_argument("--update-mean", type=float, default=5)
    p.add_argument("--update-sd", type=float, default=1)
    p.add_argument("--update-min", type=float, default=0.5)
    p.add_argument("--restart-seconds", type=float, default=0.3)
    p.add_argument("--fail-rate", type=float, default=0)
    p.add_argument("--id-prefix", default="sim-")
    a = p.parse_args(argv)
    global ID_PREFIX
    ID_PREFIX = a.id_prefix
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Worker(a).run()


# ---------------------------------------------------------------- HQ side helpers

def redis_server(directory):
    sock = os.path.join(directory, "redis.sock")
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
                             "--appendonly", "no", "--dir", directory, "--maxclients", "20000", "--loglevel", "warning",
                             "--logfile", os.path.join(directory, "redis.log"),
                             "--notify-keyspace-events", "Et", "--slowlog-log-slower-than", "5000", "--slowlog-max-len", "100000"])
    for _ in range(200):
        if os.path.exists(sock):
            try:
                Redis(sock).call("PING")
                return proc, sock
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def used_memory(r):
    info = r.call("INFO", "memory").decode()
    return int(re.search(r"used_memory:(\d+)", info).group(1))


def stop_process(proc, sig=signal.SIGTERM, wait=10):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parse_time_v(path):
    text = open(path).read()

    def field(name):
        m = re.search(re.escape(name) + r"[^:]*: (.*)", text)
        return m.group(1).strip() if m else None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    elapsed = m.group(1) if m else None
    parts = [float(x) for x in elapsed.split(":")] if elapsed else [0]
    wall = 0.0
    for part in parts:
        wall = wall * 60 + part
    return {"user_s": float(field("User time")), "sys_s": float(field("System time")),
            "max_rss_mb": int(field("Maximum resident set size")) / 1024, "wall_s": wall}


def timed(cmd, env, out_path, err_path):
    """Runs cmd under /usr/bin/time -v; returns (exit code, wall s, time -v figures)."""
    tv = out_path + ".time"
    t0 = time.time()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        rc = subprocess.call(["/usr/bin/time", "-v", "-o", tv] + cmd, env=env, stdout=out, stderr=err)
    wall = time.time() - t0
    return rc, wall, t0, parse_time_v(tv)


class Fleet:
    """The simulated fleet: W worker processes."""

    def __init__(self, sock, n, workers, commit, args, version):
        self.procs = []
        per = (n + workers - 1) // workers
        for w in range(workers):
            first, count = w * per, min(per, n - w * per)
            if count <= 0:
                break
            cmd = [sys.executable, os.path.abspath(__file__), "worker", "--sock", sock, "--first", str(first),
                   "--count", str(count), "--commit", commit, "--version", version, "--seed", str(args.seed + w),
                   "--update-mean", str(args.update_mean), "--update-sd", str(args.update_sd),
                   "--restart-seconds", str(args.restart_seconds), "--fail-rate", str(args.fail_rate),
                   "--id-prefix", ID_PREFIX]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
        for p in self.procs:
            line = json.loads(p.stdout.readline())
            assert "ready" in line, line

    def ask(self, what):
        for p in self.procs:
            p.stdin.write(what + "\n")
            p.stdin.flush()
        replies = []
        for p in self.procs:
            replies.append(json.loads(p.stdout.readline()))
        return replies

    def stats(self):
        rows = [r["stats"] for r in self.ask("stats")]
        merged = {}
        for k in ("results", "dead_lettered", "ignored", "superseded", "registrations"):
            merged[k] = sum(r[k] for r in rows)
        for k in ("round_ms_max", "lag_ms_max", "pickup_ms_max", "lag_ms_p99", "max_envelope_bytes", "model_max_s"):
            merged[k] = max((r[k] for r in rows if r[k] is not None), default=None)
        merged["cpu_s"] = sum(r["cpu_s"] for r in rows)
        merged["wall_s"] = max(r["wall_s"] for r in rows)
        merged["pickup_ms_p50"] = statistics.median([r["pickup_ms_p50"] for r in rows if r["pickup_ms_p50"] is not None] or [0])
        return merged

    def reset(self):
        self.ask("reset")

    def stop(self):
        for p in self.procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait()


def enroll_fleet(r, n, with_acl):
    """What `factoryctl enroll ID` leaves in Redis for each factory (FactoryKeys, Enrollment)."""
    now = time.time()
    cmds = []
    for i in range(n):
        fid = fid_of(i)
        record = {"enrolled_at": now, "factory_id": fid, "token_sha256": secrets.token_hex(32), "user": "factory:" + fid}
        cmds.append(enc(b"HSET", ENROLLED, fid, pyjson(record)))
        cmds.append(enc(b"XGROUP", b"CREATE", key(fid, "inbox"), "factoryctl:" + fid, b"0", b"MKSTREAM"))
        if with_acl:
            base = "factoryctl:f:{%s}:" % fid
            rules = ["resetkeys", "resetchannels", "-@all", "+auth", "+hello", "+ping", "+select", "+time", "+client|reply",
                     "+client|setname", "+client|id", "(+xreadgroup +xack +xpending +xgroup|create ~%sinbox)" % base,
                     "(+set ~%sregistration)" % base, "(+set +xadd +eval ~%sresults ~%sjob:*)" % (base, base),
                     "(+xadd ~%sdlq)" % base]
            cmds.append(enc(b"ACL", b"SETUSER", "factory:" + fid, b"reset", b"on", ">" + secrets.token_hex(16), *rules))
        if len(cmds) >= 3000:
            check(r.pipeline(cmds))
            cmds = []
    check(r.pipeline(cmds))


def check(replies):
    for reply in replies:
        if isinstance(reply, RedisErr):
            raise reply


def wait_registered(r, n, commit=None, timeout=60):
    ids = [fid_of(i) for i in range(n)]
    deadline = time.time() + timeout
    while time.time() < deadline:
        count = 0
        for start in range(0, n, 1000):
            for v in r.call("MGET", *[key(i, "registration") for i in ids[start:start + 1000]]):
                if v and (commit is None or (b'"commit": "%s"' % commit.encode()) in v and b'"online"' in v):
                    count += 1
        if count >= n:
            return True
        time.sleep(0.2)
    return False


def last_finished(r, n, job_ids):
    """Latest finished_at and received_at among the results in the factories' own job keys."""
    ids = [fid_of(i) for i in range(n)]
    finished, received, count = [], [], 0
    for job in job_ids:
        for start in range(0, n, 1000):
            for v in r.call("MGET", *[key(i, "job:" + job) for i in ids[start:start + 1000]]):
                if v:
                    res = json.loads(v)["result"]
                    finished.append(res["finished_at"])
                    received.append(res["received_at"])
                    count += 1
    return count, (max(finished) if finished else None), (max(received) if received else None)


def median_run(cmd, env, runs=5):
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
        size = len(out.stdout)
        if out.returncode != 0:
            raise RuntimeError("%s exited %d" % (cmd, out.returncode))
    return statistics.median(times), size


def redis_cli_read(sock, n, runs=5):
    """The plain read status --fleet makes, for reference: HKEYS of the enrolled hash, HGETALL of the
    shared registry, MGET of the registrations 1,000 at a time, with redis-cli."""
    path = os.path.join(os.path.dirname(sock), "status.txt")
    with open(path, "w") as out:
        out.write("HKEYS factoryctl:enrolled\nHGETALL factoryctl:registry\n")
        ids = sorted(fid_of(i) for i in range(n))
        for start in range(0, n, 1000):
            out.write("MGET " + " ".join(key(i, "registration").decode() for i in ids[start:start + 1000]) + "\n")
    times = []
    for _ in range(runs):
        with open(path) as f:
            t0 = time.perf_counter()
            subprocess.run(["redis-cli", "-s", sock], stdin=f, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def serve_page(factoryctl, env, directory, runs=5):
    env = dict(env, UA_OPS_TOKEN=secrets.token_hex(16))
    log = open(os.path.join(directory, "serve.log"), "wb")
    proc = subprocess.Popen([factoryctl, "serve", "--port", "0", "--log-level", "notice"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        port = None
        for _ in range(200):
            m = re.search(r"listening on [^:]+:(\d+)", open(os.path.join(directory, "serve.log")).read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if not port:
            raise RuntimeError("serve did not start: " + open(os.path.join(directory, "serve.log")).read()[-2000:])
        out = {}
        for path in ("/", "/?show=attention", "/?page=2"):
            rows = []
            for _ in range(runs):
                res = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                                      "http://127.0.0.1:%d%s" % (port, path)], stdout=subprocess.PIPE, text=True)
                code, size, total = res.stdout.split()
                rows.append((int(code), int(size), float(total)))
            out[path] = {"code": rows[-1][0], "bytes": rows[-1][1], "time_s": statistics.median(r[2] for r in rows)}
        return out
    finally:
        stop_process(proc)
        log.close()


def slowlog(r):
    """Commands Redis spent >= 5 ms on since the last call, by command and key count."""
    entries = r.call("SLOWLOG", "GET", "-1") or []
    r.call("SLOWLOG", "RESET")
    groups = {}
    for e in entries:
        args = e[3]
        name = args[0].decode().upper()
        if name == "EVAL":
            name = "EVAL(%s keys)" % args[2].decode()
        elif len(args) > 3:
            more = re.match(rb"\.\.\. \((\d+) more", args[-1])
            name = "%s(%d args)" % (name, len(args) - 1 + int(more.group(1)) if more else len(args))
        g = groups.setdefault(name, [0, 0, 0])
        g[0] += 1
        g[1] += e[2] / 1000
        g[2] = max(g[2], e[2] / 1000)
    top = sorted(groups.items(), key=lambda kv: -kv[1][1])[:4]
    return "; ".join("%s ×%d, %.0f ms in all, max %.0f ms" % (k, v[0], v[1], v[2]) for k, v in top) or "none"


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in parts[11:15]) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- report

def redis_figures(r, row, redis_proc, redis_cpu0, mem0, n):
    """Redis's CPU over the scenarios run, its memory per factory at the end, and its peak; closes r."""
    row["redis_cpu_s"] = cpu_of(redis_proc.pid) - redis_cpu0
    row["mem_end_b"] = (used_memory(r) - mem0) / n
    row["redis_peak_mb"] = int(re.search(r"used_memory_peak:(\d+)", r.call("INFO", "memory").decode()).group(1)) / 1e6
    r.close()


def run_size(args, n, factoryctl, version):
    directory = tempfile.mkdtemp(prefix="fleet-sim-%d-" % n)
    redis_proc, fleet = None, None
    row = {"n": n}
    try:
        redis_proc, sock = redis_server(directory)
        r = Redis(sock)
        mem0 = used_memory(r)
        enroll_fleet(r, n, not args.no_acl)
        mem_enrolled = used_memory(r)
        commit0 = secrets.token_hex(20)
        fleet = Fleet(sock, n, args.workers, commit0, args, version)
        if not wait_registered(r, n):
            raise RuntimeError("not every simulated factory registered")
        mem_registered = used_memory(r)
        row["mem_enrolled_b"] = (mem_enrolled - mem0) / n
        row["mem_registered_b"] = (mem_registered - mem_enrolled) / n
        env = dict(os.environ, UA_REDIS_URL="unix://" + sock, FACTORY_ROLE="HEADQUARTERS")
        env.pop("UA_FACTORY_DIR", None)
        redis_cpu0 = cpu_of(redis_proc.pid)

        def broadcast(label, extra, nominal):
            commit = secrets.token_hex(20)
            fleet.reset()
            slowlog(r)
            out = os.path.join(directory, label + ".json")
            prefix = args.hq_prefix.split() if args.hq_prefix else []
            rc, wall, t0, tv = timed(prefix + [factoryctl, "publish", "update", "--commit", commit, "--wait", "--timeout", "900",
                                               "--json", "--log-level", "error"] + extra, env, out, out + ".err")
            text = open(out).read()
            if prefix and (text.startswith("{") or "\n{" in text):  # a profiler's own lines around it
                summary = json.JSONDecoder().raw_decode(text, 0 if text.startswith("{") else text.find("\n{") + 1)[0]
            else:
                summary = json.loads(text) if text.strip() else {}
            jobs = [summary.get("job_id")] if summary.get("job_id") else []
            count, finished, received = last_finished(r, n, jobs)
            s = fleet.stats()
            row[label] = {"rc": rc, "wall_s": wall, "results": count, "all_results_s": finished - t0 if finished else None,
                          "last_pickup_s": received - t0 if received else None, "time": tv, "sim": s,
                          "nominal_s": nominal, "ok": len([x for x in summary.get("results", []) if x.get("status") == "SUCCESS"]),
                          "pending": len(summary.get("pending", [])), "timed_out": summary.get("timed_out"),
                          "stderr": open(out + ".err").read()[-400:], "slowlog": slowlog(r), "job": summary.get("job_id", "")}
            print("  %s: rc %d, wall %.2f s, results %d, HQ cpu %.2f s, rss %.1f MB, sim cpu %.1f s, lag max %s ms"
                  % (label, rc, wall, count, tv["user_s"] + tv["sys_s"], tv["max_rss_mb"], s["cpu_s"], s["lag_ms_max"]),
                  file=sys.stderr, flush=True)

        def staged(label, flags):
            """A staged rollout (`publish update --commit C FLAGS`) run to its end: row[label]."""
            commit = secrets.token_hex(20)
            fleet.reset()
            slowlog(r)
            out = os.path.join(directory, label + ".json")
            rc, wall, t0, tv = timed([factoryctl, "publish", "update", "--commit", commit] + flags +
                                     ["--wave-timeout", "900", "--json", "--log-level", "error"], env, out, out + ".err")
            s = fleet.stats()
            try:
                summary = json.load(open(out))
            except ValueError:
                summary = {}
            row[label] = {"rc": rc, "wall_s": wall, "time": tv, "sim": s, "state": summary.get("state"),
                          "stderr": open(out + ".err").read()[-400:], "slowlog": slowlog(r)}
            return rc, wall, summary, s

        def windowed():
            rc, wall, summary, _ = staged("window", ["--max-in-flight", args.window])
            print("  window %s: rc %d, wall %.2f s, state %s" % (args.window, rc, wall, summary.get("state")), file=sys.stderr, flush=True)

        if args.only == "window":
            windowed()
            redis_figures(r, row, redis_proc, redis_cpu0, mem0, n)
            return row
        # The model's own ideal: the longest (splay + update time) a factory can draw is about
        # mean + 4 sd; the goal compares with the nominal update time plus the splay.
        nominal_update = args.update_mean + (4 * args.update_sd if args.update_sd > 0 else 0)
        broadcast("broadcast", [], args.update_mean)
        mem_after = used_memory(r)
        row["mem_after_update_b"] = (mem_after - mem_registered) / n
        # Where one factory's bytes are (MEMORY USAGE of its keys; the enrolled hash shared out).
        job = row["broadcast"]["job"]
        row["mem_keys_b"] = {name: r.call("MEMORY", "USAGE", key(fid_of(0), name), "SAMPLES", "0")
                             for name in ("inbox", "registration", "results", "job:" + job)}
        row["mem_keys_b"]["enrolled hash / N"] = r.call("MEMORY", "USAGE", ENROLLED, "SAMPLES", "0") / n
        row["mem_keys_b"]["job record factoryctl:jobs:JOB / N"] = (r.call("MEMORY", "USAGE", "factoryctl:jobs:" + job, "SAMPLES", "0") or 0) / n
        time.sleep(2)
        broadcast("splay", ["--splay", str(args.splay)], args.update_mean + args.splay)
        if args.only == "wait":
            redis_figures(r, row, redis_proc, redis_cpu0, mem0, n)
            return row
        time.sleep(2)
        # Status views while the fleet idles and heartbeats.
        row["status_s"], row["status_bytes"] = median_run([factoryctl, "status", "--fleet"], env)
        row["status_json_s"], row["status_json_bytes"] = median_run([factoryctl, "status", "--fleet", "--json"], env)
        row["redis_cli_s"] = redis_cli_read(sock, n)
        row["page"] = serve_page(factoryctl, env, directory)
        # A staged rollout: canary 1, then batches of 25 %.
        if not args.no_rollout:
            rc, wall, summary, s = staged("rollout", ["--canary", "1", "--batch", "25%"])
            row["rollout"]["waves"] = len(summary.get("waves", [])) or 5
            print("  rollout: rc %d, wall %.2f s, state %s, dead-lettered %d, max envelope %s B"
                  % (rc, wall, summary.get("state"), s["dead_lettered"], s["max_envelope_bytes"]), file=sys.stderr, flush=True)
        if args.window:
            windowed()
        # What --wait holds with every factory still owed a result (the fleet holds its mail for
        # 5 s), and what publish alone holds.
        fleet.ask("hold")
        slowlog(r)
        out = os.path.join(directory, "held.json")
        rc, wall, t0, tv = timed([factoryctl, "publish", "update", "--commit", secrets.token_hex(20), "--wait", "--timeout", "5",
                                  "--json", "--log-level", "error"], env, out, out + ".err")
        row["held_wait"] = {"rc": rc, "wall_s": wall, "time": tv, "slowlog": slowlog(r)}
        out = os.path.join(directory, "nowait.json")
        rc, wall, t0, tv = timed([factoryctl, "publish", "update", "--force", "--commit", secrets.token_hex(20), "--json",
                                  "--log-level", "error"], env, out, out + ".err")
        row["no_wait"] = {"rc": rc, "wall_s": wall, "time": tv, "slowlog": slowlog(r)}
        print("  held --wait 5 s: rss %.1f MB, cpu %.2f s; publish alone: rss %.1f MB, %.2f s" % (
            row["held_wait"]["time"]["max_rss_mb"], row["held_wait"]["time"]["user_s"] + row["held_wait"]["time"]["sys_s"],
            row["no_wait"]["time"]["max_rss_mb"], row["no_wait"]["wall_s"]), file=sys.stderr, flush=True)
        redis_figures(r, row, redis_proc, redis_cpu0, mem0, n)
    finally:
        if fleet:
            fleet.stop()
        if redis_proc:
            stop_process(redis_proc)
        if args.keep:
            print("kept " + directory, file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return row


def fmt(v, unit="", digits=2):
    return "-" if v is None else ("%.*f%s" % (digits, v, unit))


def markdown(rows, args, version, commit):
    lines = []
    lines.append("Simulated enrolled fleet: update time normal(mean %.1f s, sd %.1f s, at least 0.5 s), restart %.1f s, "
                 "heartbeat 15 s, %d worker processes; factoryctl %s (%s)." % (args.update_mean, args.update_sd,
                                                                               args.restart_seconds, args.workers, version, commit))
    lines.append("")
    lines.append("| figure | N | factoryctl | reference, same run | ratio | goal | met |")
    lines.append("|---|---|---|---|---|---|---|")
    for row in rows:
        n = "{:,}".format(row["n"])
        ideal_tail = args.update_mean + 4 * args.update_sd if args.update_sd > 0 else args.update_mean
        for label, splay in (("broadcast", 0), ("splay", args.splay)) if "broadcast" in row else ():  # --only window: none
            b = row[label]
            ref = args.update_mean + splay
            model = b["sim"]["model_max_s"]
            what = "publish --wait%s → all results" % (" --splay %d" % splay if splay else "")
            ratio = b["all_results_s"] / model if b["all_results_s"] and model else None
            goal = "≤ 2×" if row["n"] >= 10000 else "reported"
            met = ("yes" if ratio and ratio <= 2 and b["results"] == row["n"] else "no") if row["n"] >= 10000 else ""
            lines.append("| %s (%d of %d results) | %s | %s | modelled: slowest factory's splay + update %s (mean update %.1f s%s = %.1f s: %s) | %s | %s | %s |" % (
                what, b["results"], row["n"], n, fmt(b["all_results_s"], " s"), fmt(model, " s"), args.update_mean,
                " + splay %d s" % splay if splay else "", ref, fmt(b["all_results_s"] / ref, "×") if b["all_results_s"] else "-",
                fmt(ratio, "×"), goal, met))
            lines.append("| publish --wait%s: whole process (results + re-registered) | %s | %s | same | %s | reported | |" % (
                " --splay %d" % splay if splay else "", n, fmt(b["wall_s"], " s"), fmt(b["wall_s"] / ref, "×")))
            cpu = b["time"]["user_s"] + b["time"]["sys_s"]
            lines.append("| --wait%s: HQ CPU / peak RSS | %s | %s CPU, %.1f MB | wall %s | %s CPU/wall | RSS ≤ 50 MB | %s |" % (
                " --splay %d" % splay if splay else "", n, fmt(cpu, " s"), b["time"]["max_rss_mb"], fmt(b["wall_s"], " s"),
                fmt(cpu / b["wall_s"], ""), "yes" if b["time"]["max_rss_mb"] <= 50 else "no"))
        if "broadcast" not in row:  # --only window: its line below, nothing else was run
            wi = row["window"]
            cpu = wi["time"]["user_s"] + wi["time"]["sys_s"]
            lines.append("| rollout --max-in-flight %s (state %s) | %s | %s; HQ %s CPU, %.1f MB | | | reported | |" % (
                args.window, wi["state"], n, fmt(wi["wall_s"], " s"), fmt(cpu, " s"), wi["time"]["max_rss_mb"]))
            continue
        lines.append("| Redis memory per factory: enrolled (row, ACL user, inbox + group) / registered / one update's residue | %s | %s / %s / %s | | | reported | |" % (
            n, fmt(row["mem_enrolled_b"] / 1024, " KB"), fmt(row["mem_registered_b"] / 1024, " KB"),
            fmt(row["mem_after_update_b"] / 1024, " KB")))
        lines.append("| Redis memory per factory at the end (all scenarios) / peak | %s | %s | peak %.1f MB | | reported | |" % (
            n, fmt(row["mem_end_b"] / 1024, " KB"), row["redis_peak_mb"]))
        if "status_s" not in row:  # --only wait
            continue
        lines.append("| status --fleet (median of 5) | %s | %s (%d B) | redis-cli, the same reads %s | %s | ≤ 2× | %s |" % (
            n, fmt(row["status_s"] * 1000, " ms"), row["status_bytes"], fmt(row["redis_cli_s"] * 1000, " ms"),
            fmt(row["status_s"] / row["redis_cli_s"], "×"), "yes" if row["status_s"] <= 2 * row["redis_cli_s"] else "no"))
        lines.append("| status --fleet --json (median of 5) | %s | %s (%d B) | redis-cli %s | %s | ≤ 2× | %s |" % (
            n, fmt(row["status_json_s"] * 1000, " ms"), row["status_json_bytes"], fmt(row["redis_cli_s"] * 1000, " ms"),
            fmt(row["status_json_s"] / row["redis_cli_s"], "×"), "yes" if row["status_json_s"] <= 2 * row["redis_cli_s"] else "no"))
        page = row["page"]["/"]
        lines.append("| fleet page GET / (curl, median of 5) | %s | %s KB in %s | | | first response ≤ 200 KB | %s |" % (
            n, fmt(page["bytes"] / 1024, "", 1), fmt(page["time_s"] * 1000, " ms"), "yes" if page["bytes"] <= 200 * 1024 else "no"))
        for path in ("/?show=attention", "/?page=2"):
            p = row["page"][path]
            lines.append("| fleet page GET %s | %s | %s KB in %s (HTTP %d) | | | reported | |" % (
                path, n, fmt(p["bytes"] / 1024, "", 1), fmt(p["time_s"] * 1000, " ms"), p["code"]))
        if "rollout" in row:
            ro = row["rollout"]
            ref = 5 * (args.update_mean + args.restart_seconds)
            lines.append("| rollout --canary 1 --batch 25%% (5 waves, state %s) | %s | %s | 5 × (update %.1f s + restart) = %.1f s | %s | reported | |" % (
                ro["state"], n, fmt(ro["wall_s"], " s"), args.update_mean, ref, fmt(ro["wall_s"] / ref, "×")))
            cpu = ro["time"]["user_s"] + ro["time"]["sys_s"]
            lines.append("| rollout: HQ CPU / peak RSS | %s | %s, %.1f MB | | | | |" % (n, fmt(cpu, " s"), ro["time"]["max_rss_mb"]))
        if "window" in row:
            wi = row["window"]
            cpu = wi["time"]["user_s"] + wi["time"]["sys_s"]
            lines.append("| rollout --max-in-flight %s (state %s) | %s | %s; HQ %s CPU, %.1f MB | | | reported | |" % (
                args.window, wi["state"], n, fmt(wi["wall_s"], " s"), fmt(cpu, " s"), wi["time"]["max_rss_mb"]))
    lines.append("")
    lines.append("Notes:")
    for row in rows:
        for label in ("broadcast", "splay", "rollout", "window"):
            if label not in row:
                continue
            s = row[label]["sim"]
            lines.append("- N=%d %s: simulator %s CPU over %s (all workers; %.0f%% of one core), largest pipelined round %s, "
                         "result written at most %s ms after it was due (p99 %s ms), mission pickup p50 %s ms / max %s ms after XADD, "
                         "%d results, %d dead-lettered, largest envelope %s B; publish exit %d%s" % (
                             row["n"], label, fmt(s["cpu_s"], " s", 1), fmt(s["wall_s"], " s", 1),
                             100 * s["cpu_s"] / max(s["wall_s"], 0.001), fmt(s["round_ms_max"], " ms", 0), fmt(s["lag_ms_max"], "", 0),
                             fmt(s["lag_ms_p99"], "", 0), fmt(s["pickup_ms_p50"], "", 1), fmt(s["pickup_ms_max"], "", 0),
                             s["results"], s["dead_lettered"], s["max_envelope_bytes"], row[label]["rc"],
                             (", stderr: " + row[label]["stderr"].strip().replace("\n", " ")[-200:]) if row[label]["rc"] else ""))
            lines.append("  - Redis commands ≥ 5 ms during it (SLOWLOG): " + row[label].get("slowlog", "?"))
        if "held_wait" in row:
            h, w = row["held_wait"], row["no_wait"]
            lines.append("- N=%d: publish --wait --timeout 5 with no factory answering (all %d owed a result): peak RSS %.1f MB, CPU %.2f s in %.2f s (exit %d); Redis ≥ 5 ms: %s" % (
                row["n"], row["n"], h["time"]["max_rss_mb"], h["time"]["user_s"] + h["time"]["sys_s"], h["wall_s"], h["rc"], h["slowlog"]))
            lines.append("- N=%d: publish alone (no --wait, --force): peak RSS %.1f MB, %.2f s wall (exit %d); Redis ≥ 5 ms: %s" % (
                row["n"], w["time"]["max_rss_mb"], w["wall_s"], w["rc"], w["slowlog"]))
        lines.append("- N=%d: Redis CPU over all scenarios %.1f s; one factory's keys after the first broadcast (MEMORY USAGE, bytes): %s" % (
            row["n"], row["redis_cpu_s"], ", ".join("%s %d" % (k.replace(row["broadcast"].get("job", ""), ""), v or 0)
                                                     for k, v in row.get("mem_keys_b", {}).items())))
    return "\n".join(lines)


def report_main(argv):
    p = argparse.ArgumentParser(prog="fleet_sim.py report")
    p.add_argument("--factoryctl", required=True)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--update-mean", type=float, default=5)
    p.add_argument("--update-sd", type=float, default=1)
    p.add_argument("--restart-seconds", type=float, default=0.3)
    p.add_argument("--splay", type=int, default=10)
    p.add_argument("--fail-rate", type=float, default=0)
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--no-acl", action="store_true", help="do not create the per-factory ACL users")
    p.add_argument("--no-rollout", action="store_true")
    p.add_argument("--window", default="", help="also run a --max-in-flight rollout with this window (e.g. 10%%)")
    p.add_argument("--id-prefix", default="sim-", help="factory ids are this plus 5 digits (a longer prefix: longer ids)")
    p.add_argument("--only", choices=["wait", "window"], default="",
                   help="run only these scenarios: 'wait' = the broadcast and --splay --wait runs; "
                        "'window' = the --max-in-flight rollout (give --window)")
    p.add_argument("--hq-prefix", default="", help="run the --wait runs' HQ binary under this command (profiling only)")
    p.add_argument("--json", default="")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    global ID_PREFIX
    ID_PREFIX = a.id_prefix
    factoryctl = os.path.abspath(a.factoryctl)
    version = subprocess.run([factoryctl, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip() or "0.2.0"
    commit = subprocess.run(["git", "-C", os.path.dirname(factoryctl), "rev-parse", "--short=12", "HEAD"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip() or "commit unknown"
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        print("N=%d" % n, file=sys.stderr, flush=True)
        rows.append(run_size(a, n, factoryctl, version))
        if a.json:
            json.dump(rows, open(a.json, "w"), indent=1)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    print(markdown(rows, a, version, commit))


# ---------------------------------------------------------------- real consumers

def real_main(argv):
    p = argparse.ArgumentParser(prog="fleet_sim.py real")
    p.add_argument("--factoryctl", required=True)
    p.add_argument("--consumers", type=int, default=30)
    p.add_argument("--splays", default="0,5")
    p.add_argument("--settle", default="3", help="the consumer's --settle (the fake units are Type=simple)")
    p.add_argument("--json", default="")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    factoryctl = os.path.abspath(a.factoryctl)
    repo_root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    fake = os.path.join(repo_root, "Tests", "fixtures", "fake-systemctl")
    d = tempfile.mkdtemp(prefix="fleet-real-")
    procs, groups = [], []
    out_rows = []
    try:
        bindir = os.path.join(d, "bin")
        os.makedirs(bindir)
        shutil.copy(fake, os.path.join(bindir, "systemctl"))
        os.chmod(os.path.join(bindir, "systemctl"), 0o755)
        redis_proc, sock = redis_server(d)
        procs.append(redis_proc)
        r = Redis(sock)
        git = lambda *args, cwd=None: subprocess.run(["git"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                                                      stderr=subprocess.DEVNULL)
        gitenv = dict(os.environ, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="Bench",
                      GIT_COMMITTER_EMAIL="b@example.com")
        # The app: 200 small files, as the other benchmarks' project.
        hq = os.path.join(d, "hq")
        os.makedirs(os.path.join(hq, "pkg"))
        for i in range(200):
            with open(os.path.join(hq, "pkg", "m%03d.py" % i), "w") as f:
                f.write("VALUE = %d\n" % i + "# filler\n" * 40)
        with open(os.path.join(hq, "pkg", "version.py"), "w") as f:
            f.write("VERSION = 0\n")
        subprocess.run(["git", "init", "-q", "-b", "main", hq], check=True)
        subprocess.run(["git", "add", "-A"], cwd=hq, check=True)
        subprocess.run(["git", "commit", "-qm", "app"], cwd=hq, check=True, env=gitenv)
        origin = os.path.join(d, "git", "origin.git")
        git("clone", "-q", "--bare", hq, origin)
        git("remote", "add", "origin", origin, cwd=hq)
        # The git host: git daemon on a free port; its process tree's CPU is the host's.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        # git-daemon itself (not the `git` wrapper, which would hold its children's CPU until it exits).
        exec_path = subprocess.run(["git", "--exec-path"], stdout=subprocess.PIPE, text=True).stdout.strip()
        daemon = subprocess.Popen([os.path.join(exec_path, "git-daemon"), "--reuseaddr", "--export-all", "--listen=127.0.0.1", "--port=%d" % port,
                                   "--base-path=" + os.path.join(d, "git"), "--max-connections=0", os.path.join(d, "git")],
                                  stderr=subprocess.DEVNULL)
        procs.append(daemon)
        url = "git://127.0.0.1:%d/origin.git" % port
        for _ in range(100):
            if subprocess.run(["git", "ls-remote", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"], UA_REDIS_URL="unix://" + sock)
        env.pop("UA_FACTORY_DIR", None)
        template = os.path.join(d, "template")
        git("clone", "-q", url, template)
        n = a.consumers
        for i in range(n):
            fdir = os.path.join(d, "f%d" % i)
            shutil.copytree(template, fdir, symlinks=True)
            os.makedirs(os.path.join(d, "s%d" % i))
            cenv = dict(env, FAKE_SYSTEMCTL_DIR=os.path.join(d, "s%d" % i), UA_FACTORY_ID="real-%03d" % i)
            loop = ('while :; do "$0" consume --factory-dir "$1" --service app --no-sync --min-interval 0 --settle "$2" '
                    '--log-level warning 2>>"$1.log"; rc=$?; [ $rc -eq 10 ] || exit $rc; sleep 0.2; done')
            g = subprocess.Popen(["setsid", "bash", "-c", loop, factoryctl, fdir, a.settle], env=cenv)
            groups.append(g)

        def registered(commit=None):
            regs = r.call("HGETALL", "factoryctl:registry") or []
            count = 0
            for v in regs[1::2]:
                try:
                    reg = json.loads(v)
                except ValueError:
                    continue
                if reg.get("factory_id", "").startswith("real-") and reg.get("registration_status") == "online" and \
                        (commit is None or reg.get("commit") == commit):
                    count += 1
            return count
        for _ in range(600):
            if registered() >= n:
                break
            time.sleep(0.1)
        if registered() < n:
            raise RuntimeError("only %d of %d consumers registered" % (registered(), n))
        hqenv = dict(env, FACTORY_ROLE="HEADQUARTERS")
        for splay in [int(x) for x in a.splays.split(",")]:
            with open(os.path.join(hq, "pkg", "version.py"), "w") as f:
                f.write("VERSION = %d\n" % (splay + 1) + "# %s\n" % secrets.token_hex(8))
            subprocess.run(["git", "commit", "-qam", "release %d" % splay], cwd=hq, check=True, env=gitenv)
            git("push", "-q", url.replace("git://127.0.0.1:%d/" % port, os.path.join(d, "git") + "/"), "main", cwd=hq)
            target = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hq, stdout=subprocess.PIPE, text=True).stdout.strip()
            time.sleep(1)
            cpu0 = cpu_of(daemon.pid)
            samples, peak, stop = [], [0], threading.Event()

            def sample():
                while not stop.is_set():
                    count = 0
                    for pid in os.listdir("/proc"):
                        if pid.isdigit():
                            try:
                                with open("/proc/%s/cmdline" % pid, "rb") as f:
                                    if b"upload-pack" in f.read():
                                        count += 1
                            except OSError:
                                pass
                    samples.append(count)
                    peak[0] = max(peak[0], count)
                    time.sleep(0.05)
            th = threading.Thread(target=sample, daemon=True)
            th.start()
            out = os.path.join(d, "publish-%d.json" % splay)
            cmd = [factoryctl, "publish", "update", "--commit", target, "--wait", "--timeout", "600", "--json", "--log-level", "error"]
            if splay:
                cmd += ["--splay", str(splay)]
            rc, wall, t0, tv = timed(cmd, hqenv, out, out + ".err")
            time.sleep(0.5)
            stop.set()
            th.join()
            host_cpu = cpu_of(daemon.pid) - cpu0
            summary = json.load(open(out)) if os.path.getsize(out) else {}
            results = summary.get("results", [])
            ok = [x for x in results if x["status"] == "SUCCESS" and x["result"].get("to_commit") == target]
            finished = [x["result"]["finished_at"] - t0 for x in ok]
            fetch = [x["result"].get("steps_ms", {}).get("fetch", 0) for x in ok]
            # Overlap of the fetch steps, from the factories' own clocks: a fetch runs from
            # received_at + splay + status to that + fetch.
            spans = []
            for x in ok:
                st = x["result"].get("steps_ms", {})
                begin = x["result"]["received_at"] + (st.get("splay", 0) + st.get("status", 0)) / 1000
                spans.append((begin, begin + st.get("fetch", 0) / 1000))
            overlap = 0
            for b, e in spans:
                overlap = max(overlap, sum(1 for b2, e2 in spans if b2 <= b < e2 or b2 == b))
            row = {"n": n, "splay": splay, "rc": rc, "succeeded": len(ok), "all_results_s": max(finished) if finished else None,
                   "wait_wall_s": wall, "peak_upload_pack": peak[0], "nonzero_samples": sum(1 for x in samples if x),
                   "fetch_overlap_from_steps": overlap, "fetch_ms_p50": statistics.median(fetch) if fetch else None,
                   "fetch_ms_max": max(fetch) if fetch else None, "git_host_cpu_s": host_cpu,
                   "git_host_cpu_per_fetch_ms": 1000 * host_cpu / max(1, len(ok)), "hq": tv}
            out_rows.append(row)
            print("  splay %d: rc %d, %d/%d ok, all results %.2f s, peak upload-pack %d, host cpu/fetch %.1f ms" % (
                splay, rc, len(ok), n, row["all_results_s"] or -1, peak[0], row["git_host_cpu_per_fetch_ms"]),
                file=sys.stderr, flush=True)
            for _ in range(100):
                if registered(target) >= n:
                    break
                time.sleep(0.1)
            time.sleep(1)
        r.close()
    finally:
        for g in groups:
            try:
                os.killpg(g.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for g in groups:
            try:
                g.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(g.pid, signal.SIGKILL)
                g.wait()
        for proc in reversed(procs):
            stop_process(proc)
        if a.keep:
            print("kept " + d, file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)
    if a.json:
        json.dump(out_rows, open(a.json, "w"), indent=1)
    print("| real consumers | splay | all SUCCESS (of N) | publish → all results | --wait wall | peak concurrent upload-pack (50 ms samples) | peak overlapping fetches (steps_ms) | fetch p50 / max | git host CPU per fetch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in out_rows:
        print("| %d | %d s | %d | %s | %s | %d | %d | %s / %s | %.1f ms |" % (
            row["n"], row["splay"], row["succeeded"], fmt(row["all_results_s"], " s"), fmt(row["wait_wall_s"], " s"),
            row["peak_upload_pack"], row["fetch_overlap_from_steps"], fmt(row["fetch_ms_p50"], " ms", 0),
            fmt(row["fetch_ms_max"], " ms", 0), row["git_host_cpu_per_fetch_ms"]))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("report", "real", "worker"):
        sys.exit(__doc__)
    {"report": report_main, "real": real_main, "worker": worker_main}[sys.argv[1]](sys.argv[2:])
