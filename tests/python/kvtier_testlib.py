"""Helpers of the Python module's tests: a real kvtierd on a temporary socket.

The tests run with PYTHONPATH naming the build's python/ directory and
KVTIERD naming the daemon binary (tests/CMakeLists.txt sets both).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import kvtier

KVTIERD = os.environ.get("KVTIERD", "kvtierd")


class Daemon:
    """kvtierd on a fresh socket and data dir; stopped (SIGTERM) by stop()."""

    def __init__(self, *extra, host_capacity="64M"):
        self.dir = tempfile.mkdtemp(prefix="kvtier-py-")
        self.socket = os.path.join(self.dir, "kvtier.sock")
        args = [KVTIERD, "--socket", self.socket, "--data-dir", os.path.join(self.dir, "data"),
                "--host-capacity", host_capacity, "--host-region", "4M", "--admin", "off",
                "--log-level", "warn", "--rpc-threads", "2", *extra]
        self.proc = subprocess.Popen(args)
        deadline = time.time() + 20
        while True:
            try:
                kvtier.Client(self.socket).ping()
                return
            except kvtier.Unavailable:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kvtierd exited during start-up ({self.proc.returncode})")
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("kvtierd did not start serving within 20 s")
                time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_until(predicate, timeout=10.0, what="condition"):
    """Polls `predicate` until it is true; raises AssertionError after `timeout`."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# A small model: 4 layers, 2 KV heads x 64, bf16, 16-token blocks: 16 KiB blocks.
LAYOUT = dict(num_layers=4, num_kv_heads=2, head_dim=64, tokens_per_block=16, dtype="bf16")


def open_ns(client, model="test/py-model", **over):
    spec = dict(LAYOUT)
    spec.update(over)
    return client.open_namespace(model, **spec)


def tokens_of(prompt, blocks, tpb=16):
    """Token ids of prompt number `prompt`, `blocks` full blocks long."""
    return [(prompt * 1000003 + i) % (1 << 31) for i in range(blocks * tpb)]


def python():
    return sys.executable
