// Command-line conventions shared by kvtier's binaries (kvtierd, kvtier,
// kvtier-bench, kvtier-nvme-bench), on CLI11:
//
//  - `--flag VALUE` and `--flag=VALUE`; a value that starts with "--" must use
//    the `=` form (`--flag --other` is "missing value", never a value).
//  - Booleans are bare (`--json`) or take a value with `=`: true/false, 1/0,
//    yes/no, on/off (`--json=false`).
//  - `--help` / `-h` on every command and subcommand prints that command's
//    flags and exits 0.
//  - A bad flag or value stops the program before any work, with one short
//    line on stderr, "PROGRAM: what is wrong (see PROGRAM --help)", exit 2.
//    Ranges and choices are checked by the parser (CLI::Range, IsMember or a
//    Validator), not after the work has started.
//
// Header-only (CLI11 is header-only); thread-compatible.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace kvtier::cli {

// Exit code of a command-line error.
inline constexpr int kUsageError = 2;

// The command's full name for messages: "kvtier-bench sim".
inline std::string CommandPath(const CLI::App* app) {
  std::string path = app->get_name();
  for (const CLI::App* p = app->get_parent(); p != nullptr; p = p->get_parent())
    path = p->get_name() + " " + path;
  return path;
}

// The deepest subcommand that was selected (the app itself when none).
inline const CLI::App* Selected(const CLI::App* app) {
  for (;;) {
    auto subs = app->get_subcommands();
    if (subs.empty()) return app;
    app = subs.front();
  }
}

// CLI11 takes the next argument as a value even when it is a flag
// (`--socket --json` would set the socket to "--json"); refuse that, so a
// forgotten value is reported instead of silently eating the next flag.
inline std::string CheckMissingValues(CLI::App& app, int argc, const char* const* argv) {
  CLI::App* cur = &app;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.substr(0, 1) != "-") {
      for (CLI::App* sub : cur->get_subcommands([](CLI::App*) { return true; })) {
        if (sub->check_name(std::string(a))) {
          cur = sub;
          break;
        }
      }
      continue;
    }
    if (a.find('=') != std::string_view::npos) continue;
    const CLI::Option* o = cur->get_option_no_throw(std::string(a));
    if (o == nullptr || o->get_expected_min() < 1) continue;
    if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) == "--")
      return std::string(a) + ": missing value (write " + std::string(a) +
             "=VALUE for a value that starts with --)";
    ++i;  // skip the value
  }
  return "";
}

// Parses argv with `app`. Returns -1 when the program should go on, else
// the exit code: 0 after --help (printed on stdout), kUsageError after an
// error (one line on stderr).
inline int Parse(CLI::App& app, int argc, const char* const* argv) {
  auto fail = [&](const CLI::App* where, const std::string& what) {
    const std::string path = CommandPath(where);
    std::fprintf(stderr, "%s: %s (see %s --help)\n", path.c_str(), what.c_str(), path.c_str());
    return kUsageError;
  };
  // A command-line of subcommands whose first word is none of them.
  if (argc > 1 && argv[1][0] != '-' && !app.get_subcommands([](CLI::App*) { return true; }).empty()) {
    bool known = false;
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
      known |= sub->check_name(argv[1]);
    if (!known) return fail(&app, "unknown command '" + std::string(argv[1]) + "'");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);  // the selected subcommand's, named "kvtier stats"
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    return fail(Selected(&app), e.what());
  }
  if (std::string m = CheckMissingValues(app, argc, argv); !m.empty())
    return fail(Selected(&app), m);
  return -1;
}

// A validator for comma-separated lists whose items `item` accepts.
inline CLI::Validator EachItem(const std::function<std::string(const std::string&)>& item,
                               const std::string& description) {
  return CLI::Validator(
      [item](std::string& value) -> std::string {
        size_t start = 0;
        for (;;) {
          const size_t comma = value.find(',', start);
          const std::string one = value.substr(start, comma == std::string::npos ? comma : comma - start);
          if (one.empty()) return "empty item in '" + value + "'";
          if (std::string e = item(one); !e.empty()) return e;
          if (comma == std::string::npos) return "";
          start = comma + 1;
        }
      },
      description);
}

}  // namespace kvtier::cli
