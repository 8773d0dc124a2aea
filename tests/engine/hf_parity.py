#!/usr/bin/env python3
"""Numerical parity test of kvtier-engine against Hugging Face transformers.

What it does
  1. Runs the engine twice on the same synthetic prompts (prompt i of a batch is
     generated from (--prompt-seed, i)):
       batched:   all prompt lengths in one `kvtier-engine run` call;
       unbatched: one call per prompt, with `--prompt-index-base i` so that the
                  single prompt is the same as prompt i of the batched run.
     Every run dumps its logits into a directory (meta.json, prefill_logits.f32,
     decode_logits.f32, and with --all-positions all_logits.f32).
  2. Recomputes the same logits with transformers' LlamaForCausalLM, teacher-forced
     on the engine's own tokens (input = prompt + generated[:-1], batch size 1, no
     padding, one forward per sequence), once in bfloat16 and once in float32.
     The float32 model is the reference; bf16-vs-fp32 is the noise floor of a
     correct bf16 implementation.
  3. Checks, per sequence and per phase (prefill = last prompt position,
     decode = decode steps 1..S-1, all = every prompt position):
       tol  = max(TOL_FACTOR * max|HF_bf16 - HF_fp32|, TOL_STD_FRAC * std(HF_fp32))
       pass = max|engine - HF_fp32| <= tol
     plus a greedy check (where the HF-bf16 top-2 margin exceeds tol, the engine's
     token must be HF's top-1), a self-consistency check (the engine's token is
     the argmax of the logits it dumped), and batched-vs-unbatched agreement
     (same tokens wherever the batched logits' top-2 margin exceeds tol, up to
     the first allowed divergence; the max logit difference is reported).
  4. Prints a table, optionally writes a JSON report, and exits
       0 all checks passed, 1 some check failed, 77 skipped (ctest skip code:
       numpy/torch/transformers/CUDA or the model directory missing),
       2 usage error.

Engine dump format (little-endian): see the --help epilog.

`--self-test` checks the metric and tolerance helpers on synthetic data (needs
numpy only; exits 77 without it).
"""

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time

SKIP = 77

try:
    import numpy as np
except ImportError:  # the GPU machine has numpy; --self-test and the real run skip without it
    np = None


EPILOG = """\
engine dump directory (all little-endian):
  meta.json           {"vocab_size": V, "batch": B, "prompt_lens": [...], "steps": S,
                       "prompts": [[tok,...],...], "generated": [[tok,...],...],
                       "all_positions": bool}
                      generated[b][0] comes from the prefill logits, generated[b][k]
                      (k >= 1) from decode step k's logits.
  prefill_logits.f32  float32 [B, V]      logits at the last prompt position
  decode_logits.f32   float32 [S-1, B, V] step k (1..S-1) was fed generated[b][k-1]
                                          at position prompt_len+k-1
  all_logits.f32      float32 [sum(prompt_lens), V] (only with --dump-all-positions)

tolerance rule (per sequence and phase):
  tol = max(TOL_FACTOR * max|HF_bf16 - HF_fp32|, TOL_STD_FRAC * std(HF_fp32 logits))
  the engine passes when max|engine - HF_fp32| <= tol.

exit codes: 0 pass, 1 fail, 77 skipped, 2 usage error.

example:
  python3 tests/engine/hf_parity.py --engine build/kvtier-engine --model MODEL_DIR \\
      --prompt-lens 1,17,1000,4096 --decode-steps 32 --work parity-work \\
      --all-positions --report parity-work/report.json
"""


def log(msg):
    print(msg, flush=True)


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    return SKIP


# --------------------------------------------------------------------------
# metrics (numpy only; exercised by --self-test)
# --------------------------------------------------------------------------

def _as_2d(a):
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[None, :]
    return a


def diff_stats(a, b, chunk_rows=256):
    """max and mean of |a - b| over two equally shaped arrays, row-chunked.

    Non-finite differences (NaN/inf in either input) make max = inf, so they can
    never pass a tolerance check; they are counted in 'nonfinite'.
    """
    a = _as_2d(a)
    b = _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mx = 0.0
    total = 0.0
    count = 0
    nonfinite = 0
    for i in range(0, a.shape[0], chunk_rows):
        d = np.abs(a[i:i + chunk_rows].astype(np.float32) - b[i:i + chunk_rows].astype(np.float32))
        finite = np.isfinite(d)
        bad = int(d.size - np.count_nonzero(finite))
        if bad:
            nonfinite += bad
            d = np.where(finite, d, 0.0)
        if d.size:
            mx = max(mx, float(d.max()))
            total += float(d.sum(dtype=np.float64))
            count += d.size
    if nonfinite:
        mx = math.inf
    return {"max": mx, "mean": (total / count) if count else 0.0, "nonfinite": nonfinite}


def logit_std(a, chunk_rows=256):
    """Standard deviation over all elements (float64 accumulation, finite values only)."""
    a = _as_2d(a)
    n = 0
    s = 0.0
    ss = 0.0
    for i in range(0, a.shape[0], chunk_rows):
        c = a[i:i + chunk_rows].astype(np.float64)
        c = c[np.isfinite(c)]
        n += c.size
        s += float(c.sum())
        ss += float((c * c).sum())
    if n == 0:
        return 0.0
    mean = s / n
    return math.sqrt(max(ss / n - mean * mean, 0.0))


def tolerance(noise_max, ref_std, factor=2.0, std_frac=0.05):
    """tol = max(factor * bf16-vs-fp32 max error, std_frac * reference logit std)."""
    return max(factor * noise_max, std_frac * ref_std)


def top2(row):
    """(top-1 index, top-1 value, top-2 value) of a 1-D array; ties keep the lowest index."""
    row = np.asarray(row, dtype=np.float32)
    t1 = int(np.argmax(row))
    v1 = float(row[t1])
    if row.size < 2:
        return t1, v1, -math.inf
    rest = row.copy()
    rest[t1] = -np.inf
    return t1, v1, float(rest.max())


def greedy_check(ref_rows, tokens, tols):
    """Where the reference top-2 margin exceeds tol, the token must be the reference top-1.

    ref_rows: [S, V] reference logits at the positions that chose tokens[0..S-1];
    tols: one tolerance per position.
    """
    checked = agreed = skipped = 0
    mismatches = []
    for k, tok in enumerate(tokens):
        t1, v1, v2 = top2(ref_rows[k])
        margin = v1 - v2
        if margin > tols[k]:
            checked += 1
            if int(tok) == t1:
                agreed += 1
            else:
                mismatches.append({"step": k, "engine_token": int(tok), "ref_token": t1,
                                   "margin": margin, "tol": tols[k]})
        else:
            skipped += 1
    return {"checked": checked, "agreed": agreed, "skipped": skipped,
            "mismatches": mismatches, "pass": not mismatches}


def argmax_consistency(rows, tokens, slack=1e-3):
    """The engine's token must be the argmax of the logits it dumped for that step.

    Fails when the chosen token's logit is below the row maximum by more than
    `slack` (exact ties and tie-breaking order are accepted).
    """
    bad = []
    for k, tok in enumerate(tokens):
        row = np.asarray(rows[k], dtype=np.float32)
        tok = int(tok)
        if not (0 <= tok < row.size):
            bad.append({"step": k, "token": tok, "gap": math.inf})
            continue
        gap = float(row.max() - row[tok])
        if not (gap <= slack):  # also catches NaN
            bad.append({"step": k, "token": tok, "argmax": int(np.argmax(row)), "gap": gap})
    return {"violations": bad, "pass": not bad}


def batch_consistency(rows_a, tokens_a, rows_b, tokens_b, tols):
    """Compare two engine runs of the same prompt (a = batched, b = unbatched).

    Step k's logits depend on tokens[:k], so rows are comparable up to and
    including the first step where the tokens differ. A difference is allowed
    only where run a's top-2 margin is <= tol (a near tie); otherwise it fails.
    """
    n = min(len(tokens_a), len(tokens_b))
    compared = 0
    diverged_at = None
    divergence_margin = None
    ok = True
    mx = 0.0
    for k in range(n):
        d = diff_stats(rows_a[k], rows_b[k])["max"]
        mx = max(mx, d) if not math.isinf(d) else math.inf
        compared += 1
        if int(tokens_a[k]) != int(tokens_b[k]):
            _, v1, v2 = top2(rows_a[k])
            divergence_margin = v1 - v2
            diverged_at = k
            if divergence_margin > tols[k]:
                ok = False
            break
    return {"compared_steps": compared, "max_logit_diff": mx, "diverged_at": diverged_at,
            "divergence_margin": divergence_margin, "pass": ok}


# --------------------------------------------------------------------------
# engine dumps
# --------------------------------------------------------------------------

class DumpError(RuntimeError):
    pass


def _load_f32(path, shape):
    want = 1
    for s in shape:
        want *= s
    if want == 0:
        return np.zeros(shape, dtype=np.float32)
    if not os.path.isfile(path):
        raise DumpError(f"missing {path}")
    size = os.path.getsize(path)
    if size != want * 4:
        raise DumpError(f"{path}: {size} bytes, expected {want * 4} for float32 {list(shape)}")
    return np.memmap(path, dtype="<f4", mode="r", shape=tuple(shape))


class Dump:
    """One engine dump directory (see EPILOG for the format)."""

    def __init__(self, path):
        self.path = path
        meta_path = os.path.join(path, "meta.json")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise DumpError(f"cannot read {meta_path}: {e}")
        self.meta = meta
        try:
            self.vocab = int(meta["vocab_size"])
            self.batch = int(meta["batch"])
            self.prompt_lens = [int(x) for x in meta["prompt_lens"]]
            self.steps = int(meta["steps"])
            self.prompts = [[int(t) for t in p] for p in meta["prompts"]]
            self.generated = [[int(t) for t in g] for g in meta["generated"]]
            self.all_positions = bool(meta.get("all_positions", False))
        except (KeyError, TypeError, ValueError) as e:
            raise DumpError(f"{meta_path}: bad field ({e})")
        B, S, V = self.batch, self.steps, self.vocab
        if len(self.prompt_lens) != B or len(self.prompts) != B or len(self.generated) != B:
            raise DumpError(f"{meta_path}: batch={B} but prompt_lens/prompts/generated have "
                            f"{len(self.prompt_lens)}/{len(self.prompts)}/{len(self.generated)} entries")
        for b in range(B):
            if len(self.prompts[b]) != self.prompt_lens[b]:
                raise DumpError(f"{meta_path}: prompt {b} has {len(self.prompts[b])} tokens, "
                                f"prompt_lens says {self.prompt_lens[b]}")
            if len(self.generated[b]) != S:
                raise DumpError(f"{meta_path}: sequence {b} generated {len(self.generated[b])} "
                                f"tokens, expected steps={S} (was --ignore-eos honoured?)")
            for t in self.prompts[b] + self.generated[b]:
                if not (0 <= t < V):
                    raise DumpError(f"{meta_path}: token {t} outside vocab [0, {V})")
        self.prefill = _load_f32(os.path.join(path, "prefill_logits.f32"), (B, V))
        self.decode = _load_f32(os.path.join(path, "decode_logits.f32"), (max(S - 1, 0), B, V))
        self.all = None
        if self.all_positions:
            self.all = _load_f32(os.path.join(path, "all_logits.f32"), (sum(self.prompt_lens), V))
        self.offsets = [0]
        for n in self.prompt_lens:
            self.offsets.append(self.offsets[-1] + n)

    def gen_rows(self, b):
        """[S, V] logits that chose generated[b][0..S-1]."""
        rows = np.empty((self.steps, self.vocab), dtype=np.float32)
        rows[0] = self.prefill[b]
        if self.steps > 1:
            rows[1:] = self.decode[:, b, :]
        return rows

    def all_rows(self, b):
        """[prompt_len, V] logits of every prompt position of sequence b."""
        return self.all[self.offsets[b]:self.offsets[b + 1]]


# --------------------------------------------------------------------------
# engine runs
# --------------------------------------------------------------------------

class EngineFailed(RuntimeError):
    pass


class EngineSkipped(RuntimeError):
    pass


def run_engine(cmd, log_path, timeout):
    log("+ " + shlex.join(cmd))
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EngineFailed(f"engine timed out after {timeout}s: {shlex.join(cmd)}")
    except OSError as e:
        raise EngineFailed(f"cannot start engine: {e}")
    with open(log_path, "w") as f:
        f.write("$ " + shlex.join(cmd) + "\n--- stdout ---\n" + p.stdout + "\n--- stderr ---\n" + p.stderr)
    log(f"  exit {p.returncode} after {time.time() - t0:.1f}s (log: {log_path})")
    if p.returncode != 0:
        tail = "\n".join(p.stderr.strip().splitlines()[-40:])
        sys.stderr.write(f"engine stderr (last lines):\n{tail}\n")
        if p.returncode == SKIP:
            raise EngineSkipped(f"engine exited {SKIP} (skip): {shlex.join(cmd)}")
        raise EngineFailed(f"engine exited {p.returncode}: {shlex.join(cmd)}")


def engine_cmd(args, lens, dump_dir, index_base=None, all_positions=False):
    cmd = [args.engine, "run", "--model", args.model,
           "--prompt-lens", ",".join(str(x) for x in lens),
           "--prompt-seed", str(args.prompt_seed),
           "--max-new-tokens", str(args.decode_steps),
           "--ignore-eos", "--dump", dump_dir]
    if index_base is not None:
        cmd += ["--prompt-index-base", str(index_base)]
    if all_positions:
        cmd.append("--dump-all-positions")
    if args.engine_args:
        cmd += shlex.split(args.engine_args)
    return cmd


def single_dir_names(lens):
    """WORK/single_L per length; duplicated lengths get the prompt index too."""
    names = []
    for i, n in enumerate(lens):
        names.append(f"single_{n}" if lens.count(n) == 1 else f"single_{i}_{n}")
    return names


# --------------------------------------------------------------------------
# HF reference
# --------------------------------------------------------------------------

def ensure_ieee_fp32(torch):
    """Make sure float32 matmuls of the fp32 reference are IEEE fp32, not TF32.

    PyTorch's default is already IEEE; only a TF32 setting is changed, through
    one API only (torch >= 2.9 raises when the legacy and new TF32 APIs are
    mixed). Returns a description for the report.
    """
    try:
        if os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1":
            log("warning: TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 forces TF32; the fp32 reference is degraded")
        m = torch.backends.cuda.matmul
        if hasattr(m, "fp32_precision"):
            before = m.fp32_precision
            if before == "tf32":
                m.fp32_precision = "ieee"
            return f"fp32_precision {before} -> {m.fp32_precision}"
        before = m.allow_tf32
        if before:
            m.allow_tf32 = False
        return f"allow_tf32 {before} -> {m.allow_tf32}"
    except Exception as e:  # never fatal: report it and go on
        log(f"warning: could not check the TF32 setting ({type(e).__name__}: {e})")
        return f"unknown ({type(e).__name__})"


def load_model(torch, model_cls, model_dir, dtype):
    t0 = time.time()
    # transformers 5: `dtype=` (was `torch_dtype=`); SDPA attention requested explicitly.
    model = model_cls.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model = model.to("cuda").eval()
    attn = getattr(model.config, "_attn_implementation", "?")
    log(f"loaded {model_cls.__name__} {str(dtype).replace('torch.', '')} in {time.time() - t0:.1f}s "
        f"(attn_implementation={attn})")
    return model


def hf_rows(torch, model, head_w, tokens, positions, chunk_rows=512):
    """Teacher-forced logits (float32 numpy [len(positions), V]) at the given positions.

    Hidden states come from model.model (the LlamaModel, final norm included);
    the LM head is applied only to the requested rows. head_w is the LM head
    weight in float32 (exact fp32 head), or None to use model.lm_head as is.
    """
    dev = "cuda"
    with torch.inference_mode():
        ids = torch.tensor([tokens], dtype=torch.long, device=dev)
        out = model.model(input_ids=ids, use_cache=False)
        h = out.last_hidden_state[0]
        del out
        pos = torch.tensor(positions, dtype=torch.long, device=dev)
        vocab = model.lm_head.weight.shape[0]
        result = np.empty((len(positions), vocab), dtype=np.float32)
        for i in range(0, len(positions), chunk_rows):
            hs = h.index_select(0, pos[i:i + chunk_rows])
            if head_w is not None:
                lg = torch.nn.functional.linear(hs.float(), head_w)
            else:
                lg = model.lm_head(hs).float()
            result[i:i + hs.shape[0]] = lg.cpu().numpy()
            del hs, lg
        del h, pos, ids
    return result


def lm_head_weight(torch, model, mode):
    if mode == "native":
        return None
    w = model.lm_head.weight
    return w if w.dtype == torch.float32 else w.float()


def release_gpu(torch):
    """Return freed GPU memory to the driver; call after the caller dropped its references."""
    import gc
    gc.collect()
    torch.cuda.empty_cache()


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def _clean(obj):
    """JSON-safe copy: non-finite floats become strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if np is not None and isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def fmt(x, width=10):
    if x is None:
        return "-".rjust(width)
    if isinstance(x, float) and not math.isfinite(x):
        return str(x).rjust(width)
    return f"{x:.4g}".rjust(width)


def print_table(phase_rows):
    head = (f"{'run':<8} {'seq':>3} {'len':>6} {'phase':<8} {'rows':>5} "
            f"{'max|e-f32|':>10} {'tol':>10} {'max|b16-f32|':>12} {'max|e-b16|':>10} "
            f"{'mean|e-f32|':>11} {'ref std':>10}  result")
    log(head)
    log("-" * len(head))
    for r in phase_rows:
        log(f"{r['run']:<8} {r['seq']:>3} {r['prompt_len']:>6} {r['phase']:<8} {r['rows']:>5} "
            f"{fmt(r['engine_vs_fp32']['max'])} {fmt(r['tol'])} {fmt(r['bf16_vs_fp32']['max'], 12)} "
            f"{fmt(r['engine_vs_bf16']['max'])} {fmt(r['engine_vs_fp32']['mean'], 11)} "
            f"{fmt(r['ref_std'])}  {'PASS' if r['pass'] else 'FAIL'}")


# --------------------------------------------------------------------------
# self-test
# --------------------------------------------------------------------------

def self_test():
    if np is None:
        return skip("numpy is not installed; --self-test needs it")
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 50)).astype(np.float32)
    b = a + rng.uniform(-0.01, 0.01, a.shape).astype(np.float32)
    b[3, 17] = a[3, 17] + 0.5
    s = diff_stats(a, b, chunk_rows=2)
    ref = np.abs(a - b)
    check(abs(s["max"] - float(ref.max())) < 1e-6, "diff_stats max")
    check(abs(s["mean"] - float(ref.mean())) < 1e-6, "diff_stats mean")
    check(s["nonfinite"] == 0, "diff_stats nonfinite count")
    c = b.copy()
    c[0, 0] = np.nan
    s2 = diff_stats(a, c)
    check(math.isinf(s2["max"]) and s2["nonfinite"] == 1, "diff_stats NaN -> inf")
    check(diff_stats(a[0], a[0])["max"] == 0.0, "diff_stats 1-D equal")
    try:
        diff_stats(a, a[:3])
        failures.append("diff_stats shape mismatch not detected")
    except ValueError:
        pass

    check(abs(logit_std(a, chunk_rows=3) - float(a.astype(np.float64).std())) < 1e-9, "logit_std")

    check(tolerance(0.1, 1.0) == 0.2, "tolerance noise-dominated")
    check(tolerance(0.01, 3.0) == 0.05 * 3.0, "tolerance std-dominated")
    check(tolerance(0.1, 1.0, factor=3.0, std_frac=0.0) == 0.1 * 3.0, "tolerance factors")

    row = np.array([0.0, 5.0, 5.0, 1.0], dtype=np.float32)
    check(top2(row) == (1, 5.0, 5.0), "top2 tie keeps lowest index")
    check(top2(np.array([3.0, 1.0, 2.0], dtype=np.float32)) == (0, 3.0, 2.0), "top2")

    ref_rows = np.array([[0.0, 2.0, 1.0],    # top1 1, margin 1.0
                         [0.0, 1.05, 1.0],   # margin 0.05 -> skipped at tol 0.1
                         [3.0, 0.0, 0.0]],   # top1 0, margin 3.0
                        dtype=np.float32)
    g = greedy_check(ref_rows, [1, 2, 0], [0.1, 0.1, 0.1])
    check((g["checked"], g["agreed"], g["skipped"], g["pass"]) == (2, 2, 1, True), "greedy pass")
    g = greedy_check(ref_rows, [1, 2, 2], [0.1, 0.1, 0.1])
    check(not g["pass"] and g["mismatches"][0]["step"] == 2, "greedy mismatch")
    g = greedy_check(ref_rows, [2, 2, 2], [5.0, 5.0, 5.0])
    check(g["pass"] and g["skipped"] == 3, "greedy all skipped under a large tol")

    check(argmax_consistency(ref_rows, [1, 1, 0])["pass"], "argmax consistency")
    check(argmax_consistency(ref_rows, [1, 2, 0])["pass"] is False, "argmax violation")
    check(argmax_consistency(ref_rows, [1, 1, 9])["pass"] is False, "argmax out-of-range token")

    rows_b = ref_rows + np.float32(0.001)
    bc = batch_consistency(ref_rows, [1, 1, 0], rows_b, [1, 1, 0], [0.1] * 3)
    check(bc["pass"] and bc["diverged_at"] is None and bc["compared_steps"] == 3, "batch same")
    check(abs(bc["max_logit_diff"] - 0.001) < 1e-6, "batch max diff")
    bc = batch_consistency(ref_rows, [1, 1, 0], rows_b, [1, 2, 5], [0.1] * 3)
    check(bc["pass"] and bc["diverged_at"] == 1 and bc["compared_steps"] == 2,
          "batch near-tie divergence allowed, later steps not compared")
    bc = batch_consistency(ref_rows, [1, 1, 0], rows_b, [2, 1, 0], [0.1] * 3)
    check(not bc["pass"] and bc["diverged_at"] == 0, "batch divergence at a clear margin fails")

    check(single_dir_names([1, 17, 1]) == ["single_0_1", "single_17", "single_2_1"], "dir names")

    # dump round trip
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        V, lens, S = 6, [2, 3], 3
        meta = {"vocab_size": V, "batch": 2, "prompt_lens": lens, "steps": S,
                "prompts": [[1, 2], [3, 4, 5]], "generated": [[0, 1, 2], [3, 4, 5]],
                "all_positions": True}
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
        pre = rng.standard_normal((2, V)).astype("<f4")
        dec = rng.standard_normal((S - 1, 2, V)).astype("<f4")
        al = rng.standard_normal((sum(lens), V)).astype("<f4")
        pre.tofile(os.path.join(d, "prefill_logits.f32"))
        dec.tofile(os.path.join(d, "decode_logits.f32"))
        al.tofile(os.path.join(d, "all_logits.f32"))
        dump = Dump(d)
        gr = dump.gen_rows(1)
        check(np.array_equal(gr[0], pre[1]) and np.array_equal(gr[2], dec[1, 1]), "dump gen_rows")
        check(np.array_equal(dump.all_rows(1), al[2:5]), "dump all_rows")
        al[:-1].tofile(os.path.join(d, "all_logits.f32"))
        try:
            Dump(d)
            failures.append("truncated all_logits.f32 not detected")
        except DumpError:
            pass

    for f in failures:
        print(f"self-test FAILED: {f}")
    print(f"self-test: {'FAIL' if failures else 'PASS'} ({len(failures)} failure(s))")
    return 1 if failures else 0


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Compare kvtier-engine logits (batched and unbatched runs) with Hugging Face "
                    "transformers LlamaForCausalLM in bf16 and fp32.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", help="path to the kvtier-engine binary")
    p.add_argument("--model", help="Hugging Face Llama checkpoint directory (config.json + safetensors)")
    p.add_argument("--prompt-lens", default="1,17,1000,4096",
                   help="comma-separated prompt lengths, one sequence each (default: %(default)s)")
    p.add_argument("--decode-steps", type=int, default=32,
                   help="tokens generated per sequence, S (default: %(default)s)")
    p.add_argument("--work", help="work directory for the engine dumps and logs")
    p.add_argument("--all-positions", action="store_true",
                   help="also dump and compare the logits of every prompt position (batched run)")
    p.add_argument("--report", help="write the full report as JSON to this file")
    p.add_argument("--prompt-seed", type=int, default=7,
                   help="seed of the engine's synthetic prompts (default: %(default)s)")
    p.add_argument("--tol-factor", type=float, default=2.0,
                   help="TOL_FACTOR: multiple of the bf16-vs-fp32 max error allowed (default: %(default)s)")
    p.add_argument("--tol-std-frac", type=float, default=0.05,
                   help="TOL_STD_FRAC: floor of the tolerance as a fraction of the fp32 logit std "
                        "(default: %(default)s)")
    p.add_argument("--hf-head", choices=("fp32", "native"), default="fp32",
                   help="HF LM head: 'fp32' applies the head in float32 to the model's final hidden "
                        "states (no bf16 rounding of the logits themselves); 'native' uses "
                        "model.lm_head in the model dtype (default: %(default)s)")
    p.add_argument("--engine-args", default="",
                   help="extra arguments appended to every engine run (one shell-quoted string)")
    p.add_argument("--engine-timeout", type=float, default=3600.0,
                   help="seconds allowed for one engine run (default: %(default)s)")
    p.add_argument("--reuse-dumps", action="store_true",
                   help="do not run the engine; compare the dumps already in --work")
    p.add_argument("--self-test", action="store_true",
                   help="check the metric/tolerance helpers on synthetic data and exit")
    return p, p.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    if args.self_test:
        return self_test()

    missing = [n for n in ("model", "work") if not getattr(args, n)]
    if not args.reuse_dumps and not args.engine:
        missing.append("engine")
    if missing:
        parser.error("missing " + ", ".join("--" + m for m in missing))
    try:
        lens = [int(x) for x in args.prompt_lens.split(",") if x.strip()]
    except ValueError:
        parser.error(f"bad --prompt-lens {args.prompt_lens!r}")
    if not lens or min(lens) < 1:
        parser.error("--prompt-lens needs positive lengths")
    if args.decode_steps < 1:
        parser.error("--decode-steps must be >= 1")
    if not args.reuse_dumps and not os.path.isfile(args.engine):
        parser.error(f"engine binary not found: {args.engine}")

    # Skips: checked before the (long) engine runs.
    if np is None:
        return skip("numpy is not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local checkpoint only; never reach the network
    try:
        import torch
    except Exception as e:
        return skip(f"torch is not importable ({type(e).__name__}: {e})")
    try:
        import transformers
        from transformers import LlamaForCausalLM
    except Exception as e:
        return skip(f"transformers is not importable ({type(e).__name__}: {e})")
    if not torch.cuda.is_available():
        return skip("CUDA is not available to torch")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        return skip(f"model directory has no config.json: {args.model}")

    S = args.decode_steps
    work = args.work
    os.makedirs(work, exist_ok=True)
    batched_dir = os.path.join(work, "batched")
    single_dirs = [os.path.join(work, n) for n in single_dir_names(lens)]

    # ---- 1. engine runs
    if not args.reuse_dumps:
        try:
            for d in [batched_dir] + single_dirs:
                if os.path.isdir(d):
                    shutil.rmtree(d)  # never compare against a stale dump
            run_engine(engine_cmd(args, lens, batched_dir, all_positions=args.all_positions),
                       os.path.join(work, "batched.log"), args.engine_timeout)
            for i, (n, d) in enumerate(zip(lens, single_dirs)):
                run_engine(engine_cmd(args, [n], d, index_base=i),
                           d + ".log", args.engine_timeout)
        except EngineSkipped as e:
            return skip(str(e))
        except EngineFailed as e:
            print(f"FAIL: {e}", file=sys.stderr)
            return 1

    # ---- 2. load and validate the dumps
    failures = []
    try:
        batched = Dump(batched_dir)
        singles = [Dump(d) for d in single_dirs]
    except DumpError as e:
        print(f"FAIL: bad engine dump: {e}", file=sys.stderr)
        return 1
    if batched.prompt_lens != lens or batched.steps != S:
        failures.append(f"batched dump has prompt_lens={batched.prompt_lens} steps={batched.steps}, "
                        f"asked for {lens} / {S}")
    if args.all_positions and batched.all is None:
        failures.append("batched dump has no all_logits.f32 although --all-positions was given")
    for i, sd in enumerate(singles):
        if sd.batch != 1 or sd.steps != S or sd.prompt_lens != [lens[i]]:
            failures.append(f"unbatched dump {sd.path}: batch={sd.batch} steps={sd.steps} "
                            f"prompt_lens={sd.prompt_lens}, expected 1 / {S} / [{lens[i]}]")
        elif sd.prompts[0] != batched.prompts[i]:
            failures.append(f"unbatched prompt {i} differs from batched prompt {i} "
                            f"(is --prompt-index-base honoured?)")
        if sd.vocab != batched.vocab:
            failures.append(f"vocab_size differs between dumps ({sd.vocab} vs {batched.vocab})")
    if failures:
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        return 1
    V = batched.vocab

    # ---- 3. HF jobs: one teacher-forced forward per distinct token sequence
    # seqs: (run, index, dump, b); jobs: key -> dict(tokens, positions, L, all)
    seqs = [("batched", b, batched, b) for b in range(batched.batch)]
    seqs += [("single", i, sd, 0) for i, sd in enumerate(singles)]
    jobs = {}
    seq_key = {}
    for run, idx, dump, b in seqs:
        L = dump.prompt_lens[b]
        tokens = dump.prompts[b] + dump.generated[b][:S - 1]
        want_all = run == "batched" and dump.all is not None
        key = (tuple(tokens), want_all)
        if run == "single" and (tuple(tokens), True) in jobs:
            key = (tuple(tokens), True)  # reuse the batched all-positions forward
        seq_key[(run, idx)] = key
        if key not in jobs:
            positions = list(range(L + S - 1)) if want_all else list(range(L - 1, L - 1 + S))
            jobs[key] = {"tokens": list(tokens), "positions": positions, "L": L, "all": want_all}
    log(f"{len(seqs)} engine sequences, {len(jobs)} distinct HF forwards")

    def split_rows(job, rows):
        """(gen rows [S,V], all-position rows [L,V] or None) from a job's computed rows."""
        L = job["L"]
        if job["all"]:
            return rows[L - 1:L - 1 + S], rows[:L]
        return rows, None

    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name(0), "hf_head": args.hf_head, "attn": "sdpa"}
    log(f"torch {env['torch']}, transformers {env['transformers']}, {env['device']}")

    # ---- 4. HF bf16 pass: keep results on the host
    bf16 = {}
    try:
        model = load_model(torch, LlamaForCausalLM, args.model, torch.bfloat16)
        if model.lm_head.weight.shape[0] != V:
            print(f"FAIL: HF vocab {model.lm_head.weight.shape[0]} != engine vocab {V}", file=sys.stderr)
            return 1
        head = lm_head_weight(torch, model, args.hf_head)
        for n, (key, job) in enumerate(jobs.items()):
            t0 = time.time()
            bf16[key] = hf_rows(torch, model, head, job["tokens"], job["positions"])
            log(f"  bf16 forward {n + 1}/{len(jobs)}: {len(job['tokens'])} tokens, "
                f"{len(job['positions'])} rows, {time.time() - t0:.1f}s")
        del head, model
        release_gpu(torch)

        # ---- 5. HF fp32 pass: compare as we go
        env["fp32_matmul"] = ensure_ieee_fp32(torch)
        log(f"fp32 matmul precision: {env['fp32_matmul']}")
        model = load_model(torch, LlamaForCausalLM, args.model, torch.float32)
        head = lm_head_weight(torch, model, args.hf_head)
        phase_rows = []
        seq_reports = {}
        tols = {}
        for n, (key, job) in enumerate(jobs.items()):
            t0 = time.time()
            f32 = hf_rows(torch, model, head, job["tokens"], job["positions"])
            log(f"  fp32 forward {n + 1}/{len(jobs)}: {len(job['tokens'])} tokens, "
                f"{len(job['positions'])} rows, {time.time() - t0:.1f}s")
            g16, a16 = split_rows(job, bf16[key])
            g32, a32 = split_rows(job, f32)
            for run, idx, dump, b in seqs:
                if seq_key[(run, idx)] != key:
                    continue
                eng = dump.gen_rows(b)
                L = dump.prompt_lens[b]
                phases = [("prefill", eng[:1], g16[:1], g32[:1])]
                if S > 1:
                    phases.append(("decode", eng[1:], g16[1:], g32[1:]))
                if run == "batched" and dump.all is not None:
                    phases.append(("all", dump.all_rows(b), a16, a32))
                rep = {"run": run, "seq": idx, "prompt_len": L, "phases": {}}
                for phase, e_rows, r16, r32 in phases:
                    noise = diff_stats(r16, r32)
                    std = logit_std(r32)
                    tol = tolerance(noise["max"], std, args.tol_factor, args.tol_std_frac)
                    e32 = diff_stats(e_rows, r32)
                    e16 = diff_stats(e_rows, r16)
                    ok = e32["max"] <= tol
                    row = {"run": run, "seq": idx, "prompt_len": L, "phase": phase,
                           "rows": int(_as_2d(e_rows).shape[0]), "engine_vs_fp32": e32,
                           "engine_vs_bf16": e16, "bf16_vs_fp32": noise, "ref_std": std,
                           "tol": tol, "pass": ok}
                    phase_rows.append(row)
                    rep["phases"][phase] = row
                    tols[(run, idx, phase)] = tol
                    if not ok:
                        failures.append(f"{run} seq {idx} (len {L}) {phase}: max|engine-fp32| "
                                        f"{e32['max']:.4g} > tol {tol:.4g}")
                step_tols = [tols[(run, idx, "prefill")]]
                if S > 1:
                    step_tols += [tols[(run, idx, "decode")]] * (S - 1)
                gc_ = greedy_check(g16, dump.generated[b], step_tols)
                rep["greedy"] = gc_
                for m in gc_["mismatches"]:
                    failures.append(f"{run} seq {idx} (len {L}) step {m['step']}: engine token "
                                    f"{m['engine_token']} != HF-bf16 top-1 {m['ref_token']} "
                                    f"(margin {m['margin']:.4g} > tol {m['tol']:.4g})")
                ac = argmax_consistency(eng, dump.generated[b])
                rep["argmax_consistency"] = ac
                for v in ac["violations"]:
                    failures.append(f"{run} seq {idx} (len {L}) step {v['step']}: generated token "
                                    f"{v['token']} is not the argmax of the dumped logits "
                                    f"(gap {v['gap']:.4g})")
                rep["step_tols"] = step_tols
                seq_reports[(run, idx)] = rep
            del f32, g32, a32
        del head, model
        release_gpu(torch)
    except DumpError as e:
        print(f"FAIL: bad engine dump: {e}", file=sys.stderr)
        return 1
    bf16.clear()

    # ---- 6. batched vs unbatched engine runs
    consistency = []
    for i, sd in enumerate(singles):
        rep = batch_consistency(batched.gen_rows(i), batched.generated[i], sd.gen_rows(0),
                                sd.generated[0], seq_reports[("batched", i)]["step_tols"])
        rep.update({"seq": i, "prompt_len": lens[i]})
        consistency.append(rep)
        if not rep["pass"]:
            failures.append(f"batched vs unbatched seq {i} (len {lens[i]}): tokens differ at step "
                            f"{rep['diverged_at']} where the batched top-2 margin "
                            f"{rep['divergence_margin']:.4g} exceeds tol")

    # ---- 7. output (rows in run / sequence / phase order, not HF-job order)
    run_order = {"batched": 0, "single": 1}
    phase_order = {"prefill": 0, "decode": 1, "all": 2}
    phase_rows.sort(key=lambda r: (run_order[r["run"]], r["seq"], phase_order[r["phase"]]))
    seq_reports = dict(sorted(seq_reports.items(), key=lambda kv: (run_order[kv[0][0]], kv[0][1])))
    log("")
    log(f"logits parity, tol = max({args.tol_factor:g} * max|bf16-fp32|, "
        f"{args.tol_std_frac:g} * std(fp32)), HF head: {args.hf_head}")
    print_table(phase_rows)
    log("")
    log("greedy check (engine token vs HF-bf16 top-1 where the top-2 margin > tol):")
    for (run, idx), rep in seq_reports.items():
        g = rep["greedy"]
        log(f"  {run:<8} seq {idx:>2} len {rep['prompt_len']:>6}: checked {g['checked']:>3}, "
            f"agreed {g['agreed']:>3}, skipped {g['skipped']:>3} (small margin)"
            f"{'' if g['pass'] else '  FAIL'}"
            f"{'' if rep['argmax_consistency']['pass'] else '  ARGMAX-MISMATCH'}")
    log("")
    log("batched vs unbatched engine runs:")
    for rep in consistency:
        div = ("no divergence" if rep["diverged_at"] is None else
               f"diverged at step {rep['diverged_at']} (margin {rep['divergence_margin']:.4g})")
        log(f"  seq {rep['seq']:>2} len {rep['prompt_len']:>6}: {rep['compared_steps']:>3} steps compared, "
            f"max|batched-unbatched| {fmt(rep['max_logit_diff']).strip()}, {div}"
            f"{'' if rep['pass'] else '  FAIL'}")

    passed = not failures
    if args.report:
        report = {
            "pass": passed,
            "failures": failures,
            "config": {"prompt_lens": lens, "decode_steps": S, "prompt_seed": args.prompt_seed,
                       "all_positions": args.all_positions, "tol_factor": args.tol_factor,
                       "tol_std_frac": args.tol_std_frac, "model": args.model,
                       "engine": args.engine, "engine_args": args.engine_args},
            "environment": env,
            "phases": phase_rows,
            "sequences": list(seq_reports.values()),
            "batched_vs_unbatched": consistency,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(_clean(report), f, indent=1)
        log(f"\nreport written to {args.report}")

    log("")
    if passed:
        log("PASS: engine matches HF transformers within tolerance")
        return 0
    log(f"FAIL: {len(failures)} check(s) failed:")
    for f in failures:
        log(f"  - {f}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
