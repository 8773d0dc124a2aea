"""The Python module's GPU path with torch CUDA tensors in vLLM's flash
layout, against a real kvtierd and the C++ client: a store from Python loads
byte-exact from C++ (tests/python/python_peer.cc) and the reverse, from the
host tier and from the HBM tier (CUDA IPC); layer-wise and unverified loads;
tensors through DLPack and through __cuda_array_interface__; torch streams;
bad arguments refused with the daemon intact; kvtier.hf saves a transformers
cache and restores it bit for bit. Exits 77 (ctest: skipped) without torch,
CUDA or a GPU. Run by ctest (python_gpu) and scripts/gpu-run.sh python."""

import ctypes
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:
    print("skipped: no torch")
    sys.exit(77)

import kvtier
from kvtier_testlib import Daemon, tokens_of

if not torch.cuda.is_available() or not kvtier.gpu_available():
    print("skipped: no CUDA device (torch: %s, kvtier: %s)" % (torch.cuda.is_available(), kvtier.gpu_available()))
    sys.exit(77)

PEER = os.environ.get("KVTIER_PYTHON_PEER", "kvtier-python-peer")
L, H, D, P = 4, 8, 128, 64
MODEL = "test/py-gpu"


def random_pool(seed, device="cuda:0"):
    g = torch.Generator(device="cpu").manual_seed(seed)
    layers = [torch.randint(-(1 << 15), 1 << 15, (2, P, 16, H, D), dtype=torch.int16, generator=g)
              .view(torch.bfloat16).to(device) for _ in range(L)]
    return layers


def pool_bytes(layers):
    out = []
    for t in layers:
        c = t.contiguous().cpu()
        out.append(ctypes.string_at(c.data_ptr(), c.numel() * c.element_size()))
    return b"".join(out)


def from_bytes(raw):
    a = torch.frombuffer(bytearray(raw), dtype=torch.int16).reshape(L, 2, P, 16, H, D)
    return [a[l].clone().view(torch.bfloat16) for l in range(L)]


def page_map(seed, blocks):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(P, generator=g)[:blocks].tolist()


class GpuPathTest(unittest.TestCase):
    extra = ()

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(*cls.extra, host_capacity="256M")
        cls.client = kvtier.Client(cls.daemon.socket)
        cls.ns = cls.client.open_namespace(MODEL, num_layers=L, num_kv_heads=H, head_dim=D)
        cls.gpu = cls.client.gpu_session(0)
        cls.tmp = tempfile.mkdtemp(prefix="kvtier-pygpu-")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def peer(self, role, seed, pages, path):
        r = subprocess.run([PEER, role, self.daemon.socket, str(L), str(H), str(D), str(P), str(seed),
                            ",".join(map(str, pages)), path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def expected_tier(self):
        return "hbm" if "--store-tier" in self.extra else "host"

    def test_python_store_cpp_load(self):
        blocks = 40
        src = random_pool(1)
        src_pages, dst_pages = page_map(1, blocks), page_map(2, blocks)
        keys = self.ns.hash_tokens(tokens_of(1001, blocks))
        stream = torch.cuda.current_stream()
        r = self.gpu.store(self.ns, keys, kvtier.KvPool(src, "vllm_flash"), src_pages, stream.cuda_stream)
        self.assertEqual((r.stored, r.present), (blocks, 0))
        self.assertEqual(self.ns.probe(keys), [self.expected_tier()] * blocks)
        path = os.path.join(self.tmp, "cpp-load.bin")
        out = self.peer("load", 1001, dst_pages, path)
        self.assertIn("loaded %d from %s" % (blocks, self.expected_tier()), out)
        with open(path, "rb") as f:
            got = from_bytes(f.read())
        for l in range(L):
            a = got[l][:, dst_pages].view(torch.int16)
            b = src[l][:, src_pages].cpu().view(torch.int16)
            self.assertTrue(torch.equal(a, b), f"layer {l}")

    def test_cpp_store_python_load(self):
        blocks = 33
        src = random_pool(3, device="cpu")
        src_pages, dst_pages = page_map(3, blocks), page_map(4, blocks)
        path = os.path.join(self.tmp, "cpp-store.bin")
        with open(path, "wb") as f:
            f.write(pool_bytes(src))
        self.peer("store", 2002, src_pages, path)
        keys = self.ns.hash_tokens(tokens_of(2002, blocks))
        dst = [torch.zeros((2, P, 16, H, D), dtype=torch.bfloat16, device="cuda:0") for _ in range(L)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())  # the zeros are written before the load
        with self.ns.lookup(keys) as lease:
            self.assertEqual(len(lease), blocks)
            self.assertEqual(lease.tiers, [self.expected_tier()] * blocks)
            load = self.gpu.start_load(self.ns, lease, kvtier.KvPool(dst, "vllm_flash"), dst_pages, side)
            load.wait()
            self.assertTrue(load.ready())
            self.assertEqual(load.verified_blocks, blocks)
        torch.cuda.synchronize()
        for l in range(L):
            self.assertTrue(torch.equal(dst[l][:, dst_pages].cpu().view(torch.int16),
                                        src[l][:, src_pages].view(torch.int16)), f"layer {l}")
        untouched = sorted(set(range(P)) - set(dst_pages))
        self.assertFalse(any(dst[l][:, untouched].view(torch.int16).any().item() for l in range(L)))

    def test_layerwise_unverified_and_cuda_array_interface(self):
        blocks = 12
        src = random_pool(5)
        keys = self.ns.hash_tokens(tokens_of(3003, blocks))
        self.gpu.start_store(self.ns, keys, kvtier.KvPool(src, "vllm_flash"), range(blocks)).wait()
        events = self.gpu.layer_events(L)
        dst = [torch.zeros_like(t) for t in src]
        stream = torch.cuda.current_stream()
        with self.ns.lookup(keys) as lease:
            self.gpu.load(self.ns, lease, kvtier.KvPool(dst, "vllm_flash"), range(blocks), stream,
                          layers_per_group=1, events=events)
            for l in range(L):
                events.stream_wait_layer(l, stream)
            torch.cuda.synchronize()
            for l in range(L):
                # As raw bits: random bf16 bits include NaNs, which never compare equal.
                self.assertTrue(torch.equal(dst[l][:, :blocks].view(torch.int16),
                                            src[l][:, :blocks].view(torch.int16)), f"layer {l}")

            # int16 tensors seen only through __cuda_array_interface__ (raw bf16 bits).
            class CaiOnly:
                def __init__(self, t):
                    self.__cuda_array_interface__ = t.__cuda_array_interface__

            raw = [torch.zeros((2, P, 16, H, D), dtype=torch.int16, device="cuda:0") for _ in range(L)]
            pool = kvtier.KvPool([CaiOnly(t) for t in raw], "vllm_flash", dtype="bf16")
            self.gpu.load(self.ns, lease, pool, range(blocks), 0, verify=False)
            torch.cuda.synchronize()
            for l in range(L):
                self.assertTrue(torch.equal(raw[l][:, :blocks], src[l][:, :blocks].view(torch.int16)))

    def test_bad_arguments_leave_the_daemon_intact(self):
        blocks = 4
        src = random_pool(7)
        keys = self.ns.hash_tokens(tokens_of(4004, blocks))
        self.gpu.store(self.ns, keys, kvtier.KvPool(src, "vllm_flash"), range(blocks))
        cpu_pool = kvtier.KvPool([t.cpu() for t in src], "vllm_flash")
        gpu_pool = kvtier.KvPool([torch.zeros_like(t) for t in src], "vllm_flash")
        fp16 = kvtier.KvPool([torch.zeros((2, P, 16, H, D), dtype=torch.float16, device="cuda:0")] * L,
                             "vllm_flash")
        with self.assertRaises(kvtier.InvalidArgument) as c:
            kvtier.KvPool([torch.zeros((2, P, 16, H, 2 * D), dtype=torch.bfloat16, device="cuda:0")[..., ::2]] * L,
                          "vllm_flash")
        self.assertIn("contiguous", str(c.exception))
        with self.ns.lookup(keys) as lease:
            for call, word in ((lambda: self.gpu.load(self.ns, lease, cpu_pool, range(blocks)), "cpu"),
                               (lambda: self.ns.load(lease, gpu_pool, range(blocks)), "GpuSession"),
                               (lambda: self.gpu.load(self.ns, lease, fp16, range(blocks)), "fp16"),
                               (lambda: self.gpu.load(self.ns, lease, gpu_pool, [0, 1, 2, P]), "out of range"),
                               (lambda: self.gpu.load(self.ns, lease, gpu_pool, [0, 0]), "twice")):
                with self.assertRaises(kvtier.InvalidArgument) as c:
                    call()
                self.assertIn(word, str(c.exception))
        with self.assertRaises(kvtier.InvalidArgument):
            self.gpu.load(self.ns, lease, gpu_pool, range(blocks))  # released
        with self.assertRaises(TypeError):
            self.gpu.load(self.ns, self.ns.lookup(keys), gpu_pool, range(blocks), stream="nope")
        s = self.client.stats()
        self.assertTrue(self.daemon.alive())
        self.assertEqual((s["leases_open"], s["txns_open"]), (0, 0))
        dst = [torch.zeros_like(t) for t in src]
        with self.ns.lookup(keys) as lease:
            self.gpu.load(self.ns, lease, kvtier.KvPool(dst, "vllm_flash"), range(blocks))
        for l in range(L):
            self.assertTrue(torch.equal(dst[l][:, :blocks].view(torch.int16),
                                        src[l][:, :blocks].view(torch.int16)), f"layer {l}")


class GpuPathHbmTest(GpuPathTest):
    """The same through the daemon's HBM tier (CUDA IPC across processes)."""
    extra = ("--hbm-capacity", "512M", "--store-tier", "hbm")


class HfRoundTripTest(unittest.TestCase):
    def test_save_and_restore_a_transformers_cache(self):
        try:
            from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
        except ImportError:
            self.skipTest("no transformers")
        import kvtier.hf
        config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(device="cuda:0", dtype=torch.bfloat16).eval()
        with Daemon(host_capacity="128M") as d:
            client = kvtier.Client(d.socket)
            # A connection maps its tenant's memory once it opened a namespace.
            ns = kvtier.hf.open_namespace(client, model, model_id="test/hf-tiny")
            gpu = client.gpu_session(0)
            tokens = torch.randint(0, 512, (1, 150)).tolist()[0]
            with torch.no_grad():
                out = model(torch.tensor([tokens], device="cuda:0"), past_key_values=DynamicCache(config=config),
                            use_cache=True)
            r = kvtier.hf.save(ns, tokens, out.past_key_values, session=gpu)
            self.assertEqual((r.stored, r.present), (9, 0))  # 150 tokens: 9 full blocks
            self.assertEqual(kvtier.hf.save(ns, tokens, out.past_key_values, session=gpu).present, 9)
            cache, n = kvtier.hf.restore(ns, tokens, session=gpu, config=config, device="cuda:0")
            self.assertEqual(n, 144)
            want = kvtier.hf.cache_layers(out.past_key_values)
            got = kvtier.hf.cache_layers(cache)
            self.assertEqual(len(got), 3)
            for (k, v), (k2, v2) in zip(want, got):
                self.assertTrue(torch.equal(k[:, :, :144], k2) and torch.equal(v[:, :, :144], v2))
            self.assertEqual(cache.get_seq_length(), 144)
            # At most len - 1 tokens: 144 tokens restore 128 (the model needs a token to compute).
            _, n = kvtier.hf.restore(ns, tokens[:144], session=gpu, config=config, device="cuda:0")
            self.assertEqual(n, 128)


if __name__ == "__main__":
    unittest.main(verbosity=2)
