// NvmeStore: see tiers/nvme_store.h and docs/nvme-format.md.
#include "tiers/nvme_store.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "tiers/checksum.h"
#include "tiers/sync_io_queue.h"

namespace kvtier {
namespace {

constexpr uint64_t kSeqBits = 40;
constexpr uint64_t kMaxSeq = 1ull << kSeqBits;
constexpr uint64_t kMinRegionBytes = 64 * 1024;
constexpr uint32_t kMaxOps = 16384;

std::vector<uint64_t> DefaultPayloadClasses(uint64_t region_bytes) {
  std::vector<uint64_t> classes;
  uint64_t top = region_bytes - kExtentHeaderBytes;  // one extent fills a region
  for (uint64_t p = kNvmeBlockBytes; p <= top;
       p = std::max(p + kNvmeBlockBytes, RoundUpToBlock(p + p / 4))) {
    classes.push_back(p);
  }
  for (uint64_t p = kNvmeBlockBytes; p <= top; p *= 2) classes.push_back(p);
  classes.push_back(top);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  return classes;
}

bool Aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kNvmeBlockBytes == 0;
}

std::string ErrnoName(int err) {
  switch (err) {
    case ENOSPC: return "ENOSPC";
    case EIO: return "EIO";
    case EROFS: return "EROFS";
    case EDQUOT: return "EDQUOT";
    case ENXIO: return "ENXIO";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    default: return "errno " + std::to_string(err);
  }
}

// Transient completions that say nothing about the device.
bool TransientErrno(int err) { return err == EAGAIN || err == EINTR || err == ECANCELED; }

void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace

Result<std::unique_ptr<NvmeStore>> NvmeStore::Open(const NvmeStoreOptions& options,
                                                   std::unique_ptr<IoQueue> queue) {
  std::unique_ptr<NvmeStore> store(new NvmeStore());
  KVTIER_RETURN_IF_ERROR(store->Init(options, std::move(queue)));
  return store;
}

Status NvmeStore::Init(const NvmeStoreOptions& o, std::unique_ptr<IoQueue> queue) {
  probe_ms_ = o.admission_probe_ms;
  if (o.max_ops == 0 || o.max_ops > kMaxOps) {
    return Status::InvalidArgument("nvme store: max_ops must be in 1..16384");
  }
  if (o.region_bytes < kMinRegionBytes || o.region_bytes % kNvmeBlockBytes != 0) {
    return Status::InvalidArgument("nvme store: region_bytes must be a multiple of 4 KiB, "
                                   "at least 64 KiB");
  }
  std::vector<uint64_t> payload_classes =
      o.payload_classes.empty() ? DefaultPayloadClasses(o.region_bytes) : o.payload_classes;
  std::vector<uint64_t> extent_classes;
  for (uint64_t p : payload_classes) {
    if (p == 0 || p % kNvmeBlockBytes != 0) {
      return Status::InvalidArgument("nvme store: payload classes must be non-zero multiples "
                                     "of 4 KiB");
    }
    extent_classes.push_back(p + kExtentHeaderBytes);
  }

  KVTIER_ASSIGN_OR_RETURN(
      file_, NvmeFile::Open(NvmeFileOptions{o.path, o.capacity_bytes, o.allow_buffered_fallback,
                                            o.direct_io}));
  uint64_t capacity = file_->capacity_bytes();
  if (capacity < kDataOffset + o.region_bytes) {
    return Status::InvalidArgument("nvme store: capacity " + std::to_string(capacity) +
                                   " holds no region after the 1 MiB superblock area");
  }
  KVTIER_ASSIGN_OR_RETURN(
      NvmeExtentAllocator alloc,
      NvmeExtentAllocator::Create(NvmeAllocatorOptions{kDataOffset, capacity - kDataOffset,
                                                       o.region_bytes, extent_classes}));
  allocator_.emplace(std::move(alloc));
  KVTIER_RETURN_IF_ERROR(OpenSuperblock());

  max_ops_ = o.max_ops;
  verify_payload_ = o.verify_payload_on_read;
  IoQueueOptions qopts;
  qopts.queue_depth = 2 * max_ops_;
  if (queue) {
    if (queue->depth() < 2 * max_ops_) {
      return Status::InvalidArgument("nvme store: queue depth " + std::to_string(queue->depth()) +
                                     " < 2 * max_ops");
    }
    if (queue->outstanding() != 0) {
      return Status::InvalidArgument("nvme store: queue has I/O outstanding");
    }
    queue_ = std::move(queue);
  } else if (o.use_io_uring) {
    KVTIER_ASSIGN_OR_RETURN(queue_, NewDefaultIoQueue(qopts));
  } else {
    KVTIER_ASSIGN_OR_RETURN(queue_, NewSyncIoQueue(qopts));
  }

  KVTIER_ASSIGN_OR_RETURN(header_pool_,
                          AlignedBuffer::Allocate(max_ops_ * kExtentHeaderBytes, kNvmeBlockBytes));
  ops_.resize(max_ops_);
  free_ops_.reserve(max_ops_);
  for (uint32_t i = max_ops_; i > 0; --i) free_ops_.push_back(i - 1);
  ready_.resize(max_ops_);
  io_scratch_.resize(queue_->depth());

  int fd = file_->fd();
  fixed_file_ = queue_->RegisterFiles(std::span<const int>(&fd, 1)).ok();
  KVTIER_RETURN_IF_ERROR(RegisterBuffers({}));
  PublishAllocation();
  return Status::OK();
}

Status NvmeStore::OpenSuperblock() {
  KVTIER_ASSIGN_OR_RETURN(AlignedBuffer buf, AlignedBuffer::Allocate(2 * kSuperblockBytes));
  KVTIER_RETURN_IF_ERROR(file_->ReadAt(0, buf.data(), 2 * kSuperblockBytes));
  uint64_t best = 0;
  for (int copy = 0; copy < 2; ++copy) {
    auto sb = DecodeSuperblock(buf.data() + copy * kSuperblockBytes);
    if (sb.ok()) {
      best = std::max(best, sb->epoch);
    } else if (sb.status().IsInvalidArgument()) {
      return sb.status();  // a newer format: do not overwrite it
    }
    // NotFound (never written) or Corruption (torn write): ignore the copy.
  }
  epoch_ = best + 1;
  next_seq_ = 1;
  Superblock sb{epoch_, allocator_->region_bytes(), file_->capacity_bytes()};
  EncodeSuperblock(sb, buf.data());
  // Copies alternate, so a torn write leaves the other one intact.
  KVTIER_RETURN_IF_ERROR(file_->WriteAt((epoch_ % 2) * kSuperblockBytes, buf.data(),
                                        kSuperblockBytes));
  return file_->Sync();
}

uint64_t NvmeStore::NextGeneration() {
  if (next_seq_ >= kMaxSeq) {
    // 2^40 writes in one epoch: open a new epoch (cold, practically never).
    if (OpenSuperblock().ok()) {
      next_seq_ = 1;
    }
  }
  return (epoch_ << kSeqBits) | next_seq_++;
}

NvmeStore::~NvmeStore() {
  // The queue's destructor waits for in-flight I/O into caller buffers and
  // the header pool; destroy it first.
  queue_.reset();
}

Status NvmeStore::RegisterBuffers(std::span<const iovec> regions) {
  if (ops_in_flight() != 0) return Status::InvalidArgument("RegisterBuffers: operations in flight");
  std::vector<iovec> all(regions.begin(), regions.end());
  all.push_back(iovec{header_pool_.data(), header_pool_.size()});
  Status s = queue_->RegisterBuffers(all);
  if (!s.ok() && !regions.empty()) {
    iovec pool{header_pool_.data(), header_pool_.size()};
    (void)queue_->RegisterBuffers(std::span<const iovec>(&pool, 1));
  }
  return s;
}

bool NvmeStore::InDataArea(uint64_t offset, uint64_t bytes) const {
  uint64_t end = kDataOffset + allocator_->capacity_bytes();
  return offset >= kDataOffset && offset % kNvmeBlockBytes == 0 && bytes <= end &&
         offset <= end - bytes;
}

bool NvmeStore::ValidExtent(const NvmeExtent& e) const {
  return e.payload_bytes != 0 && e.payload_bytes <= kMaxPayloadBytes &&
         InDataArea(e.offset, ExtentBytesNeeded(e.payload_bytes));
}

uint32_t NvmeStore::TakeOp(NvmeOpKind kind, bool recovery, uint64_t user_data,
                           uint8_t* payload_buf) {
  const uint32_t i = free_ops_.back();
  free_ops_.pop_back();
  Op& op = ops_[i];
  op.kind = kind;
  op.recovery = recovery;
  op.pending = 0;
  op.header_result = op.payload_result = 0;
  op.user_data = user_data;
  op.payload_buf = payload_buf;
  op.status = Status::OK();
  return i;
}

Status NvmeStore::PrepareIo(uint32_t op, uint32_t part, IoOpcode code, void* buf, uint64_t len,
                            uint64_t offset) {
  IoRequest r;
  r.op = code;
  r.registered_file = fixed_file_;
  r.fd = fixed_file_ ? 0 : file_->fd();
  r.buf = buf;
  r.len = static_cast<uint32_t>(len);
  r.offset = offset;
  r.user_data = (static_cast<uint64_t>(op) << 1) | part;
  return queue_->Prepare(r);
}

Status NvmeStore::PrepareWrite(const NvmeWriteRequest& w) {
  const bool probe = !admitting();
  if (probe && !AcceptsWrites()) {
    Bump(counters_.writes_refused);
    return admission_status();
  }
  if (w.payload_bytes == 0 || w.payload_bytes > kMaxPayloadBytes) {
    return Status::InvalidArgument("nvme write: payload size must be in 1..1 GiB");
  }
  if (w.buf == nullptr || !Aligned(w.buf)) {
    return Status::InvalidArgument("nvme write: buffer must be non-null and 4 KiB aligned");
  }
  if (free_ops_.empty() || queue_->depth() - queue_->outstanding() < 2) {
    return Status::Retry("nvme store: max_ops operations in flight");
  }
  auto offset = allocator_->Allocate(ExtentBytesNeeded(w.payload_bytes));
  if (!offset.ok()) {
    Bump(counters_.writes_refused);
    return offset.status();
  }
  const uint32_t i = TakeOp(NvmeOpKind::kWrite, /*recovery=*/false, w.user_data,
                            static_cast<uint8_t*>(const_cast<void*>(w.buf)));
  if (probe) {
    ops_[i].probe = true;
    probe_in_flight_ = true;
  }
  Op& op = ops_[i];
  op.extent.offset = *offset;
  op.extent.payload_bytes = w.payload_bytes;
  op.extent.checksum = w.checksum ? *w.checksum : checksum::Sum64(w.buf, w.payload_bytes);
  op.extent.generation = NextGeneration();
  op.extent.tag = w.tag;
  op.extent.ns = w.ns;
  EncodeExtentHeader(ExtentHeader{w.tag, w.ns, op.extent.generation, w.payload_bytes,
                                  op.extent.checksum, op.extent.offset},
                     HeaderBuf(i));

  Status s = PrepareIo(i, 0, IoOpcode::kWrite, HeaderBuf(i), kExtentHeaderBytes, *offset);
  if (!s.ok()) {
    (void)allocator_->Free(*offset, ExtentBytesNeeded(w.payload_bytes));
    ReleaseOp(i);
    return s;
  }
  op.pending = 1;
  s = PrepareIo(i, 1, IoOpcode::kWrite, op.payload_buf, RoundUpToBlock(w.payload_bytes),
                *offset + kExtentHeaderBytes);
  if (s.ok()) {
    op.pending = 2;
  } else {
    // The header write cannot be withdrawn: let the operation fail when it
    // completes (unreachable while the queue is ours alone: room was checked).
    op.payload_result = -ECANCELED;
  }
  Bump(counters_.writes_admitted);
  PublishAllocation();
  return Status::OK();
}

Status NvmeStore::PrepareRead(const NvmeExtent& extent, void* buf, uint64_t buf_bytes,
                              uint64_t user_data) {
  uint64_t padded = RoundUpToBlock(extent.payload_bytes);
  if (buf == nullptr || !Aligned(buf) || buf_bytes < padded) {
    return Status::InvalidArgument("nvme read: buffer must be non-null, 4 KiB aligned and hold "
                                   "the padded payload");
  }
  if (!ValidExtent(extent)) return Status::InvalidArgument("nvme read: extent outside the data area");
  if (free_ops_.empty() || queue_->depth() - queue_->outstanding() < 2) {
    return Status::Retry("nvme store: max_ops operations in flight");
  }
  const uint32_t i =
      TakeOp(NvmeOpKind::kRead, /*recovery=*/false, user_data, static_cast<uint8_t*>(buf));
  Op& op = ops_[i];
  op.extent = extent;
  Status s = PrepareIo(i, 0, IoOpcode::kRead, HeaderBuf(i), kExtentHeaderBytes, extent.offset);
  if (!s.ok()) {
    ReleaseOp(i);
    return s;
  }
  op.pending = 1;
  s = PrepareIo(i, 1, IoOpcode::kRead, buf, padded, extent.offset + kExtentHeaderBytes);
  if (s.ok()) {
    op.pending = 2;
  } else {
    op.payload_result = -ECANCELED;
  }
  return Status::OK();
}

Result<uint32_t> NvmeStore::Submit() { return queue_->Submit(); }

void NvmeStore::HandleIo(const IoCompletion& c) {
  auto i = static_cast<uint32_t>(c.user_data >> 1);
  Op& op = ops_[i];
  if (c.user_data & 1) {
    op.payload_result = c.result;
  } else {
    op.header_result = c.result;
  }
  if (--op.pending != 0) return;
  if (op.recovery) {
    FinishRecovery(i);
    return;
  }
  if (op.kind == NvmeOpKind::kWrite) {
    FinishWrite(i);
  } else {
    FinishRead(i);
  }
  ready_[(ready_head_ + ready_count_) % max_ops_] = i;
  ++ready_count_;
}

void NvmeStore::FinishWrite(uint32_t i) {
  Op& op = ops_[i];
  const uint64_t padded = RoundUpToBlock(op.extent.payload_bytes);
  const bool probe = op.probe;
  if (probe) {
    op.probe = false;
    probe_in_flight_ = false;
  }
  if (op.header_result == static_cast<int32_t>(kExtentHeaderBytes) &&
      op.payload_result == static_cast<int32_t>(padded)) {
    if (probe) ResumeAdmission();  // the device takes writes again
    Bump(counters_.writes_completed);
    Bump(counters_.bytes_written, op.extent.payload_bytes);
    op.status = Status::OK();
    return;
  }
  int err = op.header_result < 0 ? -op.header_result
            : op.payload_result < 0 ? -op.payload_result
                                    : 0;
  std::string what = err ? ErrnoName(err) : "short write";
  std::string msg = "nvme write of " + std::to_string(padded) + " bytes at offset " +
                    std::to_string(op.extent.offset) + " failed: " + what;
  if (err == 0 || !TransientErrno(err) || probe) StopAdmitting(msg);
  Bump(counters_.write_errors);
  // Never durable: the space goes back at once.
  (void)allocator_->Free(op.extent.offset, ExtentBytesNeeded(op.extent.payload_bytes));
  PublishAllocation();
  op.status = Status::IOError(msg);
}

void NvmeStore::FinishRead(uint32_t i) {
  Op& op = ops_[i];
  const uint64_t padded = RoundUpToBlock(op.extent.payload_bytes);
  if (op.header_result < 0 || op.payload_result < 0) {
    int err = op.header_result < 0 ? -op.header_result : -op.payload_result;
    Bump(counters_.read_errors);
    op.status = Status::IOError("nvme read at offset " + std::to_string(op.extent.offset) +
                                " failed: " + ErrnoName(err));
    return;
  }
  if (op.header_result != static_cast<int32_t>(kExtentHeaderBytes) ||
      op.payload_result != static_cast<int32_t>(padded)) {
    Bump(counters_.read_corruptions);
    op.status = Status::Corruption("nvme read at offset " + std::to_string(op.extent.offset) +
                                   ": short read");
    return;
  }
  Status h = VerifyExtentHeader(HeaderBuf(i), op.extent);
  if (!h.ok()) {
    Bump(counters_.read_corruptions);
    op.status = std::move(h);
    return;
  }
  if (verify_payload_ &&
      checksum::Sum64(op.payload_buf, op.extent.payload_bytes) != op.extent.checksum) {
    Bump(counters_.checksum_failures);
    op.status = Status::Corruption("nvme read at offset " + std::to_string(op.extent.offset) +
                                   ": payload checksum mismatch");
    return;
  }
  Bump(counters_.reads_completed);
  Bump(counters_.bytes_read, op.extent.payload_bytes);
  op.status = Status::OK();
}

void NvmeStore::FinishRecovery(uint32_t i) {
  Op& op = ops_[i];
  Status s;
  if (op.header_result < 0) {
    s = Status::IOError("nvme recovery: header read at offset " +
                        std::to_string(op.extent.offset) + " failed: " +
                        ErrnoName(-op.header_result));
  } else if (op.header_result != static_cast<int32_t>(kExtentHeaderBytes)) {
    s = Status::Corruption("nvme recovery: short header read");
  } else {
    s = VerifyExtentHeader(HeaderBuf(i), op.extent);
    if (s.ok()) {
      s = allocator_->MarkAllocated(op.extent.offset, ExtentBytesNeeded(op.extent.payload_bytes));
    }
  }
  Bump(s.ok() ? counters_.recovered : counters_.recovery_dropped);
  recovery_results_[op.user_data] = std::move(s);
  ++recovery_done_;
  ReleaseOp(i);
}

size_t NvmeStore::DeliverReady(std::span<NvmeCompletion> out) {
  size_t n = std::min<size_t>(out.size(), ready_count_);
  for (size_t k = 0; k < n; ++k) {
    uint32_t i = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) % max_ops_;
    Op& op = ops_[i];
    out[k].user_data = op.user_data;
    out[k].kind = op.kind;
    out[k].status = std::move(op.status);
    out[k].extent = op.extent;
    ReleaseOp(i);
  }
  ready_count_ -= static_cast<uint32_t>(n);
  return n;
}

size_t NvmeStore::Poll(std::span<NvmeCompletion> out) {
  if (ready_count_ < out.size()) {
    size_t n = queue_->Poll(io_scratch_);
    for (size_t k = 0; k < n; ++k) HandleIo(io_scratch_[k]);
  }
  return DeliverReady(out);
}

Result<size_t> NvmeStore::Wait(std::span<NvmeCompletion> out, size_t min_complete) {
  auto sub = queue_->Submit();
  if (!sub.ok()) return sub.status();
  size_t want = std::min(min_complete, out.size());
  size_t got = Poll(out);
  while (got < want) {
    // Operations still waiting for I/O (the rest are ready or delivered).
    size_t busy = ops_in_flight() - ready_count_;
    if (busy == 0) break;
    auto w = queue_->Wait(io_scratch_, 1);
    if (!w.ok()) return w.status();
    if (*w == 0 && queue_->outstanding() == 0) {
      return Status::Internal("nvme store: operations wait for I/O the queue does not hold");
    }
    for (size_t k = 0; k < *w; ++k) HandleIo(io_scratch_[k]);
    got += DeliverReady(out.subspan(got));
  }
  return got;
}

Status NvmeStore::Free(const NvmeExtent& extent) {
  KVTIER_RETURN_IF_ERROR(
      allocator_->Free(extent.offset, ExtentBytesNeeded(extent.payload_bytes)));
  Bump(counters_.frees);
  PublishAllocation();
  return Status::OK();
}

Status NvmeStore::RecoverExtents(std::span<const NvmeExtent> records, std::span<Status> results) {
  if (results.size() != records.size()) {
    return Status::InvalidArgument("RecoverExtents: results and records differ in size");
  }
  if (ops_in_flight() != 0) {
    return Status::InvalidArgument("RecoverExtents: operations in flight");
  }
  recovery_results_ = results;
  recovery_done_ = 0;
  size_t next = 0;
  Status failure;
  while (recovery_done_ < records.size()) {
    while (next < records.size() && !free_ops_.empty() && queue_->outstanding() < queue_->depth()) {
      const NvmeExtent& rec = records[next];
      if (!ValidExtent(rec)) {
        results[next] = Status::InvalidArgument("nvme recovery: extent outside the data area");
        Bump(counters_.recovery_dropped);
        ++recovery_done_;
        ++next;
        continue;
      }
      const uint32_t i = TakeOp(NvmeOpKind::kRead, /*recovery=*/true, next, nullptr);
      Op& op = ops_[i];
      op.extent = rec;
      op.pending = 1;
      Status s = PrepareIo(i, 0, IoOpcode::kRead, HeaderBuf(i), kExtentHeaderBytes, rec.offset);
      if (!s.ok()) {
        ReleaseOp(i);
        results[next] = std::move(s);
        Bump(counters_.recovery_dropped);
        ++recovery_done_;
      }
      ++next;
    }
    if (recovery_done_ == records.size()) break;
    auto w = queue_->Wait(io_scratch_, 1);
    if (!w.ok()) {
      failure = w.status();
      break;
    }
    if (*w == 0 && queue_->outstanding() == 0) {
      failure = Status::Internal("nvme recovery: operations wait for I/O the queue does not hold");
      break;
    }
    for (size_t k = 0; k < *w; ++k) HandleIo(io_scratch_[k]);
  }
  if (!failure.ok()) {
    // Mark what never ran; drain what is in flight so the ops come back.
    for (size_t k = next; k < records.size(); ++k) results[k] = failure;
    while (ops_in_flight() > 0 && queue_->outstanding() > 0) {
      auto w = queue_->Wait(io_scratch_, 1);
      if (!w.ok()) break;
      for (size_t k = 0; k < *w; ++k) HandleIo(io_scratch_[k]);
    }
  }
  recovery_results_ = {};
  PublishAllocation();
  return failure;
}

Status NvmeStore::ScanHeaders(uint64_t* cursor, uint64_t max_bytes,
                               std::vector<NvmeExtent>* found) {
  constexpr uint64_t kChunk = 1ull << 20;
  const uint64_t end_all = data_end();
  uint64_t pos = std::max(*cursor, data_begin());
  const uint64_t stop = std::min(end_all, pos + std::max(max_bytes, kNvmeBlockBytes));
  auto buf = AlignedBuffer::Allocate(kChunk);
  if (!buf.ok()) return buf.status();
  while (pos < stop) {
    const uint64_t n = std::min(kChunk, end_all - pos);
    Status r = file_->ReadAt(pos, buf->data(), n);
    if (!r.ok()) {
      *cursor = pos + n;
      return r;
    }
    uint64_t next = pos + n;  // where the following chunk starts
    for (uint64_t off = 0; off < n;) {
      auto h = DecodeExtentHeader(buf->data() + off);
      const uint64_t at = pos + off;
      if (h.ok() && h->extent_offset == at) {
        NvmeExtent e{at, h->payload_bytes, h->checksum, h->generation, h->tag, h->ns};
        if (ValidExtent(e)) {
          found->push_back(e);
          const uint64_t after = at + ExtentBytesNeeded(e.payload_bytes);
          if (after >= pos + n) {
            next = after;  // the payload runs past this chunk: skip it unread
            break;
          }
          off = after - pos;
          continue;
        }
      }
      off += kNvmeBlockBytes;
    }
    pos = next;
  }
  *cursor = std::min(pos, end_all);
  return Status::OK();
}

Status NvmeStore::Sync() { return file_->Sync(); }

namespace {
int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void NvmeStore::StopAdmitting(const std::string& reason) {
  std::lock_guard<std::mutex> lock(reason_mu_);
  if (admitting_.load(std::memory_order_relaxed)) stop_reason_ = reason;
  stopped_at_ms_ = SteadyMs();  // also after a failed probe: wait again
  admitting_.store(false, std::memory_order_release);
}

bool NvmeStore::AcceptsWrites() const {
  if (admitting()) return true;
  return probe_ms_ > 0 && !probe_in_flight_ && SteadyMs() - stopped_at_ms_ >= probe_ms_;
}

Status NvmeStore::admission_status() const {
  if (admitting()) return Status::OK();
  std::lock_guard<std::mutex> lock(reason_mu_);
  return Status::Rejected("nvme store stopped admitting writes: " + stop_reason_);
}

void NvmeStore::ResumeAdmission() {
  std::lock_guard<std::mutex> lock(reason_mu_);
  stop_reason_.clear();
  admitting_.store(true, std::memory_order_release);
}

void NvmeStore::PublishAllocation() {
  counters_.extents.store(allocator_->allocated_extents(), std::memory_order_relaxed);
  counters_.used_bytes.store(allocator_->used_bytes(), std::memory_order_relaxed);
}

NvmeStoreStats NvmeStore::stats() const {
  auto g = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  NvmeStoreStats s;
  s.writes_admitted = g(counters_.writes_admitted);
  s.writes_refused = g(counters_.writes_refused);
  s.writes_completed = g(counters_.writes_completed);
  s.write_errors = g(counters_.write_errors);
  s.reads_completed = g(counters_.reads_completed);
  s.read_errors = g(counters_.read_errors);
  s.read_corruptions = g(counters_.read_corruptions);
  s.checksum_failures = g(counters_.checksum_failures);
  s.bytes_written = g(counters_.bytes_written);
  s.bytes_read = g(counters_.bytes_read);
  s.frees = g(counters_.frees);
  s.recovered = g(counters_.recovered);
  s.recovery_dropped = g(counters_.recovery_dropped);
  s.extents = g(counters_.extents);
  s.used_bytes = g(counters_.used_bytes);
  s.capacity_bytes = allocator_->capacity_bytes();  // immutable after Open
  return s;
}

}  // namespace kvtier
