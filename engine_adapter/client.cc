#include "engine_adapter/client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "server/kvtier.capnp.h"
#include "server/rpc_convert.h"
#include "server/socket_message_stream.h"
#include "tiers/checksum.h"

namespace kvtier {

namespace {

// One kj event loop per thread, shared by every Client of that thread.
struct ThreadIo {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  int users = 0;
};
thread_local ThreadIo* tls_io = nullptr;

ThreadIo* AcquireIo() {
  if (tls_io == nullptr) tls_io = new ThreadIo();
  ++tls_io->users;
  return tls_io;
}

void ReleaseIo(ThreadIo* io) {
  if (--io->users == 0) {
    delete io;
    tls_io = nullptr;
  }
}

TierKind TierFromRpc(rpc::Tier t) {
  switch (t) {
    case rpc::Tier::HBM: return TierKind::kHbm;
    case rpc::Tier::NVME: return TierKind::kNvme;
    default: return TierKind::kHost;
  }
}

RemoteStats StatsFromRpc(rpc::Stats::Reader s) {
  RemoteStats r;
  r.blocks_ready = s.getBlocksReady();
  r.blocks_writing = s.getBlocksWriting();
  r.pinned_blocks = s.getPinnedBlocks();
  r.acquires = s.getAcquires();
  r.blocks_hit = s.getBlocksHit();
  r.blocks_missed = s.getBlocksMissed();
  r.commits = s.getCommits();
  r.aborts = s.getAborts();
  r.leases_open = s.getLeasesOpen();
  r.txns_open = s.getTxnsOpen();
  r.connections_open = s.getConnectionsOpen();
  for (auto t : s.getTiers())
    r.tiers.push_back({t.getName(), t.getCapacityBytes(), t.getUsedBytes(), t.getBlocks(),
                       t.getHits(), t.getEvictions()});
  for (auto n : s.getNamespaces())
    r.namespaces.push_back({n.getId(), n.getModelId(), n.getModelRevision(), n.getTpRank(),
                            n.getTpSize(), n.getBlockBytes(), n.getSalted(), n.getBlocks(),
                            n.getBytes(), n.getHits(), n.getEvictions()});
  return r;
}

// Runs `fn` and turns a kj exception into the Status it carries.
template <typename Fn>
auto Guard(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const kj::Exception& e) {
    return rpcconv::StatusFromException(e);
  }
}

}  // namespace

struct Client::Impl {
  ThreadIo* io = nullptr;
  // The connection to the daemon: its transport, vat network and RPC system.
  struct Connection {
    Connection(kj::UnixEventPort& port, int fd)
        : stream(port, fd),
          // Up to 2 fds per incoming message: the host segment's memfd.
          network(stream, /*maxFdsPerMessage=*/2, capnp::rpc::twoparty::Side::CLIENT),
          rpc(capnp::makeRpcClient(network)) {}
    capnp::Capability::Client Bootstrap() {
      capnp::word scratch[4] = {};
      capnp::MallocMessageBuilder message(scratch);
      auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
      vat.setSide(capnp::rpc::twoparty::Side::SERVER);
      return rpc.bootstrap(vat);
    }
    SocketMessageStream stream;
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  };
  kj::Own<Connection> conn;
  rpc::KvTier::Client boot = nullptr;
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  std::string token;
  std::string tenant;

  // Fetches and maps the tenant's host segment (after a namespace is open).
  Status MapSegment() {
    if (base != nullptr) return Status::OK();
    auto seg = Wait(boot.hostSegmentRequest().send());
    uint64_t n = seg.getBytes();
    rpc::HostSegment::Client cap = seg.getSegment();
    // The fd arrives with the capability; it stays owned by the capability.
    Wait(cap.bytesRequest().send());
    KJ_IF_MAYBE(segfd, cap.getFd().wait(ws())) {
      void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, *segfd, 0);
      if (p == MAP_FAILED)
        return Status::IOError(std::string("mapping the host segment: ") + std::strerror(errno));
      base = static_cast<uint8_t*>(p);
      bytes = n;
      return Status::OK();
    }
    return Status::Unavailable("the daemon did not pass the host segment's fd");
  }

  kj::WaitScope& ws() { return io->io.waitScope; }
  // Lets queued messages (releases of dropped capabilities) go out.
  void Flush() { ws().poll(); }

  // Waits for an answer of the daemon: first polls for up to spin_ns, giving
  // the CPU away between polls when another thread wants it, then sleeps.
  // A reply that comes within the spin then reaches a running thread instead
  // of one that must be woken (on a virtual machine, a halted vCPU).
  template <typename T>
  T Wait(kj::Promise<T>&& p) {
    if (spin_ns > 0) {
      auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns);
      while (!p.poll(ws()) && std::chrono::steady_clock::now() < until) sched_yield();
    }
    return p.wait(ws());
  }
  int64_t spin_ns = 50000;

  ~Impl() {
    boot = nullptr;
    conn = nullptr;
    if (base != nullptr) munmap(base, bytes);
    if (io != nullptr) ReleaseIo(io);
  }
};

struct ClientNamespace::Impl {
  rpc::Namespace::Client cap = nullptr;
};

struct ClientLease::Impl {
  std::shared_ptr<Client::Impl> client;
  rpc::Lease::Client cap = nullptr;
};

struct ClientTxn::Impl {
  std::shared_ptr<Client::Impl> client;
  rpc::StoreTxn::Client cap = nullptr;
  bool done = false;
};

// ---- Client ----------------------------------------------------------------

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

void Client::set_reply_spin(std::chrono::nanoseconds spin) {
  impl_->spin_ns = spin.count() < 0 ? 0 : static_cast<int64_t>(spin.count());
}

uint8_t* Client::segment_base() const { return impl_->base; }
uint64_t Client::segment_bytes() const { return impl_->bytes; }

const std::string& Client::tenant() const { return impl_->tenant; }

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket_path,
                                                const ConnectOptions& options) {
  sockaddr_un addr{};
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
    return Status::InvalidArgument("socket path '" + socket_path + "' is empty or too long");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Status st = Status::Unavailable("no kvtierd on '" + socket_path + "': " + std::strerror(errno));
    close(fd);
    return st;
  }
  auto impl = std::make_shared<Impl>();
  impl->io = AcquireIo();
  impl->token = options.token;
  return Guard([&]() -> Result<std::unique_ptr<Client>> {
    impl->conn = kj::heap<Impl::Connection>(impl->io->io.unixEventPort, fd);
    impl->boot = impl->conn->Bootstrap().castAs<rpc::KvTier>();
    // One round trip: a daemon that accepted but does not answer fails here.
    impl->Wait(impl->boot.pingRequest().send());
    return std::unique_ptr<Client>(new Client(std::move(impl)));
  });
}

Result<std::unique_ptr<ClientNamespace>> Client::OpenNamespace(const NamespaceSpec& spec) {
  KVTIER_RETURN_IF_ERROR(spec.Validate());
  return Guard([&]() -> Result<std::unique_ptr<ClientNamespace>> {
    auto req = impl_->boot.openNamespaceRequest();
    rpcconv::SpecToRpc(spec, req.initSpec());
    if (!impl_->token.empty()) req.setToken(impl_->token);
    auto res = impl_->Wait(req.send());
    impl_->tenant = res.getTenant();
    auto ns_impl = std::make_unique<ClientNamespace::Impl>();
    ns_impl->cap = res.getNs();
    BlockKey seed = rpcconv::FromRpc(res.getSeed());
    std::unique_ptr<ClientNamespace> ns(
        new ClientNamespace(impl_, std::move(ns_impl), spec, res.getId()));
    if (!(seed == ns->hasher().seed()))
      return Status::Internal("the daemon's namespace seed differs from the client's "
                              "(hashing spec mismatch)");
    KVTIER_RETURN_IF_ERROR(impl_->MapSegment());
    return ns;
  });
}

Result<RemoteStats> Client::Stats() {
  return Guard([&]() -> Result<RemoteStats> {
    auto res = impl_->Wait(impl_->boot.statsRequest().send());
    return StatsFromRpc(res.getStats());
  });
}

Result<Client::HbmSegment> Client::GetHbmSegment(int device) {
  return Guard([&]() -> Result<HbmSegment> {
    auto req = impl_->boot.hbmSegmentRequest();
    req.setDevice(device);
    auto res = impl_->Wait(req.send());
    HbmSegment h;
    h.device = res.getDevice();
    auto handle = res.getIpcHandle();
    if (handle.size() != h.ipc_handle.size())
      return Status::Internal("the daemon sent an IPC handle of " + std::to_string(handle.size()) +
                              " bytes");
    std::memcpy(h.ipc_handle.data(), handle.begin(), handle.size());
    h.bytes = res.getBytes();
    h.pci_bus_id = res.getPciBusId();
    return h;
  });
}

Result<std::vector<ClientLease>> Client::AcquireTp(std::span<ClientNamespace* const> ranks,
                                                   std::span<const std::vector<BlockKey>> keys) {
  if (ranks.size() != keys.size() || ranks.empty())
    return Status::InvalidArgument(std::to_string(ranks.size()) + " ranks but " +
                                   std::to_string(keys.size()) + " key lists");
  return Guard([&]() -> Result<std::vector<ClientLease>> {
    auto req = impl_->boot.acquireTpRequest();
    auto rl = req.initRanks(static_cast<unsigned>(ranks.size()));
    for (size_t r = 0; r < ranks.size(); ++r) {
      auto o = rl[static_cast<unsigned>(r)];
      o.setNamespaceId(ranks[r]->id());
      o.setDevice(ranks[r]->device());
      auto kl = o.initKeys(static_cast<unsigned>(keys[r].size()));
      for (size_t i = 0; i < keys[r].size(); ++i)
        rpcconv::ToRpc(keys[r][i], kl[static_cast<unsigned>(i)]);
    }
    auto res = impl_->Wait(req.send());
    std::vector<ClientLease> out;
    auto results = res.getResults();
    if (results.size() != ranks.size()) return Status::Internal("acquireTp answered the wrong rank count");
    for (unsigned r = 0; r < results.size(); ++r) {
      ClientLease lease;
      auto blocks = results[r].getBlocks();
      for (unsigned i = 0; i < blocks.size(); ++i) {
        auto b = blocks[i];
        lease.blocks_.push_back(RemoteBlock{keys[r][i], TierFromRpc(b.getTier()), b.getOffset(),
                                            b.getSize(), b.getChecksum(), b.getDevice()});
      }
      if (!lease.blocks_.empty()) {
        lease.impl_ = std::make_unique<ClientLease::Impl>();
        lease.impl_->client = impl_;
        lease.impl_->cap = results[r].getLease();
      }
      out.push_back(std::move(lease));
    }
    return out;
  });
}

Status Client::Ping() {
  return Guard([&]() -> Status {
    impl_->Wait(impl_->boot.pingRequest().send());
    return Status::OK();
  });
}

// ---- ClientLease / ClientTxn ----------------------------------------------

ClientLease::ClientLease() = default;
ClientLease::ClientLease(ClientLease&&) noexcept = default;
ClientLease& ClientLease::operator=(ClientLease&& o) noexcept {
  if (this != &o) {
    Drop();
    impl_ = std::move(o.impl_);
    blocks_ = std::move(o.blocks_);
  }
  return *this;
}

ClientLease::~ClientLease() { Drop(); }

void ClientLease::Drop() {
  if (impl_ && impl_->client != nullptr) {
    // Dropping the capability releases the pins: the release message goes out
    // now, without waiting for an answer.
    impl_->cap = nullptr;
    try {
      impl_->client->Flush();
    } catch (const kj::Exception&) {
    }
  }
  impl_.reset();
  blocks_.clear();
}

Status ClientLease::Release() {
  if (!impl_ || impl_->client == nullptr) return Status::OK();
  std::shared_ptr<Client::Impl> c = std::move(impl_->client);
  impl_->client = nullptr;
  return Guard([&]() -> Status {
    c->Wait(impl_->cap.releaseRequest().send());
    // Dropping the capability sends its release message: let it go out now,
    // so the daemon frees the lease's object (and counts it closed) at once.
    impl_->cap = nullptr;
    c->Flush();
    return Status::OK();
  });
}

ClientTxn::ClientTxn() = default;
ClientTxn::ClientTxn(ClientTxn&&) noexcept = default;
ClientTxn& ClientTxn::operator=(ClientTxn&& o) noexcept {
  if (this != &o) {
    (void)Abort();
    impl_ = std::move(o.impl_);
    slots_ = std::move(o.slots_);
  }
  return *this;
}
ClientTxn::~ClientTxn() {
  if (impl_ && !impl_->done && impl_->client != nullptr) {
    impl_->cap = nullptr;  // the daemon aborts a dropped transaction
    try {
      impl_->client->Flush();
    } catch (const kj::Exception&) {
    }
  }
}

size_t ClientTxn::reserved() const {
  size_t n = 0;
  for (const auto& s : slots_) n += s.outcome == ReserveOutcome::kReserved;
  return n;
}

Status ClientTxn::Commit(std::span<const uint64_t> checksums) {
  if (!impl_ || impl_->done) return Status::InvalidArgument("transaction is already finished");
  if (checksums.size() != slots_.size())
    return Status::InvalidArgument(std::to_string(checksums.size()) + " checksums for " +
                                   std::to_string(slots_.size()) + " slots");
  return Guard([&]() -> Status {
    auto req = impl_->cap.commitRequest();
    auto list = req.initChecksums(static_cast<unsigned>(checksums.size()));
    for (size_t i = 0; i < checksums.size(); ++i) list.set(static_cast<unsigned>(i), checksums[i]);
    impl_->client->Wait(req.send());
    impl_->done = true;
    return Status::OK();
  });
}

Status ClientTxn::Commit() {
  std::vector<uint64_t> sums(slots_.size(), 0);
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].outcome == ReserveOutcome::kReserved) {
      if (slots_[i].data == nullptr)
        return Status::InvalidArgument("slot " + std::to_string(i) +
                                       " is not in host memory: pass the checksums");
      sums[i] = checksum::Sum64(slots_[i].data, slots_[i].size);
    }
  return Commit(sums);
}

Status ClientTxn::Abort() {
  if (!impl_ || impl_->done) return Status::OK();
  impl_->done = true;
  return Guard([&]() -> Status {
    impl_->client->Wait(impl_->cap.abortRequest().send());
    return Status::OK();
  });
}

// ---- ClientNamespace ---------------------------------------------------------

ClientNamespace::ClientNamespace(std::shared_ptr<Client::Impl> client, std::unique_ptr<Impl> impl,
                                 NamespaceSpec spec, uint32_t id)
    : client_(std::move(client)), impl_(std::move(impl)), spec_(std::move(spec)), hasher_(spec_), id_(id) {}

ClientNamespace::~ClientNamespace() {
  impl_.reset();  // drop the capability before (maybe) the connection
}

std::vector<BlockKey> ClientNamespace::HashTokens(std::span<const uint32_t> tokens) const {
  std::vector<BlockKey> keys;
  hasher_.Hash(tokens, &keys);
  return keys;
}

Result<std::vector<BlockKey>> ClientNamespace::HashTokensRemote(std::span<const uint32_t> tokens) {
  return Guard([&]() -> Result<std::vector<BlockKey>> {
    auto req = impl_->cap.hashTokensRequest();
    auto list = req.initTokens(static_cast<unsigned>(tokens.size()));
    for (size_t i = 0; i < tokens.size(); ++i) list.set(static_cast<unsigned>(i), tokens[i]);
    auto res = client_->Wait(req.send());
    return rpcconv::KeysFromRpc(res.getKeys());
  });
}

Result<std::vector<TierKind>> ClientNamespace::Probe(std::span<const BlockKey> keys) {
  return Guard([&]() -> Result<std::vector<TierKind>> {
    auto req = impl_->cap.probeRequest();
    auto list = req.initKeys(static_cast<unsigned>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) rpcconv::ToRpc(keys[i], list[static_cast<unsigned>(i)]);
    auto res = client_->Wait(req.send());
    std::vector<TierKind> out;
    out.reserve(res.getTiers().size());
    for (auto t : res.getTiers()) out.push_back(TierFromRpc(t));
    return out;
  });
}

// ---- PendingLookup -----------------------------------------------------------

struct PendingLookup::Impl {
  Impl(std::shared_ptr<Client::Impl> c, kj::Promise<capnp::Response<rpc::Namespace::AcquireResults>> p,
       std::vector<BlockKey> k)
      : client(std::move(c)), promise(std::move(p)), keys(std::move(k)) {}
  std::shared_ptr<Client::Impl> client;  // declared first: destroyed after the promise
  kj::Promise<capnp::Response<rpc::Namespace::AcquireResults>> promise;
  std::vector<BlockKey> keys;
};

PendingLookup::PendingLookup() = default;
PendingLookup::PendingLookup(PendingLookup&&) noexcept = default;
PendingLookup& PendingLookup::operator=(PendingLookup&& o) noexcept {
  if (this != &o) {
    PendingLookup mine(std::move(*this));  // cancelled when it goes out of scope
    impl_ = std::move(o.impl_);
  }
  return *this;
}

PendingLookup::~PendingLookup() {
  if (!impl_) return;
  // Cancelling the call (or dropping an answer's lease) sends a message:
  // let it go out now.
  std::shared_ptr<Client::Impl> client = impl_->client;
  try {
    impl_.reset();
    client->Flush();
  } catch (const kj::Exception&) {
  }
}

Result<ClientLease> PendingLookup::Wait() {
  if (!impl_) return Status::InvalidArgument("PendingLookup: nothing to wait for");
  std::unique_ptr<Impl> impl = std::move(impl_);
  return Guard([&]() -> Result<ClientLease> {
    auto res = impl->client->Wait(std::move(impl->promise));
    ClientLease lease;
    auto blocks = res.getBlocks();
    if (blocks.size() > impl->keys.size())
      return Status::Internal("the daemon answered " + std::to_string(blocks.size()) +
                              " blocks for " + std::to_string(impl->keys.size()) + " keys");
    lease.blocks_.reserve(blocks.size());
    for (unsigned i = 0; i < blocks.size(); ++i) {
      auto b = blocks[i];
      lease.blocks_.push_back(RemoteBlock{impl->keys[i], TierFromRpc(b.getTier()), b.getOffset(),
                                          b.getSize(), b.getChecksum(), b.getDevice()});
    }
    if (!lease.blocks_.empty()) {
      lease.impl_ = std::make_unique<ClientLease::Impl>();
      lease.impl_->client = impl->client;
      lease.impl_->cap = res.getLease();
    }
    return lease;
  });
}

Result<PendingLookup> ClientNamespace::StartLookup(std::span<const BlockKey> keys) {
  return Guard([&]() -> Result<PendingLookup> {
    auto req = impl_->cap.acquireRequest();
    req.setDevice(device_);
    auto list = req.initKeys(static_cast<unsigned>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) rpcconv::ToRpc(keys[i], list[static_cast<unsigned>(i)]);
    PendingLookup p;
    p.impl_ = std::make_unique<PendingLookup::Impl>(
        client_, req.send(), std::vector<BlockKey>(keys.begin(), keys.end()));
    // The request leaves now, not at this thread's next wait: a caller that
    // does other work before Wait() (or another thread's Python code) must
    // not keep the daemon from starting on it.
    client_->Flush();
    return p;
  });
}

Result<ClientLease> ClientNamespace::Lookup(std::span<const BlockKey> keys) {
  KVTIER_ASSIGN_OR_RETURN(PendingLookup p, StartLookup(keys));
  return p.Wait();
}

Status ClientNamespace::Load(const ClientLease& lease, std::span<uint8_t* const> dst) {
  if (dst.size() > lease.size())
    return Status::InvalidArgument(std::to_string(dst.size()) + " destinations for a lease of " +
                                   std::to_string(lease.size()) + " blocks");
  for (size_t i = 0; i < dst.size(); ++i) {
    const RemoteBlock& b = lease.blocks()[i];
    if (b.tier != TierKind::kHost)
      return Status::Unavailable("block " + std::to_string(i) + " is in the " +
                                 TierKindName(b.tier) + " tier; the CPU path loads host blocks");
    if (b.offset + b.size > client_->bytes)
      return Status::Corruption("block " + std::to_string(i) + " lies outside the host segment");
    std::memcpy(dst[i], client_->base + b.offset, b.size);
    if (checksum::Sum64(dst[i], b.size) != b.checksum)
      return Status::Corruption("block " + std::to_string(i) + " (" + b.key.ToHex() +
                                ") failed its checksum");
  }
  return Status::OK();
}

Result<ClientTxn> ClientNamespace::Reserve(std::span<const BlockKey> keys, const StoreOptions& o) {
  return Guard([&]() -> Result<ClientTxn> {
    auto req = impl_->cap.reserveRequest();
    auto klist = req.initKeys(static_cast<unsigned>(keys.size()));
    auto slist = req.initSizes(static_cast<unsigned>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) {
      rpcconv::ToRpc(keys[i], klist[static_cast<unsigned>(i)]);
      slist.set(static_cast<unsigned>(i), block_bytes());
    }
    req.setPriority(o.priority);
    req.setDurationMs(o.duration_ns / 1000000ull);
    auto rl = req.initRanges(static_cast<unsigned>(o.ranges.size()));
    for (size_t i = 0; i < o.ranges.size(); ++i) {
      auto r = rl[static_cast<unsigned>(i)];
      r.setBegin(o.ranges[i].begin);
      r.setEnd(o.ranges[i].end);
      r.setPriority(o.ranges[i].priority);
      r.setDurationMs(o.ranges[i].duration_ns / 1000000ull);
    }
    rpcconv::ToRpc(o.first_parent, req.initFirstParent());
    req.setDevice(device_);
    auto res = client_->Wait(req.send());
    ClientTxn txn;
    txn.impl_ = std::make_unique<ClientTxn::Impl>();
    txn.impl_->client = client_;
    auto slots = res.getSlots();
    for (unsigned i = 0; i < slots.size(); ++i) {
      auto s = slots[i];
      auto outcome = static_cast<ReserveOutcome>(s.getOutcome());
      uint8_t* data = nullptr;
      TierKind tier = TierFromRpc(s.getTier());
      if (outcome == ReserveOutcome::kReserved && tier == TierKind::kHost) {
        if (s.getOffset() + s.getSize() > client_->bytes)
          return Status::Internal("the daemon reserved a slot outside the host segment");
        data = client_->base + s.getOffset();
      }
      txn.slots_.push_back(
          ClientTxn::Slot{keys[i], outcome, tier, s.getOffset(), data, s.getSize(), s.getDevice()});
    }
    if (txn.reserved() > 0) {
      txn.impl_->cap = res.getTxn();
    } else {
      txn.impl_->done = true;
    }
    return txn;
  });
}

Result<StoreResult> ClientNamespace::Store(std::span<const BlockKey> keys,
                                           std::span<const uint8_t* const> payloads,
                                           const StoreOptions& o) {
  if (payloads.size() != keys.size())
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys but " +
                                   std::to_string(payloads.size()) + " payloads");
  auto txn = Reserve(keys, o);
  if (!txn.ok()) return txn.status();
  StoreResult r;
  std::vector<uint64_t> sums(keys.size(), 0);
  for (const auto& s : txn->slots())
    if (s.outcome == ReserveOutcome::kReserved && s.data == nullptr)
      return Status::Unavailable("the daemon stores into its " + std::string(TierKindName(s.tier)) +
                                 " tier; write those slots with the GPU path");  // txn aborts
  for (size_t i = 0; i < txn->slots().size(); ++i) {
    const auto& s = txn->slots()[i];
    switch (s.outcome) {
      case ReserveOutcome::kReserved:
        std::memcpy(s.data, payloads[i], s.size);
        sums[i] = checksum::Sum64(payloads[i], s.size);
        ++r.stored;
        break;
      case ReserveOutcome::kPresent: ++r.present; break;
      case ReserveOutcome::kInFlight: ++r.in_flight; break;
      case ReserveOutcome::kNoSpace: ++r.no_space; break;
    }
  }
  if (r.stored > 0) KVTIER_RETURN_IF_ERROR(txn->Commit(sums));
  return r;
}

Result<RemoteStats> ClientNamespace::Stats() {
  return Guard([&]() -> Result<RemoteStats> {
    auto res = client_->Wait(impl_->cap.statsRequest().send());
    return StatsFromRpc(res.getStats());
  });
}

}  // namespace kvtier
