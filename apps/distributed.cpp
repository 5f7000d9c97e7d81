// The trainer's side of data-parallel training (see distributed.h).
#include "apps/distributed.h"

#include <iomanip>
#include <ostream>

#include "engine/comm.h"

namespace nd {

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace

Device rank_device(const std::string& spec) {
  const int world = comm::world_size();
  if (world == 1) return parse_device(spec);
  if (spec == "auto") {
    if (comm::nccl_built() && !cuda_emulated() && cuda_device_count() > comm::local_rank())
      return Device::cuda(comm::local_rank());
    return Device::cpu();
  }
  ND_CHECK(spec.rfind("cuda", 0) != 0 || comm::nccl_built(), "--device ", spec, " with ", world,
           " ranks needs NCCL, and this build has none: multi-rank training runs on the CPU "
           "only (--device cpu), or rebuild where the CUDA toolkit has NCCL");
  const Device d = parse_device(spec);
  if (d.is_cpu()) return d;
  ND_CHECK(spec == "cuda", "--device ", spec, " with ", world,
           " ranks: pass --device cuda, and each rank takes cuda:<its local rank>");
  const Device mine = Device::cuda(comm::local_rank());
  ND_CHECK(cuda_device_count() > mine.index, comm::where(), " (local rank ", comm::local_rank(),
           ") has no GPU: this machine has ", cuda_device_count(),
           "; start at most that many ranks per machine");
  return mine;
}

DataParallel::DataParallel(const TrainConfig& cfg, Module& net, bool resuming, std::ostream& log)
    : world_(comm::world_size()),
      batch_per_rank_(cfg.batch_size),
      sync_stats_(cfg.sync_stats == "on") {
  if (resuming)
    ND_CHECK(cfg.world_size == world_, "the run was trained on ", cfg.world_size,
             " rank(s) and this job has ", world_,
             ": the data order and the batch statistics "
             "depend on it, so resume with the same number of ranks (mpirun -np ",
             cfg.world_size, ")");
  else
    ND_CHECK(cfg.world_size == world_, "the configuration says ", cfg.world_size,
             " rank(s) but this job has ", world_);
  comm::set_sync_statistics(sync_stats_);
  if (!comm::active()) return;
  ND_CHECK(comm::same_on_all_ranks(fnv1a(to_json(cfg))),
           "the ranks of this job were given different settings; start every rank with the "
           "same flags");
  {
    NoGradGuard no_grad;
    for (auto& [name, entry] : net.ordered_state()) {
      Tensor t = entry.first;
      comm::broadcast_(t, 0);
    }
  }
  reducer_ = std::make_unique<GradientReducer>(net.parameters());
  log << "data parallel: " << world_ << " ranks x batch " << batch_per_rank_ << " = global batch "
      << batch_per_rank_ * world_ << "; batch statistics "
      << (sync_stats_ ? "synchronised across ranks" : "per rank (--sync-stats off)") << "; "
      << reducer_->num_buckets() << " gradient bucket(s), " << std::fixed << std::setprecision(2)
      << double(reducer_->bytes_per_step()) / 1048576.0 << " MiB all-reduced per step\n";
}

DataParallel::~DataParallel() {
  comm::set_sync_statistics(true);
}

int64_t DataParallel::steps_per_epoch(int64_t images) const {
  if (!comm::active()) return (images + batch_per_rank_ - 1) / batch_per_rank_;
  return data::sharded_steps(images, batch_per_rank_, world_);
}

void DataParallel::start_epoch(data::Loader& loader, std::vector<int64_t> order, uint64_t seed) {
  if (!comm::active()) {
    loader.start(std::move(order), seed);
    return;
  }
  shard_ = data::shard_epoch(order, batch_per_rank_, comm::rank(), world_);
  loader.start(shard_.indices, seed, shard_.positions);
}

Tensor DataParallel::backward(const Tensor& loss, int64_t batch_index) {
  if (!comm::active()) {
    loss.backward();
    return loss.detach();
  }
  const double local = double(shard_.local_sizes.at(size_t(batch_index)));
  const double global = double(shard_.global_sizes.at(size_t(batch_index)));
  // The objective is sum over ranks of share_r * loss_r with share_r = local / global; the
  // reducer averages (divides by the world size), so each rank scales by share_r * world.
  const double weight = local * double(world_) / global;
  reducer_->begin();
  if (weight == 1.0)
    loss.backward();
  else
    ops::affine(loss, weight, 0.0).backward();
  reducer_->finish(1.0 / double(world_));
  NoGradGuard no_grad;
  Tensor mean = ops::affine(loss.detach(), local / global, 0.0).contiguous();
  comm::all_reduce_sum_(mean);
  return mean;
}

std::vector<int64_t> rank_share(int64_t count) {
  const int64_t r = comm::rank(), p = comm::world_size();
  const int64_t begin = count * r / p, end = count * (r + 1) / p;
  std::vector<int64_t> v;
  for (int64_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

void DataParallel::before_evaluation(Module& net) const {
  if (!comm::active() || sync_stats_) return;
  NoGradGuard no_grad;
  for (auto& [name, t] : net.named_buffers()) {
    Tensor b = t;
    comm::broadcast_(b, 0);
  }
}

namespace {
uint64_t hash_tensors(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::string bytes;
  for (const auto& [name, t] : named) {
    Tensor host = t.detach().to(Device::cpu()).contiguous();
    bytes.append(static_cast<const char*>(host.raw_data()),
                 size_t(host.numel()) * dtype_size(host.dtype()));
  }
  return fnv1a(bytes);
}
}  // namespace

void DataParallel::report_replicas(const Module& net, std::ostream& log) const {
  if (!comm::active()) return;
  const bool params = comm::same_on_all_ranks(hash_tensors(net.named_parameters()));
  const bool buffers = comm::same_on_all_ranks(hash_tensors(net.named_buffers()));
  log << "data parallel: parameters " << (params ? "identical" : "DIFFER") << " and running "
      << "buffers " << (buffers ? "identical" : "differ") << " on all " << world_ << " ranks"
      << (buffers || !sync_stats_ ? "" : " (they should not with --sync-stats on)") << "\n";
}

void all_reduce_totals(std::vector<double>& totals) {
  for (double& v : totals) v = comm::all_reduce_sum(v);
}

}  // namespace nd
