// CpuCopy: executes a PagedTransfer on the calling thread with memcpy.
//
// It is the reference the GPU kernels are tested against and the path for
// clients without a GPU. All addresses (pool layer bases, slots, checksum
// array) must be host pointers. It copies run by run (see copy_geometry.h) and
// computes the same checksum sums as the GPU kernels.
//
// Thread safety: stateless; concurrent calls on disjoint destinations are safe.
#pragma once

#include "loader/paged_transfer.h"
#include "tiers/status.h"

namespace kvtier {

// Runs the whole transfer before returning.
// Returns OK or InvalidArgument (from ValidateTransfer).
Status CpuCopy(const PagedTransfer& transfer);

}  // namespace kvtier
