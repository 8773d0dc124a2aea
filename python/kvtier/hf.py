"""kvtier.hf: Hugging Face transformers' KV cache into kvtier and back.

save() stores the KV that a transformers model computed for a prompt (its
`past_key_values`) as kvtier blocks of 16 tokens; restore() finds the longest
cached prefix of a prompt and rebuilds a transformers cache object holding it,
so the model computes only the rest:

    import kvtier, kvtier.hf
    client = kvtier.Client()
    ns = kvtier.hf.open_namespace(client, model)              # layout from model.config
    gpu = client.gpu_session(0)                               # CUDA tensors; None for CPU
    out = model(input_ids, past_key_values=DynamicCache(config=model.config), use_cache=True)
    kvtier.hf.save(ns, tokens, out.past_key_values, session=gpu)
    # later, in any process:
    cache, cached = kvtier.hf.restore(ns, tokens, session=gpu, config=model.config,
                                      device="cuda:0", dtype=model.dtype)
    out = model(input_ids[:, cached:], past_key_values=cache, use_cache=True)

Blocks hold every layer's K and V for 16 tokens in kvtier's canonical order
([layer][K, V][token][kv_head][head_dim], docs/loader.md); the model's cache
layers are [batch = 1, kv_heads, tokens, head_dim]. Moving between the two is
one permute on the device; the bytes then travel zero-copy (a KvPool of
layout "layer_first" over a [blocks, layers, 2, 16, kv_heads, head_dim]
tensor). Models whose layers all keep full K and V (Llama, Mistral without a
sliding window, Qwen2) fit; caches that drop tokens (sliding windows) or keep
one latent (MLA) do not.

torch is imported with this module; transformers only where a cache object is
built (restore()).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from . import _kvtier

#: Tokens per kvtier block (and per page of the layer-first pool).
BLOCK_TOKENS = 16

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get(decoder=True) if get is not None else config


def layout_of(config, dtype: torch.dtype) -> dict:
    """The kvtier layout of a transformers config: num_layers, num_kv_heads,
    head_dim, tokens_per_block (16) and dtype ('bf16' or 'fp16')."""
    c = _text_config(config)
    if dtype not in _DTYPES:
        raise ValueError(f"kvtier.hf keeps bf16 or fp16 KV, not {dtype}")
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return dict(num_layers=c.num_hidden_layers, num_kv_heads=kv_heads, head_dim=head_dim,
                tokens_per_block=BLOCK_TOKENS, dtype=_DTYPES[dtype])


def open_namespace(client: _kvtier.Client, model, *, model_id: Optional[str] = None,
                   model_revision: str = "", tenant_salt=None, tp_rank: int = 0, tp_size: int = 1,
                   hash_mode: str = "xxh3-128") -> _kvtier.Namespace:
    """Opens the namespace of `model` (a transformers PreTrainedModel): its
    layout from model.config and model.dtype; model_id defaults to
    config._name_or_path. Give model_revision (e.g. the checkpoint's commit):
    two checkpoints under one id and revision would share KV."""
    config = model.config
    name = model_id or getattr(config, "_name_or_path", "") or getattr(config, "model_type", "")
    if not name:
        raise ValueError("the model has no name: pass model_id=")
    device = model.device.index if model.device.type == "cuda" and model.device.index is not None else -1
    return client.open_namespace(name, model_revision=model_revision, tenant_salt=tenant_salt,
                                 tp_rank=tp_rank, tp_size=tp_size, hash_mode=hash_mode,
                                 device=device, **layout_of(config, model.dtype))


def cache_layers(past_key_values) -> list:
    """[(K, V)] per layer, each [batch, kv_heads, tokens, head_dim], from a
    transformers cache object (DynamicCache of transformers 4.5x or 5.x) or
    the legacy tuple of tuples."""
    layers = getattr(past_key_values, "layers", None)
    if layers is not None:  # transformers >= 4.56: one CacheLayer per layer
        return [(layer.keys, layer.values) for layer in layers]
    if hasattr(past_key_values, "key_cache"):
        return list(zip(past_key_values.key_cache, past_key_values.value_cache))
    return [(kv[0], kv[1]) for kv in past_key_values]


def make_cache(pairs: Sequence, config=None):
    """A transformers DynamicCache holding `pairs` [(K, V)] per layer."""
    from transformers import DynamicCache

    try:
        return DynamicCache(list(pairs), config=config)
    except TypeError:  # caches without the ddp_cache_data / config arguments
        cache = DynamicCache()
        for i, (k, v) in enumerate(pairs):
            cache.update(k, v, i)
        return cache


def _stream_of(tensor: torch.Tensor, stream):
    if stream is not None:
        return stream
    if tensor.is_cuda:
        return torch.cuda.current_stream(tensor.device).cuda_stream
    return None


def save(ns: _kvtier.Namespace, tokens: Sequence[int], past_key_values, *,
         session: Optional[_kvtier.GpuSession] = None, stream=None,
         priority: int = _kvtier.DEFAULT_PRIORITY, duration_s: float = 0.0) -> "SaveResult":
    """Stores the KV of the full 16-token blocks of `tokens` (batch 1) that
    `past_key_values` holds, skipping the prefix already cached. CUDA caches
    need `session` (Client.gpu_session); CPU caches go through the CPU path.
    Returns a SaveResult."""
    pairs = cache_layers(past_key_values)
    if not pairs:
        raise ValueError("past_key_values holds no layers")
    k0 = pairs[0][0]
    if k0.dim() != 4 or k0.shape[0] != 1:
        raise ValueError(f"kvtier.hf.save takes a batch of 1, got K of shape {tuple(k0.shape)}")
    tokens = list(tokens)
    keys = ns.hash_tokens(tokens)
    n = min(len(keys), k0.shape[2] // BLOCK_TOKENS)
    cached = len(ns.probe(keys[:n]))
    if cached >= n:
        return SaveResult(0, n, 0, 0)
    first, count = cached, n - cached
    t0, t1 = first * BLOCK_TOKENS, n * BLOCK_TOKENS
    L = len(pairs)
    H, D = k0.shape[1], k0.shape[3]
    # [L, 2, H, tokens, D] -> [blocks, L, 2, 16, H, D]: the layer-first pool.
    kv = torch.stack([torch.stack([k[0, :, t0:t1, :], v[0, :, t0:t1, :]]) for k, v in pairs])
    blocks = kv.view(L, 2, H, count, BLOCK_TOKENS, D).permute(3, 0, 1, 4, 2, 5).contiguous()
    pool = _kvtier.KvPool(blocks, layout="layer_first")
    parent = keys[first - 1] if first > 0 else None
    todo = keys[first:n]
    pages = list(range(count))
    if blocks.is_cuda:
        if session is None:
            raise ValueError("the cache is in CUDA memory: pass session=client.gpu_session(device)")
        r = session.store(ns, todo, pool, pages, _stream_of(blocks, stream), priority=priority,
                          duration_s=duration_s, first_parent=parent)
    else:
        r = ns.store(todo, pool, pages, priority=priority, duration_s=duration_s, first_parent=parent)
    return SaveResult(r.stored, r.present + cached, r.in_flight, r.no_space)


class SaveResult(NamedTuple):
    """What save() did, in blocks: written, already cached (the prefix it
    skipped included), being written by someone else, refused for space."""

    stored: int
    present: int
    in_flight: int
    no_space: int


def restore(ns: _kvtier.Namespace, tokens: Sequence[int], *, config=None,
            session: Optional[_kvtier.GpuSession] = None, device="cpu",
            dtype: torch.dtype = torch.bfloat16, stream=None, max_tokens: Optional[int] = None):
    """Finds the longest cached prefix of `tokens` and returns (cache, n):
    a transformers DynamicCache holding the KV of tokens[:n] on `device`, n a
    multiple of 16 (0 and an empty cache on a miss). At most len(tokens) - 1
    tokens (or max_tokens) are restored, so the model has at least one token
    left to compute the next token's logits from. CUDA devices need
    `session`. A block that fails its checksum raises kvtier.Corruption;
    nothing is restored then."""
    tokens = list(tokens)
    limit = len(tokens) - 1 if max_tokens is None else min(max_tokens, len(tokens) - 1)
    keys = ns.hash_tokens(tokens[: max(limit, 0) // BLOCK_TOKENS * BLOCK_TOKENS])
    spec = ns.spec
    L, H, D = spec["num_layers"], spec["num_kv_heads"], spec["head_dim"]
    device = torch.device(device)
    with ns.lookup(keys) as lease:
        n = len(lease)
        if n == 0:
            return make_cache([], config), 0
        blocks = torch.empty((n, L, 2, BLOCK_TOKENS, H, D), dtype=dtype, device=device)
        pool = _kvtier.KvPool(blocks, layout="layer_first")
        if blocks.is_cuda:
            if session is None:
                raise ValueError("restoring into CUDA memory: pass session=client.gpu_session(device)")
            session.load(ns, lease, pool, list(range(n)), _stream_of(blocks, stream))
        else:
            ns.load(lease, pool, list(range(n)))
    # [blocks, L, 2, 16, H, D] -> per layer [1, H, blocks * 16, D]
    per = blocks.permute(1, 2, 4, 0, 3, 5).reshape(L, 2, H, n * BLOCK_TOKENS, D)
    pairs = [(per[l, 0].unsqueeze(0).contiguous(), per[l, 1].unsqueeze(0).contiguous()) for l in range(L)]
    return make_cache(pairs, config), n * BLOCK_TOKENS
