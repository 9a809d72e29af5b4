# Small wrappers so every dsv3 target is declared the same way (after CIRCT's
# add_circt_* helpers).

# A library that uses MLIR/LLVM. Linked against Debian's libMLIR.so and
# libLLVM.so: both are needed ("DSO missing from command line" otherwise), and
# shared links take seconds on 2 cores where dozens of static archives take
# minutes.
function(add_dsv3_mlir_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;LINK_LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
  target_link_libraries(${name} PUBLIC ${ARG_LINK_LIBS} MLIR LLVM)
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# A library that must not depend on MLIR or LLVM (the checkpoint reader, the
# runtime): compiled with exceptions, since nlohmann/json reports errors
# through them; no exception ever crosses its C++ API.
function(add_dsv3_plain_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK_LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE -fexceptions)
  target_link_libraries(${name} PUBLIC ${ARG_LINK_LIBS})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# A tool in build/bin.
function(add_dsv3_tool name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK_LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LINK_LIBS})
endfunction()
