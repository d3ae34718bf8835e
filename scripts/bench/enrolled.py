#!/usr/bin/env python3
"""An enrolled fleet of N factories written straight into Redis, as `factoryctl enroll` and each
factory's consumer would leave it, without running enroll N times (no ACL users: publish and
status --fleet never use them), and the plain redis-cli reads and writes the benchmark compares
factoryctl with.

usage: enrolled.py fleet N DIR
  writes DIR/load.resp       for `redis-cli --pipe`: per factory its `factoryctl:enrolled` row
                             (Enrollment.Record JSON), its inbox with the consumer group
                             `factoryctl:<id>` (XGROUP CREATE ... 0 MKSTREAM, as enroll does) and its
                             registration (a registration JSON under factoryctl:f:{<id>}:registration)
         DIR/status.txt      for `redis-cli < FILE`: the commands `status --fleet` sends
                             (FleetRegistry.entries: HKEYS of the enrolled hash, HGETALL of the
                             shared registry, MGET of the registrations 1,000 keys at a time)
         DIR/ids             the ids, one a line
       enrolled.py xadds DIR ENTRY_JSON
  writes DIR/xadds.resp      for `redis-cli --pipe`: the entry (its fields, as `redis-cli --json
                             XRANGE` printed them) added to every inbox, MAXLEN ~ 256, as the
                             publish script does, one XADD per inbox
"""
import json
import os
import sys
import time

ENROLLED = b"factoryctl:enrolled"
REGISTRY = b"factoryctl:registry"
INBOX_MAXLEN = b"256"  # FactoryKeys.inboxMaxLength


def resp(*args):
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def key(factory_id, name):
    return ("factoryctl:f:{%s}:%s" % (factory_id, name)).encode()


def python_json(value):
    return json.dumps(value, separators=(", ", ": ")).encode()


def fleet(n, directory):
    now = time.time()
    ids = ["bench-%05d" % i for i in range(n)]
    with open(os.path.join(directory, "load.resp"), "wb") as out:
        for start in range(0, n, 1000):
            fields = []
            for factory_id in ids[start:start + 1000]:
                record = {"enrolled_at": now - 86400, "factory_id": factory_id, "token_sha256": os.urandom(32).hex(),
                          "user": "factory:" + factory_id}
                fields += [factory_id.encode(), python_json(record)]
            out.write(resp(b"HSET", ENROLLED, *fields))
        for i, factory_id in enumerate(ids):
            out.write(resp(b"XGROUP", b"CREATE", key(factory_id, "inbox"), ("factoryctl:" + factory_id).encode(), b"0", b"MKSTREAM"))
            reg = {"factory_id": factory_id, "factory_role": "LOCAL_WORKER", "deployment_profile": "local_worker",
                   "registration_status": "online", "capabilities": ["factoryctl", "factoryctl:0.2.0", "system:update_factory",
                   "system:pause_factory", "system:resume_factory", "commit:0123456"], "metadata": {"factory_dir": "/srv/factory",
                   "consumer_group": "factoryctl:" + factory_id}, "branch": "main", "commit": "0123456789abcdef0123456789abcdef01234567",
                   "version": "0.2.0", "pid": 1000 + i, "host": "host-%05d" % i, "started_at": now - 3600,
                   "last_seen_at": now - i % 60,
                   "last_job_id": "update-0123456789ab", "last_job_status": "SUCCESS"}
            out.write(resp(b"SET", key(factory_id, "registration"), python_json(reg)))
    with open(os.path.join(directory, "status.txt"), "w") as out:
        out.write("HKEYS factoryctl:enrolled\nHGETALL factoryctl:registry\n")
        owned = sorted(ids)
        for start in range(0, n, 1000):
            out.write("MGET " + " ".join(key(i, "registration").decode() for i in owned[start:start + 1000]) + "\n")
    with open(os.path.join(directory, "ids"), "w") as out:
        out.write("\n".join(ids) + "\n")


def xadds(directory, entry_json):
    # redis-cli --json XRANGE KEY - + COUNT 1: [[id, [field, value, ...]]]
    fields = [f.encode() for f in json.loads(entry_json)[0][1]]
    with open(os.path.join(directory, "ids")) as f:
        ids = f.read().split()
    with open(os.path.join(directory, "xadds.resp"), "wb") as out:
        for factory_id in ids:
            out.write(resp(b"XADD", key(factory_id, "inbox"), b"MAXLEN", b"~", INBOX_MAXLEN, b"*", *fields))


if __name__ == "__main__":
    if sys.argv[1] == "fleet":
        fleet(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "xadds":
        xadds(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
