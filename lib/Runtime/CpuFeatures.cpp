//===- CpuFeatures.cpp - Check an artifact's target against this CPU ------===//

#include "dsv3/Runtime/CpuFeatures.h"

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace dsv3 {
namespace runtime {

namespace {

/// LLVM feature name -> /proc/cpuinfo flag, where they differ or where the
/// feature has no flag of its own but is implied by one ("crc32" by SSE4.2,
/// "evex512" by AVX-512F). Names spelled the same (after '-'/'.' -> '_') need
/// no entry.
const std::map<std::string, std::string> &x86FlagNames() {
  static const std::map<std::string, std::string> table = {
      {"64bit", "lm"},
      {"sse3", "pni"},
      {"sse4.1", "sse4_1"},
      {"sse4.2", "sse4_2"},
      {"crc32", "sse4_2"},
      {"x87", "fpu"},
      {"sahf", "lahf_lm"},
      {"lzcnt", "abm"},
      {"bmi", "bmi1"},
      {"pclmul", "pclmulqdq"},
      {"sha", "sha_ni"},
      {"rdrnd", "rdrand"},
      {"prfchw", "3dnowprefetch"},
      {"evex512", "avx512f"},
      {"avx512vbmi2", "avx512_vbmi2"},
      {"avx512vnni", "avx512_vnni"},
      {"avx512bitalg", "avx512_bitalg"},
      {"avx512vpopcntdq", "avx512_vpopcntdq"},
      {"avx512bf16", "avx512_bf16"},
      {"avx512fp16", "avx512_fp16"},
      {"avx512vp2intersect", "avx512_vp2intersect"},
      {"avxvnni", "avx_vnni"},
      {"avxvnniint8", "avx_vnni_int8"},
      {"avxvnniint16", "avx_vnni_int16"},
      {"avxifma", "avx_ifma"},
      {"avxneconvert", "avx_ne_convert"},
      {"shstk", "user_shstk"},
      {"ermsb", "erms"},
      {"kl", "keylocker"},
  };
  return table;
}

/// Features that select scheduling, code layout or mitigations and use no
/// instruction of their own.
bool isTuningFeature(const std::string &name) {
  static const char *prefixes[] = {
      "fast-",          "slow-",         "tuning-",         "prefer-",
      "false-deps-",    "no-bypass-",    "harden-",         "retpoline",
      "lvi-",           "use-",          "idiv",            "pad-",
      "lea-",           "sbb-",          "allow-light-",    "macrofusion",
      "branchfusion",   "vzeroupper",    "seses",           "soft-float",
      "sse-unaligned-", "faster-shift-", "16bit-mode",      "32bit-mode",
      "64bit-mode",     "x32",           "tagged-globals",  "inline-asm-",
      "branch-hint"};
  for (const char *prefix : prefixes)
    if (name.compare(0, std::strlen(prefix), prefix) == 0)
      return true;
  return false;
}

std::string cpuinfoSpelling(std::string name) {
  for (char &c : name)
    if (c == '-' || c == '.')
      c = '_';
  return name;
}

/// OS part of a triple: the third component for arch-vendor-os[-env].
std::string tripleOs(const std::string &triple) {
  std::vector<std::string> parts;
  std::stringstream stream(triple);
  for (std::string part; std::getline(stream, part, '-');)
    parts.push_back(part);
  return parts.size() >= 3 ? parts[2] : "";
}

} // namespace

std::set<std::string> hostCpuFlags() {
  std::set<std::string> flags;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    // x86 says "flags", arm64 says "Features"; every core repeats it.
    if (line.compare(0, 5, "flags") != 0 && line.compare(0, 8, "Features") != 0)
      continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    std::stringstream words(line.substr(colon + 1));
    for (std::string flag; words >> flag;)
      flags.insert(flag);
    break;
  }
  return flags;
}

std::string checkCpuFeatures(const std::vector<std::string> &features,
                             const std::set<std::string> &hostFlags) {
  if (hostFlags.empty())
    return "cannot read the CPU flags from /proc/cpuinfo to check the "
           "artifact's target features";
  std::vector<std::string> missing;
  const auto &table = x86FlagNames();
  for (std::string feature : features) {
    if (!feature.empty() && feature[0] == '-')
      continue; // disabled: nothing to require
    if (!feature.empty() && feature[0] == '+')
      feature.erase(0, 1);
    if (feature.empty() || isTuningFeature(feature))
      continue;
    auto it = table.find(feature);
    std::string flag =
        it != table.end() ? it->second : cpuinfoSpelling(feature);
    // A name neither in the table nor spelled like a cpuinfo flag lands here
    // too: refusing it is safer than risking SIGILL.
    if (!hostFlags.count(flag))
      missing.push_back(feature);
  }
  if (missing.empty())
    return "";
  std::string names;
  for (size_t i = 0; i < missing.size(); ++i)
    names += (i ? ", " : "") + missing[i];
  return "the artifact needs CPU features this machine does not have: " +
         names;
}

const char *hostArch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

std::string checkTarget(const TargetSpec &target) {
  // A GPU artifact's host code runs on this CPU too: the same checks.
  if (target.kind != "cpu" && target.kind != "cuda")
    return "the artifact targets '" + target.kind +
           "'; this runtime runs CPU and CUDA artifacts";
  std::string arch = target.triple.substr(0, target.triple.find('-'));
  if (arch == "amd64")
    arch = "x86_64";
  if (arch == "arm64")
    arch = "aarch64";
  if (arch != hostArch())
    return "the artifact was built for " + target.triple + " (" + arch +
           "); this machine is " + hostArch();
  std::string os = tripleOs(target.triple);
  if (!os.empty() && os != "linux")
    return "the artifact was built for " + target.triple +
           "; this runtime runs Linux artifacts";
  std::string error = checkCpuFeatures(target.features, hostCpuFlags());
  if (!error.empty())
    error += " (built for cpu '" + target.cpu + "'; recompile the artifact "
             "for this machine)";
  return error;
}

} // namespace runtime
} // namespace dsv3
