# SPDX-License-Identifier: Apache-2.0
# CUTLASS/CuTe headers from the nvidia-cutlass wheel (a build requirement; it ships no CMake package), or from a
# checkout named by -DCUTLASS_DIR=<cutlass root> for debugging. Defines the INTERFACE target cutlass::headers.
# Not cached: an isolated pip build gets a fresh temporary environment each time, so the path is asked anew.
set(CUTLASS_DIR "" CACHE PATH "CUTLASS source root to use instead of the nvidia-cutlass wheel")

if(CUTLASS_DIR)
  set(_cutlass_root "${CUTLASS_DIR}")
else()
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import importlib.util, pathlib; s = importlib.util.find_spec('cutlass_library'); \
print(pathlib.Path(s.submodule_search_locations[0], 'source').as_posix() if s else '')"
    OUTPUT_VARIABLE _cutlass_root OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _cutlass_rc)
  if(NOT _cutlass_rc EQUAL 0)
    set(_cutlass_root "")
  endif()
endif()

set(CutlassFromWheel_INCLUDE_DIRS "${_cutlass_root}/include" "${_cutlass_root}/tools/util/include")
if(_cutlass_root AND EXISTS "${_cutlass_root}/include/cutlass/version.h")
  file(STRINGS "${_cutlass_root}/include/cutlass/version.h" _cutlass_version_lines
       REGEX "#define CUTLASS_(MAJOR|MINOR|PATCH) [0-9]+")
  string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3"
         CutlassFromWheel_VERSION "${_cutlass_version_lines}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CutlassFromWheel
  REQUIRED_VARS _cutlass_root CutlassFromWheel_VERSION
  VERSION_VAR CutlassFromWheel_VERSION
  REASON_FAILURE_MESSAGE
    "no CUTLASS headers for ${Python_EXECUTABLE}: pip install nvidia-cutlass==4.2.0.0, or pass -DCUTLASS_DIR=<root>")

if(CutlassFromWheel_FOUND AND NOT TARGET cutlass::headers)
  add_library(cutlass_headers INTERFACE)
  add_library(cutlass::headers ALIAS cutlass_headers)
  # SYSTEM: CUTLASS's own warnings are not ours to fix.
  target_include_directories(cutlass_headers SYSTEM INTERFACE ${CutlassFromWheel_INCLUDE_DIRS})
  target_compile_features(cutlass_headers INTERFACE cxx_std_17 cuda_std_17)
endif()
