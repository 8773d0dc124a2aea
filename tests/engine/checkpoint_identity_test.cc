// IdentifyCheckpoint: the namespace identity of a checkpoint's KV. Equal for
// the same weights however they are sharded; different for other weights,
// another config, or one changed byte where the fingerprint samples.
#include "engine_adapter/engine/checkpoint_identity.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <string>

#include "tests/engine/engine_test_util.h"

namespace kvtier::engine {
namespace {

using testing::ScratchDir;

class CheckpointIdentityTest : public ::testing::Test {
 protected:
  CheckpointIdentity Id(const std::string& name, const ModelConfig& config, uint64_t seed,
                        uint64_t shard_bytes = uint64_t{5} << 30) {
    RandomCheckpointOptions opt;
    opt.seed = seed;
    opt.shard_bytes = shard_bytes;
    const std::string dir = dir_.Dir(name);
    EXPECT_TRUE(WriteRandomCheckpoint(config, dir, opt).ok());
    return Open(dir);
  }
  CheckpointIdentity Open(const std::string& dir) {
    Result<Checkpoint> ck = Checkpoint::Open(dir);
    EXPECT_TRUE(ck.ok()) << ck.status().ToString();
    return ck.ok() ? IdentifyCheckpoint(*ck) : CheckpointIdentity{};
  }
  ScratchDir dir_;
};

TEST_F(CheckpointIdentityTest, SameWeightsSameRevisionWhateverTheSharding) {
  const ModelConfig c = testing::SmallConfig();
  CheckpointIdentity a = Id("a", c, 7);
  CheckpointIdentity sharded = Id("a-sharded", c, 7, 100 * 1000);
  EXPECT_EQ(a.model_id, "checkpoint:a");
  EXPECT_EQ(sharded.model_id, "checkpoint:a-sharded");
  ASSERT_EQ(a.revision.size(), 32u);
  for (char ch : a.revision) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(ch)) && !std::isupper(ch));
  EXPECT_EQ(sharded.revision, a.revision);
  EXPECT_EQ(Open(dir_.Dir("a")).revision, a.revision);
}

TEST_F(CheckpointIdentityTest, OtherWeightsOrConfigOtherRevision) {
  ModelConfig c = testing::SmallConfig();
  const std::string base = Id("base", c, 7).revision;
  EXPECT_NE(Id("seed", c, 8).revision, base);
  c.rope_theta = 10000.0;
  EXPECT_NE(Id("theta", c, 7).revision, base);
}

TEST_F(CheckpointIdentityTest, OneChangedSampledByteChangesTheRevision) {
  const ModelConfig c = testing::SmallConfig();
  const std::string base = Id("flip", c, 7).revision;
  // Flip the first data byte of the last file: the first bytes of a tensor
  // are always sampled.
  const std::string path = dir_.Dir("flip") + "/model.safetensors";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  uint64_t header = 0;
  f.read(reinterpret_cast<char*>(&header), 8);
  f.seekg(std::streamoff(8 + header));
  char byte = 0;
  f.read(&byte, 1);
  byte = char(byte ^ 0x10);
  f.seekp(std::streamoff(8 + header));
  f.write(&byte, 1);
  f.close();
  EXPECT_NE(Open(dir_.Dir("flip")).revision, base);
}

}  // namespace
}  // namespace kvtier::engine
