// The CIFAR networks on Fashion-MNIST directly: the grey images in the CIFAR layout (padded to
// 32x32, the channel repeated into three), a training run whose checkpoint loads into the CIFAR-10
// network unchanged, and --summary's input shape. Also the plain ImageNet VGG-11 (the paper's
// "simple" row of Table 3): torchvision's vgg11 names and count.
#include <filesystem>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/trainer.h"
#include "data/fashion_mnist.h"
#include "io/safetensors.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/data_dir.h"
#include "test/temp_dir.h"

using namespace nd;

TEST_CASE("grey images in the CIFAR layout: centred, zero-padded, repeated in three channels",
          "[data]") {
  data::ImageClassSet grey;
  grey.count = 2, grey.channels = 1, grey.height = 2, grey.width = 3, grey.num_classes = 4;
  grey.pixels = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  grey.labels = {3, 1};
  const data::ImageClassSet out = data::grey_to_cifar_layout(grey, 6);
  REQUIRE(out.count == 2);
  REQUIRE(out.channels == 3);
  REQUIRE(out.height == 6);
  REQUIRE(out.width == 6);
  CHECK(out.labels == grey.labels);
  CHECK(out.num_classes == 4);
  // Image 1, every channel: rows 2-3 (top = (6-2)/2), columns 1-3 (left = (6-3)/2), else 0.
  for (int64_t c = 0; c < 3; ++c) {
    const uint8_t* plane = out.pixels.data() + (3 + c) * 36;
    std::vector<uint8_t> want(36, 0);
    want[2 * 6 + 1] = 7, want[2 * 6 + 2] = 8, want[2 * 6 + 3] = 9;
    want[3 * 6 + 1] = 10, want[3 * 6 + 2] = 11, want[3 * 6 + 3] = 12;
    CHECK(std::vector<uint8_t>(plane, plane + 36) == want);
  }
  test::check_error_contains([&] { data::grey_to_cifar_layout(out); }, {"1-channel", "3"});
  test::check_error_contains([&] { data::grey_to_cifar_layout(grey, 2); }, {"do not fit", "2x3"});
}

TEST_CASE("a CIFAR network trains on Fashion-MNIST directly; its checkpoint is the CIFAR one",
          "[trainer]") {
  test::TempDir dir("grey_cifar");
  TrainConfig cfg;
  cfg.dataset = "fashion-mnist";
  cfg.data_dir = test::fashion_mnist_dir();
  cfg.arch = "efficientnetb0";
  cfg.norm = "nd";
  cfg.device = "cpu";
  cfg.epochs = 1;
  cfg.batch_size = 32;
  cfg.train_limit = 64;
  cfg.test_limit = 32;
  cfg.progress = false;
  cfg.output = dir.file("run");
  std::ostringstream log;
  const TrainResult r = train(cfg, log);
  REQUIRE(r.epochs.size() == 1);
  CHECK(std::isfinite(r.epochs[0].train_loss));
  CHECK(log.str().find("efficientnetb0 norm=nd on fashion-mnist") != std::string::npos);
  // The weights load by name and shape into the network nd-train builds for CIFAR-10.
  TrainConfig cifar = cfg;
  cifar.dataset = "cifar10";
  const DatasetShape d = dataset_shape("cifar10");
  Generator gen(0);
  std::shared_ptr<Module> net =
      build_net(net_config(cifar, d.channels, d.height, d.width, 10), gen);
  load_weights(dir.file("run/last.safetensors"), *net);
  CHECK(io::load_safetensors(dir.file("run/last.safetensors")).at("conv1.weight").shape() ==
        Shape{32, 3, 3, 3});
  std::ostringstream summary;
  print_model_summary(cfg, summary);
  CHECK(summary.str().find("input 3x32x32") != std::string::npos);
  CHECK(grey_in_cifar_layout(cfg));
  cfg.arch = "mlp";
  CHECK(!grey_in_cifar_layout(cfg));  // the MNIST models keep 1x28x28
  CHECK(network_input_shape(cfg).channels == 1);
}

TEST_CASE("ImageNet VGG-11 without normalisation is torchvision's vgg11", "[nets]") {
  NetConfig cfg;
  cfg.arch = "imagenet_vgg11";
  cfg.norm = "none";
  cfg.num_classes = 1000;
  cfg.in_channels = 3;
  cfg.height = cfg.width = 224;
  Generator gen(0);
  auto net = build_net(cfg, gen);
  CHECK(net->num_parameters() == 132863336);  // torchvision.models.vgg11()
  const auto state = net->state_dict();
  for (const char* conv : {"0", "3", "6", "8", "11", "13", "16", "18"}) {
    INFO("features." << conv);
    CHECK(state.count(std::string("features.") + conv + ".weight"));
  }
  CHECK(state.count("classifier.6.bias"));
  for (const auto& [name, t] : state) CHECK(name.find("running") == std::string::npos);
}
