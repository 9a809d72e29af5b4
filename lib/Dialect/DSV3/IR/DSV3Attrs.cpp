//===- DSV3Attrs.cpp - dsv3 attribute parsing, printing, verification -----===//

#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::dsv3;

//===----------------------------------------------------------------------===//
// RopeAttr
//===----------------------------------------------------------------------===//

// Written by hand because ODS has no field parser for `double`. Plain RoPE
// prints only `theta`; the YaRN fields appear when factor > 1.
Attribute RopeAttr::parse(AsmParser &parser, Type) {
  double theta = 0.0, factor = 1.0, betaFast = 32.0, betaSlow = 1.0;
  int64_t originalMaxPositions = 0;
  bool seenTheta = false;
  if (parser.parseLess())
    return {};
  auto parseField = [&]() -> ParseResult {
    StringRef key;
    SMLoc loc = parser.getCurrentLocation();
    if (parser.parseKeyword(&key) || parser.parseEqual())
      return failure();
    if (key == "theta") {
      seenTheta = true;
      return parser.parseFloat(theta);
    }
    if (key == "factor")
      return parser.parseFloat(factor);
    if (key == "beta_fast")
      return parser.parseFloat(betaFast);
    if (key == "beta_slow")
      return parser.parseFloat(betaSlow);
    if (key == "original_max_positions")
      return parser.parseInteger(originalMaxPositions);
    return parser.emitError(loc, "unknown #dsv3.rope field '") << key << "'";
  };
  if (parser.parseCommaSeparatedList(parseField) || parser.parseGreater())
    return {};
  if (!seenTheta) {
    parser.emitError(parser.getNameLoc(), "#dsv3.rope needs 'theta'");
    return {};
  }
  return parser.getChecked<RopeAttr>(
      parser.getContext(), APFloat(theta), APFloat(factor),
      originalMaxPositions, APFloat(betaFast), APFloat(betaSlow));
}

void RopeAttr::print(AsmPrinter &printer) const {
  printer << "<theta = ";
  printer.printFloat(getTheta());
  if (isYarn()) {
    printer << ", factor = ";
    printer.printFloat(getFactor());
    printer << ", original_max_positions = " << getOriginalMaxPositions()
            << ", beta_fast = ";
    printer.printFloat(getBetaFast());
    printer << ", beta_slow = ";
    printer.printFloat(getBetaSlow());
  }
  printer << ">";
}

LogicalResult RopeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               APFloat thetaValue, APFloat factorValue,
                               int64_t originalMaxPositions,
                               APFloat betaFastValue, APFloat betaSlowValue) {
  double theta = thetaValue.convertToDouble();
  double factor = factorValue.convertToDouble();
  double betaFast = betaFastValue.convertToDouble();
  double betaSlow = betaSlowValue.convertToDouble();
  if (!(theta > 1.0))
    return emitError() << "rope theta must be greater than 1, got " << theta;
  if (!(factor >= 1.0))
    return emitError() << "rope factor must be at least 1, got " << factor;
  if (factor > 1.0) {
    if (originalMaxPositions <= 0)
      return emitError() << "YaRN (factor > 1) needs original_max_positions > "
                            "0, got "
                         << originalMaxPositions;
    if (!(betaSlow > 0.0 && betaFast > betaSlow))
      return emitError() << "YaRN needs beta_fast > beta_slow > 0, got "
                            "beta_fast = "
                         << betaFast << ", beta_slow = " << betaSlow;
  }
  return success();
}
