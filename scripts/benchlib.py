"""What the benchmark scripts share (scripts/ab-bench.py,
scripts/scale-bench.py, scripts/compare-redis.py): a local cluster started by
scripts/cluster.sh in a temp dir and stopped (by the PIDs cluster.sh
recorded) and deleted after, one `dcache bench --json` run, one
`redis-benchmark --csv` run, and the replacement of a generated section of
docs/BENCHMARKS.md. Standard library only.
"""

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_SH = os.path.join(REPO, "scripts", "cluster.sh")


@contextlib.contextmanager
def local_cluster(server_bin, nodes, http_base, raft_base, redis_base, prefix):
    """A `nodes`-node cluster of `server_bin` on loopback: yields (its dir,
    the nodes' HTTP addresses); stopped and deleted on exit, also when the
    start fails half-way."""
    d = tempfile.mkdtemp(prefix=prefix)
    env = dict(os.environ, CLUSTER_NODES=str(nodes), CLUSTER_BIN=server_bin,
               CLUSTER_HTTP_PORT_BASE=str(http_base),
               CLUSTER_RAFT_PORT_BASE=str(raft_base),
               CLUSTER_REDIS_PORT_BASE=str(redis_base))
    try:
        subprocess.run([CLUSTER_SH, "start", d], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        yield d, [f"localhost:{http_base + i}" for i in range(1, nodes + 1)]
    finally:
        subprocess.run([CLUSTER_SH, "stop", d], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


def bench(gen_bin, args):
    """`gen_bin bench --json ARGS`: its final JSON report."""
    r = subprocess.run([gen_bin, "bench", "--json"] + args,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def redis_benchmark(port, args, who):
    """`redis-benchmark -h 127.0.0.1 -p PORT --csv ARGS`: {test: {rps, p50,
    p99}} (ms), one entry per test it ran. `who` names the caller in the
    error raised on output that is not its CSV."""
    r = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv"] + args,
        capture_output=True, text=True, check=True, timeout=600)
    out = {}
    for row in csv.DictReader(io.StringIO(r.stdout)):
        try:
            out[row["test"]] = {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                                "p99": float(row["p99_latency_ms"])}
        except (KeyError, TypeError, ValueError):
            out = {}
            break
    if not out:
        raise SystemExit(f"{who}: unexpected redis-benchmark output:\n{r.stdout}{r.stderr}")
    return out


def replace_section(path, heading, section):
    """Put `section` (which starts with the line `heading`) into the markdown
    file at `path` in place of the section under exactly that heading line,
    up to the next `## ` heading; append it when there is none. A heading
    that merely starts with `heading` (e.g. a hand-written "heading:
    reading the run" section) is left alone."""
    text = open(path).read() if os.path.exists(path) else "# dcache benchmarks\n"
    m = re.search(r"^" + re.escape(heading) + r"[ \t]*$", text, flags=re.M)
    section = section.rstrip("\n") + "\n"
    if m:
        nxt = re.search(r"^## ", text[m.end():], flags=re.M)
        end = m.end() + nxt.start() if nxt else len(text)
        text = text[:m.start()] + section + ("\n" + text[end:] if nxt else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
