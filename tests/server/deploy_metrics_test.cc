// The deployment files speak of metrics the daemon really exports: every
// kvtier_* name in the Grafana dashboard and the Prometheus alert rules is
// in a real kvtierd's /metrics (with an NVMe tier, so its series exist), and
// the dashboard is valid JSON whose panels all have a query.
#include <httplib.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::set<std::string> MetricNames(const std::string& text) {
  std::set<std::string> out;
  static const std::regex kName("kvtier_[a-z_]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kName); it != std::sregex_iterator(); ++it)
    out.insert(it->str());
  return out;
}

TEST(DeployMetricsTest, DashboardAndAlertsUseExportedMetrics) {
  testing::Daemon d({"--nvme-capacity", "256M"});
  ASSERT_TRUE(d.running());
  httplib::Client http("127.0.0.1", d.admin_port());
  auto m = http.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  // Exported names: the sample names (histograms add _bucket, _sum, _count).
  std::set<std::string> exported;
  std::istringstream lines(m->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    exported.insert(line.substr(0, line.find_first_of("{ ")));
  }
  ASSERT_GT(exported.size(), 30u);
  EXPECT_EQ(exported.count("kvtier_tier_admitting"), 1u);

  const std::string dash_text = Slurp(std::string(KVTIER_SOURCE_DIR) + "/deploy/grafana/kvtier-dashboard.json");
  ASSERT_TRUE(nlohmann::json::accept(dash_text));
  const auto dash = nlohmann::json::parse(dash_text);
  ASSERT_GE(dash.at("panels").size(), 10u);
  for (const auto& p : dash.at("panels")) {
    ASSERT_FALSE(p.at("targets").empty()) << p.at("title");
    for (const auto& t : p.at("targets")) EXPECT_FALSE(t.at("expr").get<std::string>().empty()) << p.at("title");
  }
  const std::string alerts = Slurp(std::string(KVTIER_SOURCE_DIR) + "/deploy/prometheus/kvtier-alerts.yml");
  size_t checked = 0;
  for (const std::string* text : {&dash_text, &alerts}) {
    for (const std::string& name : MetricNames(*text)) {
      EXPECT_EQ(exported.count(name), 1u) << name << " is not exported by kvtierd";
      ++checked;
    }
  }
  EXPECT_GT(checked, 25u);
  EXPECT_EQ(d.Stop(), 0);
}

}  // namespace
}  // namespace kvtier
