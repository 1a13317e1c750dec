"""Turns the H200 run's raw files (tick files, vgpud statistics, escape timings) into the
markdown tables of docs/h200-results.md. Usage: analyze.py WORKDIR"""
import glob
import json
import os
import re
import statistics
import sys

import ticklib
from ticklib import rate

W = sys.argv[1]
T = os.path.join(W, "ticks")


def ticks(case, tag):
    return ticklib.ticks(T, case, tag)


def case_rates(case, tags):
    runs = {t: ticks(case, t) for t in tags}
    if any(r is None for r in runs.values()):
        return None, None
    a = max(r[0] for r in runs.values()) + 1.0
    b = min(r[1] for r in runs.values()) - 0.5
    return {t: rate(r[2], a, b) for t, r in runs.items()}, b - a


def stats(case, suffix="vgpud"):
    p = os.path.join(T, f"{case}.{suffix}.json")
    return json.load(open(p)) if os.path.exists(p) else None


out = []
p = lambda s="": out.append(s)

p("### Programs through librmshim.so")
p()
p("| program | result |")
p("| --- | --- |")
for line in open(os.path.join(W, "programs.txt")) if os.path.exists(os.path.join(W, "programs.txt")) else []:
    m = re.match(r"PROGRAM (\S+) (.*)", line.strip())
    if m:
        p(f"| {m.group(1)} | {m.group(2)} |")
for name in ["vecadd", "matmul", "spin", "smiq"]:
    for f in [f"{name}.out", f"{name}.err"]:
        path = os.path.join(W, f)
        if os.path.exists(path):
            for line in open(path):
                if line.startswith(("vecadd", "matmul", "rmshim")):
                    p(f"| {name} output | `{line.strip()}` |")
p()

p("### Per-escape cost (RM_CONTROL round trip, 20 000 calls, p50 of three runs each)")
p()
esc = {"native": [], "shim": []}
for line in open(os.path.join(W, "escbench.txt")) if os.path.exists(os.path.join(W, "escbench.txt")) else []:
    m = re.match(r"ESCBENCH (\S+) p50_us=([\d.]+) p99_us=([\d.]+)", line)
    if m:
        esc[m.group(1)].append((float(m.group(2)), float(m.group(3))))
if esc["native"] and esc["shim"]:
    n50 = statistics.median(x[0] for x in esc["native"]); s50 = statistics.median(x[0] for x in esc["shim"])
    n99 = statistics.median(x[1] for x in esc["native"]); s99 = statistics.median(x[1] for x in esc["shim"])
    p("| path | p50 µs | p99 µs |")
    p("| --- | --- | --- |")
    p(f"| native | {n50:.2f} | {n99:.2f} |")
    p(f"| through librmshim.so | {s50:.2f} | {s99:.2f} |")
    p(f"| added by the interposer | {s50 - n50:+.2f} | {s99 - n99:+.2f} |")
p()

solo_native, _ = case_rates("solo-native", ["a"])
solo, _ = case_rates("solo", ["a"])
free2, _ = case_rates("pair-free", ["a", "b"])
free3, _ = case_rates("trio-free", ["a", "b", "c"])
p("### Shares and throughput (spin tenants, kernels/s over the common window of each run)")
p()
if solo and solo_native:
    p(f"One tenant alone: {solo['a']:.1f} kernels/s through the interposer, {solo_native['a']:.1f} native "
      f"({100 * solo['a'] / solo_native['a']:.1f} %).")
    p()
p("| case | window s | per tenant kernels/s | achieved shares | target shares | max error (pp) | together vs one alone | vs same tenants without vgpud |")
p("| --- | --- | --- | --- | --- | --- | --- | --- |")
cases = [("pair-free", None, ["a", "b"]), ("trio-free", None, ["a", "b", "c"]),
         ("pair-1-1", [1, 1], ["a", "b"]), ("pair-3-1", [3, 1], ["a", "b"]), ("trio-1-2-3", [1, 2, 3], ["a", "b", "c"])]
for case, weights, tags in cases:
    r, win = case_rates(case, tags)
    if not r:
        p(f"| {case} | - | missing | | | | | |")
        continue
    tot = sum(r.values())
    shares = [r[t] / tot for t in tags]
    target = [w / sum(weights) for w in weights] if weights else None
    err = max(abs(s - g) for s, g in zip(shares, target)) * 100 if target else None
    base = free2 if len(tags) == 2 else free3
    vs_free = f"{100 * tot / sum(base.values()):.1f} %" if base and weights else "-"
    vs_solo = f"{100 * tot / solo['a']:.1f} %" if solo else "-"
    p(f"| {case} | {win:.1f} | {' / '.join(f'{r[t]:.1f}' for t in tags)} | {' / '.join(f'{100 * s:.1f} %' for s in shares)} | "
      f"{' / '.join(f'{100 * g:.1f} %' for g in target) if target else 'hardware round robin'} | {f'{err:.2f}' if err is not None else '-'} | {vs_solo} | {vs_free} |")
p()

p("### Switch cost (vgpud statistics)")
p()
p("| case | switches | disable call mean µs | enable call mean µs | time in switching | tenant run time (s) |")
p("| --- | --- | --- | --- | --- | --- |")
for case, _, _ in cases[2:]:
    s = stats(case)
    if s:
        runs = ", ".join(f"{t['name']} {t['run_s']:.2f}" for t in s["tenants"])
        p(f"| {case} | {s['enables']['count']} | {s['disable_mean_us']:.0f} | {s['enable_mean_us']:.0f} | "
          f"{s['switch_total_s']:.3f} s of {s['uptime_s']:.1f} s ({100 * s['switch_total_s'] / s['uptime_s']:.2f} %) | {runs} |")
p()

p("### Kill tests (kernels/s per phase)")
p()
p("| test | tenant | before the kill | after the kill | after the restart |")
p("| --- | --- | --- | --- | --- |")
for case in ["kill-shim", "kill-daemon"]:
    kpath, rpath = os.path.join(T, f"{case}.killed"), os.path.join(T, f"{case}.restarted")
    if not os.path.exists(kpath):
        continue
    k, rs = float(open(kpath).read()), float(open(rpath).read())
    for tag in ["a", "b"]:
        r = ticks(case, tag)
        if r:
            p(f"| {case} | {tag} | {rate(r[2], k - 3, k):.1f} | {rate(r[2], k + 0.5, rs):.1f} | {rate(r[2], rs + 1, r[1] - 0.5):.1f} |")
    s2 = stats(case, "vgpud2")
    if s2:
        p(f"| {case} | restarted vgpud | | | re-enabled {s2['recovered_channels']} channel(s) left by the killed one |")
kpath = os.path.join(T, "kill-tenant.killed")
if os.path.exists(kpath):
    k = float(open(kpath).read())
    ra = ticks("kill-tenant", "a")
    state = open(os.path.join(T, "kill-tenant.state-after")).read().split() if os.path.exists(os.path.join(T, "kill-tenant.state-after")) else []
    if ra:
        p(f"| kill-tenant (b killed) | a | {rate(ra[2], k - 3, k):.1f} | {rate(ra[2], k + 1, ra[1] - 0.5):.1f} | channels still registered 2 s later: {len(state)} |")
p()
print("\n".join(out))
