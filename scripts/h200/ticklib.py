"""Reading spin tick files ("START/TICK/END <tag> <unix s> <kernels>") and rates over a window."""
import os


def ticks(tickdir, case, tag):
    """(start, end, [(t, n)]) of one tenant from TICKDIR/CASE-TAG.ticks, or None."""
    path = os.path.join(tickdir, f"{case}-{tag}.ticks")
    if not os.path.exists(path):
        return None
    start, end, pts = None, None, [(0.0, 0)]
    for line in open(path):
        w = line.split()
        if w[:1] == ["START"]:
            start = float(w[2]); pts = [(start, 0)]
        elif w[:1] == ["TICK"]:
            pts.append((float(w[2]), int(w[3])))
        elif w[:1] == ["END"]:
            end = float(w[2]); pts.append((end, int(w[3])))
    if end is None and len(pts) > 1:
        end = pts[-1][0]
    return (start, end, pts) if start else None


def count_at(pts, t):
    for (t0, n0), (t1, n1) in zip(pts, pts[1:]):
        if t0 <= t <= t1:
            return n0 + (n1 - n0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)
    return pts[-1][1] if t > pts[-1][0] else 0


def rate(pts, a, b):
    return (count_at(pts, b) - count_at(pts, a)) / (b - a) if b > a else float("nan")
