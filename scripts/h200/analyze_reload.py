"""Turns scripts/h200/reload.sh's raw files into the markdown tables of docs/h200-results.md
("Live policy reload"). Usage: analyze_reload.py TICKDIR

Shares per phase come from the tenants' tick rates (as analyze.py), and from the scheduler's own
window records. Reload times: vgpud's scheduling clock (the log's timestamp_ns) starts right after
it prints its "vgpud: driver ..." line, whose read time reload.sh stamps, so log time + that stamp
is wall time on the same machine as the script's write times (error: the pipe's latency, well
under a millisecond)."""
import json
import os
import sys

from ticklib import rate, ticks

T = sys.argv[1]
events = {}
for line in open(os.path.join(T, "reload.events")):
    name, t = line.split()
    events[name] = float(t)
stderr = []
for line in open(os.path.join(T, "reload-vgpud.txt")):
    t, _, text = line.rstrip("\n").partition(" ")
    stderr.append((float(t), text))
origin = next((t for t, s in stderr if s.startswith("vgpud: driver")), None)
records = [json.loads(line) for line in open(os.path.join(T, "reload.jsonl")) if line.strip()]
wall = lambda ns: origin + ns / 1e9

out = []
p = lambda s="": out.append(s)
t0 = events["both-running"]
ra, rb = ticks(T, "reload", "a"), ticks(T, "reload", "b")
end = min(ra[1], rb[1]) - 0.5

phases = [
    ("3:1 (start file)", (3, 1), max(ra[0], rb[0]) + 1.0, events["write-1-1"]),
    ("1:1 (file change)", (1, 1), events["write-1-1"] + 0.5, events["write-invalid"]),
    ("1:1 kept (invalid file refused, then SIGHUP refused)", (1, 1), events["write-invalid"], events["write-1-3"]),
    ("1:3 (SIGHUP with the new file)", (1, 3), events["write-1-3"] + 0.5, end),
]
p("| phase | window (s from both running) | a / b kernels/s | achieved shares a / b | target | error (pp) | scheduler's windows: shares a / b (target a) |")
p("| --- | --- | --- | --- | --- | --- | --- |")
for name, (wa, wb), a, b in phases:
    xa, xb = rate(ra[2], a, b), rate(rb[2], a, b)
    sa = xa / (xa + xb)
    ga = wa / (wa + wb)
    ws = [r for r in records if r["kind"] == "window" and a <= wall(r["start_ns"]) and wall(r["end_ns"]) <= b]
    run = {}
    for w in ws:
        for s in w["tenants"]:
            run[s["tenant"]] = run.get(s["tenant"], 0) + s["time_run_ns"]
    tot = sum(run.values()) or 1
    targets = sorted({round(s["target"], 3) for w in ws for s in w["tenants"] if s["tenant"] == "a"})
    sched = (f"{100 * run.get('a', 0) / tot:.1f} % / {100 * run.get('b', 0) / tot:.1f} % over {len(ws)} windows "
             f"({', '.join(f'{100 * x:.1f} %' for x in targets)})") if ws else "no windows"
    p(f"| {name} | {a - t0:.1f}-{b - t0:.1f} | {xa:.1f} / {xb:.1f} | {100 * sa:.1f} % / {100 * (1 - sa):.1f} % | "
      f"{100 * ga:.1f} % / {100 * (1 - ga):.1f} % | {100 * abs(sa - ga):.2f} | {sched} |")
p()

p("| event (s from both running) | vgpud's stderr | write to stderr line | write to log record | log record to first decision under the new policy | write to first decision |")
p("| --- | --- | --- | --- | --- | --- |")
reloads = [r for r in records if r["kind"] == "reload"]
for name in ["write-1-1", "write-invalid", "sighup-invalid", "write-1-3"]:
    t = events[name]
    line = next(((ts, s) for ts, s in stderr if ts >= t and "policy reload" in s), None)
    rec = next((r for r in reloads if origin is not None and wall(r["timestamp_ns"]) >= t - 0.001), None)
    ms = lambda x: f"{1000 * x:.1f} ms"
    first = "-"
    first_total = "-"
    if rec and rec["applied"]:
        i = records.index(rec)
        sl = next((r for r in records[i:] if r["kind"] == "slice" and r["timestamp_ns"] >= rec["timestamp_ns"]), None)
        if sl:
            first = f"{ms((sl['timestamp_ns'] - rec['timestamp_ns']) / 1e9)} ({sl['tenant']})"
            first_total = ms(wall(sl["timestamp_ns"]) - t)
    if rec:
        reloads.remove(rec)
    p(f"| {name} ({t - t0:.2f}) | `{line[1] if line else 'none'}` | {ms(line[0] - t) if line else '-'} | "
      f"{(ms(wall(rec['timestamp_ns']) - t) + (' applied' if rec['applied'] else ' refused')) if rec else 'none'} | {first} | {first_total} |")
for r in reloads:
    p(f"| unexpected reload record at {wall(r['timestamp_ns']) - t0:.2f} s | `{r['message']}` | | | | |")
p()
print("\n".join(out))
