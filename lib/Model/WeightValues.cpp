//===- WeightValues.cpp - NaN and infinity in checkpoint weights ----------===//
//
// The policy (docs/reliability.md): a floating-point weight (F32, BF16, F16,
// F64; FP8 block scales are F32) holding a NaN or an infinity is refused
// when the runtime loads it, with the tensor's name and the element's index. Such a weight turns every logit it reaches into NaN; the
// runtime would otherwise notice only at the first decode step, without
// saying which tensor is damaged.
//
// The test is on the bit patterns, not on floating-point values, so that it
// is exact for every dtype (no conversion to f32 first) and vectorises: each
// chunk is first reduced to "any special exponent?" and only a chunk that
// has one is searched element by element.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Model/Checkpoint.h"

#include "Support.h"

#include <cmath>
#include <cstring>

namespace dsv3 {

namespace {

/// Elements of `Word` (an unsigned integer the size of the dtype) whose bits
/// under `mask` are all ones: exponent all ones for IEEE-style formats
/// (infinity or NaN), or the NaN pattern for e4m3fn.
template <typename Word>
int64_t findAllOnes(const uint8_t *data, size_t count, Word mask) {
  constexpr size_t kBlock = 1024;
  for (size_t begin = 0; begin < count; begin += kBlock) {
    size_t end = begin + kBlock < count ? begin + kBlock : count;
    bool any = false;
    for (size_t i = begin; i < end; ++i) {
      Word w;
      std::memcpy(&w, data + i * sizeof(Word), sizeof(Word));
      any |= (w & mask) == mask;
    }
    if (!any)
      continue;
    for (size_t i = begin; i < end; ++i) {
      Word w;
      std::memcpy(&w, data + i * sizeof(Word), sizeof(Word));
      if ((w & mask) == mask)
        return static_cast<int64_t>(i);
    }
  }
  return -1;
}

/// The bits that are all ones exactly for NaN and infinity (e4m3fn: NaN).
/// 0 for dtypes without either.
uint64_t specialMask(DType dtype) {
  switch (dtype) {
  case DType::F64:
    return 0x7ff0000000000000ull;
  case DType::F32:
    return 0x7f800000u;
  case DType::F16:
    return 0x7c00u;
  case DType::BF16:
    return 0x7f80u;
  case DType::F8E4M3:
    return 0x7fu;
  case DType::F8E5M2:
    return 0x7cu;
  case DType::I64:
  case DType::I32:
  case DType::I16:
  case DType::I8:
  case DType::U8:
  case DType::Bool:
    break;
  }
  return 0;
}

} // namespace

int64_t findNonFinite(DType dtype, const uint8_t *data, size_t numBytes) {
  uint64_t mask = specialMask(dtype);
  if (mask == 0)
    return -1;
  size_t count = numBytes / dtypeSize(dtype);
  switch (dtypeSize(dtype)) {
  case 8:
    return findAllOnes<uint64_t>(data, count, mask);
  case 4:
    return findAllOnes<uint32_t>(data, count, static_cast<uint32_t>(mask));
  case 2:
    return findAllOnes<uint16_t>(data, count, static_cast<uint16_t>(mask));
  default:
    return findAllOnes<uint8_t>(data, count, static_cast<uint8_t>(mask));
  }
}

int64_t copyAndFindNonFinite(DType dtype, uint8_t *dst, const uint8_t *src,
                             size_t numBytes) {
  const size_t elementSize = dtypeSize(dtype);
  // A multiple of every element size, small enough to stay in L2.
  constexpr size_t kChunk = 64 << 10;
  int64_t found = -1;
  for (size_t begin = 0; begin < numBytes; begin += kChunk) {
    size_t bytes = numBytes - begin < kChunk ? numBytes - begin : kChunk;
    std::memcpy(dst + begin, src + begin, bytes);
    if (found < 0) {
      int64_t at = findNonFinite(dtype, dst + begin, bytes);
      if (at >= 0)
        found = static_cast<int64_t>(begin / elementSize) + at;
    }
  }
  return found;
}

bool isScannedForNonFinite(DType dtype) {
  return dtype == DType::F64 || isFloatWeightDType(dtype);
}

int64_t checkWeightValues(DType dtype, const uint8_t *data, size_t numBytes) {
  return isScannedForNonFinite(dtype) ? findNonFinite(dtype, data, numBytes)
                                      : -1;
}

int64_t copyWeightValues(DType dtype, uint8_t *dst, const uint8_t *src,
                         size_t numBytes) {
  if (isScannedForNonFinite(dtype))
    return copyAndFindNonFinite(dtype, dst, src, numBytes);
  std::memcpy(dst, src, numBytes);
  return -1;
}

std::string nonFiniteWeightError(const TensorInfo &tensor, int64_t index) {
  std::string what = "NaN";
  if (index >= 0 && static_cast<uint64_t>(index) <
                        tensor.numBytes / dtypeSize(tensor.dtype)) {
    // Classify the element for the message: widen it exactly to double.
    const uint8_t *p = tensor.data + index * dtypeSize(tensor.dtype);
    double value = 0.0;
    switch (tensor.dtype) {
    case DType::F64:
      std::memcpy(&value, p, 8);
      break;
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      value = f;
      break;
    }
    case DType::BF16: {
      uint32_t bits = uint32_t(p[0] | (p[1] << 8)) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      value = f;
      break;
    }
    case DType::F16: {
      uint16_t bits = uint16_t(p[0] | (p[1] << 8));
      value = (bits & 0x3ff) ? NAN : INFINITY;
      if (bits & 0x8000)
        value = -value;
      break;
    }
    case DType::F8E5M2:
      value = (p[0] & 0x3) ? NAN : (p[0] & 0x80 ? -INFINITY : INFINITY);
      break;
    default: // e4m3fn has only NaN
      value = NAN;
      break;
    }
    if (std::isinf(value))
      what = value > 0 ? "+inf" : "-inf";
  }
  return escapeControlChars(
      tensor.file + ": tensor '" + tensor.name + "': element " +
      std::to_string(index) + " of " + dtypeName(tensor.dtype) + " " +
      detail::formatShape(tensor.shape) + " is " + what +
      "; weights must be finite (docs/reliability.md)");
}

} // namespace dsv3
