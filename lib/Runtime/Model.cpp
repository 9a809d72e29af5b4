//===- Model.cpp - Open an artifact, load weights, generate ---------------===//
//
// Order of checks in open(): the artifact first (manifest, target CPU,
// library and symbols; all cheap), then the checkpoint (config.json against
// the artifact's config, then every tensor the manifest names: present, same
// dtype, same shape) and only then the allocation and copy of the weights, so
// that every mismatch is reported before gigabytes are touched.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Model.h"

#include "dsv3/Runtime/CudaDriver.h"

#include "dsv3/Runtime/CpuFeatures.h"
#include "dsv3/Runtime/Sampler.h"

#include "Support.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <malloc.h>
#include <sys/mman.h>

namespace dsv3 {
namespace runtime {

namespace {

thread_local ThreadPool *tlsCurrentPool = nullptr;

/// Makes `pool` the one dsv3rt_parallel_for uses on this thread while an
/// entry point runs.
struct CurrentPoolScope {
  ThreadPool *previous;
  explicit CurrentPoolScope(ThreadPool *pool) : previous(tlsCurrentPool) {
    tlsCurrentPool = pool;
  }
  ~CurrentPoolScope() { tlsCurrentPool = previous; }
};

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

std::string parentDirectory(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

ThreadPool *currentModelPool() { return tlsCurrentPool; }

//===----------------------------------------------------------------------===//
// Request and config checks
//===----------------------------------------------------------------------===//

std::string validateRequest(int64_t vocabSize, int64_t maxBatch,
                            int64_t maxSeqLen,
                            const std::vector<std::vector<int32_t>> &prompts,
                            const SamplingOptions &sampling) {
  const int64_t batch = static_cast<int64_t>(prompts.size());
  if (batch < 1)
    return "no sequence to generate (give at least one prompt)";
  if (batch > maxBatch)
    return std::to_string(batch) +
           " sequences exceed the artifact's max batch of " +
           std::to_string(maxBatch);
  if (sampling.maxNewTokens < 0)
    return "max new tokens must be >= 0, got " +
           std::to_string(sampling.maxNewTokens);
  if (!std::isfinite(sampling.temperature) || sampling.temperature < 0)
    return "temperature must be a finite number >= 0, got " +
           std::to_string(sampling.temperature);
  if (!(sampling.topP > 0.0f && sampling.topP <= 1.0f))
    return "top-p must be in (0, 1], got " + std::to_string(sampling.topP);
  for (int64_t i = 0; i < batch; ++i) {
    const std::vector<int32_t> &prompt = prompts[i];
    std::string seq = "sequence " + std::to_string(i);
    if (prompt.empty())
      return seq + ": the prompt is empty";
    for (size_t p = 0; p < prompt.size(); ++p)
      if (prompt[p] < 0 || prompt[p] >= vocabSize)
        return seq + ": token id " + std::to_string(prompt[p]) +
               " at position " + std::to_string(p) + " is out of range [0, " +
               std::to_string(vocabSize) + ")";
    int64_t total = static_cast<int64_t>(prompt.size()) + sampling.maxNewTokens;
    if (total > maxSeqLen)
      return seq + ": " + std::to_string(prompt.size()) + " prompt tokens + " +
             std::to_string(sampling.maxNewTokens) + " new tokens = " +
             std::to_string(total) + " exceed the artifact's max sequence " +
             "length of " + std::to_string(maxSeqLen);
  }
  return "";
}

std::string compareConfigs(const ModelConfig &artifactConfig,
                           const ModelConfig &checkpointConfig,
                           const std::string &checkpointSource) {
  // Compare the canonical forms, so that spelling differences between the
  // two files (defaults left out, 1 vs 1.0) do not count.
  nlohmann::json a = nlohmann::json::parse(modelConfigToJson(artifactConfig));
  nlohmann::json c = nlohmann::json::parse(modelConfigToJson(checkpointConfig));
  // Token ids only steer the runtime (the artifact's eos wins) and MTP layers
  // are not part of the compiled forward pass.
  static const char *ignored[] = {"bos_token_id", "eos_token_id",
                                  "num_nextn_predict_layers"};
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (std::find_if(std::begin(ignored), std::end(ignored),
                     [&](const char *k) { return it.key() == k; }) !=
        std::end(ignored))
      continue;
    nlohmann::json other = c.contains(it.key()) ? c[it.key()] : nullptr;
    if (*it != other)
      return "checkpoint does not match the artifact: config field '" +
             it.key() + "' is " + it->dump() + " in the artifact but " +
             other.dump() + " in " + checkpointSource;
  }
  for (auto it = c.begin(); it != c.end(); ++it)
    if (!a.contains(it.key()))
      return "checkpoint does not match the artifact: config field '" +
             it.key() + "' is " + it->dump() + " in " + checkpointSource +
             " but absent from the artifact";
  return "";
}

//===----------------------------------------------------------------------===//
// Buffers and descriptors
//===----------------------------------------------------------------------===//

Model::Buffer &Model::Buffer::operator=(Buffer &&other) noexcept {
  if (this != &other) {
    release();
    data = other.data;
    bytes = other.bytes;
    owned = other.owned;
    onDevice = other.onDevice;
    other.data = nullptr;
    other.bytes = 0;
    other.owned = false;
    other.onDevice = false;
  }
  return *this;
}

void Model::Buffer::release() {
  if (owned && data) {
    if (onDevice)
      cuda::release(data);
    else
      ::munmap(data, bytes);
  }
  data = nullptr;
  bytes = 0;
  owned = false;
  onDevice = false;
}

std::string Model::Buffer::allocateOnDevice(size_t size,
                                            const std::string &what) {
  void *p = nullptr;
  std::string error = cuda::allocate(&p, size, what);
  if (error.empty())
    error = cuda::zero(p, size);
  if (!error.empty()) {
    cuda::release(p);
    return error;
  }
  data = p;
  bytes = size;
  owned = true;
  onDevice = true;
  return "";
}

std::string Model::Buffer::allocate(size_t size, const std::string &what) {
  // Anonymous mappings are page-aligned (more than the 64 bytes promised to
  // the compiled code) and zero-filled lazily: a large KV cache costs
  // nothing until it is written.
  void *p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return "cannot allocate " + formatBytes(size) + " for " + what + ": " +
           errnoMessage(errno);
#ifdef MADV_HUGEPAGE
  if (size >= (2u << 20))
    ::madvise(p, size, MADV_HUGEPAGE); // fewer TLB misses; only a hint
#endif
  data = p;
  bytes = size;
  owned = true;
  return "";
}

void Model::MemRef::set(void *data, const std::vector<int64_t> &shape) {
  const size_t rank = shape.size();
  words.assign(3 + 2 * rank, 0);
  words[0] = static_cast<int64_t>(reinterpret_cast<intptr_t>(data));
  words[1] = words[0];
  words[2] = 0; // offset
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    words[3 + i] = shape[i];
    words[3 + rank + i] = stride;
    stride *= shape[i];
  }
}

//===----------------------------------------------------------------------===//
// Opening
//===----------------------------------------------------------------------===//

Model::Model() = default;

Model::~Model() {
  // Buffers may be borrowed from the checkpoint mapping: drop them first.
  weights_.clear();
  checkpoint_.reset();
  if (library_)
    ::dlclose(library_);
}

std::unique_ptr<Model> Model::open(const std::string &artifactDir,
                                   const std::string &checkpointDir,
                                   const OpenOptions &options,
                                   std::string &error) {
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Model> model(new Model());
  try {
    error = model->load(artifactDir, checkpointDir, options);
  } catch (const std::exception &e) {
    error = std::string("internal error while opening the artifact: ") +
            e.what();
  } catch (...) {
    error = "internal error while opening the artifact";
  }
  if (!error.empty())
    return nullptr;
  model->loadSeconds_ = secondsSince(start);
  return model;
}

/// The compiled code allocates its temporaries (activations, scores, expert
/// rows) with malloc and frees them within the call. With glibc's defaults
/// every block above the mmap threshold is a fresh mapping, so each call
/// page-faults and zeroes it again and unmaps it after: measured side by
/// side, prefill of the benchmark model is ~15% faster when such blocks stay
/// in the heap. The thresholds are process-wide; the runtime sets them once.
static void keepTemporariesInTheHeap() {
  static const bool done = [] {
    ::mallopt(M_MMAP_THRESHOLD, 1 << 30);
    ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
}

std::string Model::load(const std::string &artifactDir,
                        const std::string &checkpointDir,
                        const OpenOptions &options) {
  keepTemporariesInTheHeap();
  if (options.numThreads < 0 || options.numThreads > 4096)
    return "thread count must be in [1, 4096] (or 0 for one per CPU), got " +
           std::to_string(options.numThreads);

  // -- The artifact ---------------------------------------------------------
  ManifestResult manifest = loadManifest(artifactDir);
  if (!manifest)
    return manifest.error;
  manifest_ = std::move(*manifest.manifest);
  std::string error = checkTarget(manifest_.target);
  if (!error.empty())
    return artifactDir + ": " + error;
  device_ = options.device;
  if (manifest_.target.kind == "cuda" && !onGpu())
    return artifactDir + ": the artifact was compiled for NVIDIA GPUs (" +
           manifest_.target.chip + "); run it with the cuda device "
           "(dsv3-run --device cuda)";
  if (manifest_.target.kind == "cpu" && onGpu())
    return artifactDir + ": the artifact was compiled for the CPU; compile "
           "it with dsv3-compile --target cuda to run it on the GPU";
  if (onGpu()) {
    // Before dlopen: loading a GPU artifact runs its constructor, which
    // loads the cubins through mgpuModuleLoad.
    error = cuda::initialize();
    if (!error.empty())
      return error;
    cuda::takeError();
  }

  std::string libraryPath = manifest_.libraryPath();
  if (!isRegularFile(libraryPath))
    return libraryPath + ": the artifact's library does not exist";
  error = checkLibraryFile(libraryPath); // a truncated one: SIGBUS in dlopen
  if (!error.empty())
    return error;
  // RTLD_NOW: an unresolved symbol is an error here, not a crash mid-run.
  // RTLD_LOCAL: two artifacts export the same entry names.
  ::dlerror();
  library_ = ::dlopen(libraryPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library_) {
    const char *message = ::dlerror();
    return "cannot load the artifact's library: " +
           std::string(message ? message : libraryPath);
  }
  if (onGpu()) {
    error = cuda::takeError();
    if (!error.empty())
      return "the artifact's GPU code does not load on this GPU (" +
             cuda::deviceName() + ", artifact built for " +
             manifest_.target.chip + "): " + error;
  }
  for (auto [spec, fn] : {std::make_pair(&manifest_.prefill, &prefill_),
                          std::make_pair(&manifest_.decode, &decode_)}) {
    void *symbol = ::dlsym(library_, spec->symbol.c_str());
    if (!symbol)
      return libraryPath + ": entry point '" + spec->symbol +
             "' is not exported by the artifact's library";
    *fn = reinterpret_cast<EntryFn>(symbol);
  }

  // Compiled code may parallelise with OpenMP (libomp next to the library)
  // instead of dsv3rt_parallel_for. Its threads then follow the model's
  // thread count too, unless the user left the count to the default and set
  // OMP_NUM_THREADS, which OpenMP honours by itself. dlsym on the handle
  // searches the library's own dependencies only.
  if (options.numThreads > 0 || !std::getenv("OMP_NUM_THREADS"))
    ompSetNumThreads_ = reinterpret_cast<void (*)(int)>(
        ::dlsym(library_, "omp_set_num_threads"));

  // -- The checkpoint -------------------------------------------------------
  if (!isDirectory(checkpointDir) && !isRegularFile(checkpointDir))
    return checkpointDir + ": checkpoint directory does not exist";
  std::string configPath =
      (isDirectory(checkpointDir) ? checkpointDir
                                  : parentDirectory(checkpointDir)) +
      "/config.json";
  if (!isRegularFile(configPath))
    return configPath + ": missing (the checkpoint's config is checked "
                        "against the artifact's)";
  ConfigParseResult config = loadModelConfig(configPath);
  if (!config)
    return config.error;
  error = compareConfigs(manifest_.config, *config.config, configPath);
  if (!error.empty())
    return error;

  CheckpointOpenResult checkpoint = Checkpoint::open(checkpointDir);
  if (!checkpoint)
    return checkpoint.error;
  checkpoint_.emplace(std::move(*checkpoint.checkpoint));

  // -- Threads, weights, cache ----------------------------------------------
  pool_ = std::make_unique<ThreadPool>(
      options.numThreads > 0 ? options.numThreads : availableCpus());
  error = loadWeights(options);
  if (!error.empty())
    return error;
  error = prepareWeights();
  if (!error.empty())
    return error;
  if (weightsMappedBytes() == 0)
    checkpoint_.reset(); // everything was copied: unmap the files

  const int64_t batch = manifest_.maxBatch;
  inputs_.resize(manifest_.inputs.size());
  inputDescs_.resize(manifest_.inputs.size());
  for (size_t i = 0; i < manifest_.inputs.size(); ++i) {
    const TensorSpec &spec = manifest_.inputs[i];
    size_t bytes = elementSize(spec.dtype);
    if (i == manifest_.cacheInput) {
      bytes = manifest_.kvCacheBytes();
    } else {
      // tokens / positions: room for a whole-sequence prefill.
      bytes *= static_cast<size_t>(batch * manifest_.maxSeqLen);
    }
    std::string what = "input '" + spec.name + "'";
    // The cache is the compiled code's; tokens and positions are written
    // on the host (call() copies them to the device for a GPU model).
    error = i == manifest_.cacheInput
                ? allocateForCompiledCode(inputs_[i], bytes, what)
                : inputs_[i].allocate(bytes, what);
    if (!error.empty())
      return error;
    // tokens / positions get their real [max_batch, S] shape in call().
    inputDescs_[i].set(inputs_[i].data, i == manifest_.cacheInput
                                            ? spec.shape
                                            : std::vector<int64_t>{batch, 1});
  }
  if (onGpu()) {
    // The generation loop writes tokens and positions on the host; call()
    // copies them here.
    deviceInputs_.resize(manifest_.inputs.size());
    for (size_t i : {manifest_.tokensInput, manifest_.positionsInput}) {
      error = deviceInputs_[i].allocateOnDevice(
          inputs_[i].bytes, "input '" + manifest_.inputs[i].name + "'");
      if (!error.empty())
        return error;
    }
  }
  const TensorSpec &logits = manifest_.outputs[0];
  const size_t logitsBytes = sizeof(float) * batch * manifest_.vocabSize();
  error = allocateForCompiledCode(logits_, logitsBytes, "the logits");
  if (!error.empty())
    return error;
  if (onGpu())
    hostLogits_.assign(batch * manifest_.vocabSize(), 0.0f);
  logitsDesc_.set(logits_.data, logits.shape);

  // Packed arguments: inputs, weights, outputs, then a null terminator that
  // the compiled code does not need but a test double may use to find the
  // end of the list.
  for (MemRef &desc : inputDescs_)
    args_.push_back(desc.descriptor());
  for (const std::string &role : manifest_.forwardWeights)
    args_.push_back(weightDescriptor(role));
  args_.push_back(logitsDesc_.descriptor());
  args_.push_back(nullptr);
  lastLogits_.assign(batch, {});
  if (manifest_.speculative && !onGpu())
    return loadSpeculative();
  return "";
}

std::string Model::loadSpeculative() {
  const SpeculativeSpec &spec = *manifest_.speculative;
  for (auto [entry, fn] : {std::make_pair(&spec.verify, &verify_),
                           std::make_pair(&spec.draft, &draft_)}) {
    void *symbol = ::dlsym(library_, entry->symbol.c_str());
    if (!symbol)
      return manifest_.libraryPath() + ": entry point '" + entry->symbol +
             "' is not exported by the artifact's library";
    *fn = reinterpret_cast<EntryFn>(symbol);
  }
  const int64_t batch = manifest_.maxBatch;
  const int64_t hidden = manifest_.config.hiddenSize;
  const int64_t vocab = manifest_.vocabSize();
  size_t cacheBytes = elementSize(spec.mtpCache.dtype);
  for (int64_t d : spec.mtpCache.shape)
    cacheBytes *= static_cast<size_t>(d);
  struct Allocation {
    Buffer *buffer;
    size_t bytes;
    const char *what;
  } allocations[] = {
      {&hidden_, sizeof(float) * batch * kMaxVerifyLen * hidden,
       "the hidden states"},
      {&logitsAll_, sizeof(float) * batch * kMaxVerifyLen * vocab,
       "the verify logits"},
      {&mtpCache_, cacheBytes, "the MTP cache"},
      {&draftHidden_, sizeof(float) * batch * hidden,
       "the draft's hidden state"}};
  for (const Allocation &a : allocations) {
    std::string error = a.buffer->allocate(a.bytes, a.what);
    if (!error.empty())
      return error;
  }
  mtpCacheDesc_.set(mtpCache_.data, spec.mtpCache.shape);
  draftHiddenDesc_.set(draftHidden_.data, {batch, hidden});
  hiddenDesc_.set(hidden_.data, {batch, 1, hidden});
  logitsAllDesc_.set(logitsAll_.data, {batch, 1, vocab});
  // The packed argument lists, built once (callSpeculative refreshes the
  // descriptors whose token count changes). @verify: (tokens, positions,
  // kv_cache, weights...) -> every position's logits and hidden states,
  // the cache in place. @draft: (tokens, positions, hidden, mtp_cache, MTP
  // weights...) -> logits, last hidden state, the cache in place.
  void *tokens = inputDescs_[manifest_.tokensInput].descriptor();
  void *positions = inputDescs_[manifest_.positionsInput].descriptor();
  verifyArgs_ = {tokens, positions,
                 inputDescs_[manifest_.cacheInput].descriptor()};
  for (const std::string &role : spec.verifyWeights)
    verifyArgs_.push_back(weightDescriptor(role));
  verifyArgs_.insert(verifyArgs_.end(), {logitsAllDesc_.descriptor(),
                                         hiddenDesc_.descriptor(), nullptr});
  draftArgs_ = {tokens, positions, hiddenDesc_.descriptor(),
                mtpCacheDesc_.descriptor()};
  for (const std::string &role : spec.draftWeights)
    draftArgs_.push_back(weightDescriptor(role));
  draftArgs_.insert(draftArgs_.end(), {logitsDesc_.descriptor(),
                                       draftHiddenDesc_.descriptor(), nullptr});
  return "";
}

std::string Model::speculativeSupport() const {
  if (!manifest_.speculative)
    return "the artifact has no MTP module: compile it with dsv3-compile "
           "--mtp (from a checkpoint whose num_nextn_predict_layers >= 1)";
  if (onGpu())
    return "speculative decoding runs on the CPU target only (the GPU "
           "runtime does not bind the verify and draft entries yet)";
  return "";
}

void Model::callSpeculative(EntryFn fn, std::vector<void *> &args,
                            int64_t seqLen, bool isDraft) {
  const int64_t batch = manifest_.maxBatch;
  const std::vector<int64_t> shape = {batch, seqLen};
  inputDescs_[manifest_.tokensInput].set(inputs_[manifest_.tokensInput].data,
                                         shape);
  inputDescs_[manifest_.positionsInput].set(
      inputs_[manifest_.positionsInput].data, shape);
  hiddenDesc_.set(hidden_.data, {batch, seqLen, manifest_.config.hiddenSize});
  // Only the descriptors of the call's token count change; the argument
  // lists (loadSpeculative) keep pointing at the same descriptor objects,
  // refreshed here as call() refreshes args_.
  args[0] = inputDescs_[manifest_.tokensInput].descriptor();
  args[1] = inputDescs_[manifest_.positionsInput].descriptor();
  if (isDraft) {
    args[2] = hiddenDesc_.descriptor();
  } else {
    logitsAllDesc_.set(logitsAll_.data,
                       {batch, seqLen, manifest_.vocabSize()});
    // ..., logits of every position, hidden states, null.
    args[args.size() - 3] = logitsAllDesc_.descriptor();
    args[args.size() - 2] = hiddenDesc_.descriptor();
  }
  runEntry(fn, args.data());
}

void Model::runEntry(EntryFn fn, void **args) {
  CurrentPoolScope scope(pool_.get());
  // Per call: the setting belongs to the calling thread, which may change
  // between calls (any one thread at a time may use a model).
  if (ompSetNumThreads_)
    ompSetNumThreads_(pool_->numThreads());
  fn(args);
}

std::string Model::loadWeights(const OpenOptions &options) {
  const std::vector<WeightSpec> &specs = manifest_.weights;

  // Check every slice before allocating anything.
  std::vector<std::vector<const TensorInfo *>> slices(specs.size());
  for (size_t w = 0; w < specs.size(); ++w) {
    const WeightSpec &spec = specs[w];
    DType dtype = *checkpointDType(spec.dtype);
    std::vector<int64_t> shape = spec.sliceShape();
    for (int64_t s = 0; s < spec.numSlices(); ++s) {
      std::string name = spec.sliceSource(s);
      std::string label = spec.sliceLabel(s);
      std::string what = "weight '" + spec.role + "'" +
                         (label.empty() ? "" : ", " + label);
      const TensorInfo *tensor = checkpoint_->find(name);
      if (!tensor)
        return "checkpoint does not match the artifact: tensor '" + name +
               "' (" + what + ") is not in " + checkpoint_->path();
      if (tensor->dtype != dtype)
        return "checkpoint does not match the artifact: tensor '" + name +
               "' in " + tensor->file + " is " + dtypeName(tensor->dtype) +
               ", the artifact expects " + dtypeName(dtype) + " (" + what +
               ")";
      if (tensor->shape != shape)
        return "checkpoint does not match the artifact: tensor '" + name +
               "' in " + tensor->file + " has shape " +
               formatShape(tensor->shape) + ", the artifact expects " +
               formatShape(shape) + " (" + what + ")";
      slices[w].push_back(tensor);
    }
  }

  const uint64_t total = manifest_.weightsBytes();
  uint64_t done = 0;
  auto report = [&](uint64_t bytes) {
    done += bytes;
    if (options.progress)
      options.progress(done, total);
  };
  weights_.resize(specs.size());
  weightDescs_.resize(specs.size());
  for (size_t w = 0; w < specs.size(); ++w) {
    const WeightSpec &spec = specs[w];
    Buffer &buffer = weights_[w];
    const size_t sliceBytes = spec.sliceBytes();
    const TensorInfo *first = slices[w][0];
    // Large weights are copied even when they could be used in place: the
    // copy lives in transparent huge pages, and streaming a 65 MB LM head
    // through 4 KB file pages costs a TLB miss every page on every token.
    constexpr size_t kZeroCopyLimit = 2u << 20;
    if (!spec.isStacked() && sliceBytes < kZeroCopyLimit &&
        reinterpret_cast<uintptr_t>(first->data) % elementSize(spec.dtype) ==
            0) {
      // Zero copy: the compiled code assumes only element alignment, and
      // the read-only mapping stays valid as long as the checkpoint is open.
      buffer.data = const_cast<uint8_t *>(first->data);
      buffer.bytes = sliceBytes;
      buffer.owned = false;
      // NaN/infinity policy (docs/reliability.md): refused, by name.
      int64_t bad = checkWeightValues(first->dtype, first->data, sliceBytes);
      if (bad >= 0)
        return nonFiniteWeightError(*first, bad);
      report(sliceBytes);
    } else {
      std::string error =
          buffer.allocate(spec.numBytes(), "weight '" + spec.role + "'");
      if (!error.empty())
        return error;
      // Copy in groups of slices so progress moves during a 100 GB weight;
      // the slices of a group are copied in parallel (page faults on the
      // checkpoint file are the bottleneck, and they overlap).
      const int64_t numSlices = spec.numSlices();
      const int64_t group = std::max<int64_t>(
          pool_->numThreads(),
          static_cast<int64_t>((256u << 20) / std::max<size_t>(sliceBytes, 1)));
      uint8_t *dst = static_cast<uint8_t *>(buffer.data);
      // The copy also looks for NaN/infinity (docs/reliability.md), chunk by
      // chunk while the chunk is in cache; the first bad slice is reported.
      std::atomic<int64_t> badSlice{numSlices};
      std::vector<int64_t> badIndex(numSlices, -1);
      for (int64_t begin = 0; begin < numSlices; begin += group) {
        int64_t count = std::min(group, numSlices - begin);
        pool_->parallelFor(count, [&](int64_t lo, int64_t hi) {
          for (int64_t s = begin + lo; s < begin + hi; ++s) {
            badIndex[s] = copyWeightValues(
                slices[w][s]->dtype, dst + s * sliceBytes, slices[w][s]->data,
                sliceBytes);
            if (badIndex[s] >= 0) {
              int64_t b = badSlice;
              while (s < b && !badSlice.compare_exchange_weak(b, s)) {
              }
            }
          }
        });
        if (badSlice < numSlices)
          return nonFiniteWeightError(*slices[w][badSlice],
                                      badIndex[badSlice]);
        report(static_cast<uint64_t>(count) * sliceBytes);
      }
    }
    if (onGpu()) {
      std::string error =
          moveToDevice(buffer, "weight '" + spec.role + "'");
      if (!error.empty())
        return error;
    }
    weightDescs_[w].set(buffer.data, spec.shape);
  }
  return "";
}

void *Model::weightDescriptor(const std::string &role) {
  for (size_t w = 0; w < manifest_.weights.size(); ++w)
    if (manifest_.weights[w].role == role)
      return weightDescs_[w].descriptor();
  for (size_t p = 0; p < manifest_.prepared.size(); ++p)
    if (manifest_.prepared[p].name == role)
      return preparedDescs_[p].descriptor();
  return nullptr; // the manifest parser checked every role
}

std::string Model::prepareWeights() {
  if (!manifest_.prepare)
    return "";
  const PrepareSpec &prepare = *manifest_.prepare;
  ::dlerror();
  auto fn = reinterpret_cast<EntryFn>(
      ::dlsym(library_, prepare.symbol.c_str()));
  if (!fn)
    return manifest_.libraryPath() + ": entry point '" + prepare.symbol +
           "' is not exported by the artifact's library";
  prepared_.resize(manifest_.prepared.size());
  preparedDescs_.resize(manifest_.prepared.size());
  for (size_t p = 0; p < manifest_.prepared.size(); ++p) {
    const TensorSpec &spec = manifest_.prepared[p];
    size_t bytes = elementSize(spec.dtype);
    for (int64_t d : spec.shape)
      bytes *= static_cast<size_t>(d);
    std::string error = allocateForCompiledCode(
        prepared_[p], bytes, "prepared weight '" + spec.name + "'");
    if (!error.empty())
      return error;
    preparedDescs_[p].set(prepared_[p].data, spec.shape);
  }
  // Packed arguments: the checkpoint weights it reads, then one output
  // descriptor per prepared weight.
  std::vector<void *> args;
  for (const std::string &role : prepare.weights)
    args.push_back(weightDescriptor(role));
  for (MemRef &desc : preparedDescs_)
    args.push_back(desc.descriptor());
  args.push_back(nullptr);
  runEntry(fn, args.data());
  if (onGpu()) {
    std::string error = cuda::takeError();
    if (error.empty())
      error = cuda::synchronize();
    if (!error.empty())
      return "the artifact's prepare entry point failed on the GPU: " + error;
  }
  // Checkpoint weights that no entry point takes (prefill and decode, and
  // the speculative ones) are not needed any more (q_a and kv_a once
  // concatenated): give their memory back.
  auto taken = [&](const std::string &role) {
    auto in = [&](const std::vector<std::string> &list) {
      return std::find(list.begin(), list.end(), role) != list.end();
    };
    return in(manifest_.forwardWeights) ||
           (manifest_.speculative && (in(manifest_.speculative->verifyWeights) ||
                                      in(manifest_.speculative->draftWeights)));
  };
  for (size_t w = 0; w < manifest_.weights.size(); ++w)
    if (!taken(manifest_.weights[w].role))
      weights_[w].release();
  return "";
}

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

void Model::setInput(size_t input, int64_t row, int64_t col, int64_t seqLen,
                     int64_t value) {
  int64_t index = row * seqLen + col;
  if (manifest_.inputs[input].dtype == ElementType::I32)
    static_cast<int32_t *>(inputs_[input].data)[index] =
        static_cast<int32_t>(value);
  else
    static_cast<int64_t *>(inputs_[input].data)[index] = value;
}

std::string Model::allocateForCompiledCode(Buffer &buffer, size_t bytes,
                                           const std::string &what) {
  return onGpu() ? buffer.allocateOnDevice(bytes, what)
                 : buffer.allocate(bytes, what);
}

std::string Model::moveToDevice(Buffer &buffer, const std::string &what) {
  Buffer device;
  std::string error = device.allocateOnDevice(buffer.bytes, what);
  if (error.empty())
    error = cuda::upload(device.data, buffer.data, buffer.bytes);
  if (!error.empty())
    return error;
  buffer = std::move(device); // frees (or un-borrows) the host copy
  return "";
}

std::string Model::call(EntryFn fn, int64_t seqLen) {
  // The driver's context is per thread, and any one thread at a time may
  // use a model: make it current on this one.
  if (onGpu()) {
    std::string error = cuda::initialize();
    if (!error.empty())
      return error;
  }
  const std::vector<int64_t> shape = {manifest_.maxBatch, seqLen};
  for (size_t i : {manifest_.tokensInput, manifest_.positionsInput}) {
    void *data = inputs_[i].data;
    if (onGpu()) {
      size_t bytes = elementSize(manifest_.inputs[i].dtype) *
                     static_cast<size_t>(manifest_.maxBatch * seqLen);
      std::string error = cuda::upload(deviceInputs_[i].data, data, bytes);
      if (!error.empty())
        return error;
      data = deviceInputs_[i].data;
    }
    inputDescs_[i].set(data, shape);
    args_[i] = inputDescs_[i].descriptor(); // inputs lead the argument list
  }
  runEntry(fn, args_.data());
  if (!onGpu())
    return "";
  std::string error = cuda::takeError();
  if (error.empty())
    error = cuda::download(hostLogits_.data(), logits_.data,
                           hostLogits_.size() * sizeof(float));
  return error;
}

const float *Model::hostLogits() const {
  return onGpu() ? hostLogits_.data()
                 : static_cast<const float *>(logits_.data);
}

//===----------------------------------------------------------------------===//
// Step level: shared by generate() and the Scheduler
//===----------------------------------------------------------------------===//

Sequence::Sequence(std::vector<int32_t> prompt,
                   const SamplingOptions &sampling, uint64_t stream)
    : prompt(std::move(prompt)), sampling(sampling),
      rng(sampling.seed, stream), finished(sampling.maxNewTokens == 0) {}

int32_t Sequence::tokenAt(int64_t position) const {
  int64_t promptLen = static_cast<int64_t>(prompt.size());
  return position < promptLen ? prompt[position]
                              : tokens[position - promptLen];
}

static const char *entryName(Entry entry) {
  return entry == Entry::Prefill ? "prefill" : "decode";
}

std::string Model::step(Entry entry, int64_t seqLen,
                        const std::vector<RowInput> &rows) {
  const int64_t maxSeqLen = manifest_.maxSeqLen;
  for (int64_t b = 0; b < manifest_.maxBatch; ++b) {
    const RowInput row =
        b < static_cast<int64_t>(rows.size()) ? rows[b] : RowInput();
    for (int64_t p = 0; p < seqLen; ++p) {
      int64_t token = 0, position = p;
      if (row.seq && row.feed) {
        token = row.seq->tokenAt(row.seq->fed + p);
        position = row.seq->fed + p;
      } else if (row.seq) {
        position = std::min(row.seq->fed + p, maxSeqLen - 1);
      }
      setInput(manifest_.tokensInput, b, p, seqLen, token);
      setInput(manifest_.positionsInput, b, p, seqLen, position);
    }
  }
  std::string error = call(entry == Entry::Prefill ? prefill_ : decode_,
                           seqLen);
  if (!error.empty())
    return std::string(entryName(entry)) + " failed: " + error;
  for (const RowInput &row : rows)
    if (row.seq && row.feed)
      row.seq->fed += seqLen;
  return "";
}

std::string Model::checkLogits(const float *logits, Entry entry,
                               const std::string &who) const {
  if (!hasNaN(logits, manifest_.vocabSize()))
    return "";
  return std::string("the artifact's ") + entryName(entry) +
         " entry point produced NaN logits for " + who;
}

std::string Model::sampleNext(Sequence &seq, const float *logits, Entry entry,
                              const std::string &who,
                              SamplerScratch &scratch) {
  const int64_t vocab = manifest_.vocabSize();
  const SamplingOptions &sampling = seq.sampling;
  int64_t token = sampling.temperature == 0.0f
                      ? argmaxLogits(logits, vocab)
                      : sampleLogits(logits, vocab, sampling.temperature,
                                     sampling.topP, seq.rng, scratch);
  if (token < 0)
    return std::string("the artifact's ") + entryName(entry) +
           " entry point produced no finite logit for " + who;
  seq.tokens.push_back(static_cast<int32_t>(token));
  if (static_cast<int64_t>(seq.tokens.size()) == sampling.maxNewTokens ||
      (sampling.stopAtEos && token == manifest_.config.eosTokenId))
    seq.finished = true;
  return "";
}

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

std::string Model::generate(const std::vector<std::vector<int32_t>> &prompts,
                            const SamplingOptions &sampling, bool recordLogits,
                            GenerateOutput &out, const TokenCallback &onToken) {
  const int64_t vocab = manifest_.vocabSize();
  const int64_t maxBatch = manifest_.maxBatch;
  const int64_t maxSeqLen = manifest_.maxSeqLen;
  std::string error =
      validateRequest(vocab, maxBatch, maxSeqLen, prompts, sampling);
  if (!error.empty())
    return error;

  const int64_t batch = static_cast<int64_t>(prompts.size());
  stats_ = RunStats();
  out.tokens.assign(batch, {});
  out.logits.assign(recordLogits ? batch : 0, {});
  for (auto &row : lastLogits_)
    row.clear();

  // Sequence b lives in cache row b and draws from stream (seed, b).
  std::vector<Sequence> seqs;
  seqs.reserve(batch);
  for (int64_t b = 0; b < batch; ++b)
    seqs.emplace_back(prompts[b], sampling, static_cast<uint64_t>(b));
  std::vector<RowInput> rows(batch);
  for (int64_t b = 0; b < batch; ++b)
    rows[b].seq = &seqs[b];

  SamplerScratch scratch;
  // After a call in which row b was fed: if its whole sequence is now in the
  // cache, the logits predict its next token.
  auto afterCall = [&](int64_t b, Entry entry) -> std::string {
    Sequence &seq = seqs[b];
    if (seq.fed != seq.length())
      return "";
    const float *logits = rowLogits(b);
    const std::string who = "sequence " + std::to_string(b);
    std::string error = checkLogits(logits, entry, who);
    if (!error.empty())
      return error;
    lastLogits_[b].assign(logits, logits + vocab);
    if (recordLogits)
      out.logits[b].insert(out.logits[b].end(), logits, logits + vocab);
    if (seq.finished)
      return "";
    error = sampleNext(seq, logits, entry, who, scratch);
    if (!error.empty())
      return error;
    if (onToken && !onToken(b, seq.tokens.back()))
      seq.finished = true;
    return "";
  };
  auto collect = [&]() {
    for (int64_t b = 0; b < batch; ++b)
      out.tokens[b] = seqs[b].tokens;
  };

  // -- Prefill: the prefix all prompts share in length ----------------------
  auto start = std::chrono::steady_clock::now();
  int64_t common = maxSeqLen;
  for (const auto &prompt : prompts)
    common = std::min<int64_t>(common, prompt.size());
  for (RowInput &row : rows)
    row.feed = true;
  error = step(Entry::Prefill, common, rows);
  if (!error.empty())
    return error;
  stats_.prefillCalls = 1;
  stats_.prefillTokens = common * batch;
  for (int64_t b = 0; b < batch; ++b) {
    error = afterCall(b, Entry::Prefill);
    if (!error.empty())
      return error;
  }
  stats_.prefillSeconds = secondsSince(start);

  // -- Decode: one token per row per call -----------------------------------
  // A row is fed its next token while that token is still part of the
  // prompt, while it generates, or (when logits are recorded) once more to
  // produce the row after its last token; otherwise it gets filler at its
  // own position and its result is ignored.
  start = std::chrono::steady_clock::now();
  for (;;) {
    bool any = false;
    for (RowInput &row : rows) {
      row.feed = row.seq->needsFeed(recordLogits);
      any |= row.feed;
    }
    if (!any)
      break;
    error = step(Entry::Decode, 1, rows);
    if (!error.empty())
      return error;
    ++stats_.decodeCalls;
    for (int64_t b = 0; b < batch; ++b) {
      if (!rows[b].feed)
        continue;
      ++stats_.decodeTokens;
      error = afterCall(b, Entry::Decode);
      if (!error.empty())
        return error;
    }
  }
  stats_.decodeSeconds = secondsSince(start);
  collect();
  return "";
}

//===----------------------------------------------------------------------===//
// Speculative decoding with the MTP module
//===----------------------------------------------------------------------===//

std::string Model::generateSpeculative(const std::vector<int32_t> &prompt,
                                       const SamplingOptions &sampling,
                                       int64_t draftTokens,
                                       std::vector<int32_t> &tokens,
                                       SpeculativeStats &stats,
                                       const TokenCallback &onToken,
                                       DraftTrace *trace) {
  std::string error = speculativeSupport();
  if (!error.empty())
    return error;
  if (draftTokens < 1 || draftTokens > kMaxVerifyLen - 1)
    return "draft tokens must be in [1, " + std::to_string(kMaxVerifyLen - 1) +
           "], got " + std::to_string(draftTokens);
  const int64_t vocab = manifest_.vocabSize();
  const int64_t maxSeqLen = manifest_.maxSeqLen;
  const int64_t batch = manifest_.maxBatch;
  const int64_t hidden = manifest_.config.hiddenSize;
  error = validateRequest(vocab, batch, maxSeqLen, {prompt}, sampling);
  if (!error.empty())
    return error;
  stats = SpeculativeStats();
  tokens.clear();
  if (trace)
    *trace = DraftTrace();
  Sequence seq(prompt, sampling, /*stream=*/0);
  if (seq.finished)
    return "";
  const bool greedy = sampling.temperature == 0.0f;
  SamplerScratch scratch;

  // Row 0 gets `count` tokens from `tokenAt(i)` at positions first + i;
  // other rows filler at positions 0.. (never read back).
  auto setRow0 = [&](int64_t count, int64_t first,
                     const std::function<int32_t(int64_t)> &tokenAt) {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < count; ++i) {
        setInput(manifest_.tokensInput, b, i, count, b == 0 ? tokenAt(i) : 0);
        setInput(manifest_.positionsInput, b, i, count,
                 b == 0 ? first + i : i);
      }
  };
  auto verifyLogits = [&](int64_t i) {
    return static_cast<const float *>(logitsAll_.data) + i * vocab;
  };
  // Appends `token`; false once the sequence is finished.
  auto emit = [&](int32_t token) {
    seq.tokens.push_back(token);
    if (static_cast<int64_t>(seq.tokens.size()) == sampling.maxNewTokens ||
        (sampling.stopAtEos && token == manifest_.config.eosTokenId))
      seq.finished = true;
    if (onToken && !onToken(0, token))
      seq.finished = true;
    return !seq.finished;
  };
  auto pick = [&](const float *logits, const char *entry) -> int64_t {
    int64_t token =
        greedy ? argmaxLogits(logits, vocab)
               : sampleLogits(logits, vocab, sampling.temperature,
                              sampling.topP, seq.rng, scratch);
    if (token < 0 || hasNaN(logits, vocab))
      error = std::string("the artifact's ") + entry +
              " entry point produced no usable logits";
    return token;
  };
  // The MTP module over positions [first, first + count): the main model's
  // hidden states there (in hidden_, from the last @verify) and the tokens
  // after them. Its logits then predict the token two after the last.
  auto catchUpDraft = [&](int64_t first, int64_t count) {
    setRow0(count, first,
            [&](int64_t i) { return seq.tokenAt(first + i + 1); });
    callSpeculative(draft_, draftArgs_, count, /*isDraft=*/true);
    ++stats.draftCalls;
    if (trace) {
      trace->positions.push_back(first + count - 1);
      trace->logits.insert(trace->logits.end(), rowLogits(0),
                           rowLogits(0) + vocab);
    }
  };

  // -- The prompt, through @verify in chunks (the MTP module needs every
  // -- position's hidden state), then the MTP module over each chunk.
  auto start = std::chrono::steady_clock::now();
  const int64_t promptLen = static_cast<int64_t>(prompt.size());
  for (int64_t first = 0; first < promptLen;) {
    const int64_t count = std::min(kMaxVerifyLen, promptLen - first);
    setRow0(count, first, [&](int64_t i) { return prompt[first + i]; });
    callSpeculative(verify_, verifyArgs_, count, /*isDraft=*/false);
    if (first + count == promptLen) {
      int64_t token = pick(verifyLogits(count - 1), "verify");
      if (token < 0)
        return error;
      emit(static_cast<int32_t>(token));
    }
    catchUpDraft(first, count);
    first += count;
  }
  seq.fed = promptLen;
  stats.promptSeconds = secondsSince(start);

  // -- Rounds: draft, verify, accept -----------------------------------------
  start = std::chrono::steady_clock::now();
  std::vector<int32_t> drafts;
  std::vector<std::vector<double>> draftProbs;
  std::vector<double> targetProbs, residual;
  while (!seq.finished) {
    // Tokens still to emit and positions still free bound the drafts: the
    // round feeds the pending token and k drafts at fed .. fed + k.
    const int64_t remaining =
        sampling.maxNewTokens - static_cast<int64_t>(seq.tokens.size());
    const int64_t k = std::max<int64_t>(
        0, std::min({draftTokens, remaining - 1, maxSeqLen - 1 - seq.fed}));
    if (seq.fed >= maxSeqLen)
      return "the sequence reached the artifact's max sequence length";
    drafts.clear();
    draftProbs.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) {
      if (i > 0) {
        // A further draft step: the MTP module's own last hidden state with
        // the draft before, at the next position.
        std::memcpy(hidden_.data, draftHidden_.data,
                    sizeof(float) * batch * hidden);
        const int32_t previous = drafts.back();
        setRow0(1, seq.fed + i - 1, [&](int64_t) { return previous; });
        callSpeculative(draft_, draftArgs_, 1, /*isDraft=*/true);
        ++stats.draftCalls;
      }
      const float *logits = rowLogits(0);
      int64_t token;
      if (greedy) {
        token = argmaxLogits(logits, vocab);
      } else {
        if (!samplingDistribution(logits, vocab, sampling.temperature,
                                  sampling.topP, scratch, draftProbs[i]))
          return "the artifact's draft entry point produced no usable logits";
        token = sampleDistribution(draftProbs[i], seq.rng);
      }
      if (token < 0 || hasNaN(logits, vocab))
        return "the artifact's draft entry point produced no usable logits";
      drafts.push_back(static_cast<int32_t>(token));
    }
    stats.drafted += k;

    // One main-model call over the pending token and the drafts.
    const int64_t first = seq.fed;
    const int32_t pending = seq.tokens.back();
    setRow0(k + 1, first, [&](int64_t i) {
      return i == 0 ? pending : drafts[i - 1];
    });
    callSpeculative(verify_, verifyArgs_, k + 1, /*isDraft=*/false);
    ++stats.verifyCalls;
    for (int64_t i = 0; i <= k; ++i)
      if (hasNaN(verifyLogits(i), vocab))
        return "the artifact's verify entry point produced NaN logits";

    int64_t accepted = 0;
    bool open = true;
    for (int64_t i = 0; i < k && open; ++i) {
      const float *logits = verifyLogits(i);
      const int32_t d = drafts[i];
      int64_t token;
      if (greedy) {
        token = argmaxLogits(logits, vocab);
      } else {
        if (!samplingDistribution(logits, vocab, sampling.temperature,
                                  sampling.topP, scratch, targetProbs))
          return "the artifact's verify entry point produced no usable "
                 "logits";
        const double p = targetProbs[d], q = draftProbs[i][d];
        if (q > 0.0 && seq.rng.uniform() * q < p) {
          token = d;
        } else {
          // Rejected: resample from the part of p that q does not cover.
          residual.assign(targetProbs.size(), 0.0);
          for (size_t t = 0; t < residual.size(); ++t)
            residual[t] = std::max(0.0, targetProbs[t] - draftProbs[i][t]);
          token = sampleDistribution(residual, seq.rng);
          if (token < 0)
            token = sampleDistribution(targetProbs, seq.rng);
        }
      }
      if (token == d) {
        ++accepted;
        open = emit(d);
        continue;
      }
      emit(static_cast<int32_t>(token));
      open = false;
      break;
    }
    if (open) {
      // Every draft accepted: the main model's own next token comes free.
      int64_t token = pick(verifyLogits(k), "verify");
      if (token < 0)
        return error;
      emit(static_cast<int32_t>(token));
    }
    stats.accepted += accepted;
    // The pending token and the accepted drafts are in the cache; whatever
    // the call wrote after them is overwritten by the next call before it
    // is read.
    seq.fed = first + 1 + accepted;
    if (!seq.finished)
      catchUpDraft(first, accepted + 1);
  }
  stats.decodeSeconds = secondsSince(start);
  stats.generated = static_cast<int64_t>(seq.tokens.size()) - 1;
  tokens = seq.tokens;
  return "";
}

const float *Model::lastLogits(int64_t seq) const {
  if (seq < 0 || seq >= static_cast<int64_t>(lastLogits_.size()) ||
      lastLogits_[seq].empty())
    return nullptr;
  return lastLogits_[seq].data();
}

uint64_t Model::weightsBytes() const {
  uint64_t total = 0;
  for (const Buffer &b : weights_)
    total += b.bytes; // 0 once released after prepare
  for (const Buffer &b : prepared_)
    total += b.bytes;
  return total;
}

uint64_t Model::weightsMappedBytes() const {
  uint64_t total = 0;
  for (const Buffer &b : weights_)
    total += b.owned ? 0 : b.bytes;
  return total;
}

const void *Model::weightData(size_t index) const {
  return index < weights_.size() ? weights_[index].data : nullptr;
}

bool Model::weightIsMapped(size_t index) const {
  return index < weights_.size() && !weights_[index].owned;
}

const void *Model::kvCacheData() const {
  return inputs_.empty() ? nullptr : inputs_[manifest_.cacheInput].data;
}

} // namespace runtime
} // namespace dsv3
