//===- GpuWarpMma.cpp - MMA vector.contract tiles -> mma.sync / wgmma -----===//
//
// The tensor-core tiles of convert-dsv3-to-linalg{tensor-cores} (lib/
// Conversion/DSV3ToLinalg/WarpMma.h) are written as whole-tile vector
// operations so that the same IR runs on the CPU. On the GPU each thread
// holds only its part of the accumulator, so the tiles are "distributed":
// every tile-level value of the accumulator type becomes four f32 values per
// thread, computed from the values it was made of. Two tile shapes, one per
// instruction:
//   - 16 x 8, one warp: mma.sync.m16n8k16 (sm_80 and sm_90a), operands
//     staged in shared memory and loaded into registers with ldmatrix;
//   - 64 x N (N = 8, 16, 24, 32, ...), one warpgroup (4 warps, 128 threads):
//     wgmma.mma_async.m64nNk16 (sm_90a), operands staged in shared memory in
//     the core-matrix layout and read by the tensor cores through matrix
//     descriptors.
// Both give thread t, for each 8-column slice of the tile, the same four
// accumulator elements of its warp's 16 rows (warp t / 32 of the warpgroup
// owns rows 16 * (t / 32) ...): a 64 x N tile is N / 2 values per thread.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3GPUWARPMMA
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

/// The tiles: A [R x 16], B [N (n) x 16 (k)], C [R x N] with R = 16, N = 8
/// (mma.sync m16n8k16, a warp) or R = 64, N a multiple of 8 up to 256 (wgmma
/// m64nNk16, a warpgroup).
constexpr int64_t kWarpRows = 16, kWarpgroupRows = 64, kCols = 8,
                  kDepth = 16, kMaxWgmmaCols = 256, kWarpgroupThreads = 128;
/// The values of a 16 x 8 C fragment each thread holds (per 8 columns of a
/// 64 x N one).
constexpr unsigned kFragment = 4;

using Fragment = SmallVector<Value, kFragment>;

/// The rows of an accumulator tile type (vector<16x8xf32> or
/// vector<64xNxf32>), or 0 for any other type.
int64_t accumulatorRows(Type type) {
  auto vectorType = dyn_cast<VectorType>(type);
  if (!vectorType || vectorType.getRank() != 2 ||
      !vectorType.getElementType().isF32())
    return 0;
  int64_t rows = vectorType.getDimSize(0), cols = vectorType.getDimSize(1);
  if (rows == kWarpRows && cols == kCols)
    return rows;
  if (rows == kWarpgroupRows && cols % kCols == 0 && cols > 0 &&
      cols <= kMaxWgmmaCols)
    return rows;
  return 0;
}

bool isAccumulatorType(Type type) { return accumulatorRows(type) != 0; }

/// The rows of a value the warp(group) holds distributed like an
/// accumulator, of any element type (f32 scores, i1 masks, index column
/// numbers): R x N with N a multiple of 8 up to 256, or R x 1 (a per-row
/// value: the online softmax's row max and sum), R = 16 or 64; 0 for any
/// other type.
int64_t distributedRows(Type type) {
  auto vectorType = dyn_cast<VectorType>(type);
  if (!vectorType || vectorType.getRank() != 2)
    return 0;
  int64_t rows = vectorType.getDimSize(0), cols = vectorType.getDimSize(1);
  if (rows != kWarpRows && rows != kWarpgroupRows)
    return 0;
  if (cols == 1 || (cols % kCols == 0 && cols <= kMaxWgmmaCols))
    return rows;
  return 0;
}

bool isDistributedType(Type type) { return distributedRows(type) != 0; }

/// A per-row value [R x 1]: each thread holds its two rows' values.
bool isRowType(Type type) {
  return isDistributedType(type) && cast<VectorType>(type).getDimSize(1) == 1;
}

/// The values each thread holds of a distributed tile: four per 8 columns
/// (two per row, rows g and g + 8), or its two rows' values of an R x 1.
unsigned fragmentSize(Type type) {
  const int64_t cols = cast<VectorType>(type).getDimSize(1);
  return cols == 1 ? 2 : kFragment * cols / kCols;
}

/// Which of its two rows (g, g + 8) element i of a thread's fragment is in.
unsigned rowHalfOf(unsigned i) { return (i % 4) / 2; }

/// bf16(lo), bf16(hi) packed into one i32 register (lo in the low half), the
/// form mma.sync takes its bf16 operands in.
Value packBf16Pair(OpBuilder &b, Location loc, Value lo, Value hi) {
  Type bf16 = b.getBF16Type();
  auto narrow = [&](Value v) -> Value {
    return v.getType().isBF16() ? v : arith::TruncFOp::create(b, loc, bf16, v);
  };
  Value pairVector = vector::FromElementsOp::create(
      b, loc, VectorType::get({2}, bf16), ValueRange{narrow(lo), narrow(hi)});
  Value asInt = vector::BitCastOp::create(
      b, loc, VectorType::get({1}, b.getI32Type()), pairVector);
  return vector::ExtractOp::create(b, loc, asInt, ArrayRef<int64_t>{0});
}

/// Where thread `t` keeps things: group = (t % 32) / 4 + 16 * (t / 32) (a
/// row: a warpgroup's warp w owns rows 16w..16w+15), t % 4 (a pair of
/// columns).
struct LaneCoordinates {
  Value group, pair; // pair = 2 * (t % 4)

  static LaneCoordinates of(OpBuilder &b, Location loc, int64_t tileRows) {
    Value lane = gpu::LaneIdOp::create(b, loc, IntegerAttr());
    Value four = arith::ConstantIndexOp::create(b, loc, 4);
    Value t = arith::RemUIOp::create(b, loc, lane, four);
    Value group = arith::DivUIOp::create(b, loc, lane, four);
    if (tileRows == kWarpgroupRows) {
      Value thread = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
      Value warp = arith::DivUIOp::create(
          b, loc, thread, arith::ConstantIndexOp::create(b, loc, 32));
      group = arith::AddIOp::create(
          b, loc, group,
          arith::MulIOp::create(b, loc, warp,
                                arith::ConstantIndexOp::create(b, loc, 16)));
    }
    return {group, arith::AddIOp::create(b, loc, t, t)};
  }
  /// Row and column of element i of a C fragment: in the 8 columns
  /// 8 (i / 4) .., (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
  std::pair<Value, Value> accumulatorElement(OpBuilder &b, Location loc,
                                             unsigned i) const {
    return {offset(b, loc, group, ((i % 4) / 2) * 8),
            offset(b, loc, pair, (i / 4) * kCols + i % 2)};
  }
  static Value offset(OpBuilder &b, Location loc, Value v, int64_t by) {
    if (by == 0)
      return v;
    return arith::AddIOp::create(b, loc, v,
                                 arith::ConstantIndexOp::create(b, loc, by));
  }
};

/// Clamps indices[d] of each dimension d in `masked` into [0, size(d)) so
/// that a load stays inside `base`; returns whether they all were inside
/// already (null when nothing is masked): the caller selects the padding
/// where not.
Value clampIntoBounds(OpBuilder &b, Location loc, Value base,
                      MutableArrayRef<Value> indices,
                      ArrayRef<unsigned> masked) {
  Value inside;
  for (unsigned d : masked) {
    Value &index = indices[d];
    Value size = memref::DimOp::create(b, loc, base, d);
    Value ok =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, index, size);
    inside = inside ? arith::AndIOp::create(b, loc, inside, ok) : ok;
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value last = arith::SubIOp::create(
        b, loc, arith::MaxUIOp::create(b, loc, size, one), one);
    index = arith::MinUIOp::create(b, loc, index, last);
  }
  return inside;
}

/// A 2-D operand tile read from memory: `read` with its two vector
/// dimensions on memref dimensions dims[0] (rows) and dims[1] (columns),
/// bf16 in memory, or f32 rounded to bf16 (`rounded`).
struct TileRead {
  mutable vector::TransferReadOp read;
  unsigned dims[2];
  bool rounded;

  /// extf(transfer_read bf16) or extf(truncf(transfer_read f32)), unmasked,
  /// on a memref; a dimension that is not in bounds reads zeros past its end.
  static std::optional<TileRead> match(Value operand, ArrayRef<int64_t> shape) {
    auto ext = operand.getDefiningOp<arith::ExtFOp>();
    if (!ext)
      return std::nullopt;
    Value narrow = ext.getIn();
    bool rounded = false;
    if (auto trunc = narrow.getDefiningOp<arith::TruncFOp>()) {
      narrow = trunc.getIn();
      rounded = true;
    }
    auto read = narrow.getDefiningOp<vector::TransferReadOp>();
    if (!read || read.getMask() || !isa<MemRefType>(read.getBase().getType()))
      return std::nullopt;
    VectorType type = read.getVectorType();
    Type element = type.getElementType();
    if (type.getShape() != shape ||
        !(rounded ? element.isF32() : element.isBF16()))
      return std::nullopt;
    if (!cast<VectorType>(ext.getIn().getType()).getElementType().isBF16())
      return std::nullopt;
    AffineMap map = read.getPermutationMap();
    if (map.getNumResults() != 2 || !map.isProjectedPermutation())
      return std::nullopt;
    TileRead tile{read, {map.getDimPosition(0), map.getDimPosition(1)},
                  rounded};
    return tile;
  }

  /// Whether rows of the tile are contiguous bf16 in memory, fully in
  /// bounds: then a lane can copy several elements with one vector load.
  bool contiguousRows() const {
    auto type = cast<MemRefType>(read.getBase().getType());
    SmallVector<int64_t> strides;
    int64_t offset;
    return !rounded &&
           llvm::all_of(read.getInBoundsValues(), [](bool b) { return b; }) &&
           dims[1] == static_cast<unsigned>(type.getRank() - 1) &&
           succeeded(type.getStridesAndOffset(strides, offset)) &&
           strides.back() == 1;
  }

  /// The memref indices of tile element (row, col).
  SmallVector<Value> indicesAt(OpBuilder &b, Location loc, Value row,
                               Value col) const {
    SmallVector<Value> indices(read.getIndices());
    indices[dims[0]] = arith::AddIOp::create(b, loc, indices[dims[0]], row);
    indices[dims[1]] = arith::AddIOp::create(b, loc, indices[dims[1]], col);
    return indices;
  }

  /// Element (row, col) of the tile (tile coordinates) as bf16: the read's
  /// padding past the end of a dimension that is not in bounds (the load
  /// itself clamped to stay inside).
  Value loadElement(OpBuilder &b, Location loc, Value row, Value col) const {
    SmallVector<Value> indices = indicesAt(b, loc, row, col);
    SmallVector<bool> inBounds = read.getInBoundsValues();
    SmallVector<unsigned> masked;
    for (unsigned d = 0; d < 2; ++d)
      if (!inBounds[d])
        masked.push_back(dims[d]);
    Value inside = clampIntoBounds(b, loc, read.getBase(), indices, masked);
    Value v = memref::LoadOp::create(b, loc, read.getBase(), indices);
    if (rounded)
      v = arith::TruncFOp::create(b, loc, b.getBF16Type(), v);
    if (!inside)
      return v;
    Value pad = read.getPadding();
    if (rounded)
      pad = arith::TruncFOp::create(b, loc, b.getBF16Type(), pad);
    return arith::SelectOp::create(b, loc, inside, v, pad);
  }

  /// Two consecutive bf16 of row `row`, columns col, col + 1 (tile
  /// coordinates), packed into the i32 register mma.sync takes.
  Value loadPair(OpBuilder &b, Location loc, Value row, Value col) const {
    return packBf16Pair(
        b, loc, loadElement(b, loc, row, col),
        loadElement(b, loc, row, LaneCoordinates::offset(b, loc, col, 1)));
  }
};

/// An A operand already in registers: extf(truncf(X)) with X a distributed
/// R x 16 f32 value (the fused attention's probabilities, the A operand of
/// its second product), rounded to bf16 where it is handed over.
std::optional<Value> matchRegisterTile(Value operand, int64_t rows) {
  auto ext = operand.getDefiningOp<arith::ExtFOp>();
  if (!ext)
    return std::nullopt;
  auto trunc = ext.getIn().getDefiningOp<arith::TruncFOp>();
  if (!trunc || !cast<VectorType>(trunc.getType()).getElementType().isBF16())
    return std::nullopt;
  Value x = trunc.getIn();
  auto type = cast<VectorType>(x.getType());
  if (type.getShape() != ArrayRef<int64_t>{rows, kDepth} ||
      !type.getElementType().isF32() ||
      x.getDefiningOp<vector::TransferReadOp>())
    return std::nullopt;
  return x;
}

bool isTileContraction(vector::ContractionOp op) {
  if (op.getKind() != vector::CombiningKind::ADD ||
      !isAccumulatorType(op.getAccType()))
    return false;
  MLIRContext *ctx = op.getContext();
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx),
             k = getAffineDimExpr(2, ctx);
  SmallVector<AffineMap> expected{AffineMap::get(3, 0, {m, k}, ctx),
                                  AffineMap::get(3, 0, {n, k}, ctx),
                                  AffineMap::get(3, 0, {m, n}, ctx)};
  return op.getIndexingMapsArray() == expected;
}

/// The fragment registers of a staged [rows x 16] bf16 tile, with one
/// ldmatrix: .x4 for A (16 x 16: lanes 0-15 point at rows 0-15 of columns
/// 0-7, lanes 16-31 at columns 8-15, giving (g, 2t), (g + 8, 2t), (g, 2t + 8),
/// (g + 8, 2t + 8)), .x2 for B (8 x 16 [n][k]: lanes 0-7 at rows 0-7 of
/// columns 0-7, lanes 8-15 at columns 8-15, giving (g, 2t), (g, 2t + 8)).
SmallVector<Value> loadFragmentsWithLdMatrix(OpBuilder &b, Location loc,
                                             Value buffer, int64_t rows) {
  const int64_t registers = rows * 16 / 64; // 8x8 matrices: 4 for A, 2 for B
  Value lane = gpu::LaneIdOp::create(b, loc, IntegerAttr());
  auto constant = [&](int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v);
  };
  Value row = arith::RemUIOp::create(b, loc, lane, constant(rows));
  Value col = arith::MulIOp::create(
      b, loc,
      arith::RemUIOp::create(b, loc,
                             arith::DivUIOp::create(b, loc, lane, constant(rows)),
                             constant(2)),
      constant(8));
  auto type = VectorType::get({registers, 2}, b.getBF16Type());
  Value matrices = nvgpu::LdMatrixOp::create(
      b, loc, type, buffer, ValueRange{row, col}, b.getBoolAttr(false),
      b.getI32IntegerAttr(registers));
  SmallVector<Value> regs;
  for (int64_t i = 0; i < registers; ++i) {
    Value pair = vector::ExtractOp::create(b, loc, matrices,
                                           ArrayRef<int64_t>{i});
    Value asInt = vector::BitCastOp::create(
        b, loc, VectorType::get({1}, b.getI32Type()), pair);
    regs.push_back(
        vector::ExtractOp::create(b, loc, asInt, ArrayRef<int64_t>{0}));
  }
  return regs;
}

struct GpuWarpMmaPass : dsv3::impl::DSV3GpuWarpMmaBase<GpuWarpMmaPass> {
  using DSV3GpuWarpMmaBase::DSV3GpuWarpMmaBase;

  DenseMap<Value, Fragment> fragments;
  /// The shared-memory copy of each operand tile read (one per read: the A
  /// tile of gate/up serves both of its contractions).
  DenseMap<Operation *, Value> stagedTiles;
  /// The fragment registers loaded from each staged tile (by the first
  /// contraction that reads it; the others come after it in the same block).
  DenseMap<Value, SmallVector<Value>> stagedFragments;
  /// The wgmma matrix descriptor of each staged 64-row-kernel tile.
  DenseMap<Value, Value> descriptors;
  /// The descriptor of each A operand staged from registers (once for all
  /// the contractions that read it: the column tiles of P . latent).
  DenseMap<Value, Value> registerTileDescriptors;
  bool failedToDistribute = false;

  void runOnOperation() override {
    // The pass object serves every gpu.module: values of an earlier one
    // are gone (and their addresses reused).
    fragments.clear();
    stagedTiles.clear();
    stagedFragments.clear();
    descriptors.clear();
    registerTileDescriptors.clear();
    failedToDistribute = false;
    Operation *root = getOperation();
    // 1. Loops carrying accumulators carry four f32 per accumulator.
    SmallVector<scf::ForOp> loops;
    root->walk([&](scf::ForOp loop) { // post-order: inner loops first
      if (llvm::any_of(loop.getInitArgs(), [](Value v) {
            return isDistributedType(v.getType());
          }))
        loops.push_back(loop);
    });
    for (scf::ForOp loop : loops)
      distributeLoop(loop);

    // 2. Where a warp value leaves the warp code (a write, a loop's yield),
    //    each lane takes its fragment.
    SmallVector<Operation *> sinks;
    root->walk([&](Operation *op) {
      if (auto write = dyn_cast<vector::TransferWriteOp>(op)) {
        if (isDistributedType(write.getVectorType()))
          sinks.push_back(op);
      } else if (auto cast = dyn_cast<UnrealizedConversionCastOp>(op)) {
        if (cast.getInputs().size() == 1 &&
            isDistributedType(cast.getInputs()[0].getType()))
          sinks.push_back(op);
      }
    });
    for (Operation *sink : sinks) {
      if (auto write = dyn_cast<vector::TransferWriteOp>(sink)) {
        if (failed(distributeWrite(write)))
          return signalPassFailure();
        continue;
      }
      auto split = cast<UnrealizedConversionCastOp>(sink);
      Fragment f = fragmentOf(split.getInputs()[0]);
      split.replaceAllUsesWith(ValueRange(f));
      split.erase();
    }
    if (failedToDistribute)
      return signalPassFailure();

    // 3. The warp-level ops are now unused; a barrier right after another
    //    (one tile's "copy complete" and the next tile's "readers done")
    //    orders nothing more.
    eraseDeadWarpOps(root);
    root->walk([](gpu::BarrierOp barrier) {
      if (isa_and_nonnull<gpu::BarrierOp>(barrier->getNextNode()))
        barrier.erase();
    });
    WalkResult left = root->walk([](vector::ContractionOp op) {
      op.emitOpError("dsv3-gpu-warp-mma: not an MMA tile (expected "
                     "extf(bf16 Rx16 read) x extf(bf16 Nx16 read) -> RxN "
                     "f32 with R = 16, N = 8 (mma.sync) or R = 64, N a "
                     "multiple of 8 up to 256 (wgmma), maps (m,k), (n,k), "
                     "(m,n); an f32 read rounded by truncf counts as bf16), "
                     "and a contraction in GPU code would run on every lane");
      return WalkResult::interrupt();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }

  /// scf.for with accumulator iteration arguments -> the same loop with the
  /// thread's f32 values (four per 8 columns) per such argument. The body
  /// still sees a tile value (an n -> 1 cast), and yields one (a 1 -> n
  /// cast); both casts are resolved by fragmentOf.
  void distributeLoop(scf::ForOp loop) {
    OpBuilder b(loop);
    Location loc = loop.getLoc();
    Type f32 = b.getF32Type();
    // Tile values -> their f32 values (inits, yields) ...
    auto expand = [&](ValueRange values) {
      SmallVector<Value> out;
      for (Value v : values) {
        if (isDistributedType(v.getType()))
          llvm::append_range(
              out, UnrealizedConversionCastOp::create(
                       b, loc,
                       SmallVector<Type>(
                           fragmentSize(v.getType()),
                           cast<VectorType>(v.getType()).getElementType()),
                       v)
                       .getResults());
        else
          out.push_back(v);
      }
      return out;
    };
    // ... and back, for the uses of the old block arguments and results.
    auto replaceByParts = [&](ValueRange olds, ValueRange parts) {
      unsigned next = 0;
      for (Value old : olds) {
        if (isDistributedType(old.getType())) {
          const unsigned size = fragmentSize(old.getType());
          old.replaceAllUsesWith(
              UnrealizedConversionCastOp::create(b, loc, old.getType(),
                                                 parts.slice(next, size))
                  .getResult(0));
          next += size;
        } else {
          old.replaceAllUsesWith(parts[next++]);
        }
      }
    };
    auto newLoop =
        scf::ForOp::create(b, loc, loop.getLowerBound(), loop.getUpperBound(),
                           loop.getStep(), expand(loop.getInitArgs()));
    Block *oldBody = loop.getBody(), *newBody = newLoop.getBody();
    if (!newBody->empty())
      newBody->getTerminator()->erase();
    b.setInsertionPointToStart(newBody);
    oldBody->getArgument(0).replaceAllUsesWith(newLoop.getInductionVar());
    replaceByParts(oldBody->getArguments().drop_front(),
                   newBody->getArguments().drop_front());
    newBody->getOperations().splice(newBody->end(), oldBody->getOperations());
    auto yield = cast<scf::YieldOp>(newBody->getTerminator());
    b.setInsertionPoint(yield);
    yield->setOperands(expand(yield.getOperands()));
    b.setInsertionPointAfter(newLoop);
    replaceByParts(loop.getResults(), newLoop.getResults());
    loop.erase();
  }

  /// This lane's four values of the warp value `v`, built right after `v`.
  Fragment fragmentOf(Value v) {
    auto it = fragments.find(v);
    if (it != fragments.end())
      return it->second;
    OpBuilder b(v.getContext());
    if (Operation *def = v.getDefiningOp())
      b.setInsertionPointAfter(def);
    else
      b.setInsertionPointToStart(cast<BlockArgument>(v).getOwner());
    Location loc = v.getLoc();
    Fragment f = buildFragment(b, loc, v);
    fragments[v] = f;
    return f;
  }

  Fragment buildFragment(OpBuilder &b, Location loc, Value v) {
    Operation *def = v.getDefiningOp();
    const unsigned size = fragmentSize(v.getType());
    // A loop argument or result: its parts.
    if (auto cast = dyn_cast_or_null<UnrealizedConversionCastOp>(def)) {
      if (cast.getInputs().size() == size)
        return Fragment(cast.getInputs());
    }
    // A splat constant: the same scalar.
    DenseElementsAttr splat;
    if (def && matchPattern(def, m_Constant(&splat)) && splat.isSplat()) {
      Value scalar = arith::ConstantOp::create(
          b, loc, cast<TypedAttr>(splat.getSplatValue<Attribute>()));
      return Fragment(size, scalar);
    }
    if (auto contract = dyn_cast_or_null<vector::ContractionOp>(def)) {
      if (std::optional<Fragment> f = buildMma(b, loc, contract))
        return *f;
    }
    // Elementwise arithmetic (the epilogue, the online softmax, masks):
    // per value, on operands of the same shape.
    auto sameShape = [&](Type t) {
      return cast<VectorType>(t).getShape() ==
             cast<VectorType>(v.getType()).getShape();
    };
    if (def && def->hasTrait<OpTrait::Elementwise>() &&
        def->getNumResults() == 1 && def->getNumRegions() == 0 &&
        llvm::all_of(def->getOperandTypes(), [&](Type t) {
          return isa<VectorType>(t) && sameShape(t);
        })) {
      SmallVector<Fragment> operands;
      for (Value operand : def->getOperands())
        operands.push_back(fragmentOf(operand));
      b.setInsertionPointAfter(def);
      Type element = cast<VectorType>(v.getType()).getElementType();
      Fragment f;
      for (unsigned i = 0; i < size; ++i) {
        OperationState state(loc, def->getName());
        for (const Fragment &operand : operands)
          state.addOperands(operand[i]);
        state.addTypes(element);
        state.addAttributes(def->getAttrs());
        f.push_back(b.create(state)->getResult(0));
      }
      return f;
    }
    if (std::optional<Fragment> f = buildLayoutFragment(b, loc, v))
      return *f;
    // Anything else (a kernel argument, a load of a whole tile) has no
    // per-lane form here: fail rather than leave a warp value in the kernel.
    (def ? def->emitOpError() : emitError(loc))
        << "dsv3-gpu-warp-mma: cannot give each lane its part of this "
           "warp tile (expected a loop argument, a splat constant, a "
           "contraction, elementwise arithmetic, a broadcast, a column "
           "slice, a row reduction or a per-row read of those)";
    failedToDistribute = true;
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
    return Fragment(size, zero);
  }

  /// The fragments of values that only move or combine other values
  /// between lanes' registers: broadcasts (of a scalar, of a per-row value
  /// along the columns, of vector.step as the column numbers), column
  /// slices (multiples of 8), per-row reductions (shape_cast(multi_reduction
  /// over the columns) to R x 1: each thread combines its values of a row,
  /// then the four threads of the row exchange theirs with two xor
  /// shuffles), and per-row reads (shape_cast(transfer_read [R]) to R x 1).
  std::optional<Fragment> buildLayoutFragment(OpBuilder &b, Location loc,
                                              Value v) {
    Operation *def = v.getDefiningOp();
    if (!def)
      return std::nullopt;
    const unsigned size = fragmentSize(v.getType());
    const int64_t rows = distributedRows(v.getType());
    if (auto broadcast = dyn_cast<vector::BroadcastOp>(def)) {
      Value source = broadcast.getSource();
      if (!isa<VectorType>(source.getType()))
        return Fragment(size, source);
      if (isRowType(source.getType()) && !isRowType(v.getType())) {
        Fragment row = fragmentOf(source);
        Fragment f;
        for (unsigned i = 0; i < size; ++i)
          f.push_back(row[rowHalfOf(i)]);
        return f;
      }
      if (source.getDefiningOp<vector::StepOp>() && !isRowType(v.getType())) {
        b.setInsertionPointAfter(def);
        LaneCoordinates lane = LaneCoordinates::of(b, loc, rows);
        Fragment f;
        for (unsigned i = 0; i < size; ++i)
          f.push_back(lane.accumulatorElement(b, loc, i).second);
        return f;
      }
      return std::nullopt;
    }
    if (auto slice = dyn_cast<vector::ExtractStridedSliceOp>(def)) {
      std::optional<unsigned> first = firstFragmentValueOfColumns(
          slice.getOffsets(), slice.getSource().getType());
      if (!first)
        return std::nullopt;
      Fragment whole = fragmentOf(slice.getSource());
      return Fragment(ArrayRef<Value>(whole).slice(*first, size));
    }
    if (auto insert = dyn_cast<vector::InsertStridedSliceOp>(def)) {
      std::optional<unsigned> first = firstFragmentValueOfColumns(
          insert.getOffsets(), insert.getValueToStore().getType());
      if (!first)
        return std::nullopt;
      Fragment f = fragmentOf(insert.getDest());
      Fragment part = fragmentOf(insert.getValueToStore());
      for (auto [i, value] : llvm::enumerate(part))
        f[*first + i] = value;
      return f;
    }
    auto shapeCast = dyn_cast<vector::ShapeCastOp>(def);
    if (!shapeCast || !isRowType(v.getType()))
      return std::nullopt;
    if (auto reduction = shapeCast.getSource()
                             .getDefiningOp<vector::MultiDimReductionOp>())
      return buildRowReduction(b, loc, reduction);
    if (auto read =
            shapeCast.getSource().getDefiningOp<vector::TransferReadOp>())
      return buildRowRead(b, loc, read, rows);
    return std::nullopt;
  }

  /// For a column slice of a distributed tile (offsets [0, c], c a
  /// multiple of 8; `tile` the sliced or inserted tile's type): the index
  /// of its first value in a thread's fragment of the whole.
  static std::optional<unsigned> firstFragmentValueOfColumns(ArrayAttr offsets,
                                                             Type tile) {
    int64_t row = cast<IntegerAttr>(offsets[0]).getInt();
    int64_t col = cast<IntegerAttr>(offsets[1]).getInt();
    if (row != 0 || col % kCols != 0 || !isDistributedType(tile) ||
        isRowType(tile))
      return std::nullopt;
    return col / kCols * kFragment;
  }

  /// combine(a, b) of a vector.multi_reduction's kind, on scalars.
  static std::optional<Value> combine(OpBuilder &b, Location loc,
                                      vector::CombiningKind kind, Value x,
                                      Value y) {
    switch (kind) {
    case vector::CombiningKind::ADD:
      return arith::AddFOp::create(b, loc, x, y).getResult();
    case vector::CombiningKind::MAXNUMF:
      return arith::MaxNumFOp::create(b, loc, x, y).getResult();
    case vector::CombiningKind::MAXIMUMF:
      return arith::MaximumFOp::create(b, loc, x, y).getResult();
    default:
      return std::nullopt;
    }
  }

  /// multi_reduction(tile [R x N], acc [R]) over the columns: a thread's
  /// values of row g (and g + 8) combined, then with the other three
  /// threads' of the row (lanes 4g .. 4g + 3: xor 1, xor 2), then with acc.
  std::optional<Fragment>
  buildRowReduction(OpBuilder &b, Location loc,
                    vector::MultiDimReductionOp reduction) {
    Value source = reduction.getSource();
    DenseElementsAttr accSplat;
    if (reduction.getReductionDims() != ArrayRef<int64_t>{1} ||
        !isDistributedType(source.getType()) ||
        isRowType(source.getType()) ||
        !cast<VectorType>(source.getType()).getElementType().isF32() ||
        !matchPattern(reduction.getAcc(), m_Constant(&accSplat)) ||
        !accSplat.isSplat())
      return std::nullopt;
    vector::CombiningKind kind = reduction.getKind();
    Fragment values = fragmentOf(source);
    b.setInsertionPointAfter(reduction);
    Value acc = arith::ConstantOp::create(
        b, loc, cast<TypedAttr>(accSplat.getSplatValue<Attribute>()));
    Fragment rows(2, nullptr);
    for (auto [i, value] : llvm::enumerate(values)) {
      Value &row = rows[rowHalfOf(i)];
      if (!row) {
        row = value;
        continue;
      }
      std::optional<Value> combined = combine(b, loc, kind, row, value);
      if (!combined)
        return std::nullopt;
      row = *combined;
    }
    Type i32 = b.getI32Type();
    Value width = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(32));
    for (Value &row : rows) {
      for (int32_t mask : {1, 2}) {
        Value offset =
            arith::ConstantOp::create(b, loc, IntegerAttr::get(i32, mask));
        Value other = gpu::ShuffleOp::create(b, loc, row, offset, width,
                                             gpu::ShuffleMode::XOR)
                          .getShuffleResult();
        row = *combine(b, loc, kind, row, other);
      }
      row = *combine(b, loc, kind, row, acc);
    }
    return rows;
  }

  /// A per-row value read from memory (a 1-D transfer_read of R elements):
  /// each thread loads its rows g and g + 8, the padding past the end of a
  /// dimension that is not in bounds.
  std::optional<Fragment> buildRowRead(OpBuilder &b, Location loc,
                                       vector::TransferReadOp read,
                                       int64_t rows) {
    AffineMap map = read.getPermutationMap();
    if (read.getMask() || !isa<MemRefType>(read.getBase().getType()) ||
        map.getNumResults() != 1 || !map.isProjectedPermutation() ||
        read.getVectorType().getRank() != 1)
      return std::nullopt;
    b.setInsertionPointAfter(read);
    LaneCoordinates lane = LaneCoordinates::of(b, loc, rows);
    const unsigned dim = map.getDimPosition(0);
    const bool inBounds = read.getInBoundsValues()[0];
    Fragment f;
    for (int64_t half = 0; half < 2; ++half) {
      SmallVector<Value> indices(read.getIndices());
      indices[dim] = arith::AddIOp::create(
          b, loc, indices[dim],
          LaneCoordinates::offset(b, loc, lane.group, 8 * half));
      Value inside =
          inBounds ? Value()
                   : clampIntoBounds(b, loc, read.getBase(), indices, {dim});
      Value value = memref::LoadOp::create(b, loc, read.getBase(), indices);
      f.push_back(inside ? arith::SelectOp::create(b, loc, inside, value,
                                                   read.getPadding())
                               .getResult()
                         : value);
    }
    return f;
  }

  /// contract(extf(A), extf(B), C) -> nvvm.mma.sync m16n8k16 or
  /// nvvm.wgmma.mma_async m64nNk16, by the tile's rows.
  std::optional<Fragment> buildMma(OpBuilder &b, Location loc,
                                   vector::ContractionOp contract) {
    if (!isTileContraction(contract))
      return std::nullopt;
    const int64_t rows = accumulatorRows(contract.getAccType());
    const int64_t cols =
        cast<VectorType>(contract.getAccType()).getDimSize(1);
    std::optional<TileRead> a = TileRead::match(contract.getLhs(),
                                                {rows, kDepth});
    std::optional<Value> aInRegisters;
    if (!a)
      aInRegisters = matchRegisterTile(contract.getLhs(), rows);
    std::optional<TileRead> bt = TileRead::match(contract.getRhs(),
                                                 {cols, kDepth});
    if ((!a && !aInRegisters) || !bt)
      return std::nullopt;
    // An A operand in registers: its fragment first (it is computed before
    // the contraction).
    Fragment aValues;
    if (aInRegisters)
      aValues = fragmentOf(*aInRegisters);
    Fragment c = fragmentOf(contract.getAcc());
    // Two threads per row: a warp for 16 rows, a warpgroup for 64.
    if (auto func = contract->getParentOfType<gpu::GPUFuncOp>()) {
      DenseI32ArrayAttr block = func.getKnownBlockSizeAttr();
      if (block && (block[0] != 2 * rows || block[1] != 1 || block[2] != 1)) {
        contract.emitOpError("dsv3-gpu-warp-mma: a ")
            << rows << "-row tile needs blocks of " << 2 * rows
            << " threads, this kernel's are " << block[0] << "x" << block[1]
            << "x" << block[2]
            << " (dsv3-gpu-tile-parallel-loops warp-lanes)";
        failedToDistribute = true;
        Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
        return Fragment(c.size(), zero);
      }
    }
    if (rows == kWarpgroupRows)
      return buildWgmma(b, loc, contract, a, aValues, *bt, c);
    Value aBuffer = a ? stage(*a, kWarpRows) : nullptr;
    Value bBuffer = stage(*bt, kCols);
    b.setInsertionPoint(contract);
    // A: (g, 2t), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8), each a pair.
    // B (stored [n][k]): n = g, k = 2t and 2t + 8, each a pair. From a
    // staged tile with one ldmatrix each (once per tile), else each lane
    // loads its pairs from the tile's memory.
    auto registers = [&](const TileRead &tile, Value buffer, int64_t rows) {
      if (buffer) {
        auto it = stagedFragments.find(buffer);
        if (it == stagedFragments.end())
          it = stagedFragments
                   .try_emplace(buffer, loadFragmentsWithLdMatrix(
                                            b, loc, buffer, rows))
                   .first;
        return it->second;
      }
      LaneCoordinates lane = LaneCoordinates::of(b, loc, kWarpRows);
      Value pair8 = LaneCoordinates::offset(b, loc, lane.pair, 8);
      if (rows == kCols)
        return SmallVector<Value>{tile.loadPair(b, loc, lane.group, lane.pair),
                                  tile.loadPair(b, loc, lane.group, pair8)};
      Value group8 = LaneCoordinates::offset(b, loc, lane.group, 8);
      return SmallVector<Value>{tile.loadPair(b, loc, lane.group, lane.pair),
                                tile.loadPair(b, loc, group8, lane.pair),
                                tile.loadPair(b, loc, lane.group, pair8),
                                tile.loadPair(b, loc, group8, pair8)};
    };
    // A in registers: the accumulator layout of a 16 x 16 tile is the A
    // fragment's, value pairs (g, 2t..), (g + 8, 2t..), (g, 2t + 8..),
    // (g + 8, 2t + 8..) -- FlashAttention's register reuse.
    SmallVector<Value> aRegs =
        a ? registers(*a, aBuffer, kWarpRows)
          : SmallVector<Value>{packBf16Pair(b, loc, aValues[0], aValues[1]),
                               packBf16Pair(b, loc, aValues[2], aValues[3]),
                               packBf16Pair(b, loc, aValues[4], aValues[5]),
                               packBf16Pair(b, loc, aValues[6], aValues[7])};
    SmallVector<Value> bRegs = registers(*bt, bBuffer, kCols);
    Type f32 = b.getF32Type();
    auto resultType = LLVM::LLVMStructType::getLiteral(
        b.getContext(), SmallVector<Type>(kFragment, f32));
    Value mma = NVVM::MmaOp::create(
        b, loc, resultType, aRegs, bRegs, c, {kWarpRows, kCols, kDepth},
        std::nullopt, std::nullopt,
        std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                      NVVM::MMATypes::bf16},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       NVVM::MMALayout::col});
    Fragment d;
    for (unsigned i = 0; i < kFragment; ++i)
      d.push_back(LLVM::ExtractValueOp::create(b, loc, mma, i));
    return d;
  }

  /// Copies an operand tile [rows x 16] into shared memory (a workgroup
  /// buffer of the kernel; a block is one warp), right where it is read:
  /// each lane copies rows * 16 / 32 consecutive elements of one row, with
  /// one vector load where the rows are contiguous bf16 (else element by
  /// element, masked and rounded as the read says), between two barriers
  /// (the previous tile's readers are done; the copy is complete). Returns
  /// the buffer, or null (not in a gpu.func, or staging off): the lanes
  /// then load their fragments from the tile's memory.
  Value stage(const TileRead &tile, int64_t rows) {
    if (!sharedMemory)
      return nullptr;
    auto it = stagedTiles.find(tile.read);
    if (it != stagedTiles.end())
      return it->second;
    auto func = tile.read->getParentOfType<gpu::GPUFuncOp>();
    if (!func)
      return nullptr;
    Location loc = tile.read.getLoc();
    Value buffer = addSharedBuffer(func, {rows, kDepth}, loc);
    OpBuilder b(tile.read);
    b.setInsertionPointAfter(tile.read);
    gpu::BarrierOp::create(b, loc);
    const int64_t lanesPerRow = 32 / rows, chunk = kDepth / lanesPerRow;
    Value lane = gpu::LaneIdOp::create(b, loc, IntegerAttr());
    Value perRow = arith::ConstantIndexOp::create(b, loc, lanesPerRow);
    Value row = arith::DivUIOp::create(b, loc, lane, perRow);
    Value col = arith::MulIOp::create(
        b, loc, arith::RemUIOp::create(b, loc, lane, perRow),
        arith::ConstantIndexOp::create(b, loc, chunk));
    copyChunk(b, loc, tile, row, col, chunk, buffer,
              [&](OpBuilder &b1, int64_t j) -> SmallVector<Value> {
                return {row, LaneCoordinates::offset(b1, loc, col, j)};
              });
    gpu::BarrierOp::create(b, loc);
    stagedTiles[tile.read] = buffer;
    return buffer;
  }

  /// Copies elements col .. col + chunk - 1 of row `row` of a tile into
  /// `buffer`, where element j goes to bufferIndices(j) (the chunk is
  /// contiguous there): one vector load where the tile's rows are contiguous
  /// bf16, else element by element, masked and rounded as the read says.
  static void
  copyChunk(OpBuilder &b, Location loc, const TileRead &tile, Value row,
            Value col, int64_t chunk, Value buffer,
            function_ref<SmallVector<Value>(OpBuilder &, int64_t j)>
                bufferIndices) {
    if (tile.contiguousRows()) {
      Value values = vector::LoadOp::create(
          b, loc, VectorType::get({chunk}, b.getBF16Type()),
          tile.read.getBase(), tile.indicesAt(b, loc, row, col),
          /*nontemporal=*/false, llvm::MaybeAlign(4));
      vector::StoreOp::create(b, loc, values, buffer, bufferIndices(b, 0));
      return;
    }
    for (int64_t j = 0; j < chunk; ++j) {
      Value c = LaneCoordinates::offset(b, loc, col, j);
      memref::StoreOp::create(b, loc, tile.loadElement(b, loc, row, c),
                              buffer, bufferIndices(b, j));
    }
  }

  /// A bf16 workgroup buffer of `shape` in `func`, 16-byte aligned: ldmatrix
  /// reads 16-byte rows and wgmma's descriptors address 16-byte units (the
  /// lowering would give the buffer the element's 2).
  Value addSharedBuffer(gpu::GPUFuncOp func, ArrayRef<int64_t> shape,
                        Location loc) {
    MLIRContext *ctx = &getContext();
    // NVVM's shared address space as a number: the vector-to-LLVM patterns
    // that lower the copies run before gpu-to-nvvm knows the GPU names.
    auto workgroup = IntegerAttr::get(
        IntegerType::get(ctx, 64),
        static_cast<int64_t>(NVVM::NVVMMemorySpace::Shared));
    Value buffer = func.addWorkgroupAttribution(
        MemRefType::get(shape, BFloat16Type::get(ctx),
                        MemRefLayoutAttrInterface(), workgroup),
        loc);
    func.setWorkgroupAttributionAttr(
        func.getNumWorkgroupAttributions() - 1,
        LLVM::LLVMDialect::getAlignAttrName(),
        IntegerAttr::get(IntegerType::get(ctx, 64), 16));
    return buffer;
  }

  /// wgmma's operand tiles [rows x 16] (K-major, no swizzle) in shared
  /// memory: 8 x 8 "core matrices" (8 rows of 16 bytes, 128 contiguous
  /// bytes each), the two of a row group side by side along K, then the
  /// next 8 rows: buffer [rows / 8][2][8][8], element (r, k) at
  /// [r / 8][k / 8][r % 8][k % 8]. The descriptor's leading byte offset
  /// (between core matrices along K) is then 128, its stride byte offset
  /// (between 8-row groups) 256. PTX ISA, "Shared Memory Matrix Layout":
  /// K-major, no swizzle, ((8,m),(T,2k)):((1T,SBO),(1,LBO)).
  static constexpr int64_t kCoreMatrixBytes = 128,
                           kRowGroupBytes = 2 * kCoreMatrixBytes;

  /// The 64-bit matrix descriptor of a staged wgmma operand: start address
  /// (bits 0-13, in 16-byte units of the shared window), leading byte
  /// offset (16-29), stride byte offset (32-45), all >> 4; base offset 0
  /// and swizzle mode 0 (none) in bits 49-51 and 62-63.
  Value matrixDescriptor(OpBuilder &b, Location loc, Value buffer) {
    Type i64 = b.getI64Type();
    auto constant = [&](int64_t v) {
      return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
    };
    Value address = arith::IndexCastUIOp::create(
        b, loc, i64,
        memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buffer));
    Value start = arith::ShRUIOp::create(
        b, loc, arith::AndIOp::create(b, loc, address, constant(0x3FFFF)),
        constant(4));
    const int64_t strides =
        ((kCoreMatrixBytes >> 4) << 16) | ((kRowGroupBytes >> 4) << 32);
    return arith::OrIOp::create(b, loc, start, constant(strides));
  }

  /// Copies a wgmma operand tile [rows x 16] into its core-matrix buffer
  /// where it is read (once per read), by the 128 threads of the
  /// warpgroup: thread t < 2 * rows copies row t / 2, columns 8 (t % 2) ..
  /// + 7 -- one core-matrix row, a 16-byte vector load where the rows are
  /// contiguous bf16 (else element by element, masked and rounded as the
  /// read says). Between a barrier (the previous tile's wgmma, waited for
  /// by every thread, is done with the buffer) and a proxy fence (the
  /// copy's generic-proxy stores become visible to wgmma's async proxy)
  /// plus a barrier. Returns the buffer and its descriptor.
  std::pair<Value, Value> stageForWgmma(const TileRead &tile, int64_t rows,
                                        gpu::GPUFuncOp func) {
    auto it = stagedTiles.find(tile.read);
    if (it != stagedTiles.end())
      return {it->second, descriptors.lookup(it->second)};
    Location loc = tile.read.getLoc();
    Value buffer = addSharedBuffer(func, {rows / 8, 2, 8, 8}, loc);
    OpBuilder b(tile.read);
    b.setInsertionPointAfter(tile.read);
    // Once, at the kernel's entry (the buffer never moves); it also keeps
    // the next tile's first barrier right after this one's last, so the two
    // collapse.
    OpBuilder atEntry = OpBuilder::atBlockBegin(&func.getBody().front());
    Value descriptor = matrixDescriptor(atEntry, loc, buffer);
    gpu::BarrierOp::create(b, loc);
    auto constant = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v);
    };
    Value thread = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
    const int64_t chunks = 2 * rows;
    // Chunk c: row c / 2, columns 8 (c % 2) .. + 7; element j of it goes to
    // [row / 8][c % 2][row % 8][j].
    auto copy = [&](OpBuilder &b1, Value chunk) {
      Value two = arith::ConstantIndexOp::create(b1, loc, 2);
      Value eight = arith::ConstantIndexOp::create(b1, loc, 8);
      Value row = arith::DivUIOp::create(b1, loc, chunk, two);
      Value half = arith::RemUIOp::create(b1, loc, chunk, two);
      Value col = arith::MulIOp::create(b1, loc, half, eight);
      Value group = arith::DivUIOp::create(b1, loc, row, eight);
      Value inGroup = arith::RemUIOp::create(b1, loc, row, eight);
      copyChunk(b1, loc, tile, row, col, 8, buffer,
                [&](OpBuilder &b2, int64_t j) -> SmallVector<Value> {
                  return {group, half, inGroup,
                          arith::ConstantIndexOp::create(b2, loc, j)};
                });
    };
    // 128 chunks per pass (a B tile wider than 64 rows takes several).
    for (int64_t first = 0; first < chunks; first += kWarpgroupThreads) {
      Value chunk = LaneCoordinates::offset(b, loc, thread, first);
      if (chunks - first >= kWarpgroupThreads) {
        copy(b, chunk);
        continue;
      }
      Value copies = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           chunk, constant(chunks));
      auto guard = scf::IfOp::create(b, loc, copies, /*withElseRegion=*/false);
      OpBuilder inThen = guard.getThenBodyBuilder();
      copy(inThen, chunk);
    }
    NVVM::FenceProxyOp::create(
        b, loc, NVVM::ProxyKind::async_shared,
        NVVM::SharedSpaceAttr::get(b.getContext(), NVVM::SharedSpace::shared_cta));
    gpu::BarrierOp::create(b, loc);
    stagedTiles[tile.read] = buffer;
    descriptors[buffer] = descriptor;
    return {buffer, descriptor};
  }

  /// An A operand in registers (64 x 16, the accumulator layout) copied
  /// into a core-matrix buffer for wgmma, which reads A from shared memory
  /// here: right before the contraction, each thread stores its 8 values
  /// (rounded to bf16) at [r / 8][c / 8][r % 8][c % 8], between a barrier
  /// (the previous wgmma reading the buffer is done) and a proxy fence plus
  /// a barrier. Returns the buffer's descriptor.
  Value stageRegistersForWgmma(Operation *before, const Fragment &values,
                               gpu::GPUFuncOp func) {
    Location loc = before->getLoc();
    Value buffer = addSharedBuffer(func, {kWarpgroupRows / 8, 2, 8, 8}, loc);
    // The descriptor and the thread's coordinates at the kernel's entry:
    // nothing then separates this barrier from the one that ends the B
    // tile's staging, and the two collapse.
    OpBuilder atEntry = OpBuilder::atBlockBegin(&func.getBody().front());
    Value descriptor = matrixDescriptor(atEntry, loc, buffer);
    LaneCoordinates lane = LaneCoordinates::of(atEntry, loc, kWarpgroupRows);
    Value eight = arith::ConstantIndexOp::create(atEntry, loc, 8);
    OpBuilder b(before);
    gpu::BarrierOp::create(b, loc);
    for (auto [i, value] : llvm::enumerate(values)) {
      auto [row, col] = lane.accumulatorElement(b, loc, i);
      Value narrow = arith::TruncFOp::create(b, loc, b.getBF16Type(), value);
      memref::StoreOp::create(
          b, loc, narrow, buffer,
          ValueRange{arith::DivUIOp::create(b, loc, row, eight),
                     arith::DivUIOp::create(b, loc, col, eight),
                     arith::RemUIOp::create(b, loc, row, eight),
                     arith::RemUIOp::create(b, loc, col, eight)});
    }
    NVVM::FenceProxyOp::create(
        b, loc, NVVM::ProxyKind::async_shared,
        NVVM::SharedSpaceAttr::get(b.getContext(),
                                   NVVM::SharedSpace::shared_cta));
    gpu::BarrierOp::create(b, loc);
    return descriptor;
  }

  /// contract(extf(A 64x16), extf(B Nx16), C 64xN) -> wgmma.mma_async
  /// m64nNk16 (f32 += bf16 x bf16, both operands K-major from shared
  /// memory), fenced, committed and waited for on the spot.
  Fragment buildWgmma(OpBuilder &b, Location loc,
                      vector::ContractionOp contract,
                      const std::optional<TileRead> &a,
                      const Fragment &aValues, const TileRead &bt,
                      const Fragment &c) {
    auto func = contract->getParentOfType<gpu::GPUFuncOp>();
    if (!func || !sharedMemory) {
      contract.emitOpError("dsv3-gpu-warp-mma: a 64-row tile (wgmma) reads "
                           "its operands from shared memory: it needs a "
                           "gpu.func and shared-memory=true");
      failedToDistribute = true;
      Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
      return Fragment(c.size(), zero);
    }
    const int64_t cols =
        cast<VectorType>(contract.getAccType()).getDimSize(1);
    Value descA = a ? stageForWgmma(*a, kWarpgroupRows, func).second : nullptr;
    Value descB = stageForWgmma(bt, cols, func).second;
    // An A in registers is staged once, right before the first wgmma (in
    // program order, whichever this pass reaches first) that reads it.
    if (!a) {
      Value x = *matchRegisterTile(contract.getLhs(), kWarpgroupRows);
      Value &staged = registerTileDescriptors[x];
      if (!staged) {
        Operation *first = contract;
        for (Operation *user : contract.getLhs().getUsers())
          if (user->getBlock() == first->getBlock() &&
              user->isBeforeInBlock(first))
            first = user;
        staged = stageRegistersForWgmma(first, aValues, func);
      }
      descA = staged;
    }
    b.setInsertionPoint(contract);
    MLIRContext *ctx = b.getContext();
    Type f32 = b.getF32Type();
    auto structType =
        LLVM::LLVMStructType::getLiteral(ctx, SmallVector<Type>(c.size(), f32));
    Value acc = LLVM::PoisonOp::create(b, loc, structType);
    for (unsigned i = 0; i < c.size(); ++i)
      acc = LLVM::InsertValueOp::create(b, loc, acc, c[i], i);
    // The accumulator registers were written by other instructions since
    // the last wgmma: fence before this one reads them.
    NVVM::WgmmaFenceAlignedOp::create(b, loc);
    Value d = NVVM::WgmmaMmaAsyncOp::create(
        b, loc, structType, acc, descA, descB,
        NVVM::MMAShapeAttr::get(ctx, kWarpgroupRows, cols, kDepth),
        NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::bf16),
        NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::bf16),
        NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::f32),
        NVVM::WGMMAScaleOutAttr::get(ctx, NVVM::WGMMAScaleOut::one),
        NVVM::WGMMAScaleInAttr::get(ctx, NVVM::WGMMAScaleIn::one),
        NVVM::WGMMAScaleInAttr::get(ctx, NVVM::WGMMAScaleIn::one),
        // row / col: A and B both K-major (no transpose).
        NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::row),
        NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::col),
        NVVM::MMAIntOverflowAttr());
    NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
    Fragment out;
    for (unsigned i = 0; i < c.size(); ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc, d, i));
    return out;
  }

  /// A tile written to memory: each lane stores its four values, the rows
  /// or columns past a dimension that is not in bounds skipped.
  LogicalResult distributeWrite(vector::TransferWriteOp write) {
    auto memrefType = dyn_cast<MemRefType>(write.getBase().getType());
    AffineMap map = write.getPermutationMap();
    if (!memrefType || write.getMask() || map.getNumResults() != 2 ||
        !map.isProjectedPermutation())
      return write.emitOpError("dsv3-gpu-warp-mma: expected an unmasked "
                               "2-D write of a warp tile to a memref");
    Fragment f = fragmentOf(write.getVector());
    OpBuilder b(write);
    Location loc = write.getLoc();
    LaneCoordinates lane =
        LaneCoordinates::of(b, loc, distributedRows(write.getVectorType()));
    unsigned dims[2] = {map.getDimPosition(0), map.getDimPosition(1)};
    SmallVector<bool> inBounds = write.getInBoundsValues();
    // A per-row value: the first of the four threads of a row writes its
    // two rows (the others hold the same values).
    const bool perRow = isRowType(write.getVectorType());
    Value rowWriter;
    if (perRow) {
      Value lanes = gpu::LaneIdOp::create(b, loc, IntegerAttr());
      rowWriter = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::eq,
          arith::RemUIOp::create(b, loc, lanes,
                                 arith::ConstantIndexOp::create(b, loc, 4)),
          arith::ConstantIndexOp::create(b, loc, 0));
    }
    for (unsigned i = 0; i < f.size(); ++i) {
      auto [row, col] =
          perRow ? std::pair<Value, Value>{LaneCoordinates::offset(
                                               b, loc, lane.group, 8 * i),
                                           arith::ConstantIndexOp::create(
                                               b, loc, 0)}
                 : lane.accumulatorElement(b, loc, i);
      SmallVector<Value> indices(write.getIndices());
      Value cond;
      Value offsets[2] = {row, col};
      for (unsigned d = 0; d < 2; ++d) {
        indices[dims[d]] =
            arith::AddIOp::create(b, loc, indices[dims[d]], offsets[d]);
        if (inBounds[d])
          continue;
        Value size = memref::DimOp::create(b, loc, write.getBase(), dims[d]);
        Value inside = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ult, indices[dims[d]], size);
        cond = cond ? arith::AndIOp::create(b, loc, cond, inside) : inside;
      }
      if (rowWriter)
        cond = cond ? arith::AndIOp::create(b, loc, cond, rowWriter)
                    : rowWriter;
      if (!cond) {
        memref::StoreOp::create(b, loc, f[i], write.getBase(), indices);
        continue;
      }
      auto guard = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
      OpBuilder inThen = guard.getThenBodyBuilder();
      memref::StoreOp::create(inThen, loc, f[i], write.getBase(), indices);
    }
    write.erase();
    return success();
  }

  /// Erases the warp-level ops left without users (contractions, their
  /// reads, extensions, casts, epilogue arithmetic), innermost uses first.
  void eraseDeadWarpOps(Operation *root) {
    bool erased = true;
    while (erased) {
      erased = false;
      SmallVector<Operation *> dead;
      root->walk([&](Operation *op) {
        if (!op->use_empty() || op->getNumResults() == 0 ||
            op->getNumRegions() != 0)
          return;
        bool warpOp =
            isa<vector::ContractionOp, vector::TransferReadOp,
                UnrealizedConversionCastOp>(op) ||
            llvm::any_of(op->getResultTypes(),
                         [](Type t) { return isa<VectorType>(t); });
        if (warpOp && (isa<vector::TransferReadOp>(op) ||
                       isa<UnrealizedConversionCastOp>(op) ||
                       isMemoryEffectFree(op)))
          dead.push_back(op);
      });
      for (Operation *op : dead) {
        op->erase();
        erased = true;
      }
    }
  }
};

} // namespace
