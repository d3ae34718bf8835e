#!/usr/bin/env python3
"""Mission pickup latency: publish -> consumer has the mission, for factoryctl's consumer and for
a plain redis-py BLOCK consumer reading the same missions (its own consumer group on the same
stream), measured in the same run.

usage: pickup.py SOCKET FACTORYCTL FACTORY_ID COUNT OUT_JSON
  SOCKET      the redis-server unix socket
  FACTORYCTL  the binary (publishes each mission with `publish update --wait`)
  FACTORY_ID  the id of the running `factoryctl consume`
The reference consumer runs as a child process of this script and is stopped at the end.
Publish time is the job record's `published_at` (taken by `factoryctl publish` just before its
XADD); factoryctl's pickup is the result's `received_at`; the reference's is the time it had the
entry parsed (envelope JSON decoded), stored in the hash bench:pyref.
"""
import json
import os
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


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def main():
    if sys.argv[1] == "--reference":
        reference_consumer(sys.argv[2])
        return
    sock, factoryctl, factory_id, count, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    r = redis.Redis(unix_socket_path=sock)
    r.delete("bench:pyref:ready", "bench:pyref")
    child = subprocess.Popen([sys.executable, __file__, "--reference", sock])
    try:
        while not r.get("bench:pyref:ready"):
            time.sleep(0.01)
        ours, theirs = [], []
        env = dict(os.environ, UA_REDIS_URL="unix://" + sock, FACTORY_ROLE="HEADQUARTERS")
        for _ in range(count):
            out_text = subprocess.run(
                [factoryctl, "publish", "update", "--target", factory_id, "--force", "--wait", "--timeout", "30",
                 "--json", "--log-level", "error"], env=env, check=True, capture_output=True, text=True).stdout
            summary = json.loads(out_text)
            job = summary["job_id"]
            published = json.loads(r.hget("factoryctl:job:" + job, "meta"))["published_at"]
            received = summary["results"][0]["result"]["received_at"]
            deadline = time.time() + 10
            while (seen := r.hget("bench:pyref", job)) is None and time.time() < deadline:
                time.sleep(0.001)
            ours.append((received - published) * 1000)
            theirs.append((float(seen) - published) * 1000)
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
