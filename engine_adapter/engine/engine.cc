// Engine: the prefill/decode schedule; see engine.h.
#include "engine_adapter/engine/engine.h"

#include <algorithm>
#include <string>

#include "loader/cuda_status.h"

namespace kvtier::engine {

Result<std::unique_ptr<Engine>> Engine::Create(const Checkpoint& ckpt,
                                               const EngineOptions& options) {
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  KVTIER_ASSIGN_OR_RETURN(e->model_, LlamaModel::Create(ckpt, options.model));
  e->pages_ = std::make_unique<PageAllocator>(e->model_->num_pages());
  return e;
}

Status Engine::CheckId(int id) const {
  if (id < 0 || size_t(id) >= seqs_.size() || !seqs_[id].live)
    return Status::InvalidArgument("no sequence " + std::to_string(id));
  return Status::OK();
}

Result<int> Engine::Add(const Request& r) {
  const ModelOptions& mo = model_->options();
  if (r.prompt.empty()) return Status::InvalidArgument("empty prompt");
  if (r.max_new_tokens == 0) return Status::InvalidArgument("max_new_tokens must be >= 1");
  if (r.prompt.size() + r.max_new_tokens > mo.max_seq_len)
    return Status::InvalidArgument("prompt (" + std::to_string(r.prompt.size()) +
                                   ") + max_new_tokens (" + std::to_string(r.max_new_tokens) +
                                   ") exceeds max_seq_len " + std::to_string(mo.max_seq_len));
  for (int32_t t : r.prompt)
    if (t < 0 || uint32_t(t) >= config().vocab_size)
      return Status::InvalidArgument("prompt token " + std::to_string(t) +
                                     " is outside the vocabulary (" +
                                     std::to_string(config().vocab_size) + ")");
  int id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = int(seqs_.size());
    seqs_.emplace_back();
  }
  Seq& s = seqs_[id];
  s = Seq{};
  s.req = r;
  s.live = true;
  return id;
}

Status Engine::Release(int id) {
  KVTIER_RETURN_IF_ERROR(CheckId(id));
  Seq& s = seqs_[id];
  KVTIER_RETURN_IF_ERROR(pages_->Free(s.pages));
  s = Seq{};
  free_ids_.push_back(id);
  return Status::OK();
}

const std::vector<int32_t>& Engine::Prompt(int id) const { return seqs_.at(id).req.prompt; }
const std::vector<int32_t>& Engine::Pages(int id) const { return seqs_.at(id).pages; }
const std::vector<int32_t>& Engine::Generated(int id) const { return seqs_.at(id).generated; }
bool Engine::Finished(int id) const { return seqs_.at(id).finished; }
uint32_t Engine::Computed(int id) const { return seqs_.at(id).computed; }

Status Engine::EnsurePages(int id, uint32_t tokens) {
  KVTIER_RETURN_IF_ERROR(CheckId(id));
  Seq& s = seqs_[id];
  uint32_t need = PagesFor(tokens, model_->options().page_tokens);
  if (need > model_->max_pages_per_seq())
    return Status::InvalidArgument(std::to_string(tokens) + " tokens exceed max_seq_len");
  if (need <= s.pages.size()) return Status::OK();
  return pages_->Allocate(need - uint32_t(s.pages.size()), &s.pages);
}

Status Engine::SetComputed(int id, uint32_t n) {
  KVTIER_RETURN_IF_ERROR(CheckId(id));
  Seq& s = seqs_[id];
  if (!s.generated.empty() || n >= s.req.prompt.size())
    return Status::InvalidArgument("SetComputed: " + std::to_string(n) +
                                   " must be below the prompt length, before the prefill");
  if (size_t(PagesFor(n, model_->options().page_tokens)) > s.pages.size())
    return Status::InvalidArgument("SetComputed: pages for " + std::to_string(n) +
                                   " tokens are not allocated");
  s.computed = n;
  return Status::OK();
}

Status Engine::Rewind(int id, uint32_t n) {
  KVTIER_RETURN_IF_ERROR(CheckId(id));
  Seq& s = seqs_[id];
  if (n >= s.req.prompt.size() || n > s.computed)
    return Status::InvalidArgument("Rewind: " + std::to_string(n) +
                                   " must be below the prompt length and what is computed");
  s.generated.clear();
  s.finished = false;
  s.first_token = {};
  s.computed = n;
  return Status::OK();
}

std::chrono::steady_clock::time_point Engine::FirstTokenTime(int id) const {
  return seqs_.at(id).first_token;
}

void Engine::FillPageRow(const Seq& s, std::vector<int32_t>* table) const {
  size_t base = table->size();
  table->resize(base + model_->max_pages_per_seq(), 0);
  std::copy(s.pages.begin(), s.pages.end(), table->begin() + base);
}

void Engine::Accept(Seq& s, int32_t token) {
  if (s.generated.empty()) s.first_token = std::chrono::steady_clock::now();
  s.generated.push_back(token);
  const auto& eos = config().eos_token_ids;
  bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
  if ((is_eos && !s.req.ignore_eos) || s.generated.size() >= s.req.max_new_tokens)
    s.finished = true;
}

Status Engine::Run(StepInput& in, bool decode_graph, size_t rows, const LogitCapture& capture,
                   std::vector<int32_t>* sampled, std::vector<float>* logits,
                   const LlamaModel::LayerHook& hook) {
  KVTIER_RETURN_IF_ERROR(model_->Stage(in));
  if (decode_graph) {
    Status st = model_->ForwardDecodeGraph(int(rows));
    (void)st;  // a failed capture falls back to Forward() inside
  } else {
    model_->Forward(hook);
  }
  cudaStream_t stream = model_->stream();
  const size_t R = in.logit_rows.size();
  sampled->resize(R);
  KVTIER_RETURN_IF_ERROR(model_->QueueSampledReadback(int(R)));
  if (logits && (capture.last || capture.all_positions)) {
    const size_t V = config().vocab_size;
    size_t old = logits->size();
    logits->resize(old + R * V);
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data() + old, model_->logits(),
                                                R * V * sizeof(float), cudaMemcpyDeviceToHost,
                                                stream));
  }
  KVTIER_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream), "forward step"));
  std::copy(model_->host_sampled_tokens(), model_->host_sampled_tokens() + R, sampled->begin());
  return Status::OK();
}

Status Engine::Prefill(const std::vector<int>& ids, const LogitCapture& capture,
                       std::vector<float>* logits, const LlamaModel::LayerHook& hook) {
  for (int id : ids) {
    KVTIER_RETURN_IF_ERROR(CheckId(id));
    const Seq& s = seqs_[id];
    if (s.computed >= s.req.prompt.size() || !s.generated.empty())
      return Status::InvalidArgument("sequence " + std::to_string(id) + " is already prefilled");
  }
  const ModelOptions& mo = model_->options();
  const uint32_t P = mo.page_tokens;
  size_t next = 0;  // first sequence with prompt tokens left
  Status result;
  while (next < ids.size() && result.ok()) {
    StepInput in;
    std::vector<int> in_chunk;         // sequence ids, in step order
    std::vector<int> finishing_row;    // per sequence of the chunk: its logit row or -1
    uint32_t budget = mo.max_tokens;
    for (size_t i = next; i < ids.size() && budget > 0 && in_chunk.size() < mo.max_seqs; ++i) {
      Seq& s = seqs_[ids[i]];
      uint32_t left = uint32_t(s.req.prompt.size()) - s.computed;
      uint32_t n = std::min(left, budget);
      result = EnsurePages(ids[i], s.computed + n);
      if (!result.ok()) break;
      for (uint32_t k = 0; k < n; ++k) {
        uint32_t pos = s.computed + k;
        in.tokens.push_back(s.req.prompt[pos]);
        in.positions.push_back(int32_t(pos));
        in.slots.push_back(s.pages[pos / P] * int32_t(P) + int32_t(pos % P));
        if (capture.all_positions) in.logit_rows.push_back(int32_t(in.tokens.size() - 1));
      }
      in.q_len.push_back(int32_t(n));
      in.kv_len.push_back(int32_t(s.computed + n));
      FillPageRow(s, &in.page_table);
      in_chunk.push_back(ids[i]);
      bool done = n == left;
      int row = -1;
      if (done) {
        if (capture.all_positions) {
          row = int(in.tokens.size()) - 1;
        } else {
          row = int(in.logit_rows.size());
          in.logit_rows.push_back(int32_t(in.tokens.size() - 1));
        }
      }
      finishing_row.push_back(row);
      budget -= n;
    }
    if (!result.ok()) break;
    // Sampling parameters per logit row (rows that no sequence samples from
    // are greedy; their token is ignored).
    in.temperature.assign(in.logit_rows.size(), 0.f);
    in.seed.assign(in.logit_rows.size(), 0);
    in.step.assign(in.logit_rows.size(), 0);
    for (size_t c = 0; c < in_chunk.size(); ++c) {
      if (finishing_row[c] < 0) continue;
      const Seq& s = seqs_[in_chunk[c]];
      in.temperature[finishing_row[c]] = s.req.temperature;
      in.seed[finishing_row[c]] = s.req.seed;
    }
    std::vector<int32_t> sampled;
    std::vector<float> chunk_logits;
    const bool want = logits && (capture.last || capture.all_positions);
    result = Run(in, false, 0, capture, &sampled, want ? &chunk_logits : nullptr, hook);
    if (!result.ok()) break;
    const size_t V = config().vocab_size;
    if (want && capture.all_positions) {
      logits->insert(logits->end(), chunk_logits.begin(), chunk_logits.end());
    }
    for (size_t c = 0; c < in_chunk.size(); ++c) {
      Seq& s = seqs_[in_chunk[c]];
      s.computed += uint32_t(in.q_len[c]);
      if (finishing_row[c] >= 0) {
        Accept(s, sampled[finishing_row[c]]);
        if (want && !capture.all_positions)
          logits->insert(logits->end(), chunk_logits.begin() + finishing_row[c] * V,
                         chunk_logits.begin() + (finishing_row[c] + 1) * V);
      }
    }
    while (next < ids.size() && seqs_[ids[next]].computed == seqs_[ids[next]].req.prompt.size())
      ++next;
  }
  return result;
}

Status Engine::Decode(const std::vector<int>& ids, const LogitCapture& capture,
                      std::vector<float>* logits) {
  const ModelOptions& mo = model_->options();
  if (ids.empty()) return Status::OK();
  if (ids.size() > mo.max_seqs)
    return Status::InvalidArgument("decode batch of " + std::to_string(ids.size()) +
                                   " exceeds max_seqs " + std::to_string(mo.max_seqs));
  const uint32_t P = mo.page_tokens;
  StepInput in;
  in.decode = true;
  for (int id : ids) {
    KVTIER_RETURN_IF_ERROR(CheckId(id));
    Seq& s = seqs_[id];
    if (s.generated.empty() || s.finished)
      return Status::InvalidArgument("sequence " + std::to_string(id) +
                                     (s.finished ? " is finished" : " is not prefilled"));
    uint32_t pos = s.computed;  // the last generated token has no KV yet
    KVTIER_RETURN_IF_ERROR(EnsurePages(id, pos + 1));
    in.tokens.push_back(s.generated.back());
    in.positions.push_back(int32_t(pos));
    in.slots.push_back(s.pages[pos / P] * int32_t(P) + int32_t(pos % P));
    in.q_len.push_back(1);
    in.kv_len.push_back(int32_t(pos + 1));
    FillPageRow(s, &in.page_table);
    in.logit_rows.push_back(int32_t(in.logit_rows.size()));
    in.temperature.push_back(s.req.temperature);
    in.seed.push_back(s.req.seed);
    in.step.push_back(int32_t(s.generated.size()));
  }
  std::vector<int32_t> sampled;
  KVTIER_RETURN_IF_ERROR(Run(in, options_.cuda_graphs, ids.size(), capture, &sampled,
                             capture.last ? logits : nullptr));
  for (size_t i = 0; i < ids.size(); ++i) {
    Seq& s = seqs_[ids[i]];
    s.computed += 1;
    Accept(s, sampled[i]);
  }
  return Status::OK();
}

}  // namespace kvtier::engine
