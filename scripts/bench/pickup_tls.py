#!/usr/bin/env python3
"""Mission pickup latency of an enrolled factory over each Redis transport: the same consumer
(`factoryctl consume`, its own user and inbox) reached over the unix socket, plain TCP and TLS
(`rediss://`, verified against UA_REDIS_TLS_CA), one redis-server, missions published the same
way (`factoryctl publish update --wait`, HQ on the unix socket), in the same run.

Each transport's consumer runs alone (started here, stopped with SIGTERM by its pid), and the
transports take turns in ROUNDS rounds of COUNT/ROUNDS missions each, so drift in the machine's
load falls on all of them alike. Pickup is the result's `received_at` minus the job record's
`published_at` (as in pickup.py): for TLS that includes the relay's decryption.

usage: pickup_tls.py SOCKET FACTORYCTL FACTORY_ID FACTORY_DIR COUNT ROUNDS CA OUT_JSON NAME=URL...
  SOCKET       the redis-server's unix socket (HQ publishes and reads through it)
  FACTORY_ID   an enrolled factory; each URL carries its own user and password
  FACTORY_DIR  the checkout its consumer updates (--no-sync --no-restart)
  CA           the CA certificate (PEM) given as UA_REDIS_TLS_CA to rediss:// consumers
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import redis

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/bench/ by the import below
from pickup import percentile, published_at  # noqa: E402

WARMUP = 5  # missions per turn before any is counted: the consumer's first reads fault its code in


def main():
    sock, factoryctl, factory_id, factory_dir = sys.argv[1:5]
    count, rounds, ca, out = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
    transports = [arg.split("=", 1) for arg in sys.argv[9:]]
    r = redis.Redis(unix_socket_path=sock)
    registration = "factoryctl:f:{%s}:registration" % factory_id
    hq = dict(os.environ, UA_REDIS_URL="unix://" + sock, FACTORY_ROLE="HEADQUARTERS")
    for name in [k for k in hq if k.startswith("UA_REDIS_TLS_") or k in ("UA_FACTORY_ID", "UA_FACTORY_ENROLLED")]:
        del hq[name]
    samples = {name: [] for name, _ in transports}
    per_turn = max(1, count // rounds)

    def mission():
        argv = [factoryctl, "publish", "update", "--target", factory_id, "--force", "--wait", "--timeout", "30",
                "--json", "--log-level", "error"]
        summary = json.loads(subprocess.run(argv, env=hq, check=True, capture_output=True, text=True).stdout)
        result = summary["results"][0]["result"]
        return (result["received_at"] - published_at(r, summary["job_id"])) * 1000

    for _ in range(rounds):
        for name, url in transports:
            env = dict(hq, UA_REDIS_URL=url, UA_FACTORY_ID=factory_id, UA_FACTORY_ENROLLED="1")
            del env["FACTORY_ROLE"]
            if url.startswith("rediss://"):
                env["UA_REDIS_TLS_CA"] = ca
            log = open(os.path.join(os.path.dirname(out), "consume-%s.log" % name), "ab")
            consumer = subprocess.Popen([factoryctl, "consume", "--factory-dir", factory_dir, "--no-restart", "--no-sync",
                                         "--min-interval", "0", "--log-level", "warning"], env=env, stderr=log)
            try:
                deadline = time.time() + 30
                while True:  # registered by this process: connected and about to block on its inbox
                    text = r.get(registration)
                    if text and json.loads(text).get("pid") == consumer.pid:
                        break
                    if consumer.poll() is not None or time.time() > deadline:
                        sys.exit("pickup_tls: the %s consumer did not register (see %s)" % (name, log.name))
                    time.sleep(0.02)
                for i in range(WARMUP + per_turn):
                    latency = mission()
                    if i >= WARMUP:
                        samples[name].append(latency)
                    time.sleep(0.005)  # as pickup.py: back in its blocking read before the next
            finally:
                consumer.send_signal(signal.SIGTERM)
                try:
                    consumer.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    consumer.kill()
                    consumer.wait()
                log.close()

    result = {"missions": per_turn * rounds, "rounds": rounds}
    for name, values in samples.items():
        result[name] = {"p50": statistics.median(values), "p99": percentile(values, 99), "mean": statistics.mean(values)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
