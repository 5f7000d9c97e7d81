// nd-train's configuration (see train_config.h).
#include "apps/train_config.h"

#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <type_traits>

#include "core/error.h"

namespace nd {

namespace {

void require_one_of(const char* flag, const std::string& value,
                    std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += list.empty() ? a : std::string("|") + a;
  }
  ND_FAIL(flag, " '", value, "' is not one of ", list);
}

bool is_cifar(const std::string& d) {
  return d == "cifar10" || d == "cifar100";
}

// Every field once, for both directions of the JSON mapping.
template <typename F>
void for_each_field(TrainConfig& c, F&& f) {
  f("dataset", c.dataset);
  f("data_dir", c.data_dir);
  f("arch", c.arch);
  f("norm", c.norm);
  f("loss", c.loss);
  f("optimizer", c.optimizer);
  f("lr_scheduler", c.lr_scheduler);
  f("device", c.device);
  f("output", c.output);
  f("epochs", c.epochs);
  f("batch_size", c.batch_size);
  f("lr", c.lr);
  f("momentum", c.momentum);
  f("weight_decay", c.weight_decay);
  f("milestone", c.milestone);
  f("multistep_gamma", c.multistep_gamma);
  f("seed", c.seed);
  f("block", c.block);
  f("block_fc", c.block_fc);
  f("deconv_iter", c.deconv_iter);
  f("sampling_stride", c.sampling_stride);
  f("eps", c.eps);
  f("freeze", c.freeze);
  f("ref_compat", c.ref_compat);
  f("deconv_path", c.deconv_path);
  f("workers", c.workers);
  f("threads", c.threads);
  f("train_limit", c.train_limit);
  f("test_limit", c.test_limit);
  f("skip_bad_images", c.skip_bad_images);
  f("image_size", c.image_size);
  f("tf32", c.tf32);
  f("deterministic", c.deterministic);
  f("sync_stats", c.sync_stats);
  f("world_size", c.world_size);
  f("save_dtype", c.save_dtype);
  f("init_weights", c.init_weights);
  f("init_weights_sha256", c.init_weights_sha256);
  f("init_skip", c.init_skip);
  f("no_augment", c.no_augment);
  f("no_shuffle", c.no_shuffle);
}

// Reads a field with JSON's own types and no silent conversion: a whole number in range for an
// integer (not 2.5, not 1e30), a finite number for a double, true/false, a string.
template <typename T>
void read_field(const nlohmann::json& v, T& value, const char* key, const std::string& source) {
  auto wrong = [&](const char* expected) {
    ND_FAIL(source, ": field '", key, "' is ", v.dump(), ", expected ", expected);
  };
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) wrong("a string");
    value = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) wrong("true or false");
    value = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) wrong("a whole number");
    using Limits = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(Limits::max())) wrong("a smaller whole number");
      value = T(u);
    } else {
      const int64_t i = v.get<int64_t>();
      if (i < int64_t(Limits::min()) || (Limits::is_signed && i > int64_t(Limits::max())))
        wrong(Limits::is_signed ? "a smaller whole number" : "a whole number >= 0");
      value = T(i);
    }
  } else {
    static_assert(std::is_floating_point_v<T>);
    if (!v.is_number() || !std::isfinite(v.get<double>())) wrong("a finite number");
    value = v.get<double>();
  }
}

}  // namespace

DatasetShape dataset_shape(const std::string& dataset) {
  if (dataset == "cifar10") return {3, 32, 32, 10};
  if (dataset == "cifar100") return {3, 32, 32, 100};
  if (dataset == "fashion-mnist" || dataset == "mnist") return {1, 28, 28, 10};
  if (dataset == "imagenet") return {3, 224, 224, 1000};
  ND_FAIL("--dataset '", dataset, "' is not one of cifar10|cifar100|fashion-mnist|mnist|imagenet");
}

namespace {
bool is_grey(const std::string& d) {
  return d == "fashion-mnist" || d == "mnist";
}
std::string arch_input(const TrainConfig& cfg) {
  const std::string arch = resolve_arch(cfg.arch, cfg.dataset);
  for (const auto& info : arch_table())
    if (info.name == arch) return info.input;
  return "";
}
}  // namespace

bool grey_in_cifar_layout(const TrainConfig& cfg) {
  return is_grey(cfg.dataset) && arch_input(cfg) == "cifar";
}

DatasetShape network_input_shape(const TrainConfig& cfg) {
  DatasetShape d = dataset_shape(cfg.dataset);
  if (cfg.dataset == "imagenet") d.height = d.width = cfg.image_size;
  if (grey_in_cifar_layout(cfg)) d.channels = 3, d.height = d.width = 32;
  return d;
}

void apply_recipe_defaults(TrainConfig& cfg, const std::vector<std::string>& given) {
  auto unset = [&](const char* key) {
    for (const auto& g : given)
      if (g == key) return false;
    return true;
  };
  if (cfg.dataset == "fashion-mnist" || cfg.dataset == "mnist") {
    if (unset("batch_size")) cfg.batch_size = 512;
    if (unset("weight_decay")) cfg.weight_decay = 5e-4;
  } else if (cfg.dataset == "imagenet") {
    if (unset("batch_size")) cfg.batch_size = 256;
    if (unset("weight_decay")) cfg.weight_decay = 1e-4;
    if (unset("epochs")) cfg.epochs = 90;
  }
}

void validate(const TrainConfig& cfg) {
  require_one_of("--dataset", cfg.dataset,
                 {"cifar10", "cifar100", "fashion-mnist", "mnist", "imagenet"});
  require_one_of("--norm", cfg.norm, {"none", "bn", "nd"});
  require_one_of("--loss", cfg.loss, {"CE", "L2"});
  require_one_of("--optimizer", cfg.optimizer, {"sgd", "adam"});
  require_one_of("--lr-scheduler", cfg.lr_scheduler, {"cosine", "multistep"});
  require_one_of("--deconv-path", cfg.deconv_path, {"fused", "composite"});
  require_one_of("--save-dtype", cfg.save_dtype, {"F32", "F16", "BF16"});
  const std::string arch = resolve_arch(cfg.arch, cfg.dataset);
  bool known = false;
  for (const auto& info : arch_table()) {
    if (info.name != arch) continue;
    known = true;
    const bool fits = info.input == "fashion" ||
                      (info.input == "cifar" && (is_cifar(cfg.dataset) || is_grey(cfg.dataset))) ||
                      (info.input == "imagenet" && cfg.dataset == "imagenet");
    ND_CHECK(fits, "--arch ", cfg.arch, " is a network for ", info.input,
             " images and cannot train on --dataset ", cfg.dataset);
  }
  if (!known) {
    std::string list;
    for (const auto& a : available_archs()) list += (list.empty() ? "" : ", ") + a;
    ND_FAIL("unknown --arch '", cfg.arch, "'; available: ", list);
  }
  ND_CHECK(cfg.epochs >= 1, "--epochs must be at least 1, got ", cfg.epochs);
  ND_CHECK(cfg.stop_after >= 0, "--stop-after must be >= 0, got ", cfg.stop_after);
  ND_CHECK(cfg.batch_size >= 1, "--batch-size must be at least 1, got ", cfg.batch_size);
  ND_CHECK(cfg.lr > 0 && std::isfinite(cfg.lr), "--lr must be positive, got ", cfg.lr);
  ND_CHECK(cfg.momentum >= 0 && cfg.momentum < 1, "--momentum must be in [0, 1), got ",
           cfg.momentum);
  ND_CHECK(cfg.weight_decay >= 0, "--wd must be >= 0, got ", cfg.weight_decay);
  ND_CHECK(cfg.milestone > 0 && cfg.milestone <= 1, "--milestone must be in (0, 1], got ",
           cfg.milestone);
  ND_CHECK(cfg.multistep_gamma > 0, "--multistep-gamma must be > 0, got ", cfg.multistep_gamma);
  ND_CHECK(cfg.block >= 1, "--block must be >= 1, got ", cfg.block);
  ND_CHECK(cfg.block_fc >= 0, "--block-fc must be >= 0 (0: plain Linear), got ", cfg.block_fc);
  ND_CHECK(cfg.deconv_iter >= 1, "--deconv-iter must be >= 1, got ", cfg.deconv_iter);
  ND_CHECK(cfg.sampling_stride >= 1, "--stride must be >= 1, got ", cfg.sampling_stride);
  ND_CHECK(cfg.eps > 0, "--eps must be > 0, got ", cfg.eps);
  ND_CHECK(cfg.image_size >= 8, "--image-size must be >= 8, got ", cfg.image_size);
  ND_CHECK(cfg.workers >= 0, "--workers must be >= 0, got ", cfg.workers);
  ND_CHECK(cfg.threads >= 0, "--threads must be >= 0 (0: every core), got ", cfg.threads);
  ND_CHECK(cfg.train_limit >= 0 && cfg.test_limit >= 0, "limits must be >= 0");
  require_one_of("--sync-stats", cfg.sync_stats, {"on", "off"});
  ND_CHECK(cfg.log_interval >= 0, "--log-interval must be >= 0 (0: about every 10 s), got ",
           cfg.log_interval);
  ND_CHECK(cfg.init_skip.empty() || !cfg.init_weights.empty(), "--init-skip needs --init-weights");
  if (!cfg.init_skip.empty()) init_skip_filter(cfg.init_skip);  // a bad pattern fails here
  ND_CHECK(cfg.world_size >= 1, "world_size must be >= 1, got ", cfg.world_size);
}

NetConfig net_config(const TrainConfig& cfg, int64_t channels, int64_t height, int64_t width,
                     int64_t classes) {
  NetConfig n;
  n.arch = resolve_arch(cfg.arch, cfg.dataset);
  n.norm = cfg.norm;
  n.num_classes = classes;
  n.in_channels = channels;
  n.height = height;
  n.width = width;
  n.ref_compat = cfg.ref_compat;
  n.deconv.block = cfg.block;
  n.deconv.n_iter = cfg.deconv_iter;
  n.deconv.eps = cfg.eps;
  n.deconv.sampling_stride = cfg.sampling_stride;
  n.deconv.freeze = cfg.freeze;
  n.block_fc = cfg.block_fc;
  n.deconv_path = cfg.deconv_path == "composite" ? DeconvPath::Composite : DeconvPath::Fused;
  n.deconv.path = n.deconv_path;
  return n;
}

std::function<bool(const std::string&)> init_skip_filter(const std::string& pattern) {
  if (pattern.empty()) return {};
  try {
    auto re = std::make_shared<std::regex>(pattern, std::regex::ECMAScript);
    return [re](const std::string& name) { return std::regex_match(name, *re); };
  } catch (const std::regex_error& e) {
    ND_FAIL("--init-skip '", pattern, "' is not a valid regular expression (", e.what(), ")");
  }
}

std::string to_json(const TrainConfig& cfg) {
  nlohmann::ordered_json j;
  TrainConfig c = cfg;
  for_each_field(c, [&](const char* key, auto& value) { j[key] = value; });
  return j.dump(2) + "\n";
}

TrainConfig config_from_json(const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const std::exception& e) {
    ND_FAIL(source, " is not valid JSON: ", e.what());
  }
  ND_CHECK(j.is_object(), source, " must hold a JSON object");
  TrainConfig c;
  size_t used = 0;
  for_each_field(c, [&](const char* key, auto& value) {
    if (!j.contains(key)) return;
    ++used;
    read_field(j.at(key), value, key, source);
  });
  if (used != j.size()) {
    TrainConfig probe;
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool found = false;
      for_each_field(probe, [&](const char* key, auto&) { found = found || it.key() == key; });
      ND_CHECK(found, source, ": unknown field '", it.key(), "'");
    }
  }
  return c;
}

}  // namespace nd
