"""kvtier: KV-cache offload and reuse through a running kvtierd, from Python.

The binding of kvtier's C++ client (engine_adapter/client.h and
gpu_session.h); docs/python.md explains it with a runnable example.

    import kvtier
    client = kvtier.Client()                      # $KVTIER_SOCKET or $XDG_RUNTIME_DIR/kvtier.sock
    ns = client.open_namespace("my/model", num_layers=32, num_kv_heads=8, head_dim=128)
    keys = ns.hash_tokens(prompt_token_ids)       # one key per full 16-token block
    with ns.lookup(keys) as lease:                # the longest cached prefix, pinned
        ...                                       # ns.load(...) or GpuSession.load(...)

`kvtier.hf` (Hugging Face transformers helpers) is imported on first use, so
torch and transformers are needed only by whoever uses it.
"""

from ._kvtier import (  # noqa: F401
    DEFAULT_PRIORITY,
    POOL_LAYOUTS,
    Client,
    Corruption,
    Error,
    GpuLoad,
    GpuSession,
    GpuStore,
    Internal,
    InvalidArgument,
    IOError,
    Key,
    KvPool,
    LayerEvents,
    Lease,
    Namespace,
    NotFound,
    PendingLookup,
    Rejected,
    ResourceExhausted,
    Retry,
    StoreResult,
    Unavailable,
    gpu_available,
)

__all__ = [
    "Client", "Namespace", "Lease", "PendingLookup", "Key", "KvPool", "StoreResult",
    "GpuSession", "GpuLoad", "GpuStore", "LayerEvents", "gpu_available",
    "Error", "NotFound", "InvalidArgument", "ResourceExhausted", "Rejected", "Retry",
    "IOError", "Corruption", "Unavailable", "Internal",
    "POOL_LAYOUTS", "DEFAULT_PRIORITY", "hf",
]


def __getattr__(name):
    # kvtier.hf on first use: it imports torch.
    if name == "hf":
        import importlib

        module = importlib.import_module(".hf", __name__)
        globals()["hf"] = module
        return module
    raise AttributeError(f"module 'kvtier' has no attribute {name!r}")
