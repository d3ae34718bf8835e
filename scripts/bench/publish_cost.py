#!/usr/bin/env python3
"""Issue 22: what one publish costs HQ and Redis at fleet size, signed and unsigned.

usage:
  publish_cost.py --factoryctl PATH [--factoryctl PATH ...] [--n 10000] [--id-prefix sim-] [--runs 5]
                  [--targets all|ids|wave25] [--json OUT]

For each binary: a redis-server of its own (temp dir, unix socket), N enrolled factories (the rows,
inbox groups and registrations `enroll` and a running consumer leave, no ACL users, no consumers),
then `factoryctl publish update --commit C --force --json` RUNS times each unsigned and with
UA_MISSION_SIGNING_KEY (a key from `factoryctl keys generate`): wall time and peak RSS
(/usr/bin/time -v), the largest inbox entry's envelope, the stream entries written, and Redis
memory (INFO used_memory) added per publish. `--targets wave25` names the first 25% of the fleet
(what a rollout wave sends), `ids` every factory by id, `all` is the broadcast. Python 3 standard
library only; reuses fleet_sim.py's RESP client and helpers.
"""
import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_sim as sim  # noqa: E402


def register_fleet(r, n):
    now = time.time()
    cmds = []
    for i in range(n):
        fid = sim.fid_of(i)
        reg = {"factory_id": fid, "factory_role": "LOCAL_WORKER", "registration_status": "online",
               "capabilities": ["factoryctl", "system:update_factory"], "metadata": {}, "branch": "main",
               "commit": "0" * 40, "version": "0.2.0", "pid": 1000 + i, "host": "h", "started_at": now, "last_seen_at": now}
        cmds.append(sim.enc(b"SET", sim.key(fid, "registration"), sim.pyjson(reg)))
        if len(cmds) >= 3000:
            sim.check(r.pipeline(cmds))
            cmds = []
    sim.check(r.pipeline(cmds))


def largest_inbox_envelope(r, n):
    size = 0
    for i in (0, n // 2, n - 1):
        for entry in r.call("XREVRANGE", sim.key(sim.fid_of(i), "inbox"), "+", "-", "COUNT", "1") or []:
            fields = entry[1]
            for k in range(0, len(fields) - 1, 2):
                if fields[k] == b"envelope":
                    size = max(size, len(fields[k + 1]))
    return size


def one_binary(factoryctl, args):
    directory = tempfile.mkdtemp(prefix="publish-cost-")
    redis_proc = None
    try:
        redis_proc, sock = sim.redis_server(directory)
        r = sim.Redis(sock)
        sim.enroll_fleet(r, args.n, False)
        register_fleet(r, args.n)
        env = dict(os.environ, UA_REDIS_URL="unix://" + sock, FACTORY_ROLE="HEADQUARTERS")
        env.pop("UA_FACTORY_DIR", None)
        subprocess.run([factoryctl, "keys", "generate", "--out", os.path.join(directory, "keys")], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        ids = [sim.fid_of(i) for i in range(args.n)]
        targets = {"all": [], "ids": ids, "wave25": ids[:max(1, args.n // 4)]}[args.targets]
        target_args = []
        for fid in targets:
            target_args += ["--target", fid]
        row = {"binary": factoryctl, "n": args.n, "targets": args.targets, "id_length": len(ids[0])}
        for label, extra_env in (("unsigned", {}), ("signed", {"UA_MISSION_SIGNING_KEY": os.path.join(directory, "keys", "mission.key")})):
            walls, rss, mem = [], [], []
            for _ in range(args.runs):
                before = sim.used_memory(r)
                out = os.path.join(directory, label + ".json")
                rc, wall, _, tv = sim.timed([factoryctl, "publish", "update", "--commit", secrets.token_hex(20), "--force",
                                             "--allow-unregistered", "--json", "--log-level", "error"] + target_args,
                                            dict(env, **extra_env), out, out + ".err")
                if rc != 0:
                    row[label] = {"rc": rc, "stderr": open(out + ".err").read()[-400:]}
                    break
                walls.append(wall)
                rss.append(tv["max_rss_mb"])
                mem.append(sim.used_memory(r) - before)
            else:
                row[label] = {"rc": 0, "wall_s": statistics.median(walls), "max_rss_mb": max(rss),
                              "redis_bytes_per_publish": statistics.median(mem),
                              "inbox_envelope_bytes": largest_inbox_envelope(r, args.n),
                              "shared_entries": r.call("XLEN", "ua:missions:delegation")}
            print("  %s %s: %s" % (os.path.basename(os.path.dirname(os.path.dirname(factoryctl))) or factoryctl, label,
                                   json.dumps(row[label])), file=sys.stderr, flush=True)
        r.close()
        return row
    finally:
        if redis_proc:
            sim.stop_process(redis_proc)
        shutil.rmtree(directory, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(prog="publish_cost.py")
    p.add_argument("--factoryctl", action="append", required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--id-prefix", default="sim-")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--targets", choices=["all", "ids", "wave25"], default="wave25")
    p.add_argument("--json", default="")
    args = p.parse_args()
    sim.ID_PREFIX = args.id_prefix
    rows = [one_binary(os.path.abspath(path), args) for path in args.factoryctl]
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
