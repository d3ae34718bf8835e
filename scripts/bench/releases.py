#!/usr/bin/env python3
"""The releases section's two harnesses (scripts/bench.sh, BENCH_SECTIONS=releases).

usage: releases.py mixed LAYOUT DIR OUT_JSON -- COMMAND...
  Runs COMMAND (an `update --json`) and, from before it starts until 0.2 s after it ends, polls
  every ~10 ms what the live app would see, fake-free:
    inplace   DIR/pkg/version.py (the code) and DIR/.venv/synced-for (the environment)
    releases  os.readlink(DIR/current) once per sample, then that release's pkg/version.py and
              .venv/synced-for
  The bench's sync command writes .venv/synced-for (a copy of pkg/version.py) once its sync has
  finished, so an environment says which code it was synced for. A sample is mixed when the
  code differs from what the environment was synced for (or either cannot be read); mixed time
  is the sum of the intervals that start at a mixed sample.

usage: releases.py rounds OUT_JSON N HQ SERVICE_CMD NAME PREPARE TIMED [NAME PREPARE TIMED ...]
  N+1 rounds (the first uncounted): a new commit pushed from the clone HQ (pkg/version.py and a
  comment in pyproject.toml, so an in-place rollback syncs), then for each NAME its PREPARE (the
  update that gives it something to roll back) and its TIMED command (the rollback; prints one
  JSON object), timed with perf_counter; both are argv split on spaces (no shell). SERVICE_CMD
  (argv) is timed once per round too: the restart alone.

usage: releases.py summary-mixed REL N        one line of figures for scripts/bench.sh
       releases.py summary-rounds OUT_JSON
"""
import json
import os
import statistics
import subprocess
import sys
import time


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def sample(layout, directory):
    if layout == "releases":
        try:
            base = os.path.join(directory, os.readlink(os.path.join(directory, "current")))
        except OSError:
            return None, None, None
    else:
        base = directory
    return base, read(os.path.join(base, "pkg/version.py")), read(os.path.join(base, ".venv/synced-for"))


def mixed(layout, directory, out, command):
    samples = []  # (t, mixed, code)

    def take():
        base, code, env = sample(layout, directory)
        samples.append((time.monotonic(), code is None or env is None or code != env, code, base))

    for _ in range(10):
        take()
        time.sleep(0.01)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    while proc.poll() is None:
        take()
        time.sleep(0.01)
    ended = time.monotonic()
    stdout = proc.stdout.read()
    for _ in range(20):
        take()
        time.sleep(0.01)
    total = sum(b[0] - a[0] for a, b in zip(samples, samples[1:]) if a[1])
    marks = [s[0] - started for s in samples if s[1]]
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:])]
    try:
        report = json.loads(stdout)
    except ValueError:
        report = {"unparsed": stdout[-2000:]}
    result = {
        "layout": layout,
        "exit_code": proc.returncode,
        "mixed_s": total,
        "samples": len(samples),
        "mixed_samples": sum(1 for s in samples if s[1]),
        "first_mixed_s": marks[0] if marks else None,
        "last_mixed_s": marks[-1] if marks else None,
        "poll_ms_median": statistics.median(gaps) * 1000,
        "poll_ms_max": max(gaps) * 1000,
        "update_s": ended - started,
        "consistent_before": not samples[0][1],
        "consistent_after": not samples[-1][1],
        "code_before": (samples[0][2] or b"").decode().strip(),
        "code_after": (samples[-1][2] or b"").decode().strip(),
        "bases_seen": sorted({s[3] or "" for s in samples}),
        "report": report,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


IDENTITY = ["-c", "user.name=Bench", "-c", "user.email=bench@example.com"]


def push(hq, tag):
    with open(os.path.join(hq, "pkg/version.py"), "w") as f:
        f.write("VERSION = %r\n" % tag)
    path = os.path.join(hq, "pyproject.toml")
    lines = [("# bench round %s" % tag if line.startswith("# bench round") else line) for line in open(path).read().splitlines()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    subprocess.run(["git", "-C", hq, *IDENTITY, "commit", "-qam", tag], check=True)
    subprocess.run(["git", "-C", hq, "push", "-q", "origin", "main"], check=True)


def rounds(out, n, hq, service_cmd, variants):
    results = {name: {"wall_ms": [], "steps": [], "reports": []} for name, _, _ in variants}
    restart_ms = []
    for i in range(n + 1):
        push(hq, "rollback-%d" % i)
        for name, prepare, timed in variants:
            prep = subprocess.run(prepare.split(" "), stdout=subprocess.PIPE, text=True)
            if prep.returncode != 0:
                sys.exit("releases.py: the update before %s's rollback failed in round %d (exit %d): %s" % (name, i, prep.returncode, prep.stdout[-1000:]))
            t0 = time.perf_counter()
            proc = subprocess.run(timed.split(" "), stdout=subprocess.PIPE, text=True)
            wall = (time.perf_counter() - t0) * 1000
            report = json.loads(proc.stdout)
            if proc.returncode != 0 or not report.get("ok"):
                sys.exit("releases.py: %s's rollback failed in round %d (exit %d): %s" % (name, i, proc.returncode, report.get("error")))
            if i == 0:
                continue  # warm-up
            results[name]["wall_ms"].append(wall)
            results[name]["steps"].append(report.get("steps_ms", {}))
            results[name]["reports"].append({k: report.get(k) for k in
                                             ("release", "release_reused", "synced", "sync_skipped", "duration_ms", "integration")})
        t0 = time.perf_counter()
        subprocess.run(service_cmd.split(" "), check=True)
        if i:
            restart_ms.append((time.perf_counter() - t0) * 1000)
    summary = {"rounds": n, "service_restart_ms_median": statistics.median(restart_ms), "variants": {}}
    for name, r in results.items():
        keys = sorted({k for s in r["steps"] for k in s})
        summary["variants"][name] = {
            "wall_ms_median": statistics.median(r["wall_ms"]),
            "wall_ms_min": min(r["wall_ms"]),
            "wall_ms_max": max(r["wall_ms"]),
            "steps_ms_median": {k: statistics.median(s.get(k, 0) for s in r["steps"]) for k in keys},
            "release_reused_all": all(x["release_reused"] for x in r["reports"]),
            "synced_any": any(x["synced"] for x in r["reports"]),
            "synced_all": all(x["synced"] for x in r["reports"]),
            "wall_ms": r["wall_ms"],
            "reports": r["reports"],
        }
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)


def summary_mixed(rel, n):
    out, bad, polls = [], [], []
    for layout in ("inplace", "releases"):
        runs = [json.load(open("%s/mixed-%s-%d.json" % (rel, layout, r))) for r in range(1, n + 1)]
        for d in runs:
            if d["exit_code"] != 0 or not d["consistent_before"] or not d["consistent_after"] or d["code_after"] == d["code_before"]:
                bad.append("%s:exit_%s,consistent_before_%s,after_%s" % (layout, d["exit_code"], d["consistent_before"], d["consistent_after"]))
        out += ["%.3f" % statistics.median(d["mixed_s"] for d in runs), "%.3f" % max(d["mixed_s"] for d in runs),
                "%.3f" % statistics.median(d["report"].get("steps_ms", {}).get("sync", 0) / 1000 for d in runs)]
        polls += [d["poll_ms_median"] for d in runs]
    out.append("%.1f" % statistics.median(polls))
    out.append("ok" if not bad else ";".join(bad))
    print(*out)


def summary_rounds(path):
    d = json.load(open(path))
    r, i = d["variants"]["releases"], d["variants"]["inplace"]
    fmt = lambda s: ",_".join("%s_%g" % kv for kv in s.items())
    print("%.2f" % r["wall_ms_median"], "%g" % r["steps_ms_median"].get("restart", 0), r["release_reused_all"], r["synced_any"],
          "%.2f" % i["wall_ms_median"], "%g" % i["steps_ms_median"].get("restart", 0), i["synced_all"],
          "%.2f" % d["service_restart_ms_median"], fmt(r["steps_ms_median"]), fmt(i["steps_ms_median"]))


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "mixed":
        sep = sys.argv.index("--")
        mixed(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[sep + 1:])
    elif verb == "rounds" and len(sys.argv) >= 9 and (len(sys.argv) - 6) % 3 == 0:
        a = sys.argv[2:]
        rounds(a[0], int(a[1]), a[2], a[3], [tuple(a[j:j + 3]) for j in range(4, len(a), 3)])
    elif verb == "summary-mixed":
        summary_mixed(sys.argv[2], int(sys.argv[3]))
    elif verb == "summary-rounds":
        summary_rounds(sys.argv[2])
    else:
        sys.exit(__doc__)
