// LlamaModel: a Llama-family model's weights on one GPU and its forward pass
// over a paged KV pool.
//
// Weights come from a Checkpoint (safetensors.h) and are uploaded once into
// one device allocation; q/k/v projections are stacked into one matrix and
// gate/up into another, so each layer runs four GEMMs (cuBLAS, bf16 in,
// float32 accumulate). Between them run the fused kernels of kernels.h and
// the paged attention of attention.h. The residual stream stays in bf16 and
// is rounded where HF's LlamaModel rounds it.
//
// Forward() runs one step for a batch of sequences: a prefill step (any
// number of new tokens per sequence, over pages that may already hold a
// prefix) or a decode step (one token per sequence). It reads its inputs
// from device buffers that Stage() fills, so a decode step can be captured in
// a CUDA graph once per batch size and replayed.
//
// Ownership: the model owns its weights, activations, KV pool and cuBLAS
// handle. Thread safety: one thread at a time.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine_adapter/engine/kernels.h"
#include "engine_adapter/engine/model_config.h"
#include "engine_adapter/engine/safetensors.h"
#include "loader/kv_pool.h"
#include "tiers/status.h"

namespace kvtier::engine {

struct ModelOptions {
  // Most tokens one Forward() takes (prefill chunks are cut to this).
  uint32_t max_tokens = 8192;
  // Most sequences one Forward() takes.
  uint32_t max_seqs = 64;
  // Longest sequence (prompt + generated), in tokens.
  uint32_t max_seq_len = 32768;
  // Tokens per KV page.
  uint32_t page_tokens = 16;
  // KV pages; 0: `kv_memory_fraction` of the device memory left free after
  // weights and activations.
  uint32_t num_pages = 0;
  double kv_memory_fraction = 0.8;
  // Rows of logits one Forward() may produce (prefill of every position for
  // parity checks needs max_tokens); 0: max_seqs.
  uint32_t max_logit_rows = 0;
};

// One step's inputs, on the host.
struct StepInput {
  bool decode = false;                 // one token per sequence, at kv_len - 1
  std::vector<int32_t> tokens;         // [T] new tokens, sequences concatenated
  std::vector<int32_t> positions;      // [T]
  std::vector<int32_t> slots;          // [T] page * page_tokens + offset
  std::vector<int32_t> q_len;          // [B] new tokens per sequence
  std::vector<int32_t> kv_len;         // [B] tokens in pages after this step
  std::vector<int32_t> page_table;     // [B * max_pages_per_seq()]
  std::vector<int32_t> logit_rows;     // rows of T whose logits are wanted
  // Sampling per logit row.
  std::vector<float> temperature;
  std::vector<uint64_t> seed;
  std::vector<int32_t> step;
};

class LlamaModel {
 public:
  // Uploads the checkpoint's weights (validated first) and allocates the
  // activations and the KV pool. Errors: those of ValidateLlamaCheckpoint,
  // Unavailable (no GPU), ResourceExhausted (device memory), InvalidArgument
  // (options out of range, max_seq_len beyond max_position_embeddings).
  static Result<std::unique_ptr<LlamaModel>> Create(const Checkpoint& ckpt,
                                                    const ModelOptions& options);
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  uint32_t max_pages_per_seq() const { return max_pages_per_seq_; }
  uint32_t num_pages() const { return options_.num_pages; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t kv_bytes_per_page() const;   // all layers, K and V
  cudaStream_t stream() const { return stream_; }
  int num_sms() const { return num_sms_; }

  // The KV pool as kvtier's loader describes it (vLLM flash layout): what
  // GpuSession loads blocks into and stores them from.
  const KvPool& kv_pool() const { return pool_; }

  // Copies `in` into the device input buffers (on stream()). Errors:
  // InvalidArgument when sizes exceed the options or disagree.
  Status Stage(const StepInput& in);

  // Called before layer `layer`'s attention on stream(), so that a caller can
  // make the stream wait until that layer's KV pages are filled.
  using LayerHook = std::function<void(int layer, cudaStream_t stream)>;

  // Enqueues the step Stage() last staged: writes logits of the staged
  // logit rows and the sampled tokens (sampled_tokens()). Nothing here
  // synchronises; decode steps can be captured.
  void Forward(const LayerHook& before_attention = nullptr);

  // Device results of the last Forward(): float32 logits [rows, vocab] and
  // int32 tokens [rows].
  const float* logits() const { return logits_; }
  const int32_t* sampled_tokens() const { return d_sampled_; }
  // Queues the copy of the first `rows` sampled tokens into pinned host
  // memory by a kernel (no copy-engine queue; kernels.h LaunchCopyPieces);
  // host_sampled_tokens() holds them once the stream has passed this point.
  Status QueueSampledReadback(int rows);
  const int32_t* host_sampled_tokens() const;

  // Replays (capturing on first use) a CUDA graph of Forward() for decode
  // steps of `num_seqs` sequences. Stage() first. Falls back to Forward()
  // when capture fails (the failure is returned once, then remembered).
  Status ForwardDecodeGraph(int num_seqs);

 private:
  struct Layer;
  struct Buffers;
  LlamaModel() = default;
  Status Init(const Checkpoint& ckpt, const ModelOptions& options);
  void Gemm(const bf16_t* x, const bf16_t* w, void* y, int m, int n, int k, bool f32_out);

  ModelConfig config_;
  ModelOptions options_;
  uint32_t max_pages_per_seq_ = 0;
  uint64_t weight_bytes_ = 0;
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  void* cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  void* weights_ = nullptr;
  void* kv_ = nullptr;
  void* act_ = nullptr;
  std::vector<Layer> layers_;
  const bf16_t* embed_ = nullptr;
  const bf16_t* final_norm_ = nullptr;
  const bf16_t* lm_head_ = nullptr;
  float* inv_freq_ = nullptr;
  KvPool pool_;
  std::unique_ptr<Buffers> buf_;
  float* logits_ = nullptr;
  int32_t* d_sampled_ = nullptr;
  // The staged step's shape (host copies).
  bool staged_decode_ = false;
  int staged_tokens_ = 0, staged_seqs_ = 0, staged_logit_rows_ = 0, staged_tiles_ = 0;
  std::vector<cudaGraphExec_t> graphs_;  // by batch size; nullptr: not captured
  bool graphs_broken_ = false;
};

}  // namespace kvtier::engine
