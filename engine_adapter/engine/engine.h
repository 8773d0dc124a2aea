// Engine: sequences, pages and the prefill/decode schedule around LlamaModel.
//
// A request is a prompt plus a token budget and sampling parameters. The
// engine keeps each sequence's tokens, its pages in the paged KV pool and how
// many of its tokens already have KV there (`computed`). Prefill() computes
// the rest of the prompts of several sequences in chunks of at most
// ModelOptions::max_tokens tokens (one chunk may hold several sequences, and
// a long prompt spans several chunks, each attending the pages of the ones
// before), samples each sequence's first token, and Decode() advances a batch
// by one token (replaying a CUDA graph per batch size when enabled).
//
// A sequence may start with pages someone else filled: EnsurePages() then
// SetComputed() mark the first n tokens' KV as present, and Prefill() starts
// after them. That is how kvtier's cached prefixes enter (the loop issue).
//
// Thread safety: one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine_adapter/engine/llama_model.h"
#include "engine_adapter/engine/page_allocator.h"

namespace kvtier::engine {

struct Request {
  std::vector<int32_t> prompt;
  uint32_t max_new_tokens = 16;  // >= 1; the first comes from the prefill
  bool ignore_eos = false;       // keep going past the config's EOS tokens
  float temperature = 0.f;       // <= 0: greedy
  uint64_t seed = 0;             // sampling noise; same seed, same draws
};

struct EngineOptions {
  ModelOptions model;
  bool cuda_graphs = true;       // decode steps through CUDA graphs
};

// What one Prefill()/Decode() call keeps of the logits (for parity checks).
struct LogitCapture {
  bool last = false;             // each sampled row's logits
  bool all_positions = false;    // every prompt position (needs max_logit_rows)
};

class Engine {
 public:
  // Errors: those of LlamaModel::Create.
  static Result<std::unique_ptr<Engine>> Create(const Checkpoint& ckpt,
                                                const EngineOptions& options);

  LlamaModel& model() { return *model_; }
  const ModelConfig& config() const { return model_->config(); }

  // A new sequence; returns its id. InvalidArgument for an empty prompt, a
  // zero budget, tokens outside the vocabulary, or prompt + budget beyond
  // max_seq_len.
  Result<int> Add(const Request& request);
  // Frees the sequence's pages and forgets it.
  Status Release(int id);

  const std::vector<int32_t>& Prompt(int id) const;
  // Pages of sequence `id` (first page holds tokens 0 .. page_tokens - 1).
  const std::vector<int32_t>& Pages(int id) const;
  // Allocates pages until `tokens` tokens fit. ResourceExhausted when the
  // pool is out of pages.
  Status EnsurePages(int id, uint32_t tokens);
  // Declares the first n prompt tokens' KV present in the sequence's pages
  // (n < prompt length: the last prompt token is always computed, so that
  // its logits exist).
  Status SetComputed(int id, uint32_t n);
  uint32_t Computed(int id) const;
  // Takes back a prefill: forgets the generated tokens and declares only the
  // first n prompt tokens' KV present (n < prompt length), so that the next
  // Prefill() recomputes from there. For KV found bad after it was used
  // (kvtier's loop verifies a load's checksums once the prefill that read it
  // is done). The pages stay allocated.
  Status Rewind(int id, uint32_t n);

  // Prefills the listed sequences (every one must still have prompt tokens
  // to compute) and samples their first tokens. `hook` runs before each
  // layer's attention of every chunk. Logits asked for in `capture` are
  // appended to *prefill_logits: per sampled sequence, in `ids` order,
  // [vocab] floats; with all_positions, every computed position's row in
  // the order computed.
  Status Prefill(const std::vector<int>& ids, const LogitCapture& capture = {},
                 std::vector<float>* logits = nullptr,
                 const LlamaModel::LayerHook& hook = nullptr);
  // One decode step for the listed unfinished sequences; appends [ids.size(),
  // vocab] logits to *logits when capture.last.
  Status Decode(const std::vector<int>& ids, const LogitCapture& capture = {},
                std::vector<float>* logits = nullptr);

  // Generated tokens so far, and whether the sequence is done (EOS or budget).
  const std::vector<int32_t>& Generated(int id) const;
  bool Finished(int id) const;
  // When the sequence's first token was known on the host (the end of the
  // prefill chunk that finished its prompt); the epoch before that.
  std::chrono::steady_clock::time_point FirstTokenTime(int id) const;

 private:
  struct Seq {
    Request req;
    std::vector<int32_t> pages;
    std::vector<int32_t> generated;
    uint32_t computed = 0;
    std::chrono::steady_clock::time_point first_token;
    bool finished = false;
    bool live = false;
  };
  Engine() = default;
  Status CheckId(int id) const;
  void Accept(Seq& s, int32_t token);
  void FillPageRow(const Seq& s, std::vector<int32_t>* table) const;
  Status Run(StepInput& in, bool decode_graph, size_t rows, const LogitCapture& capture,
             std::vector<int32_t>* sampled, std::vector<float>* logits,
             const LlamaModel::LayerHook& hook = nullptr);

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<PageAllocator> pages_;
  EngineOptions options_;
  std::vector<Seq> seqs_;
  std::vector<int> free_ids_;
};

}  // namespace kvtier::engine
