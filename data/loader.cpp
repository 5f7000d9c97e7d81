// The loader (see loader.h). Workers claim batch numbers in order from a window of `prefetch`
// batches past those handed out, build them without holding the lock, and file them (or their
// exception) under their number; next() waits for the number due. Each start() opens a new
// generation: work of an older one is cut short between samples and thrown away.
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "core/error.h"
#include "engine/random.h"

namespace nd::data {

namespace {

struct Epoch {
  std::vector<int64_t> order;
  std::vector<int64_t> positions;  // augmentation position of each entry; empty: the entry's own
  uint64_t seed = 0;
  int64_t num_batches = 0;
  uint64_t generation = 0;
};

// A prepared batch, or the exception that stopped it.
struct Slot {
  Batch batch;
  std::exception_ptr error;
};

}  // namespace

uint64_t sample_seed(uint64_t epoch_seed, int64_t position) {
  return splitmix64(splitmix64(epoch_seed) ^ uint64_t(position));
}

namespace {

// Builds batch `b` of `epoch` into out. Returns false, leaving out partial, when `generation`
// (if given) moves past the epoch's: the epoch was abandoned.
bool make_batch(const Dataset& data, const Epoch& epoch, int64_t batch_size, int64_t b,
                const std::atomic<uint64_t>* generation, Batch& out) {
  const int64_t begin = b * batch_size;
  const int64_t end = std::min(begin + batch_size, int64_t(epoch.order.size()));
  const Shape sample = data.sample_shape();
  const int64_t numel = shape_numel(sample);
  Shape shape = sample;
  shape.insert(shape.begin(), end - begin);
  out.images = Tensor::empty(shape, DType::F32);
  out.labels = Tensor::empty({end - begin}, DType::I64);
  float* images = out.images.data<float>();
  int64_t* labels = out.labels.data<int64_t>();
  for (int64_t pos = begin; pos < end; ++pos) {
    if (generation && generation->load(std::memory_order_relaxed) != epoch.generation) return false;
    const int64_t index = epoch.order[size_t(pos)];
    Generator gen(
        sample_seed(epoch.seed, epoch.positions.empty() ? pos : epoch.positions[size_t(pos)]));
    data.load(index, gen, images + (pos - begin) * numel);
    labels[pos - begin] = data.label(index);
  }
  return true;
}

}  // namespace

struct Loader::State {
  std::mutex mutex;
  std::condition_variable work_cv;   // workers: a batch to claim, or stop
  std::condition_variable ready_cv;  // next(): a batch was filed
  std::shared_ptr<const Epoch> epoch;
  std::atomic<uint64_t> generation{0};  // also read without the lock, to cut abandoned work short
  int64_t next_claim = 0;               // the next batch number a worker takes
  int64_t delivered = 0;                // batches handed out by next()
  std::map<int64_t, Slot> ready;        // filed batches not yet handed out
  bool stop = false;
  std::vector<std::thread> threads;

  // With the lock held: a batch is in the window [delivered, delivered + prefetch).
  bool claimable(int prefetch) const {
    return epoch && epoch->generation == generation.load() && next_claim < epoch->num_batches &&
           next_claim < delivered + prefetch;
  }

  void work(const Dataset& data, int64_t batch_size, int prefetch) {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      work_cv.wait(lock, [&] { return stop || claimable(prefetch); });
      if (stop) return;
      const std::shared_ptr<const Epoch> mine = epoch;
      const int64_t b = next_claim++;
      lock.unlock();
      Slot slot;
      bool complete = true;
      try {
        complete = make_batch(data, *mine, batch_size, b, &generation, slot.batch);
      } catch (...) {
        slot.error = std::current_exception();
      }
      lock.lock();
      if (!complete || mine->generation != generation.load()) continue;  // abandoned
      ready.emplace(b, std::move(slot));
      ready_cv.notify_one();
    }
  }

  // Stops and joins the workers (their current batch is cut short).
  void shut_down() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
      generation.fetch_add(1);
    }
    work_cv.notify_all();
    for (std::thread& t : threads) t.join();
    threads.clear();
  }

  // With the lock held: ends the current epoch; returns its filed batches so the caller can free
  // them after unlocking.
  std::map<int64_t, Slot> end_epoch() {
    generation.fetch_add(1);
    next_claim = delivered = epoch ? epoch->num_batches : 0;
    return std::exchange(ready, {});
  }
};

Loader::Loader(std::shared_ptr<const Dataset> data, LoaderOptions options)
    : data_(std::move(data)), options_(options), state_(std::make_unique<State>()) {
  ND_CHECK(data_, "loader: no dataset");
  ND_CHECK(options_.batch_size > 0, "loader: batch size must be positive, got ",
           options_.batch_size);
  ND_CHECK(options_.workers >= 0, "loader: workers must be >= 0, got ", options_.workers);
  ND_CHECK(options_.workers == 0 || options_.prefetch >= 1,
           "loader: prefetch must be >= 1 with worker threads, got ", options_.prefetch);
  const Shape sample = data_->sample_shape();
  ND_CHECK(sample.size() == 3 && shape_numel(sample) > 0, data_->name(),
           ": samples must be (C, H, W), got ", shape_str(sample));
  try {
    for (int i = 0; i < options_.workers; ++i)
      state_->threads.emplace_back(&State::work, state_.get(), std::cref(*data_),
                                   options_.batch_size, options_.prefetch);
  } catch (...) {
    state_->shut_down();  // the threads started so far
    throw;
  }
}

Loader::~Loader() {
  state_->shut_down();
}

void Loader::start(std::vector<int64_t> order, uint64_t seed, std::vector<int64_t> positions) {
  const int64_t size = data_->size();
  ND_CHECK(positions.empty() || positions.size() == order.size(), "loader: ", positions.size(),
           " augmentation positions for an order of ", order.size());
  for (size_t i = 0; i < order.size(); ++i)
    ND_CHECK(order[i] >= 0 && order[i] < size, data_->name(), ": order entry ", i, " is ", order[i],
             ", outside the dataset's 0..", size - 1);
  auto epoch = std::make_shared<Epoch>();
  const int64_t n = int64_t(order.size());
  epoch->num_batches = options_.drop_last ? n / options_.batch_size
                                          : (n + options_.batch_size - 1) / options_.batch_size;
  epoch->order = std::move(order);
  epoch->positions = std::move(positions);
  epoch->seed = seed;
  std::map<int64_t, Slot> abandoned;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    abandoned = state_->end_epoch();
    epoch->generation = state_->generation.load();
    state_->epoch = std::move(epoch);
    state_->next_claim = state_->delivered = 0;
  }
  state_->work_cv.notify_all();
}

int64_t Loader::num_batches() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->epoch ? state_->epoch->num_batches : 0;
}

bool Loader::next(Batch& out) {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.epoch || s.delivered >= s.epoch->num_batches) return false;
  const int64_t b = s.delivered;
  Slot slot;
  if (options_.workers == 0) {
    ++s.delivered;
    const std::shared_ptr<const Epoch> epoch = s.epoch;
    lock.unlock();
    try {
      make_batch(*data_, *epoch, options_.batch_size, b, nullptr, slot.batch);
    } catch (...) {
      lock.lock();
      s.end_epoch();
      throw;
    }
  } else {
    s.ready_cv.wait(lock, [&] { return s.ready.count(b) > 0; });
    auto it = s.ready.find(b);
    slot = std::move(it->second);
    s.ready.erase(it);
    ++s.delivered;
    std::map<int64_t, Slot> dropped;
    if (slot.error) dropped = s.end_epoch();
    lock.unlock();
    s.work_cv.notify_all();
    dropped.clear();
    if (slot.error) std::rethrow_exception(slot.error);
  }
  out = std::move(slot.batch);
  return true;
}

}  // namespace nd::data
