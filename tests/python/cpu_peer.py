"""The other process of test_cpu_path.py: stores or loads a numpy pool.

    cpu_peer.py store SOCKET SEED BLOCKS   fills a vLLM-layout pool from SEED, stores its
                                           pages (a SEED-shuffled order) under prompt SEED
    cpu_peer.py load  SOCKET SEED BLOCKS   loads prompt SEED into a fresh pool, in another
                                           page order, and compares with what SEED generates
Exit status 0 when the bytes match; the reason otherwise.
"""

import sys

import numpy as np

import kvtier
from kvtier_testlib import LAYOUT, open_ns, tokens_of


def make_pool(seed, pages):
    """A vLLM flash pool (one [2, pages, 16, H, D] array per layer) of seeded random bits."""
    rng = np.random.default_rng(seed)
    shape = (2, pages, LAYOUT["tokens_per_block"], LAYOUT["num_kv_heads"], LAYOUT["head_dim"])
    return [rng.integers(0, 1 << 16, size=shape, dtype=np.uint16) for _ in range(LAYOUT["num_layers"])]


def page_order(seed, blocks, pages):
    return np.random.default_rng(seed + 7).permutation(pages)[:blocks].tolist()


def main():
    role, socket, seed, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pages = blocks + 5
    client = kvtier.Client(socket)
    ns = open_ns(client)
    keys = ns.hash_tokens(tokens_of(seed, blocks))
    src = make_pool(seed, pages)
    src_pages = page_order(seed, blocks, pages)
    if role == "store":
        r = ns.store(keys, kvtier.KvPool(src, "vllm_flash", dtype="bf16"), src_pages)
        if r.stored + r.present != blocks:
            sys.exit(f"stored {r}")
        return
    dst = [np.zeros_like(a) for a in src]
    dst_pages = page_order(seed + 1, blocks, pages)
    with ns.lookup(keys) as lease:
        if len(lease) != blocks:
            sys.exit(f"lookup found {len(lease)} of {blocks} blocks")
        ns.load(lease, kvtier.KvPool(dst, "vllm_flash", dtype="bf16"), dst_pages)
    for layer in range(LAYOUT["num_layers"]):
        for i in range(blocks):
            if not np.array_equal(dst[layer][:, dst_pages[i]], src[layer][:, src_pages[i]]):
                sys.exit(f"layer {layer} block {i}: bytes differ")


if __name__ == "__main__":
    main()
