#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "tiers/json_string.h"

namespace kvtier {
namespace {

// %* : the message payload, escaped for a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string escaped;
    AppendJsonEscaped(std::string_view(msg.payload.data(), msg.payload.size()), &escaped);
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

bool ParseLevel(const std::string& name, spdlog::level::level_enum* out) {
  using spdlog::level::level_enum;
  static constexpr struct {
    const char* name;
    level_enum level;
  } kLevels[] = {{"trace", level_enum::trace}, {"debug", level_enum::debug},
                 {"info", level_enum::info},   {"warn", level_enum::warn},
                 {"error", level_enum::err},   {"off", level_enum::off}};
  for (const auto& l : kLevels) {
    if (name == l.name) {
      *out = l.level;
      return true;
    }
  }
  return false;
}

}  // namespace

Status SetupLogging(const std::string& level, bool json) {
  spdlog::level::level_enum lvl;
  if (!ParseLevel(level, &lvl)) {
    return Status::InvalidArgument("unknown log level '" + level +
                                   "' (trace, debug, info, warn, error, off)");
  }
  std::shared_ptr<spdlog::logger> logger;
  if (json) {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto formatter = std::make_unique<spdlog::pattern_formatter>(
        spdlog::pattern_time_type::utc, std::string(spdlog::details::os::default_eol));
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","tid":%t,"msg":"%*"})");
    sink->set_formatter(std::move(formatter));
    logger = std::make_shared<spdlog::logger>("kvtier", std::move(sink));
  } else {
    // Colours only when stderr is a terminal.
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
    logger = std::make_shared<spdlog::logger>("kvtier", std::move(sink));
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return Status::OK();
}

}  // namespace kvtier
