"""The Python module's CPU path against a live kvtierd, with numpy arrays:
stores in one process and loads in another byte-exact (both ways), canonical
block order, published hash vectors, probe / lookup / touch / start_lookup,
priorities and stats. Run by ctest (python_cpu_path)."""

import os
import subprocess
import sys
import unittest

import numpy as np

import kvtier
from kvtier_testlib import LAYOUT, Daemon, open_ns, tokens_of, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "cpu_peer.py")
sys.path.insert(0, HERE)
import cpu_peer  # noqa: E402


def peer(role, socket, seed, blocks):
    return subprocess.run([sys.executable, PEER, role, socket, str(seed), str(blocks)],
                          capture_output=True, text=True, env=os.environ)


class CpuPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = kvtier.Client(cls.daemon.socket)
        cls.ns = open_ns(cls.client)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def test_store_here_load_in_another_process(self):
        blocks = 24
        pages = blocks + 5
        src = cpu_peer.make_pool(101, pages)
        keys = self.ns.hash_tokens(tokens_of(101, blocks))
        r = self.ns.store(keys, kvtier.KvPool(src, "vllm_flash", dtype="bf16"),
                          cpu_peer.page_order(101, blocks, pages))
        self.assertEqual((r.stored, r.present, r.in_flight, r.no_space), (blocks, 0, 0, 0))
        p = peer("load", self.daemon.socket, 101, blocks)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_store_in_another_process_load_here(self):
        blocks = 17
        p = peer("store", self.daemon.socket, 202, blocks)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        pages = blocks + 5
        src = cpu_peer.make_pool(202, pages)
        src_pages = cpu_peer.page_order(202, blocks, pages)
        dst = [np.zeros_like(a) for a in src]
        dst_pages = list(reversed(range(blocks)))
        keys = self.ns.hash_tokens(tokens_of(202, blocks))
        with self.ns.lookup(keys) as lease:
            self.assertEqual(len(lease), blocks)
            self.assertEqual(lease.tiers, ["host"] * blocks)
            self.ns.load(lease, kvtier.KvPool(dst, "vllm_flash", dtype="bf16"), dst_pages)
        for layer in range(LAYOUT["num_layers"]):
            for i in range(blocks):
                np.testing.assert_array_equal(dst[layer][:, dst_pages[i]], src[layer][:, src_pages[i]])
        # A page the load did not name is untouched.
        for layer in range(LAYOUT["num_layers"]):
            self.assertFalse(dst[layer][:, blocks:].any())

    def test_canonical_block_order(self):
        # A paged store writes canonical blocks [layer][K, V][token][head][dim]:
        # load_blocks returns exactly that, built here by hand from the pool.
        blocks = 5
        src = cpu_peer.make_pool(303, blocks)
        pages = [3, 1, 4, 0, 2]
        keys = self.ns.hash_tokens(tokens_of(303, blocks))
        self.ns.store(keys, kvtier.KvPool(src, "vllm_flash", dtype="bf16"), pages)
        with self.ns.lookup(keys) as lease:
            raw = self.ns.load_blocks(lease)
        self.assertEqual(len(raw), blocks * self.ns.block_bytes)
        got = np.frombuffer(raw, dtype=np.uint16).reshape(blocks, -1)
        for i, page in enumerate(pages):
            want = np.concatenate([src[l][kv, page].ravel() for l in range(LAYOUT["num_layers"])
                                   for kv in range(2)])
            np.testing.assert_array_equal(got[i], want)
        # ... and store_blocks of those bytes under other keys loads back into a
        # FlashInfer HND pool as the same values (a layout with other strides).
        keys2 = self.ns.hash_tokens(tokens_of(304, blocks))
        r = self.ns.store_blocks(keys2, got)
        self.assertEqual(r.stored, blocks)
        shape = (blocks, 2, LAYOUT["num_kv_heads"], 16, LAYOUT["head_dim"])
        hnd = [np.zeros(shape, np.uint16) for _ in range(LAYOUT["num_layers"])]
        with self.ns.lookup(keys2) as lease:
            self.ns.load(lease, kvtier.KvPool(hnd, "flashinfer_hnd", dtype="bf16"), range(blocks))
        for l in range(LAYOUT["num_layers"]):
            for i, page in enumerate(pages):
                # HND [page, kv, head, token, dim] vs vLLM [kv, page, token, head, dim]
                np.testing.assert_array_equal(hnd[l][i].transpose(0, 2, 1, 3), src[l][:, page])

    def test_layer_first_and_split_kv_pools(self):
        blocks = 4
        L, H, D = LAYOUT["num_layers"], LAYOUT["num_kv_heads"], LAYOUT["head_dim"]
        rng = np.random.default_rng(5)
        lf = rng.integers(0, 1 << 16, size=(blocks, L, 2, 16, H, D), dtype=np.uint16)
        keys = self.ns.hash_tokens(tokens_of(405, blocks))
        self.ns.store(keys, kvtier.KvPool(lf, "layer_first", dtype="bf16"), range(blocks))
        # split_kv: K and V halves of one buffer per layer (constant V - K distance).
        bufs = [np.zeros((2, blocks, 16, H, D), np.uint16) for _ in range(L)]
        pool = kvtier.KvPool([(b[0], b[1]) for b in bufs], "split_kv", dtype="bf16")
        with self.ns.lookup(keys) as lease:
            self.ns.load(lease, pool, range(blocks))
        for l in range(L):
            np.testing.assert_array_equal(bufs[l].transpose(1, 0, 2, 3, 4), lf[:, l])

    def test_published_hash_vectors(self):
        ns = self.client.open_namespace("meta-llama/Llama-3.1-8B", model_revision="main", num_layers=32,
                                        num_kv_heads=8, head_dim=128)
        self.assertEqual(ns.seed.hex(), "7b7eeae0fede4359c8df7dfe2f2837f3")
        keys = ns.hash_tokens(list(range(32)))
        self.assertEqual([k.hex() for k in keys],
                         ["bc251a9643e4eeaacb3bc6cb45ff21cf", "d671f98fdc675aa890b9077b863da0e8"])
        self.assertEqual(ns.hash_tokens(np.arange(32, dtype=np.int64)), keys)
        self.assertEqual(ns.hash_tokens_remote(list(range(33))), keys)  # the partial block is not keyed
        k1x = ns.hash_tokens(list(range(16, 32)), prev=keys[0], extra=b"lora:7")
        self.assertEqual(k1x[0].hex(), "4fbb41bf83740501fe51470ef21f1931")
        k = ns.hash_tokens(list(range(32)), extra=[None, b"lora:7"])
        self.assertEqual(k[1], k1x[0])
        salted = self.client.open_namespace("meta-llama/Llama-3.1-8B", model_revision="main", num_layers=32,
                                            num_kv_heads=8, head_dim=128, tenant_salt="tenant-a",
                                            hash_mode="sha256")
        self.assertEqual(salted.seed.hex(), "c16408cc685d151f6f514fe721ced01b")
        self.assertEqual(kvtier.Key.from_hex(keys[1].hex()), keys[1])
        self.assertEqual(len({keys[0], keys[1], kvtier.Key(keys[0].lo, keys[0].hi)}), 2)

    def test_probe_lookup_touch_start_lookup(self):
        blocks = 6
        keys = self.ns.hash_tokens(tokens_of(505, blocks + 3))  # 3 more than stored
        src = cpu_peer.make_pool(505, blocks)
        self.ns.store(keys[:blocks], kvtier.KvPool(src, "vllm_flash", dtype="bf16"), range(blocks))
        before = self.client.stats()
        self.assertEqual(self.ns.probe(keys), ["host"] * blocks)
        mid = self.client.stats()
        self.assertEqual(mid["acquires"], before["acquires"])  # probe counts nothing
        self.assertEqual(mid["pinned_blocks"], 0)
        self.assertEqual(self.ns.touch(keys), blocks)
        self.assertEqual(self.client.stats()["pinned_blocks"], 0)  # touch pins nothing
        pending = [self.ns.start_lookup(keys), self.ns.start_lookup(keys[:2])]
        leases = [p.wait() for p in pending]
        self.assertEqual([len(l) for l in leases], [blocks, 2])
        self.assertEqual(self.client.stats()["leases_open"], 2)
        self.assertEqual(self.client.stats()["pinned_blocks"], blocks)  # distinct blocks
        for l in leases:
            l.release()
            l.release()  # idempotent
        s = self.client.stats()
        self.assertEqual((s["leases_open"], s["pinned_blocks"]), (0, 0))
        with self.assertRaises(kvtier.InvalidArgument):
            pending[0].wait()  # once only
        miss = self.ns.lookup(self.ns.hash_tokens(tokens_of(506, 2)))
        self.assertEqual(len(miss), 0)
        self.assertFalse(miss)

    def test_store_options_and_partial_chains(self):
        blocks = 8
        keys = self.ns.hash_tokens(tokens_of(606, blocks))
        src = cpu_peer.make_pool(606, blocks)
        pool = kvtier.KvPool(src, "vllm_flash", dtype="bf16")
        r = self.ns.store(keys[:4], pool, range(4), priority=90, duration_s=30,
                          ranges=[(0, 2, 10), (2, 4, 80, 1.5)])
        self.assertEqual(r.stored, 4)
        r = self.ns.store(keys[4:], pool, range(4, 8), first_parent=keys[3], priority=0)
        self.assertEqual(r.stored, 4)
        r = self.ns.store(keys, pool, range(8))
        self.assertEqual((r.stored, r.present), (0, 8))
        self.assertEqual(len(self.ns.probe(keys)), 8)
        for bad in (dict(priority=101), dict(priority=-1), dict(ranges=[(0, 9, 5)]), dict(ranges=[(0, 2, 200)]),
                    dict(duration_s=-1)):
            with self.assertRaises(kvtier.InvalidArgument, msg=str(bad)):
                self.ns.store(keys, pool, range(8), **bad)

    def test_stats_and_namespaces(self):
        s = self.client.stats()
        self.assertGreaterEqual(s["connections_open"], 1)
        names = [n["model_id"] for n in s["namespaces"]]
        self.assertIn("test/py-model", names)
        self.assertIn("host", [t["name"] for t in s["tiers"]])
        self.assertEqual(self.ns.spec["num_layers"], LAYOUT["num_layers"])
        self.assertEqual(self.ns.block_bytes, 4 * 2 * 16 * 2 * 64 * 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
