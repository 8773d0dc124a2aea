// docs/operations.md documents every flag `kvtierd --help` prints, with the
// same default: the help text comes from the flag table the parser uses, so
// this keeps the operator's page from drifting away from the binary.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string Output(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(0, 1);
  return s;
}

// Flag name → default, from the --help text: a flag's block starts with
// "  --name" and runs (wrapped) until the next flag or a blank line.
std::map<std::string, std::string> HelpDefaults(const std::string& help) {
  std::map<std::string, std::string> out;
  std::istringstream in(help);
  std::string name, block;
  auto flush = [&] {
    if (name.empty()) return;
    const size_t d = block.find(" default: ");
    out[name] = d == std::string::npos ? "" : Trim(block.substr(d + 10));
    name.clear();
    block.clear();
  };
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  --", 0) == 0) {
      flush();
      name = line.substr(4, line.find_first_of(" ,", 4) - 4);
      block = line;
    } else if (Trim(line).empty()) {
      flush();
    } else if (!name.empty()) {
      block += " " + Trim(line);
    }
  }
  flush();
  return out;
}

// Flag name → default cell, from the flag table of docs/operations.md
// (backticks dropped).
std::map<std::string, std::string> DocDefaults(const std::string& doc) {
  std::map<std::string, std::string> out;
  std::istringstream in(doc);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| `--", 0) != 0) continue;
    const std::string name = line.substr(5, line.find_first_of(" `", 5) - 5);
    // Cells split at '|' not escaped as "\|" (as in `auto\|off\|NODES`).
    std::vector<std::string> cells(1);
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|' && line[i - 1] != '\\') {
        cells.emplace_back();
      } else {
        cells.back() += line[i];
      }
    }
    if (cells.size() < 3) continue;
    const std::string def = cells[1];
    std::string plain;
    for (char c : def)
      if (c != '`') plain += c;
    out[name] = Trim(plain);
  }
  return out;
}

TEST(DocsTest, EveryDaemonFlagIsDocumentedWithItsDefault) {
  const auto help = HelpDefaults(Output(std::string("'") + KVTIERD_PATH + "' --help"));
  std::ifstream in(std::string(KVTIER_SOURCE_DIR) + "/docs/operations.md");
  ASSERT_TRUE(in);
  const auto doc = DocDefaults(std::string(std::istreambuf_iterator<char>(in), {}));
  ASSERT_GT(help.size(), 25u) << "the --help text changed shape";
  ASSERT_TRUE(help.count("host-capacity") && help.count("nvme-admission") && help.count("version"));
  for (const auto& [name, def] : help) {
    SCOPED_TRACE("--" + name);
    auto it = doc.find(name);
    ASSERT_NE(it, doc.end()) << "not in docs/operations.md's flag table";
    EXPECT_EQ(it->second, def);
  }
  // And nothing documented that the daemon does not have.
  for (const auto& [name, def] : doc) EXPECT_EQ(help.count(name), 1u) << "--" << name << " is documented only";
}

}  // namespace
