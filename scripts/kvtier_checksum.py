#!/usr/bin/env python3
"""Reference implementation of kvtier's block checksum (docs/checksum.md).

    python3 scripts/kvtier_checksum.py      # prints the test vectors
"""
import struct

M = 2**64 - 1
K_POS, K_MUL, K_LEN = 0x9E3779B97F4A7C15, 0xFF51AFD7ED558CCD, 0xC2B2AE3D27D4EB4F


def fmix64(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M
    x ^= x >> 33
    return x


def sum64(data):
    n = len(data)
    padded = data + b"\0" * (-n % 8)
    s = 0
    for i in range(len(padded) // 8):
        (w,) = struct.unpack_from("<Q", padded, 8 * i)
        x = ((w ^ ((i * K_POS) & M)) * K_MUL) & M
        s = (s + (x ^ (x >> 29))) & M
    return fmix64(s ^ ((n * K_LEN) & M))


def vectors():
    return [
        ("empty", b""),
        ("bytes 0..99", bytes(i % 256 for i in range(100))),
        ("4096 bytes (i*7)&255", bytes((i * 7) & 255 for i in range(4096))),
    ]


if __name__ == "__main__":
    for name, data in vectors():
        print("%-22s %016x" % (name, sum64(data)))
