// NUMA placement of host memory (no libnuma: the kernel's mbind directly).
//
// On a multi-socket GPU host, the host tier should sit on the NUMA node(s)
// of the GPUs it serves, so that host ⇄ GPU copies do not cross the socket
// interconnect. These helpers read the topology from sysfs and apply a
// memory policy to a mapping before its pages are first touched.
// Thread safety: pure functions (sysfs reads, one syscall).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

// "0-1,3" → {0, 1, 3}. InvalidArgument on malformed lists.
Result<std::vector<int>> ParseNodeList(std::string_view text);

// Nodes online on this machine (/sys/devices/system/node/online); {0} when
// the file is missing (no NUMA support).
std::vector<int> OnlineNumaNodes();

// The NUMA node of a PCI device ("0000:18:00.0"), or -1 when unknown.
int NumaNodeOfPciDevice(const std::string& bus_id);

// Applies a memory policy to [addr, addr + bytes): bind to one node, or
// interleave across several. REQUIRES: addr page aligned; pages not yet
// touched (touched pages are moved when possible). Errors: InvalidArgument
// (no nodes, node out of range), IOError (mbind failed, with errno).
Status BindMemoryToNodes(void* addr, size_t bytes, const std::vector<int>& nodes);

// The nodes of the policy applied to the page at `addr` (empty: the default
// policy). Used by tests.
Result<std::vector<int>> MemoryPolicyNodes(void* addr);

}  // namespace kvtier
