#!/usr/bin/env python3
"""The load benchmark's measurements and reports (stdlib only).

`benches/load/run` calls it for each wrk run and, at the end, for the
report; by hand it redraws a report from a results file or tests itself:

  benches/load/report.py render target/load-report/results.jsonl --out DIR
  benches/load/report.py --self-test   # on benches/load/fixture/, in a second

Subcommands used by `run`:

  lua                   prints the wrk script whose done() writes one JSON
                        summary line (counts, bytes, latency percentiles)
  wrk --results FILE --server ID --connections N --round R --duration S -- WRK...
                        runs wrk, samples the bytes it reads every second,
                        appends one "run" line to FILE and prints
                        "requests/s|p50|p99|errors" as the script's awk did
  meta --results FILE --mode local|url --rounds R --duration D
       --connections "64 200" --server-cpu C --client-cpu C [URL...]
                        appends the run's description (servers, labels)
  note --results FILE KEY VALUE
                        appends a note (page sizes, memory, ...) to FILE
  render FILE --out DIR writes DIR/report.md and DIR/report.html

Throughput over time is sampled outside wrk: wrk reads every response
with read(2), which the kernel counts in /proc/PID/io's `rchar`, so the
bytes read in each second, scaled by wrk's own count of requests over all
the bytes it read, are that second's requests. Reading that file once a
second (every 20 ms in wrk's last moments, to catch its final count), from
a process asleep in between, costs wrk next to nothing; a Lua response() callback would run for every request inside
wrk's only thread, and wrk parses every response's headers for it, which
lowers the figure it is measuring.

  check DIR RESULTS     reads DIR/report.html back against RESULTS (what
                        the self-test does on the fixture)
"""

import html
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

PERCENTILES = ["50", "75", "90", "99", "99.9"]

# The wrk script: nothing per request (no request/response functions, so wrk
# keeps its static request and parses no headers), one line at the end.
LUA = r"""-- benches/load/report.py lua: one JSON line when wrk is done.
function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9}) do
    table.insert(p, string.format('"%s": %.0f', tostring(q):gsub("%.0$", ""), latency:percentile(q)))
  end
  io.write(string.format('wrk-summary {"requests": %d, "bytes": %.0f, "duration_us": %.0f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"latency_mean_us": %.1f, "latency_max_us": %.0f, "latency_us": {%s}}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, table.concat(p, ", ")))
end
"""


# ---------------------------------------------------------------- measuring


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise OSError("no rchar")


def awk_summary(text):
    """What the script's awk made of wrk's output: requests/s|p50|p99|errors."""
    p50 = p99 = rps = ""
    errors = 0
    for line in text.splitlines():
        fields = line.split()
        if re.match(r"^ +50%", line):
            p50 = fields[1]
        if re.match(r"^ +99%", line):
            p99 = fields[1]
        if "Socket errors" in line:
            f = line.replace(",", "").split()
            errors += sum(int(float(f[i])) for i in (3, 5, 7, 9) if i < len(f))
        if "Non-2xx or 3xx" in line:
            errors += int(float(fields[4]))
        if re.match(r"^Requests/sec", line):
            rps = fields[1]
    return "%.0f|%s|%s|%d" % (float(rps or 0), p50, p99, errors)


def per_second(samples, requests):
    """[start, end, requests/s] for each whole interval between samples."""
    if len(samples) < 2 or samples[-1][1] <= samples[0][1]:
        return []
    scale = requests / (samples[-1][1] - samples[0][1])
    out = []
    for (t0, b0), (t1, b1) in zip(samples, samples[1:]):
        if t1 - t0 >= 0.5:  # the last few ms after the final second: too short to be a rate
            out.append([round(t0, 3), round(t1, 3), round((b1 - b0) * scale / (t1 - t0), 1)])
    return out


def cmd_wrk(args):
    opts, cmd = parse_opts(args, ["--results", "--server", "--connections", "--round", "--duration"])
    if not cmd:
        sys.exit("report.py wrk: no command after --")
    duration = float(opts["--duration"])
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out)
        start = time.monotonic()
        samples = []
        try:
            samples.append([0.0, rchar(proc.pid)])
        except OSError:
            pass
        mark, latest = 1, None
        # A reading at each whole second, and the last one before wrk exits:
        # every 20 ms once its duration is up (wrk's clock starts a few ms
        # after ours), asleep until the next whole second before that.
        while proc.poll() is None:
            now = time.monotonic() - start
            time.sleep(0.02 if now >= duration else max(0.001, mark - now))
            try:
                latest = [time.monotonic() - start, rchar(proc.pid)]
            except OSError:
                break
            if latest[0] >= mark:
                samples.append(latest)
                mark = int(latest[0]) + 1
        proc.wait()
        if latest is not None and samples and latest[0] > samples[-1][0]:
            samples.append(latest)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(text)
        sys.exit(proc.returncode)
    summary = awk_summary(text)
    lua = {}
    for line in text.splitlines():
        if line.startswith("wrk-summary "):
            lua = json.loads(line[len("wrk-summary "):])
    rps, p50, p99, errors = summary.split("|")
    record = {
        "kind": "run",
        "server": opts["--server"],
        "connections": int(opts["--connections"]),
        "round": int(opts["--round"]),
        "rps": int(rps),
        "p50": p50,
        "p99": p99,
        "errors": int(errors),
        "requests": lua.get("requests"),
        "bytes": lua.get("bytes"),
        "duration_s": round(lua.get("duration_us", 0) / 1e6, 3),
        "latency_ms": {q: v / 1000 for q, v in lua.get("latency_us", {}).items()},
        "samples": [[round(t, 3), b] for t, b in samples],
        "per_second": per_second(samples, lua.get("requests") or 0),
        "wrk_output": text,
    }
    with open(opts["--results"], "a") as f:
        f.write(json.dumps(record) + "\n")
    sys.stderr.flush()
    print(summary)


def cmd_meta(args):
    opts, urls = parse_opts(args, ["--results", "--mode", "--rounds", "--duration", "--connections",
                                   "--server-cpu", "--client-cpu"])
    if opts["--mode"] == "local":
        servers = [{"id": sid, "label": label} for label, sid in LOCAL_ROWS]
    else:
        one = len(urls) == 1
        servers = []
        for i, url in enumerate(urls, 1):
            servers.append({"id": f"url{i}", "label": url if one else f"URL {i}", "url": url,
                            "reference": f"nginx{i}"})
            servers.append({"id": f"nginx{i}", "label": "nginx, the same body" if one else f"nginx, URL {i}'s body",
                            "reference_for": f"url{i}"})
    record = {"kind": "meta", "mode": opts["--mode"], "rounds": int(opts["--rounds"]),
              "duration": int(opts["--duration"]), "connections": [int(c) for c in opts["--connections"].split()],
              "server_cpu": opts["--server-cpu"], "client_cpu": opts["--client-cpu"], "servers": servers}
    with open(opts["--results"], "a") as f:
        f.write(json.dumps(record) + "\n")


def cmd_note(args):
    opts, rest = parse_opts(args, ["--results"])
    if len(rest) != 2:
        sys.exit("usage: report.py note --results FILE KEY VALUE")
    with open(opts["--results"], "a") as f:
        f.write(json.dumps({"kind": "note", "key": rest[0], "value": rest[1]}) + "\n")


def parse_opts(args, names):
    opts, rest = {}, []
    i = 0
    while i < len(args):
        if args[i] == "--":
            return opts, rest + args[i + 1:]
        if args[i] in names and i + 1 < len(args):
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    for name in names:
        if name not in opts:
            sys.exit(f"report.py: {name} is missing")
    return opts, rest


# ---------------------------------------------------------------- figures
# Each reproduces the shell functions the report used to be written with,
# to the digit (awk's printf and print, sort -n, the median's index).


def load(path):
    meta, runs, notes = {}, [], {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["kind"] == "meta":
                meta = r
            elif r["kind"] == "run":
                runs.append(r)
            elif r["kind"] == "note":
                notes[r["key"]] = r["value"]
    return meta, runs, notes


def cell(runs, server, connections):
    return sorted((r for r in runs if r["server"] == server and r["connections"] == connections),
                  key=lambda r: r["round"])


def line_of(r):
    return f'{r["rps"]}|{r["p50"]}|{r["p99"]}|{r["errors"]}'


def median(rs):
    """The median round by requests/s (sort -t'|' -k1,1n, ties by the whole line)."""
    s = sorted(rs, key=lambda r: (r["rps"], line_of(r).encode()))
    return s[(len(s) + 1) // 2 - 1]


def rounds_of(rs):
    return " ".join(str(r["rps"]) for r in rs)


def spread(rs):
    a = sorted(r["rps"] for r in rs)
    m = a[(len(a) + 1) // 2 - 1]
    return "%.0f%%" % (100 * (a[-1] - a[0]) / m) if m else "n/a"


def ratio(a, b):
    return "%.2f" % (a["rps"] / b["rps"]) if b["rps"] else "n/a"


def awk_print(x):
    """A number as awk's print writes it (OFMT %.6g, integers whole)."""
    return float("%.6g" % x)


def paired(xs, ys):
    """The median of the rounds' own ratios."""
    v = sorted(awk_print(x["rps"] / y["rps"]) for x, y in zip(xs, ys) if y["rps"])
    return "%.2f" % v[(len(v) + 1) // 2 - 1] if v else "n/a"


# ---------------------------------------------------------------- Markdown


LOCAL_ROWS = [("Lectern, cached page", "lectern"), ("Lectern, page views off", "off"),
              ("bare actix-web, same headers", "same"), ("bare actix-web, 2 headers", "bare"),
              ("nginx", "nginx")]


def table_rows(meta, runs):
    """(label, server, connections, figures...) in the report's order."""
    rows = []
    for c in meta["connections"]:
        for s in meta["servers"]:
            rs = cell(runs, s["id"], c)
            if not rs:
                continue
            m = median(rs)
            refs = [median(cell(runs, ref, c)) for ref in reference_ids(meta, s)]
            rows.append({"label": s["label"], "server": s["id"], "connections": c, "median": m,
                         "vs": [ratio(m, ref) + "x" for ref in refs],
                         "rounds": f"{rounds_of(rs)} ({spread(rs)})"})
    return rows


def reference_ids(meta, s):
    if meta["mode"] == "local":
        return ["same", "bare", "nginx"]
    return [s.get("reference", s["id"])]


def vs_headers(meta):
    if meta["mode"] == "local":
        return ["vs bare, same headers", "vs bare, 2 headers", "vs nginx"]
    return ["vs its nginx"]


def markdown(meta, runs, notes):
    heads = ["server", "connections", "requests/s", "p50", "p99", "errors"] + vs_headers(meta) + \
        ["every round (spread)"]
    table = ["| " + " | ".join(heads) + " |", "| " + " | ".join(["---"] * len(heads)) + " |"]
    for row in table_rows(meta, runs):
        m = row["median"]
        table.append("| " + " | ".join([row["label"], str(row["connections"]), str(m["rps"]), m["p50"],
                                        m["p99"], str(m["errors"])] + row["vs"] + [row["rounds"]]) + " |")
    if meta["mode"] == "local":
        return local_markdown(meta, runs, notes, "\n".join(table))
    return url_markdown(meta, runs, notes, "\n".join(table))


def local_markdown(meta, runs, notes, table):
    n = notes
    by = {c: {s: cell(runs, s, c) for s in ("lectern", "off", "same", "bare", "nginx")}
          for c in meta["connections"]}
    rounds_lines = "\n".join(
        "- %s connections: %sx the bare handler with the same headers, %sx the one with 2, %sx nginx"
        % (c, paired(by[c]["lectern"], by[c]["same"]), paired(by[c]["lectern"], by[c]["bare"]),
           paired(by[c]["lectern"], by[c]["nginx"])) for c in meta["connections"])
    rounds_lines += "\n- page views off: " + "; ".join(
        "%sx the bare handler with the same headers at %s connections" % (paired(by[c]["off"], by[c]["same"]), c)
        for c in meta["connections"])
    views = "".join("%sx at %s connections; " % (paired(by[c]["lectern"], by[c]["off"]), c)
                    for c in meta["connections"])
    miss_rps, miss_p50, miss_p99, miss_errors = n["miss"].split("|")
    return f"""## Lectern load report

{n["date"]}, {n["cpus"]} CPUs ({n["cpu_model"]}).
Server on CPU {meta["server_cpu"]} (Lectern: 1 HTTP worker, 1 renderer thread; the bare actix-web handlers and nginx:
1 worker each), wrk on CPU {meta["client_cpu"]}, {meta["rounds"]} rounds of {meta["duration"]} s per cell, interleaved; each cell shows its
median round. `Accept-Encoding: gzip`. Page: /episodes/{n["episode"]}, {n["page_bytes"]} bytes, {n["gzip_bytes"]} gzipped.
The bare handler runs twice: with Lectern's response headers (the same bytes on the wire: {n["same_head"]} bytes of
head, Lectern {n["lectern_head"]}) and with two (content type and encoding: {n["bare_head"]} bytes of head).

{table}

Lectern against the bare handler round by round (the median of the rounds' ratios):
{rounds_lines}

Page views on against off, round by round: {views}the measured Lectern's page views: {n["views"]}.

- Miss path (cache off), 64 connections, one round: {miss_rps} requests/s, p50 {miss_p50}, p99 {miss_p99}, {miss_errors} errors.
- Resident memory with {n["cached"]} pages cached: {int(n["rss_kb"]) // 1024} MiB (Lectern's process; PostgreSQL aside).
- Idle keep-alive connections: {n["idle"]}
"""


def url_markdown(meta, runs, notes, table):
    n = notes
    targets = [s for s in meta["servers"] if s.get("url")]
    lines = []
    for i, s in enumerate(targets, 1):
        name = s["url"] if s["label"] == s["url"] else f'{s["label"]}: {s["url"]}'
        lines.append("- %s, %s bytes of body as sent (%s), %s bytes of head; its nginx sends "
                     "%s bytes of body, %s of head."
                     % (name, n[f"body_{i}"], n[f"encoding_{i}"], n[f"head_{i}"],
                        n[f"nginx_body_{i}"], n[f"nginx_head_{i}"]))
    rr = []
    for c in meta["connections"]:
        rr.append("- %s connections: " % c + ", ".join(
            "%s %sx its nginx" % (s["label"], paired(cell(runs, s["id"], c), cell(runs, s["reference"], c)))
            for s in targets))
    return f"""## Load report: {", ".join(s["url"] for s in targets)}

{n["date"]}, {n["cpus"]} CPUs ({n["cpu_model"]}).
wrk on CPU {meta["client_cpu"]} of this machine, {meta["rounds"]} rounds of {meta["duration"]} s per cell, interleaved; each cell
shows its median round. `Accept-Encoding: gzip`. The reference is nginx on this machine (CPU {meta["server_cpu"]}, 1 worker,
on loopback) serving each URL's body, fetched once at the start, as a static file: the same bytes of body.

{chr(10).join(lines)}

{table}

Each URL against its nginx round by round (the median of the rounds' ratios):
{chr(10).join(rr)}
"""


# ---------------------------------------------------------------- SVG

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
NGINX = "#222222"


def esc(s):
    return html.escape(str(s), quote=True)


def nice_step(span, ticks=5):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_tick(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v == int(v):
        return str(int(v))
    return f"{v:g}"


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while True:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if v > hi * 1.0001:
                return ticks
            if v >= lo * 0.9999:
                ticks.append(float("%.6g" % v))
        e += 1


class Plot:
    """One chart: a plot area with labelled axes, a legend on the right."""

    W, H = 960, 360
    L, R, T, B = 84, 680, 40, 300  # the plot area's edges

    def __init__(self, title, xlabel, ylabel, scale):
        self.title, self.xlabel, self.ylabel, self.scale = title, xlabel, ylabel, scale
        self.parts = []

    def y_range(self, lo, hi):
        self.ylo, self.yhi = lo, hi

    def y(self, v):
        if self.scale == "log":
            f = (math.log10(v) - math.log10(self.ylo)) / (math.log10(self.yhi) - math.log10(self.ylo))
        else:
            f = (v - self.ylo) / (self.yhi - self.ylo)
        return round(self.B - f * (self.B - self.T), 2)

    def frame(self, yticks, yfmt, xticks):
        p = self.parts
        p.append(f'<text class="title" x="{self.L}" y="22">{esc(self.title)}</text>')
        for v in yticks:
            y = self.y(v)
            p.append(f'<line class="grid" x1="{self.L}" y1="{y}" x2="{self.R}" y2="{y}"/>')
            p.append(f'<text class="ytick" x="{self.L - 8}" y="{y + 4}" text-anchor="end">{esc(yfmt(v))}</text>')
        for x, label in xticks:
            p.append(f'<line class="tick" x1="{x}" y1="{self.B}" x2="{x}" y2="{self.B + 5}"/>')
            p.append(f'<text class="xtick" x="{x}" y="{self.B + 20}" text-anchor="middle">{esc(label)}</text>')
        p.append(f'<line class="axis" x1="{self.L}" y1="{self.B}" x2="{self.R}" y2="{self.B}"/>')
        p.append(f'<line class="axis" x1="{self.L}" y1="{self.T}" x2="{self.L}" y2="{self.B}"/>')
        p.append(f'<text class="label" x="{(self.L + self.R) / 2}" y="{self.B + 45}" '
                 f'text-anchor="middle">{esc(self.xlabel)}</text>')
        cy = (self.T + self.B) / 2
        p.append(f'<text class="label" x="20" y="{cy}" text-anchor="middle" '
                 f'transform="rotate(-90 20 {cy})">{esc(self.ylabel)}</text>')

    def legend(self, entries):
        y = self.T + 6
        for label, colour, dashed in entries:
            dash = ' stroke-dasharray="6 3"' if dashed else ""
            self.parts.append(f'<line x1="{self.R + 16}" y1="{y}" x2="{self.R + 44}" y2="{y}" '
                              f'stroke="{colour}" stroke-width="2.5"{dash}/>')
            self.parts.append(f'<text class="legend" x="{self.R + 50}" y="{y + 4}">{esc(label)}</text>')
            y += 20

    def svg(self, desc):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.W}" height="{self.H}" '
                f'viewBox="0 0 {self.W} {self.H}" role="img" data-scale="{self.scale}">'
                f'<desc>{esc(desc)}</desc>' + "".join(self.parts) + "</svg>")


def server_styles(meta):
    """(colour, dashed) for each server: nginx dashed, in dark grey, or, with
    several URLs, in its URL's colour."""
    styles, i = {}, 0
    targets = [s for s in meta["servers"] if "reference_for" not in s and s["id"] != "nginx"]
    for s in targets:
        styles[s["id"]] = (COLOURS[i % len(COLOURS)], False)
        i += 1
    for s in meta["servers"]:
        if s["id"] not in styles:
            own = s.get("reference_for")
            styles[s["id"]] = (styles[own][0] if own and len(targets) > 1 else NGINX, True)
    return styles


def throughput_svg(meta, runs, c):
    d, rounds = meta["duration"], meta["rounds"]
    styles = server_styles(meta)
    servers = [s for s in meta["servers"] if cell(runs, s["id"], c)]
    values = [p[2] for s in servers for r in cell(runs, s["id"], c) for p in r["per_second"]]
    top = max(values + [1])
    step = nice_step(top)
    yhi = step * math.ceil(top * 1.05 / step)
    plot = Plot(f"Throughput over time, {c} connections", f"seconds of measurement ({rounds} rounds of {d} s, "
                "end to end; each server's rounds ran interleaved with the others')", "requests/s", "linear")
    plot.y_range(0, yhi)
    total = rounds * d
    x = lambda t: round(plot.L + t / total * (plot.R - plot.L), 2)  # noqa: E731
    xstep = max(1, nice_step(total, 10))
    xticks = [(x(t), fmt_tick(t)) for t in frange(0, total, xstep)]
    plot.frame(frange(0, yhi, step), fmt_tick, xticks)
    for k in range(1, rounds):
        plot.parts.append(f'<line class="round" x1="{x(k * d)}" y1="{plot.T}" x2="{x(k * d)}" y2="{plot.B}"/>')
    for k in range(rounds):
        plot.parts.append(f'<text class="roundlabel" x="{x(k * d + d / 2)}" y="{plot.T - 4}" '
                          f'text-anchor="middle">round {k + 1}</text>')
    for s in servers:
        colour, dashed = styles[s["id"]]
        dash = ' stroke-dasharray="6 3"' if dashed else ""
        for r in cell(runs, s["id"], c):
            off = (r["round"] - 1) * d
            pts = [(x(off + min((a + b) / 2, d)), plot.y(v), a, b, v) for a, b, v in r["per_second"]]
            if len(pts) > 1:
                plot.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8"{dash} points="'
                                  + " ".join(f"{px},{py}" for px, py, *_ in pts) + '"/>')
            for px, py, a, b, v in pts:
                plot.parts.append(
                    f'<circle cx="{px}" cy="{py}" r="2.5" fill="{colour}" data-server="{esc(s["id"])}" '
                    f'data-connections="{c}" data-round="{r["round"]}" data-from="{a}" data-value="{v}">'
                    f'<title>{esc(s["label"])}, round {r["round"]}, {a:.1f}–{b:.1f} s: {v:,.0f} requests/s</title>'
                    "</circle>")
    plot.legend([(s["label"], *styles[s["id"]]) for s in servers])
    return plot.svg(f"Requests per second, second by second, at {c} connections, for each server.")


def frange(lo, hi, step):
    out, i = [], 0
    while lo + i * step <= hi * 1.000001:
        out.append(float("%.10g" % (lo + i * step)))
        i += 1
    return out


def latency_svg(meta, runs, c):
    styles = server_styles(meta)
    servers = [s for s in meta["servers"] if cell(runs, s["id"], c)]
    picked = {s["id"]: median(cell(runs, s["id"], c)) for s in servers}
    values = [v for r in picked.values() for v in r["latency_ms"].values() if v > 0]
    if not values:
        return ""
    # The axis runs between the 1-2-5 steps either side of the figures.
    lo, hi = min(values), max(values)
    e = math.floor(math.log10(lo))
    lo = max(m * 10 ** e for m in (1, 2, 5) if m * 10 ** e <= lo)
    e = math.floor(math.log10(hi))
    hi = min(m * 10 ** e for m in (1, 2, 5, 10) if m * 10 ** e >= hi)
    if hi <= lo:
        hi = lo * 2
    plot = Plot(f"Latency percentiles, {c} connections (each server's median round)",
                "percentile of requests (latency at or below)", "latency (ms, log scale)", "log")
    plot.y_range(lo, hi)
    xs = {q: round(plot.L + (i + 0.5) / len(PERCENTILES) * (plot.R - plot.L), 2) for i, q in enumerate(PERCENTILES)}
    plot.frame(log_ticks(lo, hi), fmt_tick, [(xs[q], "p" + q) for q in PERCENTILES])
    # nginx last, on top of the others.
    for s in sorted(servers, key=lambda s: s["id"].startswith("nginx")):
        colour, dashed = styles[s["id"]]
        r = picked[s["id"]]
        pts = [(xs[q], plot.y(r["latency_ms"][q]), q, r["latency_ms"][q]) for q in PERCENTILES
               if r["latency_ms"].get(q, 0) > 0]
        dash = ' stroke-dasharray="6 3"' if dashed else ""
        width = 2.5 if dashed else 1.8
        plot.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="'
                          + " ".join(f"{px},{py}" for px, py, *_ in pts) + '"/>')
        for px, py, q, v in pts:
            plot.parts.append(
                f'<circle cx="{px}" cy="{py}" r="3.5" fill="{colour}" data-server="{esc(s["id"])}" '
                f'data-connections="{c}" data-round="{r["round"]}" data-percentile="{q}" data-value="{v}">'
                f'<title>{esc(s["label"])}: p{q} {v:.3f} ms (round {r["round"]})</title></circle>')
    plot.legend([(s["label"], *styles[s["id"]]) for s in servers])
    return plot.svg(f"Latency at the 50th to 99.9th percentile at {c} connections, for each server "
                    "against nginx, log scale.")


# ---------------------------------------------------------------- HTML

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1000px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child, td:last-child { text-align: left; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; }
svg { display: block; margin: 1em 0 2em; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg .title { font-size: 14px; font-weight: 600; }
svg .label { font-size: 13px; }
svg .grid { stroke: #e4e4e4; }
svg .axis { stroke: #444; }
svg .tick { stroke: #444; }
svg .round { stroke: #999; stroke-dasharray: 3 3; }
svg .roundlabel { fill: #777; font-size: 11px; }
"""


def md_inline(s):
    s = esc(s)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", s)


def md_to_html(md):
    """The report's Markdown as HTML: paragraphs, lists, the table."""
    out, para, items = [], [], []

    def flush():
        if para:
            out.append("<p>" + "<br/>".join(md_inline(x) for x in para) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{md_inline(x)}</li>" for x in items) + "</ul>")
            items.clear()

    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            flush()
            out.append(f"<h1>{md_inline(line[3:])}</h1>")
        elif line.startswith("| "):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([x.strip() for x in lines[i].strip().strip("|").split(" | ")])
                i += 1
            head, body = rows[0], rows[2:]
            out.append("<table><thead><tr>" + "".join(f"<th>{md_inline(h)}</th>" for h in head)
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{md_inline(v)}</td>" for v in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            continue
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:])
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            para.append(line)
        i += 1
    flush()
    return "\n".join(out)


def html_page(meta, runs, notes, md):
    title = md.splitlines()[0].lstrip("# ")
    sections = [md_to_html(md)]
    sections.append("<h2>Throughput over time</h2>")
    sections.append(
        "<p>Requests per second, second by second, in every round of every server. Rounds ran interleaved "
        "(each server in turn, then the next round), so round <em>k</em> of every server was measured in the "
        "same stretch of the run. A line that sags in one round and not in the others' same round is that server; "
        "all lines sagging together is the machine. Each second's figure is the bytes wrk read in that "
        "second (from <code>/proc/PID/io</code>, outside wrk, so measuring does not slow it) scaled by "
        "wrk's own requests per byte: the first second includes opening the connections.</p>")
    for c in meta["connections"]:
        sections.append(throughput_svg(meta, runs, c))
    sections.append("<h2>Latency percentiles</h2>")
    sections.append(
        "<p>Latency at the 50th, 75th, 90th, 99th and 99.9th percentile (wrk's, from the start of a "
        "request to its response, over the whole round), each server's median round (the one its table "
        "cell shows), on a log scale; nginx is dashed (dark grey, or with several URLs in its URL's colour). Lines close to nginx's at p50 but "
        "rising away at p99 and p99.9 mean occasional stalls (a pause, a slow write) rather than a slower "
        "steady pace.</p>")
    for c in meta["connections"]:
        sections.append(latency_svg(meta, runs, c))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def render(results, out_dir):
    meta, runs, notes = load(results)
    md = markdown(meta, runs, notes)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(html_page(meta, runs, notes, md))
    return md


def cmd_render(args):
    opts, rest = parse_opts(args, ["--out"])
    if len(rest) != 1:
        sys.exit("usage: report.py render RESULTS --out DIR")
    render(rest[0], opts["--out"])


# ---------------------------------------------------------------- checks


def check_report(out_dir, results):
    """Reads report.html back as a reader would: the whole page must be
    well-formed XML; every point's position, read against its axis's tick
    labels, must give the figure in the results file. Returns the number of
    points checked; raises AssertionError on a mismatch."""
    meta, runs, notes = load(results)
    with open(os.path.join(out_dir, "report.html")) as f:
        text = f.read()
    assert "<script" not in text.lower(), "the page has a script"
    assert not re.search(r'(?:href|src)="(?!#)', text), "the page links to something"
    root = ET.fromstring(re.sub(r"^<!DOCTYPE html>", "", text))
    ns = "{http://www.w3.org/2000/svg}"
    svgs = root.iter(ns + "svg")
    checked = 0
    by = {(r["server"], r["connections"], r["round"]): r for r in runs}
    kinds = set()
    for svg in svgs:
        ET.fromstring(ET.tostring(svg))  # each <svg> parses alone
        ticks = [(float(t.get("y")) - 4, float(t.text.replace(",", "")))
                 for t in svg.iter(ns + "text") if t.get("class") == "ytick"]
        assert len(ticks) >= 2, "an axis without tick labels"
        log = svg.get("data-scale") == "log"
        f = (lambda v: math.log10(v)) if log else (lambda v: v)
        (y0, v0), (y1, v1) = ticks[0], ticks[-1]
        assert svg.find(f".//{ns}text[@class='label']") is not None, "an axis without a title"
        for pt in svg.iter(ns + "circle"):
            cy = float(pt.get("cy"))
            read = f(v0) + (cy - y0) / (y1 - y0) * (f(v1) - f(v0))
            read = 10 ** read if log else read
            r = by[(pt.get("data-server"), int(pt.get("data-connections")), int(pt.get("data-round")))]
            if pt.get("data-percentile"):
                kinds.add("latency")
                want = r["latency_ms"][pt.get("data-percentile")]
                assert r is median(cell(runs, r["server"], r["connections"])), "not the median round"
            else:
                kinds.add("throughput")
                want = [p[2] for p in r["per_second"] if p[0] == float(pt.get("data-from"))][0]
            tol = (1e-3 if log else (v1 - v0) * 1e-3) + 1e-9
            assert abs((math.log10(read) - math.log10(want)) if log else read - want) <= tol, \
                f"{pt.get('data-server')} plotted at {read}, results say {want}"
            checked += 1
    for r in runs:
        if r["server"] in {s["id"] for s in meta["servers"]} and r["per_second"] and r["requests"]:
            # The seconds' mean against wrk's own requests/s (the last few
            # ms after the final whole second are in wrk's count, not plotted).
            mean = sum(p[2] * (p[1] - p[0]) for p in r["per_second"]) / (r["per_second"][-1][1] or 1)
            assert abs(mean - r["rps"]) <= 0.1 * r["rps"] + 10, \
                f"{r['server']} round {r['round']}: seconds average {mean:.0f}/s, wrk says {r['rps']}/s"
    assert kinds == {"latency", "throughput"}, f"plots missing: {kinds}"
    return checked


def self_test():
    here = os.path.dirname(os.path.abspath(__file__))
    fixture = os.path.join(here, "fixture")
    with tempfile.TemporaryDirectory() as out:
        for name in ("results.jsonl", "results-url.jsonl"):
            md = render(os.path.join(fixture, name), out)
            golden = os.path.join(fixture, name.replace("results", "report").replace(".jsonl", ".md"))
            with open(golden) as f:
                want = f.read()
            assert md == want, f"{name}: the Markdown differs from {golden}"
            n = check_report(out, os.path.join(fixture, name))
            print(f"report.py self-test: {name}: Markdown as {os.path.basename(golden)}, "
                  f"{n} plotted points read back from the page match the results")
    # The per-second arithmetic, on made-up samples: 1,000 bytes a request.
    ps = per_second([[0, 0], [1.0, 100_000], [2.0, 300_000], [2.004, 301_000]], 301)
    assert ps == [[0, 1.0, 100.0], [1.0, 2.0, 200.0]], ps
    assert awk_summary("Requests/sec:  94829.52\n    50%  627.00us\n    99%    1.13ms\n"
                       "  Socket errors: connect 1, read 2, write 0, timeout 3\n"
                       "  Non-2xx or 3xx responses: 4\n") == "94830|627.00us|1.13ms|10"
    print("report.py self-test: ok")


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        return self_test()
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    commands = {"lua": lambda a: sys.stdout.write(LUA), "wrk": cmd_wrk, "meta": cmd_meta, "note": cmd_note,
                "render": cmd_render,
                "check": lambda a: print(check_report(a[0], a[1]), "points match")}
    if args[0] not in commands:
        sys.exit(f"report.py: unknown command {args[0]!r} (see --help)")
    commands[args[0]](args[1:])


if __name__ == "__main__":
    main()
