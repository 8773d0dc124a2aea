// FaultIoQueue: see tiers/fault_io_queue.h.
#include "tiers/fault_io_queue.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

namespace kvtier {

FaultIoQueue::FaultIoQueue(std::unique_ptr<IoQueue> inner, uint64_t seed)
    : inner_(std::move(inner)), rng_(seed) {
  name_ = "fault(" + std::string(inner_->name()) + ")";
  uint32_t depth = inner_->depth();
  slots_.resize(depth);
  free_slots_.reserve(depth);
  for (uint32_t i = depth; i > 0; --i) free_slots_.push_back(i - 1);
  synth_.resize(depth);
}

size_t FaultIoQueue::AddRule(const FaultRule& rule) {
  rules_.push_back(RuleState{rule, 0, 0});
  return rules_.size() - 1;
}

void FaultIoQueue::ClearRules() { rules_.clear(); }

Status FaultIoQueue::RegisterBuffers(std::span<const iovec> regions) {
  if (outstanding() != 0) return Status::InvalidArgument("RegisterBuffers: I/O outstanding");
  return inner_->RegisterBuffers(regions);
}

Status FaultIoQueue::RegisterFiles(std::span<const int> fds) {
  if (outstanding() != 0) return Status::InvalidArgument("RegisterFiles: I/O outstanding");
  return inner_->RegisterFiles(fds);
}

int FaultIoQueue::MatchRule(const IoRequest& r) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    RuleState& s = rules_[i];
    const FaultRule& f = s.rule;
    bool is_write_rule = f.kind == FaultKind::kWriteError;
    if (is_write_rule != (r.op == IoOpcode::kWrite)) continue;
    if (r.offset >= f.offset_end || r.offset + r.len <= f.offset_begin) continue;
    ++s.candidates;
    if (s.fired >= f.max_fires) continue;
    if (f.every_nth > 1 && s.candidates % f.every_nth != 0) continue;
    if (f.probability < 1.0) {
      double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
      if (u >= f.probability) continue;
    }
    ++s.fired;
    ++total_fired_;
    return static_cast<int>(i);
  }
  return -1;
}

Status FaultIoQueue::Prepare(const IoRequest& r) {
  if (outstanding() >= depth() || free_slots_.empty()) return Status::Retry("io queue full");
  if (r.buf == nullptr || r.len == 0) {
    return Status::InvalidArgument("Prepare: null buffer or zero length");
  }
  int rule = MatchRule(r);
  if (rule >= 0) {
    const FaultRule& f = rules_[rule].rule;
    if (f.kind == FaultKind::kWriteError || f.kind == FaultKind::kReadError) {
      synth_[(synth_head_ + synth_count_) % synth_.size()] = IoCompletion{r.user_data, -f.error};
      ++synth_count_;
      return Status::OK();
    }
  }
  uint32_t slot = free_slots_.back();
  IoRequest forwarded = r;
  forwarded.user_data = slot;
  Status s = inner_->Prepare(forwarded);
  if (!s.ok()) {
    if (rule >= 0) {  // did not happen after all
      --rules_[rule].fired;
      --total_fired_;
    }
    return s;
  }
  free_slots_.pop_back();
  slots_[slot] = Slot{r.user_data, rule, static_cast<uint8_t*>(r.buf)};
  return Status::OK();
}

size_t FaultIoQueue::DrainSynthetic(std::span<IoCompletion> out) {
  size_t n = std::min<size_t>(out.size(), synth_count_);
  for (size_t i = 0; i < n; ++i) {
    out[i] = synth_[synth_head_];
    synth_head_ = static_cast<uint32_t>((synth_head_ + 1) % synth_.size());
  }
  synth_count_ -= static_cast<uint32_t>(n);
  return n;
}

void FaultIoQueue::Translate(std::span<IoCompletion> done) {
  for (IoCompletion& c : done) {
    auto slot_index = static_cast<uint32_t>(c.user_data);
    Slot& slot = slots_[slot_index];
    if (slot.rule >= 0 && c.result > 0) {
      const FaultRule& f = rules_[slot.rule].rule;
      if (f.kind == FaultKind::kShortRead) {
        c.result = c.result > static_cast<int32_t>(f.short_by)
                       ? c.result - static_cast<int32_t>(f.short_by)
                       : 0;
      } else if (f.kind == FaultKind::kBitFlip) {
        uint64_t byte = f.flip_byte == FaultRule::kRandomByte
                            ? rng_() % static_cast<uint64_t>(c.result)
                            : std::min<uint64_t>(f.flip_byte, static_cast<uint64_t>(c.result) - 1);
        slot.buf[byte] ^= static_cast<uint8_t>(1u << (rng_() % 8));
      }
    }
    c.user_data = slot.user_data;
    free_slots_.push_back(slot_index);
  }
}

size_t FaultIoQueue::Poll(std::span<IoCompletion> out) {
  size_t got = DrainSynthetic(out);
  size_t n = inner_->Poll(out.subspan(got));
  Translate(out.subspan(got, n));
  return got + n;
}

Result<size_t> FaultIoQueue::Wait(std::span<IoCompletion> out, size_t min_complete) {
  size_t got = DrainSynthetic(out);
  size_t need = min_complete > got ? min_complete - got : 0;
  if (need == 0) {
    // Still submit what is prepared, as Wait() promises.
    auto s = inner_->Submit();
    if (!s.ok()) return s.status();
    size_t n = inner_->Poll(out.subspan(got));
    Translate(out.subspan(got, n));
    return got + n;
  }
  auto w = inner_->Wait(out.subspan(got), need);
  if (!w.ok()) return w.status();
  Translate(out.subspan(got, *w));
  return got + *w;
}

Result<std::vector<FaultRule>> ParseFaultSpec(std::string_view spec) {
  std::vector<FaultRule> rules;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string_view::npos) end = spec.size();
    const std::string_view item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) {
      if (end == spec.size()) break;
      return Status::InvalidArgument("fault spec: empty item");
    }
    const size_t eq = item.find('=');
    const std::string what(item);
    if (eq == std::string_view::npos)
      return Status::InvalidArgument("fault spec item '" + what + "': want KIND=PROBABILITY");
    const std::string kind(item.substr(0, eq)), prob(item.substr(eq + 1));
    char* stop = nullptr;
    const double p = std::strtod(prob.c_str(), &stop);
    if (prob.empty() || *stop != '\0' || !(p >= 0 && p <= 1))
      return Status::InvalidArgument("fault spec item '" + what +
                                     "': the probability must be a number in [0, 1]");
    FaultRule r;
    r.probability = p;
    if (kind == "read-eio") {
      r.kind = FaultKind::kReadError;
      r.error = EIO;
    } else if (kind == "write-eio") {
      r.kind = FaultKind::kWriteError;
      r.error = EIO;
    } else if (kind == "write-enospc") {
      r.kind = FaultKind::kWriteError;
      r.error = ENOSPC;
    } else if (kind == "read-short") {
      r.kind = FaultKind::kShortRead;
    } else if (kind == "read-flip") {
      r.kind = FaultKind::kBitFlip;
    } else {
      return Status::InvalidArgument("fault spec item '" + what +
                                     "': unknown kind (read-eio, write-eio, write-enospc, "
                                     "read-short, read-flip)");
    }
    rules.push_back(r);
  }
  return rules;
}

}  // namespace kvtier
