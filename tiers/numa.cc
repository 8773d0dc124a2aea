#include "tiers/numa.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kvtier {

namespace {
constexpr int kMpolDefault = 0;
constexpr int kMpolBind = 2;
constexpr int kMpolInterleave = 3;
constexpr unsigned kMpolMfMove = 1u << 1;
constexpr unsigned long kMpolFAddr = 1u << 1;
constexpr int kMaxNodes = 1024;
using Mask = unsigned long[kMaxNodes / (8 * sizeof(unsigned long))];
}  // namespace

Result<std::vector<int>> ParseNodeList(std::string_view text) {
  std::vector<int> out;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty()) return Status::InvalidArgument("empty NUMA node list");
  size_t pos = 0;
  auto number = [&](int* v) -> bool {
    size_t start = pos;
    *v = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      *v = *v * 10 + (text[pos] - '0');
      if (*v >= kMaxNodes) return false;
      ++pos;
    }
    return pos > start;
  };
  while (pos < text.size()) {
    int a, b;
    if (!number(&a)) return Status::InvalidArgument("bad NUMA node list '" + std::string(text) + "'");
    b = a;
    if (pos < text.size() && text[pos] == '-') {
      ++pos;
      if (!number(&b) || b < a)
        return Status::InvalidArgument("bad NUMA node range in '" + std::string(text) + "'");
    }
    for (int n = a; n <= b; ++n) out.push_back(n);
    if (pos < text.size()) {
      if (text[pos] != ',') return Status::InvalidArgument("bad NUMA node list '" + std::string(text) + "'");
      ++pos;
    }
  }
  return out;
}

std::vector<int> OnlineNumaNodes() {
  std::ifstream in("/sys/devices/system/node/online");
  std::stringstream ss;
  ss << in.rdbuf();
  auto nodes = ParseNodeList(ss.str());
  return nodes.ok() ? *nodes : std::vector<int>{0};
}

int NumaNodeOfPciDevice(const std::string& bus_id) {
  std::string id = bus_id;
  for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::ifstream in("/sys/bus/pci/devices/" + id + "/numa_node");
  int node = -1;
  if (!(in >> node)) return -1;
  return node;
}

Status BindMemoryToNodes(void* addr, size_t bytes, const std::vector<int>& nodes) {
  if (nodes.empty()) return Status::InvalidArgument("no NUMA nodes to bind to");
  Mask mask = {};
  for (int n : nodes) {
    if (n < 0 || n >= kMaxNodes) return Status::InvalidArgument("NUMA node " + std::to_string(n) + " is out of range");
    mask[n / (8 * sizeof(unsigned long))] |= 1ul << (n % (8 * sizeof(unsigned long)));
  }
  int mode = nodes.size() == 1 ? kMpolBind : kMpolInterleave;
  if (syscall(SYS_mbind, addr, bytes, mode, mask, kMaxNodes + 1, kMpolMfMove) != 0)
    return Status::IOError(std::string("mbind: ") + std::strerror(errno));
  return Status::OK();
}

Result<std::vector<int>> MemoryPolicyNodes(void* addr) {
  int mode = 0;
  Mask mask = {};
  if (syscall(SYS_get_mempolicy, &mode, mask, kMaxNodes + 1, addr, kMpolFAddr) != 0)
    return Status::IOError(std::string("get_mempolicy: ") + std::strerror(errno));
  std::vector<int> out;
  if (mode == kMpolDefault) return out;
  for (int n = 0; n < kMaxNodes; ++n)
    if (mask[n / (8 * sizeof(unsigned long))] & (1ul << (n % (8 * sizeof(unsigned long))))) out.push_back(n);
  return out;
}

}  // namespace kvtier
