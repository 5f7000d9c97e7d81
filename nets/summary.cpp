// Model summaries (see summary.h).
#include "nets/summary.h"

#include <cstdio>
#include <map>
#include <ostream>

#include "engine/autograd.h"

namespace nd {

namespace {

class SummaryRecorder : public ForwardObserver {
 public:
  SummaryRecorder(const Module& net, ModelSummary& out) : out_(out) {
    for (auto& [name, m] : net.named_modules()) names_[m] = name;
  }
  void on_forward(const Module& m, const Tensor& in, const Tensor& out) override {
    if (!m.named_children().empty()) return;  // containers: their leaves report
    SummaryRow row;
    auto it = names_.find(&m);
    row.name = it == names_.end() ? "?" : it->second;
    row.type = m.type_name();
    row.settings = m.describe();
    row.output = out.shape();
    for (auto& [name, t] : m.named_parameters()) row.parameters += t.numel();
    row.flops = m.flops(in.shape(), out.shape());
    out_.flops += row.flops;
    if (!counted_.count(&m)) out_.per_step_flops += m.per_step_flops();
    counted_[&m] = true;
    out_.rows.push_back(std::move(row));
  }

 private:
  ModelSummary& out_;
  std::map<const Module*, std::string> names_;
  std::map<const Module*, bool> counted_;
};

std::string human(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

ModelSummary summarize(Module& net, const Shape& input) {
  ModelSummary s;
  s.parameters = net.num_parameters();
  const bool was_training = net.is_training();
  net.eval();
  {
    NoGradGuard no_grad;
    SummaryRecorder recorder(net, s);
    Shape batch{1};
    batch.insert(batch.end(), input.begin(), input.end());
    net(Tensor::zeros(batch, DType::F32, net.device()));
  }
  net.train(was_training);
  return s;
}

void print_summary(std::ostream& out, const ModelSummary& s) {
  char line[512];
  std::snprintf(line, sizeof line, "%-44s %-18s %-18s %12s %10s  %s\n", "layer", "type", "output",
                "parameters", "flops", "settings");
  out << line;
  for (const auto& r : s.rows) {
    std::snprintf(line, sizeof line, "%-44s %-18s %-18s %12lld %10s  %s\n", r.name.c_str(),
                  r.type.c_str(), shape_str(r.output).c_str(), (long long)r.parameters,
                  human(r.flops).c_str(), r.settings.c_str());
    out << line;
  }
  out << "forward flops per image: " << human(s.flops) << " (" << (long long)s.flops << ")\n";
  if (s.per_step_flops > 0)
    out << "deconvolution matrices per training step (independent of the batch): "
        << human(s.per_step_flops) << " flops\n";
  out << "parameters: " << s.parameters << "\n";
}

}  // namespace nd
