#!/usr/bin/env python3
"""evt beside its peers, back to back: rounds of the peers' harness then evt-bench, the table of
medians and ratios, and the raw lines.

Run through `scripts/compare` (it starts the servers and builds evt-bench). Each round runs, for
each backend, the peers (`$PEERS_DIR/run.sh`, default ../shared/peers) and then evt-bench, each
`--repeat` times for the memory backend (its workloads last 15-30 ms: one run means little) and
once for the others. A round's value is the median of its repeats; the table gives the median of
the rounds, each round's value, and evt's ratio to the best peer measured in the same round.

Usage: compare.py --rounds 3 --repeat 15 --backends memory,postgres --workloads W1,W1c,W2,W3 \
           --out bench/results-DATE.jsonl
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The measure of each workload: (field, higher is better).
MEASURES = {
    "W1": ("per_second", True),
    "W1c": ("per_second", True),
    "W2": ("ms_per_hydration", False),
    "W3": ("per_second", True),
}


def variant(line):
    """Which of evt's variants of a workload a line is (the peers have one each)."""
    if line.get("cache"):
        return "cache"
    if line.get("snapshots"):
        return "snapshots"
    if line.get("bookmark") == "memory":
        return "memory bookmark"
    return ""


def key(line):
    return (line["backend"], line["workload"], line["peer"], variant(line))


def cpu_busy():
    """Percent of all CPUs busy over a quarter of a second (from /proc/stat)."""
    def sample():
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]
    total1, idle1 = sample()
    time.sleep(0.25)
    total2, idle2 = sample()
    return 100 * (1 - (idle2 - idle1) / max(1, total2 - total1))


def wait_until_quiet(limit=30.0):
    """Waits (up to `limit` seconds) until the machine is quiet: a run that starts while
    PostgreSQL still analyses or vacuums the last run's tables measures that too."""
    started = time.time()
    while time.time() - started < limit:
        busy = cpu_busy()
        if busy < 10:
            return
    print(f"# still {busy:.0f}% busy after {limit:.0f} s; running anyway", file=sys.stderr)


def run(command, env, tag):
    """Runs `command` once the machine is quiet, returns its JSON lines (stdout), each tagged."""
    wait_until_quiet()
    started = time.time()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"# {' '.join(command)}: exit {done.returncode}", file=sys.stderr)
    lines = []
    for text in done.stdout.splitlines():
        text = text.strip()
        if text.startswith("{"):
            line = json.loads(text)
            line.update(tag)
            lines.append(line)
    print(f"# {tag} {command[0]}: {len(lines)} lines in {time.time() - started:.1f} s",
          file=sys.stderr)
    return lines


def measure(args):
    peers_dir = Path(args.peers_dir)
    lines = []
    for round_ in range(1, args.rounds + 1):
        for backend in args.backends:
            repeat = args.repeat if backend == "memory" else 1
            for r in range(repeat):
                env = dict(os.environ, BACKENDS=backend, WORKLOADS=",".join(args.workloads))
                lines += run(["bash", str(peers_dir / "run.sh")], env,
                             {"round": round_, "repeat": r})
            for r in range(repeat):
                lines += run([str(args.evt_bench), backend, *args.workloads], dict(os.environ),
                             {"round": round_, "repeat": r})
    return lines


def summarise(lines, workloads):
    """{(backend, workload, peer, variant): {round: median of its repeats}}."""
    values = {}
    for line in lines:
        if line["workload"] not in workloads or line["workload"] not in MEASURES:
            continue
        field, _ = MEASURES[line["workload"]]
        if field not in line:
            continue
        values.setdefault(key(line), {}).setdefault(line.get("round", 1), []).append(line[field])
    return {k: {r: statistics.median(v) for r, v in rounds.items()} for k, rounds in values.items()}


def ratios(summary):
    """Rows of the table: evt's variants with the best peer of their round."""
    rows = []
    for (backend, workload, peer, var), rounds in sorted(summary.items()):
        if peer != "evt" or var in ("snapshots", "memory bookmark"):
            continue
        _, higher = MEASURES[workload]
        per_round = {}
        best_peer = {}
        for r, value in rounds.items():
            peers = {p: v[r] for (b, w, p, pv), v in summary.items()
                     if b == backend and w == workload and p != "evt" and r in v
                     and not (workload == "W3" and pv == "memory bookmark")}
            if not peers:
                continue
            best = max(peers, key=peers.get) if higher else min(peers, key=peers.get)
            best_peer[r] = (best, peers[best])
            per_round[r] = value / peers[best] if higher else peers[best] / value
        if not per_round:
            continue
        rows.append({
            "backend": backend, "workload": workload, "variant": var,
            "evt": statistics.median(rounds.values()),
            "evt_rounds": [rounds[r] for r in sorted(rounds)],
            "best_peer": statistics.mode(p for p, _ in best_peer.values()),
            "peer": statistics.median(v for _, v in best_peer.values()),
            "peer_rounds": [best_peer[r][1] for r in sorted(best_peer)],
            "speedup": statistics.median(per_round.values()),
            "speedup_rounds": [per_round[r] for r in sorted(per_round)],
        })
    return rows


def spread(values):
    """How far the rounds are apart: (max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values) if values else 0.0


def table(rows):
    fmt = lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.2f}"
    out = ["| backend | workload | evt | best peer | evt ÷ best peer (faster ×) | rounds apart (evt / peer) |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        unit = "ms/load" if row["workload"] == "W2" else "/s"
        name = row["workload"] + (f" ({row['variant']})" if row["variant"] else "")
        out.append(
            f"| {row['backend']} | {name} | {fmt(row['evt'])} {unit} "
            f"({', '.join(fmt(v) for v in row['evt_rounds'])}) "
            f"| {row['best_peer']} {fmt(row['peer'])} ({', '.join(fmt(v) for v in row['peer_rounds'])}) "
            f"| {row['speedup']:.2f}× ({', '.join(f'{v:.2f}' for v in row['speedup_rounds'])}) "
            f"| {spread(row['evt_rounds']):.0%} / {spread(row['peer_rounds']):.0%} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15,
                        help="runs per round of the memory backend (each side)")
    parser.add_argument("--backends", default="memory,postgres")
    parser.add_argument("--workloads", default="W1,W1c,W2,W3")
    parser.add_argument("--peers-dir", default=str(ROOT.parent / "shared" / "peers"))
    parser.add_argument("--evt-bench", default=str(ROOT / "target" / "release" / "evt-bench"))
    parser.add_argument("--out", help="write every line here (JSON lines)")
    parser.add_argument("--from", dest="from_file",
                        help="summarise these lines instead of measuring")
    parser.add_argument("--summary", help="write the table's rows here (JSON)")
    args = parser.parse_args()
    args.backends = args.backends.replace(",", " ").split()
    args.workloads = args.workloads.replace(",", " ").split()

    if args.from_file:
        lines = [json.loads(l) for l in Path(args.from_file).read_text().splitlines() if l.strip()]
    else:
        lines = measure(args)
        if args.out:
            Path(args.out).write_text("".join(json.dumps(l) + "\n" for l in lines))
    rows = ratios(summarise(lines, args.workloads))
    print(table(rows))
    if args.summary:
        Path(args.summary).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
