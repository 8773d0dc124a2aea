// `kvtier-bench sim`: offline replay of a trace through the real cache,
// eviction and admission code, over capacities and policies, with Belady's
// MIN as the reference. Flags: `kvtier-bench sim --help`; semantics:
// docs/eviction.md.
//
// Thread safety: RunSim runs its replays on worker threads it owns; call it
// from one thread.
#pragma once

namespace kvtier::bench {

// argv[0] is the program, argv[1] "sim". Returns the process exit code
// (0 ok, 1 failure, 2 bad flags).
int RunSim(int argc, char** argv);

// Several models (`--model NAME=TRACE:BLOCK`, two or more): bench/sim_multi.h.
// RunSim hands such command lines to RunMultiSim.
bool IsMultiModelSim(int argc, char** argv);
int RunMultiSim(int argc, char** argv);

}  // namespace kvtier::bench
