#!/usr/bin/env python3
"""Reference implementation of kvtier's block-key spec (docs/hashing.md).

Independent of the C++ code: it follows the document byte for byte, so a client
in Python can compute the same keys as the daemon. Needs the `xxhash` module
(Debian: python3-xxhash) for the default mode; SHA-256 mode uses hashlib.

    python3 scripts/kvtier_keys.py          # prints the test vectors
"""
import hashlib
import struct
import sys

DTYPES = {"bf16": 1, "fp16": 2, "fp8": 3}
MODES = {"xxh3-128": 1, "sha256": 2}


def digest(mode, msg):
    if mode == "sha256":
        d = hashlib.sha256(msg).digest()
        lo, hi = struct.unpack("<QQ", d[:16])
        return lo, hi
    import xxhash
    h = xxhash.xxh3_128_intdigest(msg)
    return h & (2**64 - 1), h >> 64


def key_hex(k):
    lo, hi = k
    return "%016x%016x" % (hi, lo)


def lp(b):
    return struct.pack("<I", len(b)) + b


def namespace_seed(model_id, revision, layers, kv_heads, head_dim, dtype, tokens_per_block,
                   planes=2, tp_rank=0, tp_size=1, salt=b"", mode="xxh3-128"):
    m = b"kvtier/ns/v1" + bytes([MODES[mode]])
    m += lp(model_id.encode()) + lp(revision.encode())
    m += struct.pack("<III", layers, kv_heads, head_dim) + bytes([DTYPES[dtype]])
    m += struct.pack("<IIII", tokens_per_block, planes, tp_rank, tp_size)
    m += lp(salt)
    return digest(mode, m)


def chain_key(mode, prev, tokens, extra=b""):
    m = struct.pack("<QQ", prev[0], prev[1]) + struct.pack("<I", len(tokens))
    m += struct.pack("<%dI" % len(tokens), *tokens) + lp(extra)
    return digest(mode, m)


# Variants of the base namespace (docs/hashing.md, second table): each changes
# one field of Llama-3.1-8B / main / 32x8x128 / bf16 / 16 tokens / 2 planes / TP 0 of 1.
VARIANTS = (
    ("tp 1 of 2", dict(tp_rank=1, tp_size=2)),
    ("fp8", dict(dtype="fp8")),
    ("one plane", dict(planes=1)),
    ("empty revision", dict(revision="")),
    ("multibyte UTF-8 model id", dict(model_id="kvtier/\u6a21\u578b-\u00fc-\U0001f999")),
)


def base_args(**over):
    a = dict(model_id="meta-llama/Llama-3.1-8B", revision="main", layers=32, kv_heads=8,
             head_dim=128, dtype="bf16", tokens_per_block=16)
    a.update(over)
    return a


def variant_vectors():
    out = []
    for name, over in VARIANTS:
        for mode in ("xxh3-128", "sha256"):
            seed = namespace_seed(mode=mode, **base_args(**over))
            k0 = chain_key(mode, seed, list(range(16)))
            out.append((name, mode, key_hex(seed), key_hex(k0)))
    return out


def vectors():
    out = []
    for mode, salt in (("xxh3-128", b""), ("sha256", b""), ("xxh3-128", b"tenant-a"),
                       ("sha256", b"tenant-a")):
        seed = namespace_seed("meta-llama/Llama-3.1-8B", "main", 32, 8, 128, "bf16", 16,
                              salt=salt, mode=mode)
        k0 = chain_key(mode, seed, list(range(16)))
        k1 = chain_key(mode, k0, list(range(16, 32)))
        kx = chain_key(mode, k0, list(range(16, 32)), b"lora:7")
        out.append((mode, salt.decode(), key_hex(seed), key_hex(k0), key_hex(k1), key_hex(kx)))
    return out


if __name__ == "__main__":
    for mode, salt, seed, k0, k1, kx in vectors():
        print("mode=%s salt=%r\n  seed %s\n  k0   %s\n  k1   %s\n  k1x  %s" % (mode, salt, seed, k0, k1, kx))
    for name, mode, seed, k0 in variant_vectors():
        print("variant=%r mode=%s\n  seed %s\n  k0   %s" % (name, mode, seed, k0))
    sys.exit(0)
