#!/usr/bin/env python3
"""Mission pickup latency: publish -> consumer has the mission, for factoryctl's consumer and for
a plain redis-py BLOCK consumer (XREADGROUP BLOCK, envelope JSON decoded), on the same kind of
missions published the same way (`factoryctl publish update`), in the same run.

The two are measured one after the other, each alone on the stream: both blocked on the same
stream at once, Redis serves them in the order they blocked, and the second would be charged
the first one's turn.

usage: pickup.py SOCKET FACTORYCTL FACTORY_ID CONSUMER_PID COUNT OUT_JSON
  SOCKET        the redis-server unix socket
  FACTORYCTL    the binary (publishes each mission)
  FACTORY_ID    the id of the running `factoryctl consume` (phase 1)
  CONSUMER_PID  its pid: stopped (SIGTERM) before phase 2
Publish time is the job record's `published_at` (HQ's record `factoryctl:jobs:<id>`, taken by
`factoryctl publish` just before its XADD). factoryctl's pickup is the result's `received_at`;
the reference's is the time it had the entry parsed, stored in the hash bench:pyref. The
reference runs as a child of this script.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import redis

STREAM = "ua:missions:delegation"


def reference_consumer(sock):
    r = redis.Redis(unix_socket_path=sock)
    try:
        r.xgroup_create(STREAM, "bench-pyref", id="$", mkstream=True)
    except redis.ResponseError:
        pass
    r.set("bench:pyref:ready", "1")
    while True:
        reply = r.xreadgroup("bench-pyref", "pyref", {STREAM: ">"}, count=10, block=15000)
        now = time.time()
        for _, entries in reply or []:
            for entry_id, fields in entries:
                envelope = json.loads(fields[b"envelope"])
                r.hset("bench:pyref", envelope["job_id"], repr(now))
                r.xack(STREAM, "bench-pyref", entry_id)


def published_at(r, job):
    """The job record's `published_at`: HQ's own record `factoryctl:jobs:<id>` (a string), or, as
    an older factoryctl kept it, the `meta` field of the job hash."""
    meta = r.get("factoryctl:jobs:" + job) or r.hget("factoryctl:job:" + job, "meta")
    return json.loads(meta)["published_at"]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def main():
    if sys.argv[1] == "--reference":
        reference_consumer(sys.argv[2])
        return
    sock, factoryctl, factory_id, consumer_pid, count, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    r = redis.Redis(unix_socket_path=sock)
    env = dict(os.environ, UA_REDIS_URL="unix://" + sock, FACTORY_ROLE="HEADQUARTERS")

    def publish(wait):
        argv = [factoryctl, "publish", "update", "--target", factory_id, "--force", "--json", "--log-level", "error"]
        if wait:
            argv += ["--wait", "--timeout", "30"]
        summary = json.loads(subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout)
        job = summary["job_id"]
        return summary, job, published_at(r, job)

    # Phase 1: factoryctl's consumer alone.
    ours = []
    for _ in range(count):
        summary, job, published = publish(wait=True)
        ours.append((summary["results"][0]["result"]["received_at"] - published) * 1000)
        time.sleep(0.005)  # the consumer is back in its blocking read before the next
    os.kill(consumer_pid, signal.SIGTERM)
    while True:
        try:
            os.kill(consumer_pid, 0)
            time.sleep(0.01)
        except ProcessLookupError:
            break
        except PermissionError:
            break

    # Phase 2: the redis-py consumer alone.
    r.delete("bench:pyref:ready", "bench:pyref")
    child = subprocess.Popen([sys.executable, __file__, "--reference", sock])
    try:
        while not r.get("bench:pyref:ready"):
            time.sleep(0.01)
        theirs = []
        for _ in range(count):
            _, job, published = publish(wait=False)
            deadline = time.time() + 10
            while (seen := r.hget("bench:pyref", job)) is None and time.time() < deadline:
                time.sleep(0.001)
            theirs.append((float(seen) - published) * 1000)
            time.sleep(0.005)  # as phase 1: the consumer is back in its blocking read before the next
        result = {
            "missions": count,
            "factoryctl": {"p50": statistics.median(ours), "p99": percentile(ours, 99)},
            "reference": {"p50": statistics.median(theirs), "p99": percentile(theirs, 99)},
        }
        with open(out, "w") as f:
            json.dump(result, f)
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    main()
