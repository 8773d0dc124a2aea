// Logging setup of kvtierd: spdlog's default logger on stderr, as text or as
// JSON lines.
//
// Text lines:  [2024-05-01 12:00:00.123] [info] message
// JSON lines:  {"ts":"2024-05-01T12:00:00.123456Z","level":"info","tid":1234,"msg":"message"}
// In JSON the message is escaped as a JSON string (quotes, backslashes,
// control characters; invalid UTF-8 bytes become U+FFFD: tiers/json_string.h),
// so every line parses whatever was logged. Timestamps are UTC in JSON, local time in text.
//
// Thread safety: SetupLogging replaces spdlog's default logger; call it at
// startup before other threads log (spdlog's own rules). The sinks are the
// thread-safe (_mt) kind.
#pragma once

#include <string>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

// `level`: trace, debug, info, warn, error, off. InvalidArgument for any
// other level (the logger is then left as it was).
Status SetupLogging(const std::string& level, bool json);

}  // namespace kvtier
