"""Leases die with their Python objects and with their process: the daemon's
stats show the pins gone when a Lease is garbage-collected (also on another
thread than the one that made it), when a PendingLookup is dropped
unanswered, and when a process holding leases is killed (SIGKILL). One
Client used from several threads at once loads byte-exact. Run by ctest
(python_lifetimes)."""

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import numpy as np

import kvtier
from kvtier_testlib import LAYOUT, Daemon, open_ns, tokens_of, wait_until

L, H, D = LAYOUT["num_layers"], LAYOUT["num_kv_heads"], LAYOUT["head_dim"]

HOLDER = r"""
import sys, time, kvtier
sys.path.insert(0, sys.argv[2])
from kvtier_testlib import open_ns, tokens_of
c = kvtier.Client(sys.argv[1])
ns = open_ns(c)
leases = [ns.lookup(ns.hash_tokens(tokens_of(1, 6))), ns.lookup(ns.hash_tokens(tokens_of(1, 3)))]
pending = ns.start_lookup(ns.hash_tokens(tokens_of(1, 6)))
print(sum(len(l) for l in leases), flush=True)
time.sleep(600)
"""


def pool(seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1 << 16, size=(2, 8, 16, H, D), dtype=np.uint16) for _ in range(L)]


class LifetimesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = kvtier.Client(cls.daemon.socket)
        cls.ns = open_ns(cls.client)
        cls.src = pool(1)
        cls.keys = cls.ns.hash_tokens(tokens_of(1, 6))
        r = cls.ns.store(cls.keys, kvtier.KvPool(cls.src, "vllm_flash", dtype="bf16"), range(6))
        assert r.stored == 6

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def stats(self):
        return self.client.stats()

    def assertNothingPinned(self):
        wait_until(lambda: self.stats()["leases_open"] == 0 and self.stats()["pinned_blocks"] == 0,
                   what="every lease released")

    def test_lease_dies_with_its_object(self):
        lease = self.ns.lookup(self.keys)
        self.assertEqual(self.stats()["pinned_blocks"], 6)
        del lease
        self.assertNothingPinned()
        # Inside a reference cycle: released when the collector breaks it.
        holder = {"lease": self.ns.lookup(self.keys)}
        holder["self"] = holder
        self.assertEqual(self.stats()["leases_open"], 1)
        del holder
        gc.collect()
        self.assertNothingPinned()

    def test_release_reaches_the_daemon_at_once(self):
        # Seen from another connection: the releasing client makes no further
        # call that would carry its messages out.
        other = kvtier.Client(self.daemon.socket)
        lease = self.ns.lookup(self.keys)
        self.assertEqual(other.stats()["leases_open"], 1)
        lease.release()
        wait_until(lambda: other.stats()["leases_open"] == 0, timeout=5, what="the release seen by the daemon")
        with self.ns.lookup(self.keys):
            pass
        wait_until(lambda: other.stats()["leases_open"] == 0, timeout=5, what="the with-block's release")
        self.ns.start_lookup(self.keys)  # sent at once, dropped unanswered: cancelled
        wait_until(lambda: other.stats()["leases_open"] == 0, timeout=5, what="the cancelled lookup")

    def test_lease_dropped_on_another_thread(self):
        leases = [self.ns.lookup(self.keys) for _ in range(5)]
        self.assertEqual(self.stats()["leases_open"], 5)
        t = threading.Thread(target=leases.clear)
        t.start()
        t.join()
        self.assertNothingPinned()

    def test_pending_lookup_dropped_unanswered(self):
        p = self.ns.start_lookup(self.keys)
        del p
        self.assertNothingPinned()
        p = self.ns.start_lookup(self.keys)
        lease = p.wait()
        del p
        self.assertEqual(len(lease), 6)
        self.assertEqual(self.stats()["leases_open"], 1)
        del lease
        self.assertNothingPinned()

    def test_killed_process_releases_its_leases(self):
        conns = self.stats()["connections_open"]
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, self.daemon.socket,
                                 os.path.dirname(os.path.abspath(__file__))],
                                stdout=subprocess.PIPE, text=True, env=os.environ)
        try:
            self.assertEqual(proc.stdout.readline().strip(), "9")
            wait_until(lambda: self.stats()["leases_open"] == 3, what="the holder's three leases")
            s = self.stats()
            self.assertEqual(s["pinned_blocks"], 6)  # distinct blocks
            self.assertEqual(s["connections_open"], conns + 1)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.assertNothingPinned()
        wait_until(lambda: self.stats()["connections_open"] == conns, what="the connection closed")
        with self.ns.lookup(self.keys) as lease:
            self.assertEqual(len(lease), 6)

    def test_a_waiting_call_releases_the_gil(self):
        # The daemon stopped (SIGSTOP): a probe waits for its answer. Python code
        # on another thread must keep running meanwhile.
        client = kvtier.Client(self.daemon.socket)
        ns = open_ns(client)
        done = threading.Event()
        result = []
        os.kill(self.daemon.proc.pid, signal.SIGSTOP)
        try:
            t = threading.Thread(target=lambda: (result.append(ns.probe(self.keys)), done.set()))
            t.start()
            spins, t0 = 0, time.time()
            while time.time() - t0 < 0.5:
                spins += 1
            self.assertFalse(done.is_set(), "the probe answered while the daemon was stopped")
            self.assertGreater(spins, 10000, "the main thread barely ran while the probe waited")
        finally:
            os.kill(self.daemon.proc.pid, signal.SIGCONT)
        t.join(10)
        self.assertEqual(result, [["host"] * 6])

    def test_forked_child_gets_an_error_not_a_hang(self):
        lease = self.ns.lookup(self.keys)
        pid = os.fork()
        if pid == 0:  # the child: the parent's Client has no thread here
            code = 3
            try:
                self.client.ping()
            except kvtier.Unavailable as e:
                code = 0 if "another process" in str(e) else 4
            except BaseException:
                code = 5
            del lease  # dropped in the child: must not touch the parent's connection
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(self.stats()["leases_open"], 1)  # the parent's lease is still held
        del lease
        self.assertNothingPinned()
        kvtier.Client(self.daemon.socket).ping()  # a new Client after the fork works

    def test_one_client_many_threads(self):
        errors = []

        def work(seed):
            try:
                dst = [np.zeros_like(a) for a in self.src]
                pages = np.random.default_rng(seed).permutation(8)[:6].tolist()
                for _ in range(20):
                    with self.ns.lookup(self.keys) as lease:
                        self.ns.load(lease, kvtier.KvPool(dst, "vllm_flash", dtype="bf16"), pages)
                    for l in range(L):
                        if not np.array_equal(dst[l][:, pages], self.src[l][:, :6]):
                            errors.append(f"thread {seed}: layer {l} differs")
                            return
            except Exception as e:  # reported below
                errors.append(f"thread {seed}: {e!r}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertNothingPinned()


if __name__ == "__main__":
    unittest.main(verbosity=2)
