"""Bad arguments to the Python module raise clear exceptions carrying the
kvtier status name, and leave the daemon and its data intact: after every
refused call the same daemon still stores and loads byte-exact, and holds no
lease or write transaction of the refused call. Run by ctest (python_errors)."""

import unittest

import numpy as np

import kvtier
from kvtier_testlib import LAYOUT, Daemon, open_ns, tokens_of

L, H, D = LAYOUT["num_layers"], LAYOUT["num_kv_heads"], LAYOUT["head_dim"]
PAGES = 8


def vllm_pool(pages=PAGES, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 200, size=(2, pages, 16, H, D)).astype(dtype) for _ in range(L)]


class ErrorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = kvtier.Client(cls.daemon.socket)
        cls.ns = open_ns(cls.client)
        cls.src = vllm_pool(seed=1)
        cls.pool = kvtier.KvPool(cls.src, "vllm_flash", dtype="bf16")
        cls.keys = cls.ns.hash_tokens(tokens_of(1, 4))
        r = cls.ns.store(cls.keys, cls.pool, [0, 1, 2, 3])
        assert r.stored == 4, r

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def tearDown(self):
        # The daemon is intact: alive, nothing left pinned or half-written,
        # the stored blocks load back byte-exact, a new store works.
        self.assertTrue(self.daemon.alive())
        s = self.client.stats()
        self.assertEqual((s["leases_open"], s["pinned_blocks"], s["txns_open"], s["blocks_writing"]),
                         (0, 0, 0, 0))
        dst = vllm_pool(seed=9)
        with self.ns.lookup(self.keys) as lease:
            self.assertEqual(len(lease), 4)
            self.ns.load(lease, kvtier.KvPool(dst, "vllm_flash", dtype="bf16"), [7, 6, 5, 4])
        for l in range(L):
            np.testing.assert_array_equal(dst[l][:, [7, 6, 5, 4]], self.src[l][:, [0, 1, 2, 3]])

    def assertStatus(self, exc, status, *words):
        self.assertIsInstance(exc, kvtier.Error)
        self.assertEqual(exc.status, status)
        self.assertTrue(str(exc).startswith(status + ": "), str(exc))
        for w in words:
            self.assertIn(w, str(exc))

    def test_wrong_dtype(self):
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(vllm_pool(dtype=np.float32), "vllm_flash")
        self.assertStatus(c.exception, "InvalidArgument", "float32", "not", "KV dtype")
        self.assertIsInstance(c.exception, ValueError)
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(vllm_pool(dtype=np.float32), "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "4-byte", "bf16")
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(vllm_pool(dtype=np.float16), "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "fp16", "bf16")
        # fp16 arrays are a valid pool, but not for a bf16 namespace.
        fp16 = kvtier.KvPool(vllm_pool(dtype=np.float16), "vllm_flash")
        self.assertEqual(fp16.dtype, "fp16")
        with self.ns.lookup(self.keys) as lease:
            with self.assertRaises(kvtier.InvalidArgument) as c:
                self.ns.load(lease, fp16, [0])
        self.assertStatus(c.exception, "InvalidArgument", "dtype", "fp16", "bf16")
        with self.assertRaises(kvtier.InvalidArgument):
            kvtier.KvPool(vllm_pool(), "vllm_flash", dtype="int4")

    def test_wrong_shape(self):
        bad = [a[0] for a in vllm_pool()]  # 4-D
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(bad, "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "layers[0]", "(8, 16, 2, 64)", "[2, pages")
        three = [np.zeros((3, PAGES, 16, H, D), np.uint16) for _ in range(L)]
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(three, "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "must be 2")
        mixed = vllm_pool()
        mixed[2] = np.zeros((2, PAGES + 1, 16, H, D), np.uint16)
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(mixed, "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "layers[2]", "layers[0]")
        # A pool of another model shape: heads, layers, tokens per page.
        for pool, word in ((kvtier.KvPool([np.zeros((2, 4, 16, H + 1, D), np.uint16)] * L, "vllm_flash",
                                          dtype="bf16"), "KV heads"),
                           (kvtier.KvPool(vllm_pool()[:3], "vllm_flash", dtype="bf16"), "layers"),
                           (kvtier.KvPool([np.zeros((2, 4, 32, H, D), np.uint16)] * L, "vllm_flash",
                                          dtype="bf16"), "tokens per page")):
            with self.assertRaises(kvtier.InvalidArgument) as c:
                self.ns.store(self.ns.hash_tokens(tokens_of(50, 1)), pool, [0])
            self.assertStatus(c.exception, "InvalidArgument", word)
        with self.assertRaises(kvtier.InvalidArgument):
            kvtier.KvPool(vllm_pool(), "no_such_layout")
        with self.assertRaises(kvtier.InvalidArgument):
            kvtier.KvPool([], "vllm_flash")
        with self.assertRaises(TypeError):
            kvtier.KvPool([object()], "vllm_flash")
        with self.assertRaises(kvtier.InvalidArgument) as c:
            self.ns.store_blocks(self.keys, np.zeros(100, np.uint8))
        self.assertStatus(c.exception, "InvalidArgument", "100 bytes")

    def test_wrong_strides(self):
        wide = [np.zeros((2, PAGES, 16, H, 2 * D), np.uint16) for _ in range(L)]
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool([w[..., ::2] for w in wide], "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "head_dim", "contiguous")
        # Layers with different strides (one transposed view).
        pools = vllm_pool()
        t = np.zeros((2, PAGES, H, 16, D), np.uint16).transpose(0, 1, 3, 2, 4)
        pools[1] = t
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool(pools, "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "layers[1]", "strides")
        # ... while the same permuted view in every layer is a valid pool (HND
        # memory order read as NHD), and loads land where the view says.
        views = [np.zeros((2, PAGES, H, 16, D), np.uint16).transpose(0, 1, 3, 2, 4) for _ in range(L)]
        permuted = kvtier.KvPool(views, "vllm_flash", dtype="bf16")
        with self.ns.lookup(self.keys) as lease:
            self.ns.load(lease, permuted, [3, 2, 1, 0])
        for l in range(L):
            np.testing.assert_array_equal(views[l][:, [3, 2, 1, 0]], self.src[l][:, :4])
        # Rows not 16-byte aligned: head_dim of 4 bf16 elements is 8 bytes.
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool([np.zeros((2, 4, 16, H, 4), np.uint16)] * 2, "vllm_flash", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "16")
        # Split K/V with a K-to-V distance that differs between layers.
        a = [np.zeros((PAGES, 16, H, D), np.uint16) for _ in range(2 * L)]
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool([(a[2 * l], a[(2 * l + 3) % (2 * L)]) for l in range(L)], "split_kv", dtype="bf16")
        self.assertStatus(c.exception, "InvalidArgument", "K-to-V")

    def test_pages_out_of_range(self):
        dst = kvtier.KvPool(vllm_pool(), "vllm_flash", dtype="bf16")
        with self.ns.lookup(self.keys) as lease:
            for pages, word in (([0, 1, 2, PAGES], "pages[3] = 8 is out of range"),
                                ([0, -1], "pages[1] = -1"),
                                ([0, 1, 1], "named twice"),
                                ([0, 1, 2, 3, 4], "5 pages for a lease of 4")):
                with self.assertRaises(kvtier.InvalidArgument) as c:
                    self.ns.load(lease, dst, pages)
                self.assertStatus(c.exception, "InvalidArgument", word)
        keys = self.ns.hash_tokens(tokens_of(60, 2))
        with self.assertRaises(kvtier.InvalidArgument) as c:
            self.ns.store(keys, self.pool, [0, 99])
        self.assertStatus(c.exception, "InvalidArgument", "pages[1] = 99")
        with self.assertRaises(kvtier.InvalidArgument) as c:
            self.ns.store(keys, self.pool, [0])
        self.assertStatus(c.exception, "InvalidArgument", "2 keys but 1 pages")
        with self.assertRaises(TypeError):
            self.ns.store(keys, self.pool, ["a", "b"])
        self.assertEqual(self.ns.probe(keys), [])  # nothing of the refused stores is visible

    def test_released_lease(self):
        dst = kvtier.KvPool(vllm_pool(), "vllm_flash", dtype="bf16")
        lease = self.ns.lookup(self.keys)
        lease.release()
        self.assertTrue(lease.released)
        self.assertEqual(len(lease), 0)
        with self.assertRaises(kvtier.InvalidArgument) as c:
            self.ns.load(lease, dst, [0])
        self.assertStatus(c.exception, "InvalidArgument", "released")
        with self.ns.lookup(self.keys) as held:
            pass
        with self.assertRaises(kvtier.InvalidArgument):
            self.ns.load_blocks(held)
        # A lease of another namespace.
        other = open_ns(self.client, "test/other-model")
        other.store(other.hash_tokens(tokens_of(1, 1)), self.pool, [0])
        with other.lookup(other.hash_tokens(tokens_of(1, 1))) as foreign:
            with self.assertRaises(kvtier.InvalidArgument) as c:
                self.ns.load(foreign, dst, [0])
        self.assertStatus(c.exception, "InvalidArgument", "comes from namespace")

    def test_read_only_and_device(self):
        ro = vllm_pool()
        for a in ro:
            a.flags.writeable = False
        pool = kvtier.KvPool(ro, "vllm_flash", dtype="bf16")
        self.assertTrue(pool.readonly)
        with self.ns.lookup(self.keys) as lease:
            with self.assertRaises(kvtier.InvalidArgument) as c:
                self.ns.load(lease, pool, [0])
            self.assertStatus(c.exception, "InvalidArgument", "read-only")
            out = np.zeros(4 * self.ns.block_bytes, np.uint8)
            out.flags.writeable = False
            with self.assertRaises(kvtier.InvalidArgument):
                self.ns.load_blocks(lease, out)
        # Storing from a read-only pool is fine.
        r = self.ns.store(self.ns.hash_tokens(tokens_of(70, 1)), pool, [0])
        self.assertEqual(r.stored, 1)
        if not kvtier.gpu_available():
            with self.assertRaises(kvtier.Unavailable) as c:
                self.client.gpu_session()
            self.assertStatus(c.exception, "Unavailable")

    def test_bad_namespace_and_socket(self):
        with self.assertRaises(kvtier.InvalidArgument):
            self.client.open_namespace("m", num_layers=2, num_kv_heads=2, head_dim=64, tp_rank=2, tp_size=2)
        with self.assertRaises(kvtier.InvalidArgument) as c:
            self.client.open_namespace("m\0x", num_layers=2, num_kv_heads=2, head_dim=64)
        self.assertStatus(c.exception, "InvalidArgument", "NUL")
        with self.assertRaises(kvtier.InvalidArgument):
            self.client.open_namespace("m", num_layers=0, num_kv_heads=2, head_dim=64)
        with self.assertRaises(kvtier.InvalidArgument):
            self.client.open_namespace("m", num_layers=2, num_kv_heads=2, head_dim=64, dtype="fp32")
        with self.assertRaises(kvtier.InvalidArgument):
            self.client.open_namespace("m", num_layers=2, num_kv_heads=2, head_dim=64, hash_mode="md5")
        with self.assertRaises(kvtier.Unavailable) as c:
            kvtier.Client(self.daemon.socket + ".missing")
        self.assertStatus(c.exception, "Unavailable", "no kvtierd")
        with self.assertRaises(kvtier.InvalidArgument):
            kvtier.Client("x" * 200)
        with self.assertRaises(TypeError):
            self.ns.lookup([1, 2, 3])
        with self.assertRaises(kvtier.InvalidArgument):
            kvtier.Key.from_hex("zz")
        with self.assertRaises(kvtier.InvalidArgument):
            self.ns.hash_tokens([-1] * 16)


if __name__ == "__main__":
    unittest.main(verbosity=2)
