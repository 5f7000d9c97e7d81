// Training checkpoints (see checkpoint.h).
#include "apps/checkpoint.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/train_config.h"
#include "io/sha256.h"

namespace nd {

namespace {

// Format 2 holds the model itself ("model.<name>"); format 1 (older runs) kept it only in
// last.safetensors, which resume then reads.
constexpr const char* kStateFormat = "nd-train training state 2";
constexpr const char* kStateFormatWithoutModel = "nd-train training state 1";
constexpr const char* kModelPrefix = "model.";

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

// The metadata value `key` read whole by parse (std::stoll, std::stod), or nd::Error naming the
// file and the key.
template <typename T, typename Parse>
T meta_number(const std::map<std::string, std::string>& meta, const std::string& key,
              const std::string& path, Parse parse, const char* kind) {
  const std::string& text = require_meta(meta, key, path);
  size_t used = 0;
  T v{};
  try {
    v = T(parse(text, &used));
  } catch (const std::exception&) {
    used = 0;
  }
  ND_CHECK(used > 0 && used == text.size(), path, ": metadata '", key, "' is '", text, "', not ",
           kind, "; the file is damaged");
  return v;
}

int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key,
                 const std::string& path) {
  return meta_number<int64_t>(
      meta, key, path, [](const std::string& t, size_t* used) { return std::stoll(t, used); },
      "an integer");
}

double meta_double(const std::map<std::string, std::string>& meta, const std::string& key,
                   const std::string& path) {
  return meta_number<double>(
      meta, key, path, [](const std::string& t, size_t* used) { return std::stod(t, used); },
      "a number");
}

// JSON has no NaN or infinity (nlohmann writes them as null): they are stored as strings.
nlohmann::json number_json(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

double number_from_json(const nlohmann::json& j, const std::string& path) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  ND_FAIL(path, ": the history holds ", j.dump(), " where a number belongs; the file is damaged");
}

nlohmann::json history_json(const std::vector<EpochStats>& history) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : history) {
    nlohmann::json row = nlohmann::json::array({s.epoch});
    for (double v : {s.lr, s.train_loss, s.train_top1, s.test_loss, s.test_top1, s.test_top5,
                     s.seconds, s.images_per_s})
      row.push_back(number_json(v));
    out.push_back(row);
  }
  return out;
}

std::vector<EpochStats> history_from_json(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    ND_FAIL(path, ": the history in the metadata is not valid JSON (", e.what(),
            "); the file is damaged");
  }
  ND_CHECK(j.is_array(), path, ": the history in the metadata is not a JSON array");
  std::vector<EpochStats> out;
  for (const auto& r : j) {
    ND_CHECK(r.is_array() && r.size() == 9 && r[0].is_number_integer(), path, ": a history row is ",
             r.dump(), ", not [epoch, 8 numbers]; the file is damaged");
    EpochStats s;
    s.epoch = r[0].get<int64_t>();
    double* fields[] = {&s.lr,        &s.train_loss, &s.train_top1, &s.test_loss,
                        &s.test_top1, &s.test_top5,  &s.seconds,    &s.images_per_s};
    for (size_t i = 0; i < 8; ++i) *fields[i] = number_from_json(r[i + 1], path);
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

void save_weights(const std::string& path, const Module& net, int64_t epoch,
                  io::FloatStorage floats) {
  io::save_safetensors(path, net.state_dict(), {{"epoch", std::to_string(epoch)}}, floats);
}

void load_weights(const std::string& path, Module& net) {
  ND_CHECK(std::filesystem::exists(path), "weights file ", path, " does not exist");
  load_into(net, io::load_safetensors(path), path);
}

std::string load_init_weights(const std::string& path, const std::string& skip_pattern,
                              Module& net) {
  ND_CHECK(std::filesystem::exists(path), "--init-weights ", path, " does not exist");
  const auto skip = init_skip_filter(skip_pattern);
  std::map<std::string, Tensor> tensors;
  try {
    tensors = io::load_safetensors(path);
    net.load_state_dict(tensors, skip);
  } catch (const Error& e) {
    ND_FAIL("--init-weights ", path, ": ", e.what(),
            skip_pattern.empty()
                ? ""
                : " (--init-skip '" + skip_pattern + "' left out the names it matches)");
  }
  return io::sha256_file(path);
}

int64_t weights_epoch(const std::string& path) {
  try {
    std::map<std::string, std::string> meta;
    io::load_safetensors(path, &meta);
    return meta_int(meta, "epoch", path);
  } catch (const Error&) {
    return -1;
  }
}

void save_training_checkpoint(const std::string& dir, const Module& net, const Optimizer& opt,
                              const TrainingProgress& progress, io::FloatStorage floats) {
  std::map<std::string, Tensor> state;
  for (const auto& [name, t] : net.state_dict()) state[kModelPrefix + name] = t;
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
  io::save_safetensors(dir + "/training_state.safetensors", state,
                       {{"format", kStateFormat},
                        {"epoch", std::to_string(progress.epochs_done)},
                        {"step", std::to_string(progress.step)},
                        {"optimizer_steps", std::to_string(opt.steps())},
                        {"best_top1", exact(progress.best_top1)},
                        {"data_rng", rng},
                        {"history", history_json(progress.history).dump()}});
  save_weights(dir + "/last.safetensors", net, progress.epochs_done, floats);
}

void load_training_checkpoint(const std::string& dir, Module& net, Optimizer& opt,
                              TrainingProgress& progress) {
  const std::string weights = dir + "/last.safetensors",
                    state_path = dir + "/training_state.safetensors";
  ND_CHECK(std::filesystem::exists(state_path), "cannot resume: ", state_path,
           " does not exist (was the run started with --output ", dir, "?)");
  std::map<std::string, std::string> smeta;
  auto st = io::load_safetensors(state_path, &smeta);
  const std::string& format = require_meta(smeta, "format", state_path);
  ND_CHECK(format == kStateFormat || format == kStateFormatWithoutModel, state_path,
           " has an unknown format '", format, "'");
  const int64_t epoch = meta_int(smeta, "epoch", state_path);
  if (format == kStateFormat) {
    std::map<std::string, Tensor> model;
    for (auto& [name, t] : st)
      if (name.rfind(kModelPrefix, 0) == 0)
        model[name.substr(std::string(kModelPrefix).size())] = t;
    load_into(net, model, state_path);
  } else {
    std::map<std::string, std::string> wmeta;
    ND_CHECK(std::filesystem::exists(weights), "cannot resume: ", weights, " does not exist");
    auto wt = io::load_safetensors(weights, &wmeta);
    const int64_t weights_epoch = meta_int(wmeta, "epoch", weights);
    ND_CHECK(weights_epoch == epoch, "cannot resume: ", weights, " is from epoch ", weights_epoch,
             " but ", state_path, " from epoch ", epoch,
             " (the run stopped between the two writes); restart the run");
    load_into(net, wt, weights);
  }
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
  opt.set_steps(meta_int(smeta, "optimizer_steps", state_path));
  progress.epochs_done = epoch;
  progress.step = meta_int(smeta, "step", state_path);
  progress.best_top1 = meta_double(smeta, "best_top1", state_path);
  std::istringstream rng(require_meta(smeta, "data_rng", state_path));
  for (auto& w : progress.data_rng) rng >> w;
  ND_CHECK(bool(rng), state_path, ": malformed data_rng");
  progress.history = history_from_json(require_meta(smeta, "history", state_path), state_path);
}

}  // namespace nd
