#!/usr/bin/env python3
"""Turns the raw lines of a bench/run.sh run into the Markdown report and the
gnuplot bar charts.

    bench/report.py RAW OUT_DIR DATE

writes OUT_DIR/DATE.md and OUT_DIR/DATE-SECTION.png (when gnuplot is there)
and prints the Markdown on stdout. The raw format is what run.sh writes: the
round/result lines of bench/cpu-per-msg.sh and mem/memresult lines of
bench/idle-memory.sh, each prefixed with the case they belong to.
"""
import math
import re
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# The targets evn's code must reach (see the issue behind `make bench`).
ECHO_HTTP_MAX_VS_FLOOR = 1.05
# The Redis example on redis-benchmark's default list: server CPU per request
# below redis-server's on every test at -P 1 and -P 16, and at most this
# ratio for the geometric mean of the tests at -P 16.
REDIS_MAX_VS_REDIS = 1.0
REDIS_MAX_GEOMEAN_P16 = 0.7
REDIS_MAX_VS_FLOOR = 1.3
# redis-benchmark 7.0's default list, in its order (bench/run.sh's redis_tests).
REDIS_TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop",
               "sadd", "hset", "spop", "zadd", "zpopmin", "lrange_100", "lrange_300", "lrange_500",
               "lrange_600", "mset"]
IDLE_MAX_BYTES = 256
NEW_CONN_MAX_VS_FLOOR = 0.85
# evn on io_uring (the io_uring issue's table): median and p99 round trip of
# echo at depth 1 within this factor of evn's on epoll; CPU per request
# against the epoll floor and the io_uring floor; the Redis example's
# geometric mean against redis-server's at each depth the run has a target
# for; idle memory per connection of the echo and Redis examples on both
# backends.
URING_LATENCY_MAX_VS_EPOLL = 1.05
URING_ECHO_MAX_VS_FLOOR = 0.90
URING_MAX_VS_URING_FLOOR = 1.03
URING_HTTP_MAX_VS_FLOOR = 0.92
URING_NEW_CONN_MAX_VS_FLOOR = 0.85
URING_REDIS_MAX_GEOMEAN = {8: 0.65, 16: 0.55}
URING_IDLE_MAX_BYTES = 128

SECTION_TITLES = {
    "echo": "Echo",
    "redis": "Redis protocol",
    "http": "HTTP",
    "loops": "Multi-loop",
    "https": "HTTPS",
    "static": "Static files",
    "proxy": "TCP proxy",
    "workers": "Slow handlers on worker threads",
}
# The server a section's "evn CPU ÷ this" column is about.
EVN_NAME = {"proxy": "evn-proxy", "workers": "evn-workers", "loops": "evn-2loops"}
# The same for evn on io_uring (bench/run.sh's --backend io_uring rows).
EVN_URING_NAME = {"proxy": "evn-proxy-uring"}
SHORT = {
    "echo-d1": "echo, depth 1",
    "echo-d8": "echo, depth 8",
    "http-keepalive": "keep-alive GET /",
    "http-close": "Connection: close, GET /",
    "http-post16k": "POST /echo 16 KiB",
    "http-get16k": "GET /16k (16 KiB)",
    "loops-echo": "echo, depth 8",
    "loops-http": "HTTP keep-alive",
    "https-keepalive": "keep-alive GET /",
    "https-close": "Connection: close, GET /",
    "static-1m": "GET 1 MiB file",
    "proxy-echo-d1": "echo, depth 1",
    "proxy-redis-get-P1": "redis get -P 1",
    "proxy-redis-get-P16": "redis get -P 16",
    "workers-sleep": "GET /sleep?ms=1",
}


def short(cid):
    if cid in SHORT:
        return SHORT[cid]
    if cid.startswith("redis-"):
        test, depth = cid[len("redis-"):].rsplit("-", 1)
        return f"{test} -P {depth[1:]}"
    return cid


class Case:
    def __init__(self, cid, section, title):
        self.id, self.section, self.title = cid, section, title
        self.servers = []  # (name, command)
        self.load = ""
        self.rounds = {}  # name -> {round: dict}
        self.results = {}  # name -> dict of (median, min, max)
        self.noisy = []  # dicts
        self.failed = None
        self.retried = None
        self.waited = 0


def parse_kv(words):
    d = {}
    for k, v in zip(words[0::2], words[1::2]):
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
    return d


def read_raw(path):
    meta, settings, cases, order, mem, memres, missing = {}, {}, {}, [], [], {}, []
    with open(path) as f:
        for line in f:
            w = line.rstrip("\n").split(" ")
            kind = w[0]
            if kind == "machine":
                meta[w[1]] = " ".join(w[2:])
            elif kind == "setting":
                settings[w[1]] = " ".join(w[2:])
            elif kind == "case":
                cases[w[1]] = Case(w[1], w[2], " ".join(w[3:]))
                order.append(w[1])
            elif kind == "server" and w[1] in cases:
                cases[w[1]].servers.append((w[2], " ".join(w[3:])))
            elif kind == "load" and w[1] in cases:
                cases[w[1]].load = " ".join(w[2:])
            elif kind == "round" and w[1] in cases:
                r, name = w[2], w[3]
                cases[w[1]].rounds.setdefault(name, {})[r] = parse_kv(w[4:])
            elif kind == "noisy" and w[1] in cases:
                d = parse_kv(w[4:])
                d["round"], d["name"] = w[2], w[3]
                cases[w[1]].noisy.append(d)
            elif kind == "result" and w[1] in cases:
                name, rest = w[2], w[3:]
                res = {}
                i = 0
                while i < len(rest):
                    res[rest[i]] = tuple(float(x) for x in rest[i + 1:i + 4])
                    i += 4
                cases[w[1]].results[name] = res
            elif kind == "failed" and w[1] in cases:
                cases[w[1]].failed = " ".join(w[2:])
            elif kind == "retried" and w[1] in cases:
                cases[w[1]].retried = " ".join(w[2:])
            elif kind == "waited" and w[1] in cases:
                cases[w[1]].waited = int(w[2]) if len(w) > 2 and w[2].isdigit() else 0
            elif kind == "mem":
                d = parse_kv(w[3:])
                d["round"], d["name"] = w[1], w[2]
                mem.append(d)
            elif kind == "memresult":
                memres[w[1]] = tuple(float(x) for x in w[3:6])
            elif kind == "missing":
                missing.append(w[1])
    return meta, settings, cases, order, mem, memres, missing


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_us(x):
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


def ratio(case, a, b, key="cpu_us_per_msg"):
    """Median (min, max) over rounds of a's figure over b's in the same round."""
    ra, rb = case.rounds.get(a, {}), case.rounds.get(b, {})
    xs = [ra[r][key] / rb[r][key] for r in ra if r in rb and rb[r].get(key)]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def ratio_of_medians(case, a, b):
    x, y = case.results[a]["cpu_us_per_msg"][0], case.results[b]["cpu_us_per_msg"][0]
    return f"{x / y:.3f}" if y else "—"


def fmt_ratio(t, digits=2):
    if t is None:
        return "—"
    return f"{t[0]:.{digits}f} ({t[1]:.{digits}f}–{t[2]:.{digits}f})"


def fmt_lat(t):
    return f"{t[0]:.0f} ({t[1]:.0f}–{t[2]:.0f})" if t else "—"


def case_table(case, evn="evn", evn_uring="evn-uring"):
    """One workload: a row a server. Columns for the ratios to the floor, to
    evn and to evn on io_uring appear when the run has those servers; the
    round-trip columns when the load reported them (bench/echo-load)."""
    out = []
    if case.failed:
        out.append(f"*{case.title}: the run failed ({case.failed}); see the raw file.*\n")
        return out
    has_floor = "floor" in case.results
    has_lat = any("lat_p50_us" in r for r in case.results.values())
    out.append(f"**{case.title}**\n")
    head = "| server | req/s, median (min–max) | server CPU µs/req, median (min–max) | of it user |"
    sep = "|---|---:|---:|---:|"
    if has_lat:
        head += " round trip µs, median: p50 (min–max) | p99 (min–max) |"
        sep += "---:|---:|"
    if has_floor:
        head += " CPU ÷ floor |"
        sep += "---:|"
    if evn in case.results:
        head += f" {evn} CPU ÷ this |"
        sep += "---:|"
    if evn_uring in case.results:
        head += f" {evn_uring} CPU ÷ this |"
        sep += "---:|"
    out += [head, sep]
    for name, _ in case.servers:
        res = case.results.get(name)
        if not res:
            continue
        rate, cpu = res["msgs_per_sec"], res["cpu_us_per_msg"]
        user = res.get("user_us_per_msg", (0, 0, 0))
        row = (f"| {name} | {fmt_rate(rate[0])} ({fmt_rate(rate[1])}–{fmt_rate(rate[2])}) | "
               f"{fmt_us(cpu[0])} ({fmt_us(cpu[1])}–{fmt_us(cpu[2])}) | {fmt_us(user[0])} |")
        if has_lat:
            row += f" {fmt_lat(res.get('lat_p50_us'))} | {fmt_lat(res.get('lat_p99_us'))} |"
        if has_floor:
            row += " 1.00 |" if name == "floor" else f" {fmt_ratio(ratio(case, name, 'floor'))} |"
        if evn in case.results:
            row += " — |" if name == evn else f" {fmt_ratio(ratio(case, evn, name))} |"
        if evn_uring in case.results:
            row += " — |" if name == evn_uring else f" {fmt_ratio(ratio(case, evn_uring, name))} |"
        out.append(row)
    out.append("")
    return out


def uring_summary(cases, order, memres):
    """evn on io_uring against evn on epoll and against the io_uring floor,
    one row a workload (the Redis default list as the geometric mean of its
    tests at each depth), and idle memory; an empty list when no evn ran on
    io_uring."""
    out = []

    def gm(xs):
        xs = [x for x in xs if x > 0]
        return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None

    for cid in order:
        c = cases[cid]
        if c.failed or c.section in ("memory", "redis"):
            continue
        u, e = EVN_URING_NAME.get(c.section, "evn-uring"), EVN_NAME.get(c.section, "evn")
        if u not in c.results:
            continue
        cpu = c.results[u]["cpu_us_per_msg"][0]
        row = f"| {c.title} | {fmt_us(cpu)} |"
        row += (f" {fmt_us(c.results[e]['cpu_us_per_msg'][0])} | {fmt_ratio(ratio(c, u, e))} |"
                if e in c.results else " — | — |")
        row += (f" {fmt_us(c.results['floor-uring']['cpu_us_per_msg'][0])} | {fmt_ratio(ratio(c, u, 'floor-uring'))} |"
                if "floor-uring" in c.results else " — | — |")
        row += f" {fmt_ratio(ratio(c, u, 'floor'))} |" if "floor" in c.results else " — |"
        if e in c.results and "lat_p50_us" in c.results[u] and "lat_p50_us" in c.results[e]:
            row += (f" {fmt_ratio(ratio(c, u, e, key='lat_p50_us'))} / "
                    f"{fmt_ratio(ratio(c, u, e, key='lat_p99_us'))} |")
        else:
            row += " — |"
        out.append(row)
    for p in redis_depths(cases):
        vs_evn, vs_floor, n = [], [], 0
        for t in REDIS_TESTS:
            c = cases.get(f"redis-{t}-P{p}")
            if not c or c.failed or "evn-uring" not in c.results:
                continue
            n += 1
            r = ratio(c, "evn-uring", "evn") if "evn" in c.results else None
            if r:
                vs_evn.append(r[0])
            r = ratio(c, "evn-uring", "floor-uring") if "floor-uring" in c.results else None
            if r:
                vs_floor.append(r[0])
        if not n:
            continue
        g, gf = gm(vs_evn), gm(vs_floor)
        out.append(f"| Redis default list, -P {p} ({n} tests; geometric mean of the per-test ratios; the floor: "
                   f"PING only) | | | {f'{g:.2f}' if g else '—'} | | {f'{gf:.2f}' if gf else '—'} | | |")
    mem = []
    for kind in ("http", "echo", "redis"):
        a, b = f"evn-{kind}-uring", f"evn-{kind}"
        if a in memres:
            e = f"{memres[b][0]:.0f}" if b in memres else "—"
            mem.append(f"| idle memory, {kind} example | {memres[a][0]:.0f} B | {e} B |")
    if "floor-uring" in memres:
        f = f"{memres['floor'][0]:.0f}" if "floor" in memres else "—"
        mem.append(f"| idle memory, floor (http) | {memres['floor-uring'][0]:.0f} B | {f} B |")
    if not out and not mem:
        return []
    md = ["## io_uring\n",
          "evn with `--backend io_uring` (evn-uring) beside evn on epoll, the default (evn), and beside the io_uring "
          "floor (floor-uring, bench/floor-uring.c: one ring, multishot accept and receive into provided buffers, "
          "one send in flight a connection, one io_uring_enter a turn), in the same runs as the tables below. "
          "Server CPU µs/req as medians; ratios as medians (min–max) of per-round ratios. *÷ floor* is the epoll "
          "floor: the least a server does with epoll.\n"]
    if out:
        md += ["| workload | evn-uring µs/req | evn µs/req | evn-uring ÷ evn | floor-uring µs/req | "
               "evn-uring ÷ floor-uring | evn-uring ÷ floor | round trip evn-uring ÷ evn: p50 / p99 |",
               "|---|---:|---:|---:|---:|---:|---:|---:|"] + out + [""]
    if mem:
        md += ["| idle connections | on io_uring, bytes each | on epoll |", "|---|---:|---:|"] + mem + [""]
    return md


def gnuplot(script, path):
    if not shutil.which("gnuplot"):
        return False
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(f"report.py: gnuplot failed for {path}:\n{r.stderr}\n")
        return False
    return True


COLORS = {"evn": "#d62728", "evn-1loop": "#d62728", "evn-2loops": "#ff7f0e", "evn-http": "#d62728",
          "evn-echo": "#e377c2", "evn-redis": "#ff7f0e", "floor": "#7f7f7f", "evn-uring": "#ff9896",
          "evn-http-uring": "#ff9896", "evn-echo-uring": "#f7b6d2", "evn-redis-uring": "#ffbb78",
          "evn-proxy-uring": "#ff9896", "floor-uring": "#c7c7c7", "nginx": "#2ca02c",
          "h2o": "#9467bd", "haproxy": "#8c564b", "redis": "#1f77b4", "libuv": "#17becf",
          "libevent": "#bcbd22"}
# The per-test ratio bars, one colour a depth.
RATIO_COLORS = ["#ff7f0e", "#9467bd", "#d62728", "#2ca02c"]
OTHER_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]


def color_for(name, palette):
    if name in COLORS:
        return COLORS[name]
    if name not in palette:
        palette[name] = OTHER_COLORS[len(palette) % len(OTHER_COLORS)]
    return palette[name]


def chart_cases(cases, path, title, cols, tmpdir, palette):
    """One panel a case: a bar a server, CPU µs/req with its min-max, and the
    throughput under each name."""
    cases = [c for c in cases if c.results]
    if not cases:
        return False
    rows = (len(cases) + cols - 1) // cols
    ncols = min(cols, len(cases))
    w, h = 330 * ncols + 40, 300 * rows + 70
    s = [f"set terminal pngcairo size {w},{h} font 'DejaVu Sans,10' noenhanced",
         f"set output '{path}'",
         "set style fill solid 0.85 border -1",
         "set boxwidth 0.7",
         "set yrange [0:*]",
         "set ylabel 'server CPU µs per request'",
         "set grid ytics lc rgb '#dddddd'",
         "set xtics nomirror scale 0 font ',9'",
         "set ytics nomirror",
         "set border 3",
         "set bmargin 4",
         "unset key",
         f"set multiplot layout {rows},{ncols} title '{title}' font ',13'"]
    for i, c in enumerate(cases):
        dat = os.path.join(tmpdir, f"{c.id}.dat")
        ymax = 0
        with open(dat, "w") as f:
            for name, _ in c.servers:
                res = c.results.get(name)
                if not res:
                    continue
                rate, cpu = res["msgs_per_sec"], res["cpu_us_per_msg"]
                ymax = max(ymax, cpu[2])
                col = color_for(name, palette)
                f.write(f'"{name}\\n{fmt_rate(rate[0])}/s" {cpu[0]} {cpu[1]} {cpu[2]} '
                        f'{int(col[1:], 16)} "{fmt_us(cpu[0])}"\n')
        s += [f"set title '{short(c.id)}' font ',11'",
              f"set yrange [0:{ymax * 1.18:.6g}]",
              f"plot '{dat}' using 0:2:5:xtic(1) with boxes lc rgb variable, "
              f"'' using 0:3:(0):($4-$3) with vectors heads size screen 0.012,90 lc rgb 'black', "
              f"'' using 0:4:6 with labels offset 0,0.8 font ',9'"]
    s.append("unset multiplot")
    return gnuplot("\n".join(s) + "\n", path)


def chart_memory(memres, order, conns, path, tmpdir, palette):
    names = [n for n in order if n in memres]
    if not names:
        return False
    dat = os.path.join(tmpdir, "memory.dat")
    ymax = max(memres[n][2] for n in names)
    # Redis keeps a large buffer a client: a log scale keeps the others readable.
    with open(dat, "w") as f:
        for n in names:
            med, lo, hi = memres[n]
            f.write(f'"{n}" {max(med, 1)} {max(lo, 1)} {max(hi, 1)} {int(color_for(n, palette)[1:], 16)} "{med:.0f}"\n')
    s = [f"set terminal pngcairo size {90 * len(names) + 160},420 font 'DejaVu Sans,10' noenhanced",
         f"set output '{path}'",
         "set style fill solid 0.85 border -1",
         "set boxwidth 0.7",
         "set logscale y",
         f"set yrange [10:{ymax * 3:.6g}]",
         "set ylabel 'bytes of RSS per idle connection (log scale)'",
         "set grid ytics lc rgb '#dddddd'",
         "set xtics nomirror scale 0",
         "set ytics nomirror",
         "set border 3",
         "unset key",
         f"set title 'Idle connections: server RSS growth per connection ({conns} connections, one request each; "
         f"dashed: the target, {IDLE_MAX_BYTES} B)' font ',11'",
         f"set arrow from graph 0, first {IDLE_MAX_BYTES} to graph 1, first {IDLE_MAX_BYTES} nohead dt 2 lc rgb '#d62728' front",
         f"plot '{dat}' using 0:2:5:xtic(1) with boxes lc rgb variable, "
         f"'' using 0:3:(0):($4-$3) with vectors heads size screen 0.012,90 lc rgb 'black', "
         f"'' using 0:4:6 with labels offset 0,0.8 font ',9'"]
    return gnuplot("\n".join(s) + "\n", path)


def redis_depths(cases):
    """The -P depths the redis section ran (REDIS_PIPELINES), in order."""
    ds = set()
    for cid in cases:
        m = re.fullmatch(r"redis-(.+)-P(\d+)", cid)
        if m and m.group(1) in REDIS_TESTS:
            ds.add(int(m.group(2)))
    return sorted(ds)


def redis_suite(cases, evn="evn"):
    """The redis section's default-list cases that ran with both evn (the
    server named evn) and redis-server:
    {(test, depth): {"evn": µs, "redis": µs, "ratio": (median, min, max)}}."""
    out = {}
    for p in redis_depths(cases):
        for t in REDIS_TESTS:
            c = cases.get(f"redis-{t}-P{p}")
            if not c or c.failed or evn not in c.results or "redis" not in c.results:
                continue
            r = ratio(c, evn, "redis")
            if r:
                out[(t, p)] = {"evn": c.results[evn]["cpu_us_per_msg"][0],
                               "redis": c.results["redis"]["cpu_us_per_msg"][0], "ratio": r}
    return out


def suite_depths(suite):
    return sorted({p for (_, p) in suite})


def redis_geomean(suite, depth):
    """The geometric mean of the per-test ratios (medians) at a depth, and how
    many tests it is over; None without any."""
    xs = [v["ratio"][0] for (t, p), v in suite.items() if p == depth and v["ratio"][0] > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs)), len(xs)


def redis_summary(suite):
    """One table for the default list: each test's CPU per request at both
    depths, and the geometric means of the ratios."""
    depths = suite_depths(suite)
    out = ["| test |" + "".join(f" -P {p}: evn µs/req | redis µs/req | evn ÷ redis |" for p in depths),
           "|---|" + "---:|---:|---:|" * len(depths)]
    for t in REDIS_TESTS:
        row = f"| {t} |"
        for p in depths:
            v = suite.get((t, p))
            row += (f" {fmt_us(v['evn'])} | {fmt_us(v['redis'])} | {fmt_ratio(v['ratio'])} |" if v
                    else " — | — | — |")
        out.append(row)
    row = "| **geometric mean** |"
    for p in depths:
        gm = redis_geomean(suite, p)
        row += f" | | **{gm[0]:.2f}** |" if gm else " | | — |"
    out += [row, ""]
    return out


def chart_redis(suite, path, tmpdir):
    """The default list: CPU µs per request of evn and Redis per test at each
    depth the run has (log scale), and evn ÷ Redis per test with the targets."""
    if not suite:
        return False
    depths = suite_depths(suite)
    dat = os.path.join(tmpdir, "redis-suite.dat")
    with open(dat, "w") as f:
        for t in REDIS_TESTS:
            cols = []
            for p in depths:
                v = suite.get((t, p))
                cols += [v["evn"], v["redis"]] if v else ["NaN", "NaN"]
            for p in depths:
                v = suite.get((t, p))
                cols.append(v["ratio"][0] if v else "NaN")
            f.write(f'"{t}" ' + " ".join(str(c) for c in cols) + "\n")
    gm = {p: redis_geomean(suite, p) for p in depths}
    title = ", ".join(f"-P {p}: {gm[p][0]:.2f}" for p in depths if gm[p])
    s = ["set terminal pngcairo size 1400,%d font 'DejaVu Sans,10' noenhanced" % (380 * (len(depths) + 1)),
         f"set output '{path}'",
         "set style data histograms",
         "set style histogram clustered gap 1",
         "set style fill solid 0.85 border -1",
         "set boxwidth 0.9",
         "set grid ytics lc rgb '#dddddd'",
         "set xtics nomirror rotate by -35 scale 0 font ',9'",
         "set ytics nomirror",
         "set border 3",
         "set key top left",
         f"set multiplot layout {len(depths) + 1},1 title 'Redis protocol: redis-benchmark 7.0 default list, "
         "-c 50, server CPU per request' font ',13'"]
    for i, p in enumerate(depths):
        s += ["set logscale y", "set ylabel 'server CPU µs per request (log)'",
              f"set title '-P {p}' font ',11'", "set yrange [*:*]",
              f"plot '{dat}' using {2 + 2 * i}:xtic(1) title 'evn' lc rgb '{COLORS['evn']}', "
              f"'' using {3 + 2 * i} title 'redis-server' lc rgb '{COLORS['redis']}'",
              "unset logscale y"]
    n = len(REDIS_TESTS)
    bars = ", ".join(f"'{dat if i == 0 else ''}' using {2 + 2 * len(depths) + i}" + (":xtic(1)" if i == 0 else "")
                     + f" title '-P {p}' lc rgb '{RATIO_COLORS[i % len(RATIO_COLORS)]}'"
                     for i, p in enumerate(depths))
    s += ["set ylabel 'evn CPU ÷ redis-server CPU'",
          f"set title 'evn ÷ Redis per test (geometric mean {title}); dashed: 1.0 (every test) and "
          f"{REDIS_MAX_GEOMEAN_P16} (the -P 16 mean)' font ',11'",
          "set yrange [0:1.3]",
          f"set arrow 1 from -0.5, first 1 to {n - 0.5}, first 1 nohead dt 2 lc rgb '#555555' front",
          f"set arrow 2 from -0.5, first {REDIS_MAX_GEOMEAN_P16} to {n - 0.5}, first "
          f"{REDIS_MAX_GEOMEAN_P16} nohead dt 2 lc rgb '#d62728' front",
          f"plot {bars}",
          "unset multiplot"]
    return gnuplot("\n".join(s) + "\n", path)


def main():
    raw, out_dir, date = sys.argv[1:4]
    meta, settings, cases, order, mem, memres, missing = read_raw(raw)
    md = []
    mode = settings.get("mode", "full")
    md.append(f"# evn benchmarks, {date}{' (quick mode)' if mode == 'quick' else ''}\n")
    st = ("rounds " + settings.get("rounds", "")).split()
    sd = dict(zip(st[0::2], st[1::2]))
    took = meta.get("finished", "").split(" seconds ")
    md.append(f"Machine: {meta.get('nproc', '?')} CPUs (`nproc`), {meta.get('cpu', '?')}, "
              f"{meta.get('kernel', '?')}, {meta.get('memory', '?')}, {meta.get('os', '?')}.  ")
    md.append(f"Peers and libraries (Debian packages): {meta.get('versions', '?')}.  ")
    md.append(f"Command: `{settings.get('command', 'make bench')}` (bench/run.sh), started "
              f"{meta.get('started', '?')}"
              + (f", took {int(took[1]) // 60} min {int(took[1]) % 60} s." if len(took) == 2 else "."))
    md.append("")
    md.append(f"Method (BENCHMARKING.md): the server on CPU 0, the load on CPU 1 (`taskset`), 50 connections; "
              f"all servers of a workload run at once and take turns, {sd.get('warmup', '1')} warm-up round "
              f"then {sd.get('rounds', '3')} rounds each ({sd.get('seconds', '?')} s for wrk and echo-load; "
              f"redis-benchmark runs a fixed count), median (min–max). **Server CPU µs/req** = "
              f"(utime + stime of the server process, `/proc/PID/stat` fields 14 and 15) / requests; *of it user*: "
              f"the utime part, the server's own code (the rest is the kernel's work for its system calls). "
              f"Ratios are medians of per-round ratios (rounds of the same turn). Before each round the suite "
              f"waited up to {sd.get('quiet_wait', '?')} s for other processes to take under "
              f"{sd.get('max_other_pct', '10')}% of a CPU; a round in which they took more was run again, up to "
              f"{sd.get('retries', '?')} times and {sd.get('reruns', '?')} times a workload (see *Noise*).\n")

    # Targets.
    tg = []

    def add(target, fig, ok):
        tg.append(f"| {target} | {fig} | {'**met**' if ok else '**missed**'} |")

    for cid, label in (("echo-d1", "echo depth 1"), ("echo-d8", "echo depth 8"),
                       ("http-keepalive", "HTTP keep-alive")):
        c = cases.get(cid)
        if c and not c.failed and "floor" in c.results and "evn" in c.results:
            r = ratio(c, "evn", "floor")
            add(f"{label}: CPU/req ≤ {ECHO_HTTP_MAX_VS_FLOOR}× floor",
                f"evn/floor {fmt_ratio(r, 3)}, of the medians {ratio_of_medians(c, 'evn', 'floor')}; "
                f"evn {fmt_us(c.results['evn']['cpu_us_per_msg'][0])} µs, floor {fmt_us(c.results['floor']['cpu_us_per_msg'][0])} µs", r[0] <= ECHO_HTTP_MAX_VS_FLOOR)
    suite = redis_suite(cases)
    for p in (1, 16):
        for t in REDIS_TESTS:
            if (t, p) not in suite:
                continue
            c, r = cases[f"redis-{t}-P{p}"], suite[(t, p)]["ratio"]
            add(f"Redis {t} -P {p}: CPU/req below redis-server's",
                f"evn/redis {fmt_ratio(r, 3)}, of the medians {ratio_of_medians(c, 'evn', 'redis')}; "
                f"evn {fmt_us(c.results['evn']['cpu_us_per_msg'][0])} µs, "
                f"redis {fmt_us(c.results['redis']['cpu_us_per_msg'][0])} µs", r[0] < REDIS_MAX_VS_REDIS)
    gm = redis_geomean(suite, 16)
    if gm:
        add(f"Redis, geometric mean of the {gm[1]} tests at -P 16: CPU/req ≤ {REDIS_MAX_GEOMEAN_P16}× "
            f"redis-server's", f"{gm[0]:.3f}" + ("" if gm[1] == len(REDIS_TESTS) else
                                                 f" ({len(REDIS_TESTS) - gm[1]} tests missing)"),
            gm[0] <= REDIS_MAX_GEOMEAN_P16 and gm[1] == len(REDIS_TESTS))
    for t in ("ping_inline", "ping_mbulk"):
        c = cases.get(f"redis-{t}-P16")
        if c and not c.failed and "floor" in c.results and "evn" in c.results:
            r = ratio(c, "evn", "floor")
            add(f"Redis {t} -P 16: CPU/req ≤ {REDIS_MAX_VS_FLOOR}× floor",
                f"evn/floor {fmt_ratio(r, 3)}, of the medians {ratio_of_medians(c, 'evn', 'floor')}; "
                f"floor {fmt_us(c.results['floor']['cpu_us_per_msg'][0])} µs",
                r[0] <= REDIS_MAX_VS_FLOOR)
    c = cases.get("http-keepalive")
    if c and not c.failed and "nginx" in c.results and "evn" in c.results:
        r = ratio(c, "evn", "nginx")
        add("HTTP keep-alive: CPU/req below nginx's",
            f"evn/nginx {fmt_ratio(r, 3)}, of the medians {ratio_of_medians(c, 'evn', 'nginx')}; nginx {fmt_us(c.results['nginx']['cpu_us_per_msg'][0])} µs", r[0] < 1)
    c = cases.get("http-close")
    e = "evn-deferaccept" if c and "evn-deferaccept" in c.results else "evn"
    if c and not c.failed and "floor" in c.results and e in c.results:
        r = ratio(c, e, "floor")
        add(f"HTTP new connection per request: CPU/req ≤ {NEW_CONN_MAX_VS_FLOOR}× floor",
            f"{e}/floor {fmt_ratio(r, 3)}, of the medians {ratio_of_medians(c, e, 'floor')}; "
            f"{e} {fmt_us(c.results[e]['cpu_us_per_msg'][0])} µs, "
            f"floor {fmt_us(c.results['floor']['cpu_us_per_msg'][0])} µs", r[0] <= NEW_CONN_MAX_VS_FLOOR)
    for cid, label in (("https-keepalive", "HTTPS keep-alive"), ("https-close", "HTTPS new connection per request")):
        c = cases.get(cid)
        if c and not c.failed and "nginx" in c.results and "evn" in c.results:
            r = ratio(c, "evn", "nginx")
            t = ratio(c, "evn", "nginx", key="msgs_per_sec")
            add(f"{label}: throughput ≥ nginx's", f"evn/nginx req/s {fmt_ratio(t, 3)}", t[0] >= 1)
            add(f"{label}: CPU/req ≤ nginx's", f"evn/nginx CPU {fmt_ratio(r, 3)}; nginx "
                f"{fmt_us(c.results['nginx']['cpu_us_per_msg'][0])} µs", r[0] <= 1)
    c = cases.get("static-1m")
    if c and not c.failed and "nginx" in c.results and "evn" in c.results:
        r = ratio(c, "evn", "nginx")
        add("1 MiB static file: CPU/req ≤ nginx's (sendfile on)", f"evn/nginx {fmt_ratio(r, 3)}; nginx "
            f"{fmt_us(c.results['nginx']['cpu_us_per_msg'][0])} µs", r[0] <= 1)
    for cid in ("proxy-echo-d1", "proxy-redis-get-P1", "proxy-redis-get-P16"):
        c = cases.get(cid)
        if c and not c.failed and "haproxy" in c.results and "evn-proxy" in c.results:
            r = ratio(c, "evn-proxy", "haproxy")
            add(f"proxy, {short(cid)}: CPU per proxied request below HAProxy's",
                f"evn-proxy/haproxy {fmt_ratio(r, 3)}; evn-proxy {fmt_us(c.results['evn-proxy']['cpu_us_per_msg'][0])} µs, "
                f"haproxy {fmt_us(c.results['haproxy']['cpu_us_per_msg'][0])} µs", r[0] < 1)
    c = cases.get("echo-d1")
    if c and not c.failed and "evn" in c.results and "lat_p50_us" in c.results.get("evn-uring", {}):
        for key, what in (("lat_p50_us", "median"), ("lat_p99_us", "p99")):
            r = ratio(c, "evn-uring", "evn", key=key)
            if r:
                add(f"echo depth 1, evn on io_uring: {what} round trip ≤ {URING_LATENCY_MAX_VS_EPOLL}× evn's on epoll",
                    f"evn-uring/evn {fmt_ratio(r, 3)}; evn-uring {c.results['evn-uring'][key][0]:.0f} µs, "
                    f"evn {c.results['evn'][key][0]:.0f} µs", r[0] <= URING_LATENCY_MAX_VS_EPOLL)
    for cid, label, vs_floor in (("echo-d1", "echo depth 1", URING_ECHO_MAX_VS_FLOOR),
                                 ("echo-d8", "echo depth 8", URING_ECHO_MAX_VS_FLOOR),
                                 ("http-keepalive", "HTTP keep-alive", URING_HTTP_MAX_VS_FLOOR),
                                 ("http-close", "HTTP new connection per request", URING_NEW_CONN_MAX_VS_FLOOR)):
        c = cases.get(cid)
        if not c or c.failed or "evn-uring" not in c.results:
            continue
        u = fmt_us(c.results["evn-uring"]["cpu_us_per_msg"][0])
        for floor, limit in (("floor", vs_floor), ("floor-uring", URING_MAX_VS_URING_FLOOR)):
            if floor not in c.results or (floor == "floor-uring" and not cid.startswith("echo-")):
                continue
            r = ratio(c, "evn-uring", floor)
            what = "the epoll floor" if floor == "floor" else "the io_uring floor"
            add(f"{label}, evn on io_uring: CPU/req ≤ {limit}× {what}",
                f"evn-uring/{floor} {fmt_ratio(r, 3)}; evn-uring {u} µs, "
                f"{floor} {fmt_us(c.results[floor]['cpu_us_per_msg'][0])} µs", r[0] <= limit)
    usuite = redis_suite(cases, evn="evn-uring")
    for p, limit in URING_REDIS_MAX_GEOMEAN.items():
        gm = redis_geomean(usuite, p)
        if gm:
            add(f"Redis, evn on io_uring, geometric mean of the {gm[1]} tests at -P {p}: CPU/req ≤ {limit}× "
                "redis-server's", f"{gm[0]:.3f}" + ("" if gm[1] == len(REDIS_TESTS) else
                                                   f" ({len(REDIS_TESTS) - gm[1]} tests missing)"),
                gm[0] <= limit and gm[1] == len(REDIS_TESTS))
    for kind in ("echo", "redis"):
        for n in (f"evn-{kind}", f"evn-{kind}-uring"):
            if n in memres:
                add(f"idle connections ({n}): ≤ {URING_IDLE_MAX_BYTES} bytes each, both backends",
                    f"{memres[n][0]:.0f} B ({memres[n][1]:.0f}–{memres[n][2]:.0f})",
                    memres[n][0] <= URING_IDLE_MAX_BYTES)
    for n in ("evn-http", "evn-echo", "evn-redis"):
        if n in memres:
            add(f"idle connections ({n}): < {IDLE_MAX_BYTES} bytes each",
                f"{memres[n][0]:.0f} B ({memres[n][1]:.0f}–{memres[n][2]:.0f})", memres[n][0] < IDLE_MAX_BYTES)
    if tg:
        md.append("## Targets\n")
        md.append("| target | measured: median (min–max) of the per-round ratios, which decides; the ratio of "
                  "the medians as a cross-check | |")
        md.append("|---|---|---|")
        md += tg
        md.append("")
        md.append("The Redis floor answers PING only, so the floor target applies to the PING tests; "
                  "`evn-redis` is the Redis example's own per-client state on top of evn's.\n")
    md += uring_summary(cases, order, memres)

    charts = {}
    tmpdir = tempfile.mkdtemp()
    palette = {}
    try:
        png = f"{date}-redis.png"
        if chart_redis(redis_suite(cases), os.path.join(out_dir, png), tmpdir):
            charts["redis"] = png
        for section, cols, title in (("echo", 2, "Echo: 16-byte messages, 50 connections"),
                                     ("http", 2, "HTTP: wrk -t1 -c50"),
                                     ("loops", 2, "evn with 1 and 2 loops on 2 CPUs"),
                                     ("https", 2, "HTTPS: wrk -t1 -c50"),
                                     ("static", 1, "1 MiB static file: wrk -t1 -c50"),
                                     ("proxy", 3, "TCP proxy: CPU per proxied request"),
                                     ("workers", 1, "1 ms handlers on worker threads")):
            cs = [cases[i] for i in order if cases[i].section == section]
            if not cs:
                continue
            png = f"{date}-{section}.png"
            if chart_cases(cs, os.path.join(out_dir, png), title, cols, tmpdir, palette):
                charts[section] = png
        if memres:
            names = [n for n, _ in cases["memory"].servers] if "memory" in cases else list(memres)
            png = f"{date}-memory.png"
            if chart_memory(memres, names, sd.get("mem_conns", "10000"), os.path.join(out_dir, png), tmpdir,
                            palette):
                charts["memory"] = png
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    notes = {
        "echo": "Load: bench/echo-load, 50 connections each keeping 1 or 8 messages of 16 bytes in flight, "
                "every echoed byte checked. libuv-echo and libevent-echo follow their libraries' documented "
                "echo servers (bench/libuv-echo.c, bench/libevent-echo.c), with TCP_NODELAY added as evn and "
                "the floor set it. evn-uring is evn's echo-server with --backend io_uring, floor-uring the "
                "io_uring floor (bench/floor-uring.c). Round trip: from the write that carries a message's "
                "first byte to the read that brings back its last, as echo-load sees it (the median over the "
                "rounds of each round's median and 99th percentile); at depth 8 it includes the wait behind "
                "the 7 messages ahead.",
        "redis": "Load: redis-benchmark 7.0's default list, -c 50, each test on its own against fresh "
                 "servers (bench/redis-load.sh), a fixed -n per test and depth. LPOP and RPOP pop from a list "
                 "the warm-up round filled (as the full list's LPUSH and RPUSH would have; in quick mode, "
                 "which has no warm-up, the first round fills it); the LRANGE tests "
                 "run `LRANGE mylist 0 N-1` on a list of 600, without the full list's LPUSH phase; SPOP and "
                 "ZPOPMIN find their set empty after the first pop, as in the full list. Redis is "
                 "redis-server --save '' --appendonly no. The floor (bench/floor --mode ping) answers PING "
                 "only, so it is in the PING runs only, as is floor-uring, its io_uring twin; evn-uring is "
                 "evn's redis-server with --backend io_uring. At -P 1 the single-threaded redis-benchmark is "
                 "the bottleneck: throughput barely differs, CPU per request does.",
        "http": "Load: wrk -t1 -c50. nginx: one process (master_process off, the single worker's work), "
                "`return 200 \"Hello World!\\r\\n\"`, access_log off. h2o: num-threads 1; h2o cannot send a "
                "fixed body without mruby, so it serves the same 14 bytes as a static file (file.file). "
                "haproxy: nbthread 1, `http-request return ... string`. The 16 KiB rows are two workloads: "
                "POST /echo with a 16 KiB body echoed back (evn's http example has only / and /echo; the "
                "floor answers POST /echo the same way), and GET /16k of a 16 KiB body for the servers that "
                "cannot echo (nginx and h2o serve it as a static file, haproxy with `http-request return "
                "file` and tune.bufsize 32768, the floor from memory) — so evn is not in the GET row, and "
                "the two rows are not comparable with each other (the POST moves 16 KiB each way). "
                "evn-deferaccept is the same example with `--tcp-options deferaccept=1` (TCP_DEFER_ACCEPT): "
                "the kernel hands over a connection once its request has arrived, and evn reads and answers "
                "it before registering it with epoll. evn-uring is the same example with --backend io_uring "
                "and floor-uring the io_uring floor (bench/floor-uring.c, the same answers as the floor's).",
        "loops": "Two CPUs cannot show scaling honestly: the 1-loop server runs on CPU 0, the 2-loop "
                 "server on CPUs 0 and 1, and the one-threaded load on CPU 1, so the second loop shares its "
                 "CPU with the load. CPU µs/req is the server's total over both loops (its threads' "
                 "utime+stime). Noise here counts the busy time of both CPUs that is neither the "
                 "server's nor the load's.",
        "https": "Load: wrk -t1 -c50 over TLS (wrk does not verify; it offers TLS 1.3). One certificate for both "
                 "servers, ECDSA P-256 made with `openssl req` for the run. evn: http-server --tls-cert/--tls-key "
                 "(OpenSSL's defaults, TLS 1.2 minimum); nginx: `listen ... ssl` in the same one-process "
                 "configuration as the HTTP rows. The Connection: close row is a full handshake per request "
                 "unless the client resumes a session.",
        "static": "Load: wrk -t1 -c50 GET /1m, a 1 MiB file of random bytes in the page cache. evn: http-server "
                  "--root (evn_sendfile, sendfile(2)); nginx: the same size file with `sendfile on`, "
                  "open_file_cache.",
        "proxy": "The proxy under test on CPU 0; the backend and the load share CPU 1, so throughput is bounded "
                 "by CPU 1 and the figure that compares the proxies is their CPU per proxied request. Both "
                 "proxies run one thread and relay to the same backend: the floor's echo mode for echo, Debian's "
                 "redis-server for redis-benchmark. HAProxy 2.6 in `mode tcp`, nbthread 1 (bench/peer.sh "
                 "haproxy-tcp). evn-proxy is tcp-proxy as it starts by default (`--splice auto`: a direction is "
                 "spliced only once it carries bulk data, so these small messages are relayed through user "
                 "memory); evn-proxy-splice forces splice(2) from the first byte (`--splice on`); "
                 "evn-proxy-uring is tcp-proxy as it starts by default on `--backend io_uring`.",
        "workers": "Load: wrk -t1 -c50 GET /sleep?ms=1 on examples/workers/http-workers: the loop hands each "
                   "request to one of 64 worker threads, which sleeps 1 ms (the stand-in for a blocking handler) "
                   "and sends the reply back with evn_send. With 50 requests in flight the ceiling is 50 000 "
                   "req/s less the sleeps' overshoot; CPU µs/req is the whole process's (loop and workers).",
    }
    for section in ("echo", "redis", "http", "https", "static", "proxy", "workers"):
        cs = [cases[i] for i in order if cases[i].section == section]
        if not cs:
            continue
        md.append(f"## {SECTION_TITLES[section]}\n")
        if section in charts:
            md.append(f"![{section}]({charts[section]})\n")
        md.append(notes[section] + "\n")
        if section == "redis":
            md += redis_summary(redis_suite(cases))
            md.append("<details><summary>Each test, every server</summary>\n")
        for c in cs:
            md += case_table(c, evn=EVN_NAME.get(section, "evn"), evn_uring=EVN_URING_NAME.get(section, "evn-uring"))
        if section == "redis":
            md.append("</details>\n")

    if memres or "memory" in cases:
        md.append("## Idle memory\n")
        if "memory" in charts:
            md.append(f"![memory]({charts['memory']})\n")
        md.append(f"Each round starts a fresh server, warms it up with {sd.get('mem_warmup', '50')} connections "
                  "that make one request and close (more requests than an io_uring server has receive buffers, "
                  "so all of them have been touched), reads VmRSS, opens the connections with bench/idle-conns (one request each: GET / "
                  "for HTTP, PING for Redis, 16 bytes for echo; all held open, checked by the server's fd "
                  "count), and reads VmRSS again. Bytes/conn = RSS growth / connections; kernel socket buffers "
                  "are not in it. haproxy takes 9900 connections: with the fd limit of 20000 it accepts no "
                  "more than 9990.\n")
        md.append("| server | bytes per connection, median (min–max) | connections | RSS before → after, kB (last round) | fds added |")
        md.append("|---|---:|---:|---:|---:|")
        names = [n for n, _ in cases["memory"].servers] if "memory" in cases else list(memres)
        for n in names:
            if n not in memres:
                continue
            rounds = [d for d in mem if d["name"] == n]
            last = rounds[-1] if rounds else {}
            md.append(f"| {n} | {memres[n][0]:.0f} ({memres[n][1]:.0f}–{memres[n][2]:.0f}) | "
                      f"{int(last.get('conns', 0))} | {int(last.get('rss_before_kb', 0))} → "
                      f"{int(last.get('rss_after_kb', 0))} | {int(last.get('fds_added', 0))} |")
        md.append("")
        if "memory" in cases and cases["memory"].failed:
            md.append(f"*The memory run failed ({cases['memory'].failed}).*\n")

    cs = [cases[i] for i in order if cases[i].section == "loops"]
    if cs:
        md.append("## Multi-loop\n")
        if "loops" in charts:
            md.append(f"![loops]({charts['loops']})\n")
        md.append(notes["loops"] + "\n")
        for c in cs:
            md += case_table(c, evn="evn-2loops")

    # Noise.
    md.append("## Noise\n")
    try:
        mx = float(sd.get("max_other_pct", 10))
    except ValueError:
        mx = 10.0
    md.append(f"Other work on the machine (test suites of other sessions may run at the same time), per "
              f"workload: rounds that first waited for other processes to calm down, rounds re-run because "
              f"other processes took more than {mx:g}% of a CPU during them, kept rounds still over that "
              f"(after the re-runs allowed), and how busy the CPUs were with other processes in the kept "
              f"rounds (median and max over rounds and servers, % of a CPU; user and system time from "
              f"/proc/stat less the server's and the load's).\n")
    md.append("| workload | rounds that waited for quiet | rounds re-run | kept rounds over the limit | other work, median / max % |")
    md.append("|---|---:|---:|---:|---:|")
    tot_rerun = tot_kept_noisy = tot_rounds = tot_waited = 0
    for cid in order:
        c = cases[cid]
        if c.section == "memory":
            continue
        kept = [d for rs in c.rounds.values() for d in rs.values()]
        nserv = max(1, len(c.rounds))
        rounds_kept = len(kept) // nserv
        reruns = len(c.noisy) // nserv
        noisy_kept = len({d_r for name, rs in c.rounds.items() for d_r, d in rs.items()
                          if d.get("other_pct", 0) > mx})
        others = [d.get("other_pct", 0) for d in kept]
        tot_rerun += reruns
        tot_waited += c.waited
        tot_kept_noisy += noisy_kept
        tot_rounds += rounds_kept
        if others:
            md.append(f"| {c.title} | {c.waited} | {reruns} | {noisy_kept} of {rounds_kept} | "
                      f"{statistics.median(others):.1f} / {max(others):.1f} |")
    md.append("")
    md.append(f"In all: {tot_waited} round(s) waited for quiet, {tot_rerun} round(s) re-run, {tot_kept_noisy} of {tot_rounds} kept round(s) still over "
              f"the limit.\n")
    for cid in order:
        if cases[cid].retried:
            md.append(f"*{cases[cid].title}*: the first run failed and was run again "
                      f"({cases[cid].retried.split(' ', 1)[-1].strip()}).\n")
    if missing:
        md.append(f"Left out (not installed or not built): {', '.join(sorted(set(missing)))}.\n")

    # Commands.
    md.append("## Commands\n")
    md.append("Each workload is one `bench/cpu-per-msg.sh` run (servers started with `taskset -c 0`, the load "
              "with `taskset -c 1`; `{port}` is a free port); the memory one is `bench/idle-memory.sh`. "
              "`bench/peer.sh NAME {port}` writes the peer's configuration (see that script) and execs it.\n")
    md.append("```")
    for cid in order:
        c = cases[cid]
        md.append(f"# {c.title}")
        for name, cmd in c.servers:
            md.append(f"  {name}: {cmd}")
        md.append(f"  load: {c.load}")
    md.append("```")
    md.append("")
    md.append(f"Every round: `{os.path.basename(raw)}`.\n")

    text = "\n".join(md)
    with open(os.path.join(out_dir, f"{date}.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
