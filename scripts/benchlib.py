"""What the cluster benchmark scripts share (scripts/ab-bench.py,
scripts/scale-bench.py): a local cluster started by scripts/cluster.sh in a
temp dir and stopped (by the PIDs cluster.sh recorded) and deleted after, and
one `dcache bench --json` run. Standard library only.
"""

import contextlib
import json
import os
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
