//===- Support.h - Helpers shared by the Model library sources --*- C++ -*-===//
//
// Private to lib/Model. The JSON and file helpers the sources use
// (detail::parseJson, jsonKind, readWholeFile, errnoMessage, formatShape) live
// in lib/Support/JsonFileSupport.h, one copy shared with lib/Runtime so that
// both libraries word their errors the same way. Helpers only the Model
// library needs belong here.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_MODEL_SUPPORT_H
#define DSV3_LIB_MODEL_SUPPORT_H

#include "Support/JsonFileSupport.h"

#endif // DSV3_LIB_MODEL_SUPPORT_H
