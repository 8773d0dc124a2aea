#!/usr/bin/env python3
"""kvtier's GPU path driven from Python, beside the C++ client in the same run.

Runs `kvtier-bench load` (the C++ client) for the Llama-3-8B shape, then the
same transfers through the Python module (torch CUDA tensors in vLLM's flash
layout, a daemon started with the same flags, the same timing: wall clock
around each call, warm-up first, median of the repetitions), then
`kvtier-bench load` again, and compares each Python row with the mean of the
two C++ medians. The Python figure should be within 3% of the C++ one: the
binding adds argument checks, a hand-off to the client's thread and the GIL
release to each call.

    python3 bench/python_load_bench.py --kvtier-bench build/bench/kvtier-bench \\
        --kvtierd build/server/kvtierd --json-out load-python.json

Needs torch with CUDA and the kvtier module (PYTHONPATH=<build>/python).
Exit status: 0 when every row is within --tolerance, 1 otherwise, 77 without
torch or a GPU.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
except ImportError as e:
    print(f"python_load_bench: skipped: {e}")
    sys.exit(77)

import kvtier

MODEL = dict(name="llama-3-8b", layers=32, kv_heads=8, head_dim=128)
REGION = 64 << 20

# The C++ rows each Python row is compared with. Host transfers of this size
# take the copy engines' path under the default rule (auto: DMA from 16 MiB),
# in Python as in C++; kvtier-bench runs that path only (--host-paths dma).
ROWS = {
    "host_load": "host → engine: Load (copy + verify) [dma]",
    "host_store": "engine → host: Store (Reserve + copy + Commit, pipelined) [dma]",
    "hbm_load": "HBM → engine: Load (gather + verify)",
    "hbm_store": "engine → HBM: Store (Reserve + scatter + Commit)",
}


def slab_tier_bytes(blocks, block_bytes, spare=2):
    per_region = max(1, REGION // block_bytes)
    return ((blocks + per_region - 1) // per_region + spare) * REGION


def run_cpp(args):
    cmd = [args.kvtier_bench, "load", "--models", "8b", "--tiers", args.tiers, "--tokens", str(args.tokens),
           "--reps", str(args.reps), "--host-paths", "dma", "--kvtierd", args.kvtierd]
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    rows, col = {}, None
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if col is None and "operation" in cells and "GB/s" in cells:
            col = cells.index("GB/s")  # the first: wall-clock GB/s
        elif col is not None and len(cells) > col and cells[1].split(" ")[0] == MODEL["name"]:  # "llama-3-8b p16"
            try:
                rows[cells[2]] = float(cells[col])
            except ValueError:
                pass
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
    return rows, r.stdout


class Daemon:
    def __init__(self, kvtierd, flags):
        self.dir = tempfile.mkdtemp(prefix="kvtier-pybench-")
        self.socket = os.path.join(self.dir, "kvtier.sock")
        args = [kvtierd, "--socket", self.socket, "--data-dir", os.path.join(self.dir, "data"),
                *flags, "--admin", "off", "--log-level", "warn"]
        print("  kvtierd " + " ".join(args[5:]), flush=True)
        self.proc = subprocess.Popen(args)
        for _ in range(600):
            try:
                kvtier.Client(self.socket).ping()
                return
            except kvtier.Unavailable:
                if self.proc.poll() is not None:
                    raise RuntimeError("kvtierd exited during start-up")
                time.sleep(0.05)
        raise RuntimeError("kvtierd did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def prompt_keys(ns, prompt, blocks):
    tokens = (torch.arange(blocks * 16, dtype=torch.int64) + prompt * 1000003) % (1 << 32)
    return ns.hash_tokens(tokens)


def gbps(nbytes, seconds):
    return nbytes / seconds / 1e9


def run_python(args):
    blocks = args.tokens // 16
    L, H, D = MODEL["layers"], MODEL["kv_heads"], MODEL["head_dim"]
    block_bytes = L * 2 * 16 * H * D * 2
    total = blocks * block_bytes
    gd = torch.Generator(device="cuda:0").manual_seed(20250101)
    layers = [torch.randint(-(1 << 15), 1 << 15, (2, blocks, 16, H, D), dtype=torch.int16, device="cuda:0",
                            generator=gd).view(torch.bfloat16) for _ in range(L)]
    g = torch.Generator().manual_seed(20250101)
    torch.cuda.synchronize()  # the contents exist before the bench's own stream reads them
    pool = kvtier.KvPool(layers, "vllm_flash")
    pages = torch.randperm(blocks, generator=g).to(torch.int32)  # read in place (DLPack), not element by element
    stream = torch.cuda.Stream()
    out = {}

    def timed_loads(gpu, ns, lease, reps):
        gpu.load(ns, lease, pool, pages, stream)  # warm-up
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            gpu.start_load(ns, lease, pool, pages, stream).wait()
            ms.append(time.perf_counter() - t0)
        return gbps(total, statistics.median(ms))

    def timed_stores(gpu, ns, reps, first_prompt):
        def store(prompt):
            keys = prompt_keys(ns, prompt, blocks)
            t0 = time.perf_counter()
            r = gpu.store(ns, keys, pool, pages, stream)
            s = time.perf_counter() - t0
            if r.stored != blocks:
                raise RuntimeError(f"stored {r}")
            return s
        store(first_prompt + 1000)
        return gbps(total, statistics.median([store(first_prompt + r) for r in range(reps)]))

    tiers = args.tiers.split(",")
    if "host" in tiers:
        print(f"[{MODEL['name']}] host tier (Python)", flush=True)
        d = Daemon(args.kvtierd, ["--host-capacity", str(slab_tier_bytes(2 * blocks, block_bytes))])
        try:
            client = kvtier.Client(d.socket)
            ns = client.open_namespace("bench/" + MODEL["name"], num_layers=L, num_kv_heads=H, head_dim=D)
            gpu = client.gpu_session(0)
            ns.device = gpu.device
            out["host_store"] = timed_stores(gpu, ns, args.reps, 1)
            with ns.lookup(prompt_keys(ns, args.reps, blocks)) as lease:
                assert len(lease) == blocks and set(lease.tiers) == {"host"}, (len(lease), set(lease.tiers))
                out["host_load"] = timed_loads(gpu, ns, lease, args.reps)
            del gpu, ns, client
        finally:
            d.stop()
    if "hbm" in tiers:
        print(f"[{MODEL['name']}] HBM tier (Python)", flush=True)
        d = Daemon(args.kvtierd, ["--hbm-capacity", str(slab_tier_bytes(4 * blocks, block_bytes)),
                                  "--store-tier", "hbm", "--host-capacity", "256M"])
        try:
            client = kvtier.Client(d.socket)
            ns = client.open_namespace("bench/" + MODEL["name"], num_layers=L, num_kv_heads=H, head_dim=D)
            gpu = client.gpu_session(0)
            ns.device = gpu.device
            out["hbm_store"] = timed_stores(gpu, ns, 3, 1)
            with ns.lookup(prompt_keys(ns, 3, blocks)) as lease:
                assert len(lease) == blocks and set(lease.tiers) == {"hbm"}, (len(lease), set(lease.tiers))
                out["hbm_load"] = timed_loads(gpu, ns, lease, args.hbm_reps)
            del gpu, ns, client
        finally:
            d.stop()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kvtier-bench", required=True)
    p.add_argument("--kvtierd", required=True)
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--hbm-reps", type=int, default=9)
    p.add_argument("--tiers", default="host,hbm")
    p.add_argument("--tolerance", type=float, default=0.03)
    p.add_argument("--json-out")
    args = p.parse_args()
    if not torch.cuda.is_available() or not kvtier.gpu_available():
        print("python_load_bench: skipped: no CUDA device")
        sys.exit(77)
    device = torch.cuda.get_device_name(0)
    cpp1, text1 = run_cpp(args)
    py = run_python(args)
    cpp2, text2 = run_cpp(args)
    print(f"\nPython vs C++ client on {device}: {args.tokens} tokens of the {MODEL['name']} shape, "
          f"GB/s = 1e9 bytes/s, wall clock per call (median); C++: kvtier-bench load before and after\n")
    print("| operation | C++ before | Python | C++ after | Python / C++ mean | within "
          f"{args.tolerance:.0%} |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    report = {"device": device, "tokens": args.tokens, "rows": []}
    ok = True
    for key, value in py.items():
        name = ROWS[key]
        a, b = cpp1.get(name), cpp2.get(name)
        if a is None or b is None:
            print(f"| {name} | {a} | {value:.1f} | {b} | - | C++ row missing |")
            ok = False
            continue
        ratio = value / ((a + b) / 2)
        good = ratio >= 1 - args.tolerance
        ok = ok and good
        print(f"| {name} | {a:.1f} | {value:.1f} | {b:.1f} | {ratio:.3f} | {'yes' if good else 'NO'} |")
        report["rows"].append(dict(operation=name, cpp_before=a, python=value, cpp_after=b, ratio=ratio,
                                   within=good))
    report["ok"] = ok
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.splitext(args.json_out)[0] + "-cpp.txt", "w") as f:
            f.write(text1 + "\n----- after -----\n" + text2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
