// Fuzzes kvtier-bench's trace parsers (bench/trace_reader.h): Mooncake JSONL
// and agentic session JSON. Any input parses or answers InvalidArgument.
#include <cstdint>
#include <string_view>

#include "bench/trace_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier::bench;
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  TraceBuilder b;
  kvtier::Status st = (data[0] & 1) ? ParseMooncakeJsonl(text, &b)
                                    : ParseAgenticSession(text, 0.5, &b);
  if (st.ok()) {
    TraceReadOptions o;
    (void)b.Finish(o);
  }
  return 0;
}
