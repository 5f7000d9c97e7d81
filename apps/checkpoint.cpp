// Training checkpoints (see checkpoint.h).
#include "apps/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/safetensors.h"

namespace nd {

namespace {

constexpr const char* kStateFormat = "nd-train training state 1";

std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

const std::string& require_meta(const std::map<std::string, std::string>& meta,
                                const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  ND_CHECK(it != meta.end(), path, " has no '", key,
           "' in its metadata; it was not written by nd-train");
  return it->second;
}

int64_t epoch_of(const std::map<std::string, std::string>& meta, const std::string& path) {
  return std::stoll(require_meta(meta, "epoch", path));
}

nlohmann::json history_json(const std::vector<EpochStats>& history) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : history)
    out.push_back({s.epoch, s.lr, s.train_loss, s.train_top1, s.test_loss, s.test_top1, s.test_top5,
                   s.seconds, s.images_per_s});
  return out;
}

std::vector<EpochStats> history_from_json(const nlohmann::json& j) {
  std::vector<EpochStats> out;
  for (const auto& r : j) {
    EpochStats s;
    s.epoch = r.at(0).get<int64_t>();
    double* fields[] = {&s.lr,        &s.train_loss, &s.train_top1, &s.test_loss,
                        &s.test_top1, &s.test_top5,  &s.seconds,    &s.images_per_s};
    for (size_t i = 0; i < 8; ++i) *fields[i] = r.at(i + 1).get<double>();
    out.push_back(s);
  }
  return out;
}

// Loads tensors read from `path` into net; errors name the file and the tensor.
void load_into(Module& net, const std::map<std::string, Tensor>& tensors, const std::string& path) {
  try {
    net.load_state_dict(tensors);
  } catch (const Error& e) {
    ND_FAIL(path, ": ", e.what());
  }
}

}  // namespace

void save_weights(const std::string& path, const Module& net, int64_t epoch) {
  data::save_safetensors(path, net.state_dict(), {{"epoch", std::to_string(epoch)}});
}

void load_weights(const std::string& path, Module& net) {
  ND_CHECK(std::filesystem::exists(path), "weights file ", path, " does not exist");
  load_into(net, data::load_safetensors(path), path);
}

void save_training_checkpoint(const std::string& dir, const Module& net, const Optimizer& opt,
                              const TrainingProgress& progress) {
  save_weights(dir + "/last.safetensors", net, progress.epochs_done);
  std::map<std::string, Tensor> state;
  const auto params = net.named_parameters();
  ND_CHECK(params.size() == opt.params().size(), "optimizer and model disagree on parameters");
  for (size_t i = 0; i < params.size(); ++i)
    for (auto& [name, t] : opt.state_of(i)) state["optimizer." + params[i].first + "." + name] = t;
  for (const auto& [name, m] : net.named_modules()) {
    const std::vector<int64_t> extra = m->extra_state();
    if (!extra.empty())
      state["extra." + name] = Tensor::from_vector(extra, {int64_t(extra.size())});
  }
  std::string rng;
  for (uint64_t w : progress.data_rng) rng += (rng.empty() ? "" : " ") + std::to_string(w);
  data::save_safetensors(dir + "/training_state.safetensors", state,
                         {{"format", kStateFormat},
                          {"epoch", std::to_string(progress.epochs_done)},
                          {"step", std::to_string(progress.step)},
                          {"optimizer_steps", std::to_string(opt.steps())},
                          {"best_top1", exact(progress.best_top1)},
                          {"data_rng", rng},
                          {"history", history_json(progress.history).dump()}});
}

void load_training_checkpoint(const std::string& dir, Module& net, Optimizer& opt,
                              TrainingProgress& progress) {
  const std::string weights = dir + "/last.safetensors",
                    state_path = dir + "/training_state.safetensors";
  for (const auto& p : {weights, state_path})
    ND_CHECK(std::filesystem::exists(p), "cannot resume: ", p,
             " does not exist (was the run started with --output ", dir, "?)");
  std::map<std::string, std::string> wmeta, smeta;
  auto wt = data::load_safetensors(weights, &wmeta);
  auto st = data::load_safetensors(state_path, &smeta);
  ND_CHECK(require_meta(smeta, "format", state_path) == kStateFormat, state_path,
           " has an unknown format '", smeta["format"], "'");
  const int64_t epoch = epoch_of(smeta, state_path), weights_epoch = epoch_of(wmeta, weights);
  ND_CHECK(weights_epoch == epoch, "cannot resume: ", weights, " is from epoch ", weights_epoch,
           " but ", state_path, " from epoch ", epoch,
           " (the run stopped between the two writes); restart the run");
  load_into(net, wt, weights);
  const auto params = net.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string prefix = "optimizer." + params[i].first + ".";
    std::map<std::string, Tensor> slot;
    for (auto& [name, t] : st)
      if (name.rfind(prefix, 0) == 0) slot[name.substr(prefix.size())] = t;
    try {
      opt.load_state_of(i, slot);
    } catch (const Error& e) {
      ND_FAIL(state_path, ": ", e.what(), " (was the run made with another --optimizer?)");
    }
  }
  for (const auto& [name, m] : net.named_modules()) {
    if (m->extra_state().empty()) continue;
    auto it = st.find("extra." + name);
    ND_CHECK(it != st.end(), state_path, " has no state for layer '", name, "'");
    m->set_extra_state(it->second.to_vector<int64_t>());
  }
  opt.set_steps(std::stoll(require_meta(smeta, "optimizer_steps", state_path)));
  progress.epochs_done = epoch;
  progress.step = std::stoll(require_meta(smeta, "step", state_path));
  progress.best_top1 = std::stod(require_meta(smeta, "best_top1", state_path));
  std::istringstream rng(require_meta(smeta, "data_rng", state_path));
  for (auto& w : progress.data_rng) rng >> w;
  ND_CHECK(bool(rng), state_path, ": malformed data_rng");
  progress.history =
      history_from_json(nlohmann::json::parse(require_meta(smeta, "history", state_path)));
}

}  // namespace nd
