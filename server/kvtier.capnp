# kvtier RPC schema (Cap'n Proto), version 1.
#
# Transport: a Unix stream socket with fd passing. The bootstrap capability is
# a KvTier. Payload bytes never cross the socket: the host tier's memfd is
# handed to clients (HostSegment's capability carries the fd), clients map it
# and read or write slots in place. Lifetimes follow capabilities: dropping a
# Lease releases its pins; dropping an uncommitted StoreTxn aborts it; when a
# connection ends, everything it held is released.
#
# Errors are Cap'n Proto exceptions whose description starts with a kvtier
# status name and a colon, e.g. "InvalidArgument: sizes[2] = 10 does not match
# the namespace's block size of 2097152". See docs/rpc.md.
@0xa7ee7ec083e90079;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kvtier::rpc");

struct Key {
  lo @0 :UInt64;
  hi @1 :UInt64;
}

enum DType {
  unknown @0;
  bf16 @1;
  fp16 @2;
  fp8 @3;
}

enum HashMode {
  xxh3128 @0;
  sha256 @1;
}

struct NamespaceSpec {
  modelId @0 :Text;
  modelRevision @1 :Text;
  numLayers @2 :UInt32;
  numKvHeads @3 :UInt32;
  headDim @4 :UInt32;
  tokensPerBlock @5 :UInt32;
  dtype @6 :DType;
  planes @7 :UInt32 = 2;
  tpRank @8 :UInt32;
  tpSize @9 :UInt32 = 1;
  tenantSalt @10 :Text;
  hashMode @11 :HashMode;
}

enum Tier {
  hbm @0;
  host @1;
  nvme @2;
}

struct BlockLocation {
  tier @0 :Tier;
  offset @1 :UInt64;    # byte offset of the slot in that tier's segment
  size @2 :UInt32;      # payload bytes
  checksum @3 :UInt64;  # docs/checksum.md
  device @4 :Int32 = -1;  # tier hbm: the CUDA device of that HBM tier
}

enum ReserveOutcome {
  reserved @0;   # write the slot, then commit
  present @1;    # already cached: nothing to write
  inFlight @2;   # another writer holds it: nothing to write
  noSpace @3;    # no room even after eviction
}

struct ReservedSlot {
  outcome @0 :ReserveOutcome;
  tier @1 :Tier;
  offset @2 :UInt64;
  size @3 :UInt32;
  device @4 :Int32 = -1;  # tier hbm: the CUDA device of that HBM tier
}

struct PriorityRange {
  begin @0 :UInt32;        # index into the reserved keys
  end @1 :UInt32;          # exclusive
  priority @2 :UInt8;      # 0..100
  durationMs @3 :UInt64;   # 0 = for ever
}

struct TierStats {
  name @0 :Text;
  capacityBytes @1 :UInt64;
  usedBytes @2 :UInt64;
  blocks @3 :UInt64;
  hits @4 :UInt64;
  bytesIn @5 :UInt64;
  bytesOut @6 :UInt64;
  evictions @7 :UInt64;
}

struct NamespaceStats {
  id @0 :UInt32;
  modelId @1 :Text;
  modelRevision @2 :Text;
  tpRank @3 :UInt32;
  tpSize @4 :UInt32;
  blockBytes @5 :UInt64;
  salted @6 :Bool;       # the tenant salt itself is never sent
  blocks @7 :UInt64;     # in any tier, NVMe included
  bytes @8 :UInt64;
  hits @9 :UInt64;
  evictions @10 :UInt64;
}

struct Stats {
  blocksReady @0 :UInt64;
  blocksWriting @1 :UInt64;
  pinnedBlocks @2 :UInt64;
  acquires @3 :UInt64;
  blocksHit @4 :UInt64;
  blocksMissed @5 :UInt64;
  commits @6 :UInt64;
  aborts @7 :UInt64;
  leasesOpen @8 :UInt64;
  txnsOpen @9 :UInt64;
  connectionsOpen @10 :UInt64;
  tiers @11 :List(TierStats);
  namespaces @12 :List(NamespaceStats);  # live namespaces
}

interface KvTier {
  # Registers (or finds) a namespace of the caller's tenant; the same spec
  # always gives the same one. The tenant is that of the connection's peer
  # credentials (SO_PEERCRED), or of `token` when one is given (the daemon
  # compares its SHA-256 with its configuration); a connection belongs to
  # one tenant, fixed by its first openNamespace. PermissionDenied when no
  # tenant matches, or a later call names another tenant. docs/security.md.
  openNamespace @0 (spec :NamespaceSpec, token :Text)
      -> (ns :Namespace, id :UInt32, seed :Key, blockBytes :UInt64, tenant :Text);
  # The host segment of the connection's tenant (its blocks, nobody else's);
  # its capability carries the memfd (Capability::Client::getFd()).
  # PermissionDenied before the connection opened a namespace.
  hostSegment @1 () -> (segment :HostSegment, bytes :UInt64);
  stats @2 () -> (stats :Stats);
  ping @3 () -> ();
  # The HBM arena of the connection's tenant on GPU `device`, shared by CUDA
  # IPC: open `ipcHandle` (a cudaIpcMemHandle_t, 64 bytes) with
  # cudaIpcOpenMemHandle; block offsets of tier `hbm` are relative to it.
  # Fails with Unavailable when the daemon has no HBM tier, PermissionDenied
  # before the connection opened a namespace.
  hbmSegment @4 (device :Int32 = -1) -> (device :Int32, ipcHandle :Data, bytes :UInt64, pciBusId :Text);

  # Tensor parallelism: acquires each rank's keys in its namespace (an id
  # returned by openNamespace on this connection) and keeps only the prefix
  # that every rank has, so that all ranks load the same number of blocks.
  # `device` is the rank's GPU (for promotion to its HBM tier; -1 = none).
  acquireTp @5 (ranks :List(TpRank)) -> (prefix :UInt32, results :List(TpResult));
}

struct TpRank {
  namespaceId @0 :UInt32;
  keys @1 :List(Key);
  device @2 :Int32 = -1;
}

struct TpResult {
  blocks @0 :List(BlockLocation);
  lease @1 :Lease;   # null when the common prefix is empty
}

interface HostSegment {
  bytes @0 () -> (bytes :UInt64);
}

interface Namespace {
  # Longest cached prefix of `keys` (a chain), pinned by `lease` until it is
  # released or dropped. `lease` is null when nothing matched.
  # `device`: the caller's GPU; blocks hit often enough move up to that GPU's
  # HBM tier (--promote-to-hbm-hits); -1 = the first HBM tier.
  acquire @0 (keys :List(Key), device :Int32 = -1) -> (blocks :List(BlockLocation), lease :Lease);

  # Slots for `keys`, each of `sizes[i]` bytes (must equal the namespace's
  # block size). `firstParent` is the chain key before keys[0] (zero = none).
  # `device`: the writer's GPU; with --store-tier hbm, the slots are in that
  # GPU's HBM tier (-1 = the default store tier).
  reserve @1 (keys :List(Key), sizes :List(UInt64), priority :UInt8 = 35,
              durationMs :UInt64, ranges :List(PriorityRange), firstParent :Key,
              device :Int32 = -1)
          -> (slots :List(ReservedSlot), txn :StoreTxn);

  # Chain keys of the full blocks of `tokens`, starting after `prev` (zero =
  # the namespace seed). For clients that do not hash themselves.
  hashTokens @2 (tokens :List(UInt32), prev :Key) -> (keys :List(Key));

  stats @3 () -> (stats :Stats);

  # Where the longest cached prefix of `keys` lives, one tier per block,
  # without pinning, counting or promoting anything (no lease): for an
  # engine deciding how much of a hit is worth loading. May be stale by the
  # time it acquires.
  probe @4 (keys :List(Key)) -> (tiers :List(Tier));
}

interface Lease {
  release @0 () -> ();
}

interface StoreTxn {
  # One checksum per reserved key (values of non-reserved keys are ignored).
  commit @0 (checksums :List(UInt64)) -> ();
  abort @1 () -> ();
}
