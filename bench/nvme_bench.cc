// kvtier-nvme-bench: NvmeStore bandwidth against plain io_uring O_DIRECT I/O
// on the same file, extent sizes and queue depths, in the same run (and fio,
// when it is on PATH and --fio is given).
//
//   kvtier-nvme-bench --path FILE [--size 4G] [--seconds 2]
//                     [--qd 8,32,128] [--extent 256K,1M,4M] [--no-verify] [--fio]
//
// Flags follow server/cli.h; every value is range-checked before the file is
// touched.
//
// For each extent size E and queue depth Q (Q extents in flight):
//   plain write  raw liburing WRITE_FIXED of E bytes, sequential over the file
//   plain read   raw liburing READ_FIXED of E bytes at random E-aligned offsets
//                of the range the plain write covered (prefilled if needed, so
//                no read hits an unwritten extent that the kernel would answer
//                with zeros)
//   store write  NvmeStore::PrepareWrite of an E-byte payload (header + payload,
//                checksum passed in as the cache will, from the host tier); when
//                the store is full the oldest extent is freed (FIFO)
//   store read   NvmeStore::PrepareRead of random live extents, header and
//                payload checksum verified (unless --no-verify)
// Bandwidth counts payload bytes (E per operation) over the phase's wall time,
// draining included. Buffers are 4 KiB aligned and registered (fixed) for both.
// Owns nothing beyond its run; single-threaded.
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "server/cli.h"
#include "tiers/aligned_buffer.h"
#include "tiers/checksum.h"
#include "tiers/nvme_store.h"

namespace kvtier {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string path;
  uint64_t size = 4ull << 30;
  double seconds = 2.0;
  std::vector<uint64_t> qds = {8, 32, 128};
  std::vector<uint64_t> extents = {256 << 10, 1 << 20, 4 << 20};
  bool verify = true;
  bool fio = false;
};

// "4G", "256K", "1M", "4096": bytes (K/M/G/T are powers of two). nullopt on
// anything else, so a typo is refused before the run instead of becoming 0.
std::optional<uint64_t> ParseSize(const std::string& s) {
  if (s.empty() || s[0] < '0' || s[0] > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0) return std::nullopt;
  std::string unit(end);
  uint64_t mult = 1;
  if (!unit.empty()) {
    switch (unit[0]) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      case 't': case 'T': mult = 1ull << 40; break;
      default: return std::nullopt;
    }
    const std::string rest = unit.substr(1);
    if (!rest.empty() && rest != "B" && rest != "iB" && rest != "b" && rest != "ib") return std::nullopt;
  }
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

std::vector<uint64_t> ParseList(const std::string& s) {
  std::vector<uint64_t> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (auto v = ParseSize(item)) out.push_back(*v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// A CLI11 check of one size within [lo, hi], a multiple of `multiple`.
std::string CheckSize(const std::string& item, uint64_t lo, uint64_t hi, uint64_t multiple) {
  auto v = ParseSize(item);
  if (!v) return "'" + item + "' is not a size (e.g. 4096, 256K, 4G)";
  if (*v < lo || *v > hi)
    return "'" + item + "' is out of range " + std::to_string(lo) + ".." + std::to_string(hi) + " bytes";
  if (*v % multiple != 0) return "'" + item + "' is not a multiple of " + std::to_string(multiple) + " bytes";
  return "";
}

std::string SizeName(uint64_t b) {
  char buf[32];
  if (b >= (1 << 20) && b % (1 << 20) == 0) {
    std::snprintf(buf, sizeof(buf), "%lluM", static_cast<unsigned long long>(b >> 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%lluK", static_cast<unsigned long long>(b >> 10));
  }
  return buf;
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "kvtier-nvme-bench: %s\n", msg.c_str());
  std::exit(1);
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- plain io_uring ---------------------------------------------------------

// Keeps `qd` operations of `e` bytes in flight for `seconds`; `next_offset`
// gives each operation's file offset. Returns GB/s. Buffers: `qd` slices of
// `mem`, registered as fixed buffer 0.
double RunPlain(int fd, bool write, uint64_t e, uint32_t qd, double seconds, uint8_t* mem,
                const std::function<uint64_t()>& next_offset, uint64_t max_ops = UINT64_MAX) {
  io_uring ring;
  if (int r = io_uring_queue_init(qd, &ring, 0); r < 0) Die("io_uring_queue_init failed");
  iovec iov{mem, qd * e};
  bool fixed = io_uring_register_buffers(&ring, &iov, 1) == 0;
  auto prep = [&](uint32_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    uint8_t* buf = mem + slot * e;
    uint64_t off = next_offset();
    if (write) {
      fixed ? io_uring_prep_write_fixed(sqe, fd, buf, e, off, 0)
            : io_uring_prep_write(sqe, fd, buf, e, off);
    } else {
      fixed ? io_uring_prep_read_fixed(sqe, fd, buf, e, off, 0)
            : io_uring_prep_read(sqe, fd, buf, e, off);
    }
    io_uring_sqe_set_data64(sqe, slot);
  };
  auto start = Clock::now();
  uint64_t issued = 0, done = 0;
  uint32_t in_flight = 0;
  for (uint32_t i = 0; i < qd && issued < max_ops; ++i, ++issued, ++in_flight) prep(i);
  io_uring_submit(&ring);
  bool stop = false;
  std::vector<io_uring_cqe*> cqes(qd);
  while (in_flight > 0) {
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(&ring, &cqe);
    if (r == -EINTR) continue;
    if (r < 0) Die("io_uring_wait_cqe failed");
    unsigned n = io_uring_peek_batch_cqe(&ring, cqes.data(), qd);
    if (!stop && Seconds(start, Clock::now()) >= seconds) stop = true;
    for (unsigned i = 0; i < n; ++i) {
      if (cqes[i]->res != static_cast<int>(e)) {
        Die(std::string("plain ") + (write ? "write" : "read") + " failed: " +
            std::to_string(cqes[i]->res));
      }
      auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqes[i]));
      ++done;
      --in_flight;
      if (!stop && issued < max_ops) {
        prep(slot);
        ++issued;
        ++in_flight;
      }
    }
    io_uring_cq_advance(&ring, n);
    io_uring_submit(&ring);
  }
  double secs = Seconds(start, Clock::now());
  io_uring_queue_exit(&ring);
  return static_cast<double>(done * e) / secs / 1e9;
}

// ---- NvmeStore ----------------------------------------------------------------

struct StoreResult {
  double write_gbs = 0;
  double read_gbs = 0;
  bool fixed = false;
  bool direct = false;
  std::string queue;
};

// The store's region for extents of `e` bytes: 64 MiB, or more to hold 8.
uint64_t StoreRegionBytes(uint64_t e) {
  uint64_t region = 64ull << 20;
  while (region < 8 * (e + kExtentHeaderBytes)) region *= 2;
  return region;
}

StoreResult RunStore(const Flags& f, uint64_t e, uint32_t qd, uint8_t* mem,
                     const std::vector<uint64_t>& sums) {
  NvmeStoreOptions o;
  o.path = f.path;
  o.capacity_bytes = f.size;
  o.region_bytes = StoreRegionBytes(e);
  o.max_ops = qd;
  o.verify_payload_on_read = f.verify;
  auto opened = NvmeStore::Open(o);
  if (!opened.ok()) Die("NvmeStore::Open: " + opened.status().ToString());
  NvmeStore& s = **opened;
  StoreResult res;
  iovec iov{mem, qd * e};
  res.fixed = s.RegisterBuffers(std::span<const iovec>(&iov, 1)).ok();
  res.direct = s.direct_io();
  res.queue = std::string(s.queue_name());

  std::deque<NvmeExtent> live;
  std::vector<NvmeCompletion> done(qd);
  std::mt19937_64 rng(e * 131 + qd);

  // Write phase.
  auto prepare_write = [&](uint32_t slot) -> bool {
    for (;;) {
      NvmeWriteRequest w;
      uint64_t seq = rng();
      std::memcpy(w.tag.data(), &seq, 8);
      w.buf = mem + slot * e;
      w.payload_bytes = e;
      w.checksum = sums[slot];
      w.user_data = slot;
      Status p = s.PrepareWrite(w);
      if (p.ok()) return true;
      if (p.IsResourceExhausted() && !live.empty()) {
        (void)s.Free(live.front());
        live.pop_front();
        continue;
      }
      if (p.IsResourceExhausted()) return false;  // all space in flight: wait
      Die("PrepareWrite: " + p.ToString());
    }
  };
  auto start = Clock::now();
  uint64_t completed = 0;
  std::vector<uint32_t> idle;
  for (uint32_t i = 0; i < qd; ++i) {
    if (!prepare_write(i)) idle.push_back(i);
  }
  bool stop = false;
  while (s.ops_in_flight() > 0) {
    auto n = s.Wait(done, 1);
    if (!n.ok()) Die("Wait: " + n.status().ToString());
    if (!stop && Seconds(start, Clock::now()) >= f.seconds) stop = true;
    for (size_t i = 0; i < *n; ++i) {
      if (!done[i].status.ok()) Die("store write: " + done[i].status.ToString());
      live.push_back(done[i].extent);
      ++completed;
      if (!stop && !prepare_write(static_cast<uint32_t>(done[i].user_data))) {
        idle.push_back(static_cast<uint32_t>(done[i].user_data));
      }
    }
    while (!stop && !idle.empty() && prepare_write(idle.back())) idle.pop_back();
  }
  res.write_gbs = static_cast<double>(completed * e) / Seconds(start, Clock::now()) / 1e9;

  // Read phase: random live extents.
  if (live.empty()) Die("store wrote nothing");
  std::vector<NvmeExtent> set(live.begin(), live.end());
  auto prepare_read = [&](uint32_t slot) {
    const NvmeExtent& x = set[rng() % set.size()];
    Status p = s.PrepareRead(x, mem + slot * e, e, slot);
    if (!p.ok()) Die("PrepareRead: " + p.ToString());
  };
  start = Clock::now();
  completed = 0;
  for (uint32_t i = 0; i < qd; ++i) prepare_read(i);
  stop = false;
  while (s.ops_in_flight() > 0) {
    auto n = s.Wait(done, 1);
    if (!n.ok()) Die("Wait: " + n.status().ToString());
    if (!stop && Seconds(start, Clock::now()) >= f.seconds) stop = true;
    for (size_t i = 0; i < *n; ++i) {
      if (!done[i].status.ok()) Die("store read: " + done[i].status.ToString());
      ++completed;
      if (!stop) prepare_read(static_cast<uint32_t>(done[i].user_data));
    }
  }
  res.read_gbs = static_cast<double>(completed * e) / Seconds(start, Clock::now()) / 1e9;
  return res;
}

// ---- fio (optional) -------------------------------------------------------------

// Bandwidth in GB/s from fio's JSON for `rw` ("write" or "randread"), or -1.
double RunFio(const Flags& f, const char* rw, uint64_t e, uint64_t qd, uint64_t span) {
  std::string cmd = "fio --name=kvtier --filename=" + f.path +
                    " --direct=1 --ioengine=io_uring --fixedbufs --rw=" + rw +
                    " --bs=" + std::to_string(e) + " --iodepth=" + std::to_string(qd) +
                    " --offset=" + std::to_string(kDataOffset) + " --size=" + std::to_string(span) +
                    " --runtime=" + std::to_string(f.seconds) +
                    " --time_based --output-format=json 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return -1;
  const char* section = std::strcmp(rw, "write") == 0 ? "\"write\" : {" : "\"read\" : {";
  size_t at = out.find(section);
  if (at == std::string::npos) return -1;
  at = out.find("\"bw_bytes\"", at);
  if (at == std::string::npos) return -1;
  at = out.find(':', at);
  return std::strtod(out.c_str() + at + 1, nullptr) / 1e9;
}

bool FioOnPath() { return std::system("command -v fio >/dev/null 2>&1") == 0; }

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app(
      "Compares NvmeStore write/read bandwidth with plain io_uring O_DIRECT I/O of the same "
      "file, sizes and queue depths (and fio with --fio, if on PATH). The file is created or "
      "overwritten; its contents are destroyed.",
      "kvtier-nvme-bench");
  std::string size = "4G", qds = "8,32,128", extents = "256K,1M,4M";
  bool no_verify = false;
  app.add_option("--path", f.path, "file or block device to test (required)")->required();
  app.add_option("--size", size, "bytes of the file to use, 16M..64T")
      ->capture_default_str()
      ->check(cli::EachItem([](const std::string& v) { return CheckSize(v, 16ull << 20, 64ull << 40, 4096); },
                            "SIZE"));
  app.add_option("--seconds", f.seconds, "seconds per phase, 0.1..3600")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--qd", qds, "queue depths (extents in flight), each 1..1024")
      ->capture_default_str()
      ->check(cli::EachItem([](const std::string& v) { return CheckSize(v, 1, 1024, 1); }, "LIST"));
  app.add_option("--extent", extents, "extent sizes, each 4K..256M and a multiple of 4K")
      ->capture_default_str()
      ->check(cli::EachItem([](const std::string& v) { return CheckSize(v, 4096, 256ull << 20, 4096); },
                            "LIST"));
  app.add_flag("--no-verify", no_verify, "skip payload verification on store reads");
  app.add_flag("--fio", f.fio, "also run fio on the same file (when fio is on PATH)");
  if (int rc = cli::Parse(app, argc, argv); rc >= 0) return rc;
  f.size = *ParseSize(size);
  f.qds = ParseList(qds);
  f.extents = ParseList(extents);
  f.verify = !no_verify;
  // The file must hold the store's superblock area and one region, and the
  // plain phases' qd extents in flight.
  for (uint64_t e : f.extents) {
    if (f.size < kDataOffset + StoreRegionBytes(e)) {
      std::fprintf(stderr, "kvtier-nvme-bench: --size %s is too small for --extent %s: the store needs "
                   "%s (1 MiB superblock area and one %s region) (see kvtier-nvme-bench --help)\n",
                   size.c_str(), SizeName(e).c_str(), SizeName(kDataOffset + StoreRegionBytes(e)).c_str(),
                   SizeName(StoreRegionBytes(e)).c_str());
      return cli::kUsageError;
    }
    for (uint64_t q : f.qds)
      if (f.size < kDataOffset + q * e) {
        std::fprintf(stderr, "kvtier-nvme-bench: --size %s is too small for --qd %llu x --extent %s "
                     "(see kvtier-nvme-bench --help)\n", size.c_str(), static_cast<unsigned long long>(q),
                     SizeName(e).c_str());
        return cli::kUsageError;
      }
  }
  bool fio = f.fio && FioOnPath();
  if (f.fio && !fio) std::printf("note: --fio given but fio is not on PATH; skipped\n");

  // Create and preallocate the file once (the store does the same).
  {
    NvmeStoreOptions o;
    o.path = f.path;
    o.capacity_bytes = f.size;
    o.region_bytes = 1 << 20;
    auto s = NvmeStore::Open(o);
    if (!s.ok()) Die("NvmeStore::Open: " + s.status().ToString());
    std::printf("file %s: %.2f GiB, O_DIRECT %s%s%s, queue %s\n", f.path.c_str(),
                static_cast<double>(f.size) / (1ull << 30), (*s)->direct_io() ? "on" : "OFF",
                (*s)->io_fallback_reason().empty() ? "" : " - ",
                (*s)->io_fallback_reason().c_str(), std::string((*s)->queue_name()).c_str());
  }
  int fd = ::open(f.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) fd = ::open(f.path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) Die("open " + f.path);

  std::printf("payload verification on store reads: %s; %.1f s per phase\n\n",
              f.verify ? "on" : "off", f.seconds);
  std::printf("%-7s %4s | %11s %11s %6s | %11s %11s %6s%s\n", "extent", "qd", "plain-wr", "store-wr",
              "ratio", "plain-rd", "store-rd", "ratio", fio ? " | fio-wr  fio-rd" : "");
  std::printf("%-7s %4s | %11s %11s %6s | %11s %11s %6s%s\n", "", "", "GB/s", "GB/s", "", "GB/s",
              "GB/s", "", fio ? " | GB/s    GB/s" : "");
  for (uint64_t e : f.extents) {
    for (uint64_t q64 : f.qds) {
      auto qd = static_cast<uint32_t>(q64);
      auto mem_or = AlignedBuffer::Allocate(qd * e);
      if (!mem_or.ok()) Die("out of memory for " + std::to_string(qd) + " x " + SizeName(e));
      AlignedBuffer mem = std::move(mem_or).value();
      std::mt19937_64 fill(e ^ qd);
      for (size_t i = 0; i + 8 <= mem.size(); i += 8) {
        uint64_t v = fill();
        std::memcpy(mem.data() + i, &v, 8);
      }

      // Plain: the data area after the store's 1 MiB superblock area.
      uint64_t slots = (f.size - kDataOffset) / e;
      if (slots < qd) Die("--size too small for " + std::to_string(qd) + " x " + SizeName(e));
      uint64_t cursor = 0, written = 0;
      double pw = RunPlain(fd, true, e, qd, f.seconds, mem.data(), [&] {
        uint64_t off = kDataOffset + (cursor % slots) * e;
        ++cursor;
        written = std::max(written, std::min(cursor, slots));
        return off;
      });
      if (written < slots / 2 && written < 1024) {
        // Too little written to read from: fill more so reads hit real data.
        uint64_t want = std::min<uint64_t>(slots, 1024);
        RunPlain(fd, true, e, qd, 1e9, mem.data(), [&] {
          uint64_t off = kDataOffset + (cursor % slots) * e;
          ++cursor;
          return off;
        }, want - written);
        written = want;
      }
      std::mt19937_64 rng(e + qd);
      double pr = RunPlain(fd, false, e, qd, f.seconds, mem.data(),
                           [&] { return kDataOffset + (rng() % written) * e; });
      // The plain reads overwrote the buffers: checksum what the store will
      // write now (the cache passes the host tier's checksum the same way).
      std::vector<uint64_t> sums(qd);
      for (uint32_t i = 0; i < qd; ++i) sums[i] = checksum::Sum64(mem.data() + i * e, e);
      StoreResult st = RunStore(f, e, qd, mem.data(), sums);
      std::printf("%-7s %4u | %11.3f %11.3f %6.2f | %11.3f %11.3f %6.2f", SizeName(e).c_str(), qd,
                  pw, st.write_gbs, st.write_gbs / pw, pr, st.read_gbs, st.read_gbs / pr);
      if (fio) {
        double fw = RunFio(f, "write", e, qd, slots * e);
        double fr = RunFio(f, "randread", e, qd, slots * e);
        std::printf(" | %6.3f  %6.3f", fw, fr);
      }
      std::printf("%s\n", st.fixed ? "" : "  (store: buffers not registered)");
      std::fflush(stdout);
    }
  }
  ::close(fd);
  return 0;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) { return kvtier::Main(argc, argv); }
