// LlamaModel: weights, buffers and the forward pass; see llama_model.h.
#include "engine_adapter/engine/llama_model.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine_adapter/engine/attention.h"
#include "engine_adapter/engine/page_allocator.h"
#include "loader/cuda_status.h"
#include "loader/gpu_runtime.h"

namespace kvtier::engine {

namespace {

constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

Status CublasStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return Status::IOError(std::string(what) + ": cuBLAS status " + std::to_string(int(st)));
}

// Carves aligned pieces out of one allocation.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* Take(size_t count) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += AlignUp(count * sizeof(T));
    return p;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

}  // namespace

struct LlamaModel::Layer {
  const bf16_t* input_norm = nullptr;
  const bf16_t* post_norm = nullptr;
  const bf16_t* wqkv = nullptr;     // [(nh + 2 kvh) * d, hidden]
  const bf16_t* wo = nullptr;       // [hidden, nh * d]
  const bf16_t* wgate_up = nullptr; // [2 * inter, hidden]
  const bf16_t* wdown = nullptr;    // [hidden, inter]
};

// Device inputs (fixed addresses, so graphs can be replayed), their pinned
// host mirrors, and the activations.
struct LlamaModel::Buffers {
  int32_t *tokens, *positions, *slots, *q_start, *q_len, *kv_len, *page_table, *logit_rows, *step;
  float* temperature;
  uint64_t* seed;
  int2* tiles;
  size_t max_tiles;
  // Pinned mirrors (mapped: the staging kernel reads them at host_dev).
  void* host = nullptr;
  void* host_dev = nullptr;
  size_t host_bytes = 0;
  int32_t* sampled_host = nullptr;  // mapped: the readback kernel writes it
  int32_t* sampled_host_dev = nullptr;
  cudaEvent_t staged = nullptr;
  // Activations.
  bf16_t *residual, *normed, *qkv, *attn, *gate_up, *act, *delta, *gathered;
  float* decode_ws;
};

LlamaModel::~LlamaModel() {
  for (cudaGraphExec_t g : graphs_)
    if (g) cudaGraphExecDestroy(g);
  if (buf_) {
    if (buf_->staged) cudaEventDestroy(buf_->staged);
    if (buf_->host) cudaFreeHost(buf_->host);
    if (buf_->sampled_host) cudaFreeHost(buf_->sampled_host);
  }
  if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  for (void* p : {cublas_workspace_, weights_, kv_, act_})
    if (p) cudaFree(p);
  if (inv_freq_) cudaFree(inv_freq_);
  if (stream_) cudaStreamDestroy(stream_);
}

uint64_t LlamaModel::kv_bytes_per_page() const {
  return uint64_t{2} * config_.num_hidden_layers * options_.page_tokens *
         config_.num_key_value_heads * config_.head_dim * sizeof(bf16_t);
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::Create(const Checkpoint& ckpt,
                                                       const ModelOptions& options) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  KVTIER_RETURN_IF_ERROR(m->Init(ckpt, options));
  return m;
}

Status LlamaModel::Init(const Checkpoint& ckpt, const ModelOptions& opt) {
  config_ = ckpt.config();
  options_ = opt;
  KVTIER_RETURN_IF_ERROR(config_.Validate());
  KVTIER_RETURN_IF_ERROR(ValidateLlamaCheckpoint(ckpt));
  const ModelConfig& c = config_;
  if (opt.max_tokens == 0 || opt.max_tokens > (1u << 20))
    return Status::InvalidArgument("max_tokens must be in 1 .. 1048576");
  if (opt.max_seqs == 0 || opt.max_seqs > 4096)
    return Status::InvalidArgument("max_seqs must be in 1 .. 4096");
  if (opt.page_tokens == 0 || opt.page_tokens > 1024)
    return Status::InvalidArgument("page_tokens must be in 1 .. 1024");
  if (opt.max_seq_len == 0 || opt.max_seq_len > c.max_position_embeddings)
    return Status::InvalidArgument("max_seq_len " + std::to_string(opt.max_seq_len) +
                                   " must be in 1 .. max_position_embeddings (" +
                                   std::to_string(c.max_position_embeddings) + ")");
  if (opt.kv_memory_fraction <= 0 || opt.kv_memory_fraction >= 1)
    return Status::InvalidArgument("kv_memory_fraction must be in (0, 1)");
  if (options_.max_logit_rows == 0) options_.max_logit_rows = opt.max_seqs;
  max_pages_per_seq_ = PagesFor(opt.max_seq_len, opt.page_tokens);

  if (!GpuAvailable()) return Status::Unavailable("no CUDA GPU is available: the engine needs one");
  int dev = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, dev));
  // The highest priority: KV loads and stores on other streams (kvtier's
  // loop) fill the GPU with copy blocks; a layer ready to compute goes first.
  KVTIER_ASSIGN_OR_RETURN(int priority, GpuStreamPriority(StreamPriority::kHigh));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, priority));
  cublasHandle_t h = nullptr;
  KVTIER_RETURN_IF_ERROR(CublasStatus(cublasCreate(&h), "cublasCreate"));
  cublas_ = h;
  constexpr size_t kWorkspace = size_t{32} << 20;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&cublas_workspace_, kWorkspace));
  KVTIER_RETURN_IF_ERROR(CublasStatus(cublasSetStream(h, stream_), "cublasSetStream"));
  KVTIER_RETURN_IF_ERROR(
      CublasStatus(cublasSetWorkspace(h, cublas_workspace_, kWorkspace), "cublasSetWorkspace"));
  KVTIER_RETURN_IF_ERROR(
      CublasStatus(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode"));

  // --- Weights: one allocation, uploaded once. ---
  const size_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, D = c.head_dim;
  const size_t NH = c.num_attention_heads, KH = c.num_key_value_heads;
  const size_t qkv_rows = (NH + 2 * KH) * D;
  size_t total = AlignUp(V * H * 2) + AlignUp(H * 2) + (c.tie_word_embeddings ? 0 : AlignUp(V * H * 2));
  const size_t per_layer = 2 * AlignUp(H * 2) + AlignUp(qkv_rows * H * 2) + AlignUp(H * NH * D * 2) +
                           AlignUp(2 * I * H * 2) + AlignUp(H * I * 2);
  total += per_layer * c.num_hidden_layers;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&weights_, total));
  weight_bytes_ = total;
  Carver wc(weights_);
  auto upload = [&](const std::string& name, std::vector<int64_t> shape, bf16_t* dst) -> Status {
    KVTIER_ASSIGN_OR_RETURN(const TensorView* t, ckpt.Get(name, shape));
    return CudaStatus(cudaMemcpy(dst, t->data, t->bytes, cudaMemcpyHostToDevice), name.c_str());
  };
  const int64_t h64 = int64_t(H);
  bf16_t* embed = wc.Take<bf16_t>(V * H);
  KVTIER_RETURN_IF_ERROR(upload("model.embed_tokens.weight", {int64_t(V), h64}, embed));
  embed_ = embed;
  layers_.resize(c.num_hidden_layers);
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    bf16_t* in_norm = wc.Take<bf16_t>(H);
    bf16_t* post_norm = wc.Take<bf16_t>(H);
    bf16_t* qkv = wc.Take<bf16_t>(qkv_rows * H);
    bf16_t* wo = wc.Take<bf16_t>(H * NH * D);
    bf16_t* gu = wc.Take<bf16_t>(2 * I * H);
    bf16_t* down = wc.Take<bf16_t>(H * I);
    KVTIER_RETURN_IF_ERROR(upload(p + "input_layernorm.weight", {h64}, in_norm));
    KVTIER_RETURN_IF_ERROR(upload(p + "post_attention_layernorm.weight", {h64}, post_norm));
    KVTIER_RETURN_IF_ERROR(upload(p + "self_attn.q_proj.weight", {int64_t(NH * D), h64}, qkv));
    KVTIER_RETURN_IF_ERROR(
        upload(p + "self_attn.k_proj.weight", {int64_t(KH * D), h64}, qkv + NH * D * H));
    KVTIER_RETURN_IF_ERROR(
        upload(p + "self_attn.v_proj.weight", {int64_t(KH * D), h64}, qkv + (NH + KH) * D * H));
    KVTIER_RETURN_IF_ERROR(upload(p + "self_attn.o_proj.weight", {h64, int64_t(NH * D)}, wo));
    KVTIER_RETURN_IF_ERROR(upload(p + "mlp.gate_proj.weight", {int64_t(I), h64}, gu));
    KVTIER_RETURN_IF_ERROR(upload(p + "mlp.up_proj.weight", {int64_t(I), h64}, gu + I * H));
    KVTIER_RETURN_IF_ERROR(upload(p + "mlp.down_proj.weight", {h64, int64_t(I)}, down));
    L = {in_norm, post_norm, qkv, wo, gu, down};
  }
  bf16_t* fnorm = wc.Take<bf16_t>(H);
  KVTIER_RETURN_IF_ERROR(upload("model.norm.weight", {h64}, fnorm));
  final_norm_ = fnorm;
  if (c.tie_word_embeddings) {
    lm_head_ = embed_;
  } else {
    bf16_t* head = wc.Take<bf16_t>(V * H);
    KVTIER_RETURN_IF_ERROR(upload("lm_head.weight", {int64_t(V), h64}, head));
    lm_head_ = head;
  }
  std::vector<float> inv = RopeInvFreq(c);
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&inv_freq_, inv.size() * sizeof(float)));
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(inv_freq_, inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice));

  // --- Inputs and activations: one allocation. ---
  buf_ = std::make_unique<Buffers>();
  Buffers& b = *buf_;
  const size_t T = opt.max_tokens, B = opt.max_seqs, R = options_.max_logit_rows;
  const size_t PT = B * max_pages_per_seq_;
  b.max_tiles = T / kPrefillRows + B + 1;
  const int max_splits = kMaxDecodeSplits;
  size_t act_bytes = 0;
  {
    Carver dry(nullptr);
    auto plan = [&](Carver& cv) {
      b.tokens = cv.Take<int32_t>(T);
      b.positions = cv.Take<int32_t>(T);
      b.slots = cv.Take<int32_t>(T);
      b.q_start = cv.Take<int32_t>(B);
      b.q_len = cv.Take<int32_t>(B);
      b.kv_len = cv.Take<int32_t>(B);
      b.page_table = cv.Take<int32_t>(PT);
      b.tiles = cv.Take<int2>(b.max_tiles);
      b.logit_rows = cv.Take<int32_t>(R);
      b.temperature = cv.Take<float>(R);
      b.seed = cv.Take<uint64_t>(R);
      b.step = cv.Take<int32_t>(R);
      b.residual = cv.Take<bf16_t>(T * H);
      b.normed = cv.Take<bf16_t>(T * H);
      b.qkv = cv.Take<bf16_t>(T * qkv_rows);
      b.attn = cv.Take<bf16_t>(T * NH * D);
      b.gate_up = cv.Take<bf16_t>(T * 2 * I);
      b.act = cv.Take<bf16_t>(T * I);
      b.delta = cv.Take<bf16_t>(T * H);
      b.gathered = cv.Take<bf16_t>(R * H);
      b.decode_ws = cv.Take<float>(DecodeWorkspaceFloats(int(B), int(NH), int(D), max_splits));
      logits_ = cv.Take<float>(R * V);
      d_sampled_ = cv.Take<int32_t>(R);
    };
    plan(dry);
    act_bytes = dry.used();
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&act_, act_bytes));
    Carver real(act_);
    plan(real);
  }
  // Pinned mirrors of the inputs: the first bytes of the activation layout
  // (tokens .. step) have the same offsets on the host.
  b.host_bytes = reinterpret_cast<char*>(b.residual) - reinterpret_cast<char*>(b.tokens);
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaHostAlloc(&b.host, b.host_bytes, cudaHostAllocMapped | cudaHostAllocPortable));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&b.host_dev, b.host, 0));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&b.sampled_host),
                                            std::max<size_t>(1, R) * sizeof(int32_t),
                                            cudaHostAllocMapped | cudaHostAllocPortable));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(
      reinterpret_cast<void**>(&b.sampled_host_dev), b.sampled_host, 0));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&b.staged, cudaEventDisableTiming));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(b.staged, stream_));

  // --- KV pool. ---
  const uint64_t page_bytes = kv_bytes_per_page();
  if (options_.num_pages == 0) {
    size_t free_b = 0, total_b = 0;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_b, &total_b));
    uint64_t pages = uint64_t(double(free_b) * opt.kv_memory_fraction) / page_bytes;
    options_.num_pages = uint32_t(std::min<uint64_t>(pages, (1u << 31) / opt.page_tokens - 1));
    if (options_.num_pages == 0)
      return Status::ResourceExhausted("no device memory left for the KV pool");
  }
  const uint64_t layer_bytes = page_bytes / c.num_hidden_layers;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&kv_, layer_bytes * options_.num_pages * c.num_hidden_layers));
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaMemset(kv_, 0, layer_bytes * options_.num_pages * c.num_hidden_layers));
  std::vector<void*> bases(c.num_hidden_layers);
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l)
    bases[l] = static_cast<char*>(kv_) + l * layer_bytes * options_.num_pages;
  KvPoolShape shape;
  shape.dtype = KvDtype::kBf16;
  shape.num_layers = c.num_hidden_layers;
  shape.kv_heads = c.num_key_value_heads;
  shape.head_dim = c.head_dim;
  shape.tokens_per_page = opt.page_tokens;
  shape.num_pages = options_.num_pages;
  // Page sizes the loader does not take (under 16 tokens) leave the pool
  // descriptor empty: the engine runs, kvtier cannot fill it.
  Result<KvPool> pool = MakeVllmFlashPool(shape, bases);
  if (pool.ok()) {
    pool_ = std::move(pool.value());
  } else {
    pool_ = KvPool{};
    pool_.shape = shape;
  }
  graphs_.assign(opt.max_seqs + 1, nullptr);
  return CudaStatus(cudaStreamSynchronize(stream_), "weight upload");
}

Status LlamaModel::Stage(const StepInput& in) {
  const size_t T = in.tokens.size(), B = in.q_len.size(), R = in.logit_rows.size();
  auto bad = [](const std::string& m) { return Status::InvalidArgument("forward step: " + m); };
  if (T == 0 || T > options_.max_tokens)
    return bad(std::to_string(T) + " tokens (1 .. " + std::to_string(options_.max_tokens) + ")");
  if (B == 0 || B > options_.max_seqs)
    return bad(std::to_string(B) + " sequences (1 .. " + std::to_string(options_.max_seqs) + ")");
  if (R > options_.max_logit_rows)
    return bad(std::to_string(R) + " logit rows (at most " +
               std::to_string(options_.max_logit_rows) + ")");
  if (in.positions.size() != T || in.slots.size() != T || in.kv_len.size() != B ||
      in.page_table.size() != B * max_pages_per_seq_ || in.temperature.size() != R ||
      in.seed.size() != R || in.step.size() != R)
    return bad("input arrays disagree in size");
  size_t sum = 0;
  const uint64_t slots = uint64_t(options_.num_pages) * options_.page_tokens;
  for (size_t s = 0; s < B; ++s) {
    if (in.q_len[s] < 1 || in.q_len[s] > in.kv_len[s] ||
        uint32_t(in.kv_len[s]) > options_.max_seq_len || (in.decode && in.q_len[s] != 1))
      return bad("sequence " + std::to_string(s) + ": q_len " + std::to_string(in.q_len[s]) +
                 ", kv_len " + std::to_string(in.kv_len[s]));
    for (uint32_t p = 0; p < PagesFor(in.kv_len[s], options_.page_tokens); ++p) {
      int32_t page = in.page_table[s * max_pages_per_seq_ + p];
      if (page < 0 || uint32_t(page) >= options_.num_pages)
        return bad("sequence " + std::to_string(s) + ": page " + std::to_string(page));
    }
    sum += in.q_len[s];
  }
  if (sum != T) return bad("q_len sums to " + std::to_string(sum) + ", not " + std::to_string(T));
  for (size_t t = 0; t < T; ++t) {
    if (in.tokens[t] < 0 || uint32_t(in.tokens[t]) >= config_.vocab_size)
      return bad("token " + std::to_string(in.tokens[t]) + " is outside the vocabulary (" +
                 std::to_string(config_.vocab_size) + ")");
    if (in.slots[t] < 0 || uint64_t(in.slots[t]) >= slots || in.positions[t] < 0)
      return bad("slot or position of token " + std::to_string(t));
  }
  for (int32_t r : in.logit_rows)
    if (r < 0 || size_t(r) >= T) return bad("logit row " + std::to_string(r));

  std::vector<int32_t> q_start(B);
  for (size_t s = 0, o = 0; s < B; ++s) {
    q_start[s] = int32_t(o);
    o += in.q_len[s];
  }
  std::vector<int2> tiles;
  if (!in.decode) tiles = PrefillTiles(in.q_len, in.kv_len, config_.head_dim);
  if (tiles.size() > buf_->max_tiles) return bad("too many attention tiles");

  Buffers& b = *buf_;
  // The previous step's copies must have left the pinned mirror.
  KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(b.staged));
  char* host = static_cast<char*>(b.host);
  char* host_dev = static_cast<char*>(b.host_dev);
  char* dev0 = reinterpret_cast<char*>(b.tokens);
  // One kernel copies every input from the mapped mirror (kernels.h,
  // LaunchCopyPieces): no copy-engine queue between the step and its inputs.
  CopyPieces pieces;
  auto put = [&](void* dev, const void* src, size_t bytes) -> Status {
    if (bytes == 0) return Status::OK();
    const size_t off = static_cast<char*>(dev) - dev0;
    std::memcpy(host + off, src, bytes);
    if (pieces.count == kMaxCopyPieces) return Status::Internal("stage: too many input pieces");
    pieces.piece[pieces.count++] = CopyPiece{dev, host_dev + off, uint32_t(bytes)};
    return Status::OK();
  };
  KVTIER_RETURN_IF_ERROR(put(b.tokens, in.tokens.data(), T * 4));
  KVTIER_RETURN_IF_ERROR(put(b.positions, in.positions.data(), T * 4));
  KVTIER_RETURN_IF_ERROR(put(b.slots, in.slots.data(), T * 4));
  KVTIER_RETURN_IF_ERROR(put(b.q_start, q_start.data(), B * 4));
  KVTIER_RETURN_IF_ERROR(put(b.q_len, in.q_len.data(), B * 4));
  KVTIER_RETURN_IF_ERROR(put(b.kv_len, in.kv_len.data(), B * 4));
  KVTIER_RETURN_IF_ERROR(put(b.page_table, in.page_table.data(), in.page_table.size() * 4));
  KVTIER_RETURN_IF_ERROR(put(b.tiles, tiles.data(), tiles.size() * sizeof(int2)));
  KVTIER_RETURN_IF_ERROR(put(b.logit_rows, in.logit_rows.data(), R * 4));
  KVTIER_RETURN_IF_ERROR(put(b.temperature, in.temperature.data(), R * 4));
  KVTIER_RETURN_IF_ERROR(put(b.seed, in.seed.data(), R * 8));
  KVTIER_RETURN_IF_ERROR(put(b.step, in.step.data(), R * 4));
  LaunchCopyPieces(pieces, stream_);
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(b.staged, stream_));
  staged_decode_ = in.decode;
  staged_tokens_ = int(T);
  staged_seqs_ = int(B);
  staged_logit_rows_ = int(R);
  staged_tiles_ = int(tiles.size());
  return Status::OK();
}

Status LlamaModel::QueueSampledReadback(int rows) {
  if (rows <= 0) return Status::OK();
  if (size_t(rows) > options_.max_logit_rows)
    return Status::InvalidArgument("readback of " + std::to_string(rows) + " rows");
  CopyPieces pieces;
  pieces.piece[0] = CopyPiece{buf_->sampled_host_dev, d_sampled_, uint32_t(rows * sizeof(int32_t))};
  pieces.count = 1;
  LaunchCopyPieces(pieces, stream_);
  return CudaStatus(cudaGetLastError(), "sampled tokens readback");
}

const int32_t* LlamaModel::host_sampled_tokens() const { return buf_->sampled_host; }

void LlamaModel::Gemm(const bf16_t* x, const bf16_t* w, void* y, int m, int n, int k,
                      bool f32_out) {
  // Row-major y[m, n] = x[m, k] * w[n, k]^T is column-major y^T = w * x^T.
  const float alpha = 1.f, beta = 0.f;
  cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w,
               CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, f32_out ? CUDA_R_32F : CUDA_R_16BF, n,
               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

void LlamaModel::Forward(const LayerHook& before_attention) {
  const ModelConfig& c = config_;
  Buffers& b = *buf_;
  const int T = staged_tokens_, B = staged_seqs_, R = staged_logit_rows_;
  const int H = int(c.hidden_size), I = int(c.intermediate_size), D = int(c.head_dim);
  const int NH = int(c.num_attention_heads), KH = int(c.num_key_value_heads);
  const int qkv_dim = (NH + 2 * KH) * D;
  const float eps = float(c.rms_norm_eps);
  const size_t layer_elems = size_t(2) * options_.num_pages * options_.page_tokens * KH * D;

  AttnArgs attn;
  attn.q = b.qkv;
  attn.q_stride = qkv_dim;
  attn.out = b.attn;
  attn.out_stride = NH * D;
  attn.num_heads = NH;
  attn.kv_heads = KH;
  attn.head_dim = D;
  attn.page_tokens = int(options_.page_tokens);
  attn.page_table = b.page_table;
  attn.page_table_stride = int(max_pages_per_seq_);
  attn.kv_len = b.kv_len;
  attn.num_seqs = B;
  attn.scale = 1.f / std::sqrt(float(D));

  LaunchEmbed(b.tokens, T, embed_, H, b.residual, stream_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    LaunchAddRmsNorm(b.residual, l == 0 ? nullptr : b.delta, L.input_norm, eps, T, H, b.normed,
                     stream_);
    Gemm(b.normed, L.wqkv, b.qkv, T, qkv_dim, H, false);
    bf16_t* k_cache = static_cast<bf16_t*>(kv_) + l * layer_elems;
    bf16_t* v_cache = k_cache + layer_elems / 2;
    RopeKvArgs rk;
    rk.qkv = b.qkv;
    rk.qkv_stride = qkv_dim;
    rk.num_tokens = T;
    rk.num_heads = NH;
    rk.kv_heads = KH;
    rk.head_dim = D;
    rk.positions = b.positions;
    rk.slots = b.slots;
    rk.inv_freq = inv_freq_;
    rk.k_cache = k_cache;
    rk.v_cache = v_cache;
    LaunchRopeKv(rk, stream_);
    if (before_attention) before_attention(int(l), stream_);
    attn.k_cache = k_cache;
    attn.v_cache = v_cache;
    if (staged_decode_) {
      DecodeArgs da;
      da.attn = attn;
      da.splits = DecodeSplits(B, KH, num_sms_);
      da.workspace = b.decode_ws;
      LaunchDecodeAttention(da, stream_);
    } else {
      PrefillArgs pa;
      pa.attn = attn;
      pa.q_start = b.q_start;
      pa.q_len = b.q_len;
      pa.tiles = b.tiles;
      pa.num_tiles = staged_tiles_;
      LaunchPrefillAttention(pa, stream_);
    }
    Gemm(b.attn, L.wo, b.delta, T, H, NH * D, false);
    LaunchAddRmsNorm(b.residual, b.delta, L.post_norm, eps, T, H, b.normed, stream_);
    Gemm(b.normed, L.wgate_up, b.gate_up, T, 2 * I, H, false);
    LaunchSwiglu(b.gate_up, T, I, b.act, stream_);
    Gemm(b.act, L.wdown, b.delta, T, H, I, false);
  }
  if (R == 0) return;
  LaunchAddRmsNorm(b.residual, b.delta, final_norm_, eps, T, H, b.normed, stream_);
  LaunchGatherRows(b.normed, b.logit_rows, R, H, b.gathered, stream_);
  Gemm(b.gathered, lm_head_, logits_, R, int(c.vocab_size), H, true);
  LaunchSample(logits_, R, int(c.vocab_size), b.temperature, b.seed, b.step, d_sampled_, stream_);
}

Status LlamaModel::ForwardDecodeGraph(int num_seqs) {
  if (!staged_decode_ || staged_seqs_ != num_seqs || staged_logit_rows_ != num_seqs ||
      num_seqs <= 0 || size_t(num_seqs) >= graphs_.size())
    return Status::InvalidArgument("decode graph: stage a decode step of this batch first");
  if (graphs_broken_) {
    Forward();
    return Status::OK();
  }
  cudaGraphExec_t& exec = graphs_[num_seqs];
  if (!exec) {
    cudaGraph_t graph = nullptr;
    Status st = CudaStatus(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                           "cudaStreamBeginCapture");
    if (st.ok()) {
      Forward();
      st = CudaStatus(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    }
    if (st.ok()) st = CudaStatus(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    if (graph) cudaGraphDestroy(graph);
    if (!st.ok()) {
      exec = nullptr;
      graphs_broken_ = true;
      (void)cudaGetLastError();
      Forward();
      return st;
    }
  }
  return CudaStatus(cudaGraphLaunch(exec, stream_), "cudaGraphLaunch");
}

}  // namespace kvtier::engine
