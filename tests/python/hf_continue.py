#!/usr/bin/env python3
"""A real third-party engine through kvtier: HF transformers' LlamaForCausalLM
generates greedily; a second process restores the prompt's prefix from
kvtier and continues with identical tokens.

    hf_continue.py drive --model DIR --kvtierd BIN [--lens 1024,2048,4096,8192]
                         [--new-tokens 32] [--json-out FILE]

starts a kvtierd, then two processes on one GPU:
  save     per prompt length N: (1) recompute: prefill all N tokens, decode
           greedily (TTFT without kvtier); (2) the reference: prefill the
           first P = 16 * floor((N - 1) / 16) tokens, store their KV in
           kvtier (kvtier.hf.save), prefill the other N - P, decode.
  restore  per N, in a fresh process: restore the cached prefix
           (kvtier.hf.restore), prefill the other N - P tokens, decode
           (TTFT with the hit); and a recompute for comparison.
The restored run must produce exactly the reference's tokens: the engine does
the same computations on the same KV bytes, only their source differs. One
exception is reported, not hidden: a random-weights model's logits are nearly
flat, and where the greedy choice was a tie or within two bf16 steps of one
(top-2 margin <= 2 ulp in both runs: rounding to bf16 can move each of the two
logits by one step), kernels picked for another process's allocations may
round it the other way; the table then says where the tokens part and the
margin there. The
one-pass recompute's tokens are reported too; they may differ from the
reference's where bf16 GEMMs of N rows and of N - P rows round differently on
a random-weights model whose logits are close.

Exit status 0 when every length matches, 1 otherwise, 77 without torch,
transformers or a GPU. Needs PYTHONPATH=<build>/python.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import torch
    from transformers import DynamicCache, LlamaForCausalLM
except ImportError as e:
    print(f"hf_continue: skipped: {e}")
    sys.exit(77)

import kvtier
import kvtier.hf


def load_model(path):
    try:
        model = LlamaForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
    return model.to("cuda:0").eval()


def prompt(n, vocab):
    g = torch.Generator().manual_seed(1000 + n)
    return torch.randint(3, vocab, (n,), generator=g).tolist()


def sync_ms(t0):
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def margin_ulps(last):
    """The greedy choice's top-2 logit margin in units of bf16 spacing at the top logit
    (0: a tie; 1: the smallest margin bf16 logits can have)."""
    top = last.float().topk(2).values
    ulp = 2.0 ** (torch.floor(torch.log2(top[0].abs().clamp_min(1e-30))).item() - 7)
    return float((top[0] - top[1]).item() / ulp)


@torch.no_grad()
def decode(model, cache, first, steps, margins=None):
    out = [first]
    nxt = torch.tensor([[first]], device="cuda:0")
    for _ in range(steps - 1):
        logits = model(nxt, past_key_values=cache, use_cache=True).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt.item()))
        if margins is not None:
            margins.append(margin_ulps(logits[0, -1]))
    return out


@torch.no_grad()
def prefill(model, ids, cache, margins=None):
    logits = model(ids, past_key_values=cache, use_cache=True).logits
    if margins is not None:
        margins.append(margin_ulps(logits[0, -1]))
    return int(logits[0, -1].argmax().item())


def recompute(model, tokens, steps):
    ids = torch.tensor([tokens], device="cuda:0")
    cache = DynamicCache(config=model.config)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    first = prefill(model, ids, cache)
    ttft = sync_ms(t0)
    return ttft, decode(model, cache, first, steps)


def role_save(args, model, ns, gpu):
    rows = {}
    for n in args.lens:
        tokens = prompt(n, model.config.vocab_size)
        ttft_full, full = recompute(model, tokens, args.new_tokens)
        p = (n - 1) // 16 * 16
        ids = torch.tensor([tokens], device="cuda:0")
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(ids[:, :p], past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        saved = kvtier.hf.save(ns, tokens, cache, session=gpu)
        save_ms = sync_ms(t0)
        margins = []
        first = prefill(model, ids[:, p:], cache, margins)
        ref = decode(model, cache, first, args.new_tokens, margins)
        rows[n] = dict(prefix=p, ttft_recompute_ms=ttft_full, tokens_recompute=full, tokens_reference=ref,
                       margins_reference=margins, save_ms=save_ms, blocks_stored=saved.stored,
                       blocks_present=saved.present)
        print(f"  save N={n}: prefix {p}, stored {saved.stored} blocks in {save_ms:.1f} ms, "
              f"recompute TTFT {ttft_full:.1f} ms", file=sys.stderr, flush=True)
    return rows


def role_restore(args, model, ns, gpu):
    rows = {}
    for n in args.lens:
        tokens = prompt(n, model.config.vocab_size)
        ids = torch.tensor([tokens], device="cuda:0")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        cache, p = kvtier.hf.restore(ns, tokens, session=gpu, config=model.config, device="cuda:0",
                                     dtype=model.dtype)
        restore_ms = sync_ms(t0)
        margins = []
        first = prefill(model, ids[:, p:], cache, margins)
        ttft_hit = sync_ms(t0)
        hit = decode(model, cache, first, args.new_tokens, margins)
        ttft_full, _ = recompute(model, tokens, 2)
        rows[n] = dict(prefix_restored=p, restore_ms=restore_ms, ttft_hit_ms=ttft_hit, ttft_recompute_ms=ttft_full,
                       tokens_hit=hit, margins_hit=margins)
        print(f"  restore N={n}: {p} tokens restored in {restore_ms:.1f} ms, TTFT {ttft_hit:.1f} ms "
              f"(recompute {ttft_full:.1f} ms)", file=sys.stderr, flush=True)
    return rows


def worker(args):
    model = load_model(args.model)
    client = kvtier.Client(args.socket)
    ns = kvtier.hf.open_namespace(client, model, model_id="hf-continue/" + os.path.basename(args.model.rstrip("/")))
    gpu = client.gpu_session(0)
    recompute(model, prompt(64, model.config.vocab_size), 2)  # warm-up: kernels, allocator
    rows = role_save(args, model, ns, gpu) if args.role == "save" else role_restore(args, model, ns, gpu)
    print(json.dumps({str(k): v for k, v in rows.items()}))


def drive(args):
    if not torch.cuda.is_available() or not kvtier.gpu_available():
        print("hf_continue: skipped: no CUDA device")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="kvtier-hf-")
    sock = os.path.join(d, "kvtier.sock")
    daemon = subprocess.Popen([args.kvtierd, "--socket", sock, "--data-dir", os.path.join(d, "data"),
                               "--host-capacity", args.host_capacity, "--admin", "off", "--log-level", "warn"])
    try:
        for _ in range(600):
            try:
                kvtier.Client(sock).ping()
                break
            except kvtier.Unavailable:
                time.sleep(0.05)
        common = ["--model", args.model, "--socket", sock, "--lens", ",".join(map(str, args.lens)),
                  "--new-tokens", str(args.new_tokens)]
        out = {}
        for role in ("save", "restore"):
            r = subprocess.run([sys.executable, __file__, "worker", "--role", role, *common],
                               stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                print(f"hf_continue: the {role} process failed ({r.returncode})")
                sys.exit(1)
            out[role] = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        shutil.rmtree(d, ignore_errors=True)
    ok = True
    report = {"model": args.model, "device": torch.cuda.get_device_name(0), "new_tokens": args.new_tokens,
              "lengths": []}
    print(f"\nHF transformers LlamaForCausalLM ({args.model}) on {report['device']}, greedy, "
          f"{args.new_tokens} tokens; TTFT = prefill + first token (restore included for a hit)\n")
    print("| prompt | prefix from kvtier | tokens = reference | = one-pass recompute | TTFT recompute ms "
          "| TTFT with hit ms | restore ms | speed-up |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    ties = []
    for n in args.lens:
        s, r = out["save"][str(n)], out["restore"][str(n)]
        same = r["tokens_hit"] == s["tokens_reference"] and r["prefix_restored"] == s["prefix"]
        agree = s["tokens_recompute"] == s["tokens_reference"]
        verdict = "yes" if same else "NO"
        diverged = next((i for i, (a, b) in enumerate(zip(r["tokens_hit"], s["tokens_reference"])) if a != b), None)
        if not same and diverged is not None and r["prefix_restored"] == s["prefix"]:
            # Up to the first difference both runs fed the same tokens. Where
            # the choice there was a tie or within two bf16 steps of one
            # (rounding can move each of the two logits by a step), kernels
            # picked for another process's allocations decide it: reported,
            # and not a wrong prefix (the restored KV is checksummed and
            # bit-exact).
            mr, mh = s["margins_reference"][diverged], r["margins_hit"][diverged]
            ties.append(f"N={n}: first difference at token {diverged}, top-2 margin {mr:.1f} ulp "
                        f"(reference), {mh:.1f} ulp (hit)")
            if max(mr, mh) <= 2.0:
                verdict = f"yes to token {diverged}, then a tie"
        ok = ok and verdict != "NO"
        print(f"| {n} | {r['prefix_restored']} | {verdict} | {'yes' if agree else 'no'} | "
              f"{r['ttft_recompute_ms']:.1f} | {r['ttft_hit_ms']:.1f} | {r['restore_ms']:.1f} | "
              f"{r['ttft_recompute_ms'] / r['ttft_hit_ms']:.2f}x |")
        report["lengths"].append(dict(prompt=n, match=same, verdict=verdict, recompute_agrees=agree, save=s,
                                      restore=r))
    for t in ties:
        print("  " + t)
    report["ok"] = ok
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["drive", "worker"])
    p.add_argument("--model", required=True)
    p.add_argument("--kvtierd")
    p.add_argument("--socket")
    p.add_argument("--role", choices=["save", "restore"])
    p.add_argument("--lens", default="1024,2048,4096,8192")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--host-capacity", default="8G")
    p.add_argument("--json-out")
    args = p.parse_args()
    args.lens = [int(x) for x in str(args.lens).split(",")]
    if args.mode == "drive":
        drive(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
