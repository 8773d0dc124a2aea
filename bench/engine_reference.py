#!/usr/bin/env python3
"""PyTorch / Hugging Face reference timings for `kvtier-bench engine`.

Measures what a plain PyTorch engine gets out of transformers' LlamaForCausalLM
(bfloat16, attn_implementation="sdpa", eval, torch.inference_mode) on one GPU:

  prefill  batch 1, L random tokens, one forward with use_cache=True (the KV
           cache is written into a DynamicCache, as a serving engine must keep
           it) and logits_to_keep=1 (LM head on the last token only).
           One warm-up, then --reps timed runs (CUDA events); median reported.
  decode   batch B, --decode-context random tokens per sequence (equal lengths,
           no padding), prefilled once with use_cache=True; then greedy steps
           model(input_ids=next_tokens, past_key_values=cache, use_cache=True),
           the argmax included, each step timed on its own with CUDA events and
           a synchronize per step. --decode-warmup untimed steps come first.
           No generate(): a plain loop, as a simple PyTorch engine would run.

Output (stdout): a table, or with --json one JSON object per line:
  {"kind": "info", "torch", "transformers", "device", "attn": "sdpa", "sdpa_backend", ...}
  {"kind": "prefill", "tokens": L, "ms", "tokens_per_s", "tflops", ...}
  {"kind": "decode", "batch": B, "context": C, "step_ms", "tokens_per_s", ...}
A measurement that runs out of GPU memory gives {"kind": ..., "error": "oom"}.
Progress goes to stderr. Exit 77 (skip) when torch, transformers or CUDA is
missing; 2 on usage errors; 0 otherwise. `--self-test` checks the FLOP formula
and the SDPA kernel classifier without torch.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

SKIP = 77

# Prefill FLOP formula (also shown in --help).
FLOPS_DOC = """\
prefill FLOPs of one forward of L tokens (batch 1), used for "tflops":
  flops = 2 * L * P_layers_linear          all decoder-layer linear weights
                                           (q, k, v, o, gate, up, down), every token
        + 2 * 1 * vocab * hidden           lm_head, last token only (logits_to_keep=1)
        + 4 * n_layers * n_heads * head_dim * L * (L + 1) / 2
                                           attention: QK^T and PV, 2 FLOPs per
                                           multiply-add each, causal half of the
                                           L x L score matrix
  P_layers_linear is counted from the loaded model's nn.Linear weights inside
  model.model.layers; embeddings, norms, RoPE and softmax are not counted.
  tflops = flops / (median ms * 1e-3) / 1e12
"""


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# pure-Python helpers (exercised by --self-test)
# --------------------------------------------------------------------------

def prefill_flops(L, p_layers_linear, vocab, hidden, n_layers, n_heads, head_dim):
    """FLOPs of a batch-1 prefill of L tokens; see FLOPS_DOC."""
    linear = 2 * L * p_layers_linear
    head = 2 * 1 * vocab * hidden
    attention = 4 * n_layers * n_heads * head_dim * (L * (L + 1) // 2)
    return linear + head + attention


def llama_linear_params(hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim):
    """Decoder-layer linear weights of a Llama model, from its config numbers."""
    q = hidden * n_heads * head_dim
    kv = 2 * hidden * n_kv_heads * head_dim
    o = n_heads * head_dim * hidden
    mlp = 3 * hidden * intermediate
    return n_layers * (q + kv + o + mlp)


def classify_sdpa_kernels(names):
    """Name the SDPA backend from the CUDA kernel names seen in one forward."""
    low = [n.lower() for n in names]
    if any("cudnn" in n and ("sdpa" in n or "fmha" in n or "flash" in n or "attention" in n) for n in low):
        return "cudnn"
    if any("flash" in n for n in low):
        return "flash"
    if any("fmha" in n or "memeff" in n or "mem_eff" in n or "efficient_attention" in n for n in low):
        return "efficient"
    if any("softmax" in n for n in low):
        return "math"
    return "unknown"


def parse_int_list(text, what):
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad {what}: {text!r}")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{what} needs positive integers: {text!r}")
    return vals


def self_test():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    # Llama-3-8B: hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads, head_dim 128.
    p = llama_linear_params(4096, 14336, 32, 32, 8, 128)
    check(p == 6979321856, f"llama_linear_params 8B = {p}")
    f1 = prefill_flops(1, p, 128256, 4096, 32, 32, 128)
    check(f1 == 2 * p + 2 * 128256 * 4096 + 4 * 32 * 32 * 128 * 1, "prefill_flops L=1")
    L = 4096
    fl = prefill_flops(L, p, 128256, 4096, 32, 32, 128)
    check(fl == 2 * L * p + 2 * 128256 * 4096 + 4 * 32 * 32 * 128 * (L * (L + 1) // 2), "prefill_flops L=4096")
    # sanity: ~57.17 TFLOP linear + ~4.40 TFLOP attention + ~0.001 TFLOP head at 4096 tokens
    check(abs(fl / 1e12 - 61.57) < 0.01, f"prefill_flops 4096 magnitude {fl / 1e12:.3f} TFLOP")

    check(classify_sdpa_kernels(["void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>",
                                 "ampere_bf16_s16816gemm"]) == "flash", "classify flash")
    check(classify_sdpa_kernels(["fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::"
                                 "AttentionKernel<...>::Params)"]) == "efficient", "classify efficient")
    check(classify_sdpa_kernels(["cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16"])
          == "cudnn", "classify cudnn")
    check(classify_sdpa_kernels(["void (anonymous namespace)::softmax_warp_forward<...>",
                                 "sm90_xmma_gemm_bf16bf16"]) == "math", "classify math")
    check(classify_sdpa_kernels(["elementwise_kernel"]) == "unknown", "classify unknown")

    try:
        parse_int_list("1,0", "x")
        failures.append("parse_int_list accepted 0")
    except argparse.ArgumentTypeError:
        pass
    check(parse_int_list("1024, 4096", "x") == [1024, 4096], "parse_int_list")

    for f in failures:
        print(f"self-test FAILED: {f}")
    print(f"self-test: {'FAIL' if failures else 'PASS'} ({len(failures)} failure(s))")
    return 1 if failures else 0


# --------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------

def detect_sdpa_backend(torch, model, vocab, q_len, with_cache_len=0):
    """Profile one small forward and classify the attention kernels it launched."""
    try:
        from torch.profiler import ProfilerActivity, profile
        dev = "cuda"
        cache = None
        if with_cache_len:
            ids = torch.randint(0, vocab, (1, with_cache_len), device=dev)
            cache = model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
        ids = torch.randint(0, vocab, (1, q_len), device=dev)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(input_ids=ids, past_key_values=cache, use_cache=cache is not None, logits_to_keep=1)
            torch.cuda.synchronize()
        names = [evt.key for evt in prof.key_averages()]
        del cache
        return classify_sdpa_kernels(names)
    except Exception as e:  # the profiler is a nicety; never fail the benchmark on it
        return f"unknown ({type(e).__name__})"


def linear_params(torch, model):
    return sum(m.weight.numel() for m in model.model.layers.modules()
               if isinstance(m, torch.nn.Linear))


def time_prefill(torch, model, ids, reps, warmup):
    def once():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return out

    for _ in range(warmup):
        out = once()
        del out
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        out = once()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        del out
    return times


def time_decode(torch, model, ids, steps, warmup):
    """Prefill ids [B, C] once, then `warmup` untimed and `steps` timed greedy steps."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
    del out
    torch.cuda.synchronize()
    prefill_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        del out
    torch.cuda.synchronize()
    event_ms = []
    wall_ms = []
    for _ in range(steps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        end.record()
        end.synchronize()
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        event_ms.append(start.elapsed_time(end))
        del out
    context_end = cache.get_seq_length() if hasattr(cache, "get_seq_length") else None
    del cache, nxt
    return prefill_ms, event_ms, wall_ms, context_end


def emit(rec, as_json, records):
    records.append(rec)
    if as_json:
        print(json.dumps(rec), flush=True)


def print_tables(records):
    for r in records:
        if r["kind"] == "info":
            print(f"torch {r['torch']}, transformers {r['transformers']}, {r['device']}, "
                  f"attn {r['attn']} (sdpa backend: prefill {r['sdpa_backend']}, "
                  f"decode {r['sdpa_backend_decode']}), {r['dtype']}, prefill cache: {r['prefill_cache']}")
            print(f"model: {r['model']} ({r['layers']} layers, hidden {r['hidden']}, "
                  f"{r['params'] / 1e9:.2f}B params)")
    pre = [r for r in records if r["kind"] == "prefill"]
    if pre:
        print()
        print(f"{'prefill tokens':>14} {'ms (median)':>12} {'tokens/s':>12} {'TFLOP/s':>9} {'peak GiB':>9}")
        for r in pre:
            if "error" in r:
                print(f"{r['tokens']:>14} {r['error']:>12}")
            else:
                print(f"{r['tokens']:>14} {r['ms']:>12.2f} {r['tokens_per_s']:>12.0f} "
                      f"{r['tflops']:>9.1f} {r['peak_gib']:>9.1f}")
    dec = [r for r in records if r["kind"] == "decode"]
    if dec:
        print()
        print(f"{'decode batch':>12} {'context':>8} {'step ms (median)':>17} {'wall ms':>8} "
              f"{'tokens/s':>10} {'peak GiB':>9}")
        for r in dec:
            if "error" in r:
                print(f"{r['batch']:>12} {r['context']:>8} {r['error']:>17}")
            else:
                print(f"{r['batch']:>12} {r['context']:>8} {r['step_ms']:>17.3f} "
                      f"{r['step_ms_wall']:>8.3f} {r['tokens_per_s']:>10.1f} {r['peak_gib']:>9.1f}")
    print()
    print(FLOPS_DOC.rstrip())


def main(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch/HF transformers reference timings (bf16, SDPA) for kvtier-bench engine.",
        epilog=FLOPS_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="Hugging Face Llama checkpoint directory (config.json + safetensors)")
    p.add_argument("--prefill-lens", default="1024,4096,16384,32768",
                   help="comma-separated prefill lengths, batch 1 (default: %(default)s)")
    p.add_argument("--decode-batches", default="1,32",
                   help="comma-separated decode batch sizes (default: %(default)s)")
    p.add_argument("--decode-context", type=int, default=1024,
                   help="prompt tokens per sequence before decoding (default: %(default)s)")
    p.add_argument("--decode-steps", type=int, default=32,
                   help="timed decode steps per batch size (default: %(default)s)")
    p.add_argument("--decode-warmup", type=int, default=2,
                   help="untimed decode steps before the timed ones (default: %(default)s)")
    p.add_argument("--reps", type=int, default=3,
                   help="timed prefill runs per length, after one warm-up (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    p.add_argument("--self-test", action="store_true",
                   help="check the FLOP formula and kernel classifier (no torch needed) and exit")
    args = p.parse_args(argv)

    if args.self_test:
        return self_test()
    if not args.model:
        p.error("--model is required")
    try:
        prefill_lens = parse_int_list(args.prefill_lens, "--prefill-lens")
        decode_batches = parse_int_list(args.decode_batches, "--decode-batches")
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if args.decode_context < 1 or args.decode_steps < 1 or args.reps < 1 or args.decode_warmup < 0:
        p.error("--decode-context, --decode-steps and --reps must be >= 1, --decode-warmup >= 0")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        p.error(f"no config.json in --model {args.model}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local checkpoint only
    try:
        import torch
    except Exception as e:
        print(f"SKIP: torch is not importable ({type(e).__name__}: {e})", flush=True)
        return SKIP
    try:
        import transformers
        from transformers import LlamaForCausalLM
    except Exception as e:
        print(f"SKIP: transformers is not importable ({type(e).__name__}: {e})", flush=True)
        return SKIP
    if not torch.cuda.is_available():
        print("SKIP: CUDA is not available to torch", flush=True)
        return SKIP

    records = []
    t0 = time.time()
    # transformers 5: `dtype=` (formerly `torch_dtype=`). Loaded outside inference_mode,
    # measured inside it.
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16,
                                             attn_implementation="sdpa")
    model = model.to("cuda").eval()
    with torch.inference_mode():
        cfg = model.config
        progress(f"loaded model in {time.time() - t0:.1f}s "
                 f"(attn_implementation={getattr(cfg, '_attn_implementation', '?')})")
        vocab = model.lm_head.weight.shape[0]
        hidden = cfg.hidden_size
        n_layers = cfg.num_hidden_layers
        n_heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or hidden // n_heads
        p_lin = linear_params(torch, model)
        p_cfg = llama_linear_params(hidden, cfg.intermediate_size, n_layers, n_heads,
                                    getattr(cfg, "num_key_value_heads", None) or n_heads, head_dim)
        if p_lin != p_cfg:
            progress(f"note: linear weights counted from modules ({p_lin}) differ from the "
                     f"config formula ({p_cfg}); using the module count")
        max_pos = getattr(cfg, "max_position_embeddings", None)

        backend_prefill = detect_sdpa_backend(torch, model, vocab, q_len=512)
        backend_decode = detect_sdpa_backend(torch, model, vocab, q_len=1, with_cache_len=512)
        torch.cuda.empty_cache()
        emit({"kind": "info", "torch": torch.__version__, "transformers": transformers.__version__,
              "device": torch.cuda.get_device_name(0), "attn": "sdpa",
              "sdpa_backend": backend_prefill, "sdpa_backend_decode": backend_decode,
              "dtype": "bfloat16", "prefill_cache": "DynamicCache (use_cache=True)",
              "logits_to_keep": 1, "model": os.path.basename(os.path.normpath(args.model)),
              "layers": n_layers, "hidden": hidden, "heads": n_heads, "head_dim": head_dim,
              "vocab": vocab, "params": sum(x.numel() for x in model.parameters()),
              "linear_params": p_lin}, args.json, records)

        gen = torch.Generator(device="cpu")
        gen.manual_seed(args.seed)

        for L in prefill_lens:
            if max_pos and L > max_pos:
                progress(f"warning: prefill length {L} exceeds max_position_embeddings {max_pos}")
            progress(f"prefill {L} tokens: 1 warm-up + {args.reps} timed")
            ids = torch.randint(0, vocab, (1, L), generator=gen, dtype=torch.long).to("cuda")
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                times = time_prefill(torch, model, ids, args.reps, warmup=1)
            except torch.cuda.OutOfMemoryError:
                emit({"kind": "prefill", "tokens": L, "error": "oom"}, args.json, records)
                del ids
                torch.cuda.empty_cache()
                continue
            ms = statistics.median(times)
            flops = prefill_flops(L, p_lin, vocab, hidden, n_layers, n_heads, head_dim)
            emit({"kind": "prefill", "tokens": L, "ms": ms, "tokens_per_s": L / (ms / 1e3),
                  "tflops": flops / (ms / 1e3) / 1e12, "flops": flops, "ms_all": times,
                  "peak_gib": torch.cuda.max_memory_allocated() / 2**30}, args.json, records)
            del ids
            torch.cuda.empty_cache()

        C = args.decode_context
        for B in decode_batches:
            progress(f"decode batch {B}, context {C}: {args.decode_warmup} warm-up + "
                     f"{args.decode_steps} timed steps")
            ids = torch.randint(0, vocab, (B, C), generator=gen, dtype=torch.long).to("cuda")
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                prefill_ms, ev, wall, ctx_end = time_decode(torch, model, ids, args.decode_steps,
                                                             args.decode_warmup)
            except torch.cuda.OutOfMemoryError:
                emit({"kind": "decode", "batch": B, "context": C, "error": "oom"}, args.json, records)
                del ids
                torch.cuda.empty_cache()
                continue
            step = statistics.median(ev)
            emit({"kind": "decode", "batch": B, "context": C, "step_ms": step,
                  "tokens_per_s": B / (step / 1e3), "step_ms_mean": statistics.fmean(ev),
                  "step_ms_min": min(ev), "step_ms_wall": statistics.median(wall),
                  "steps": len(ev), "warmup_steps": args.decode_warmup, "context_end": ctx_end,
                  "prefill_ms": prefill_ms, "peak_gib": torch.cuda.max_memory_allocated() / 2**30},
                 args.json, records)
            del ids
            torch.cuda.empty_cache()

    if not args.json:
        print_tables(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
