# SPDX-License-Identifier: Apache-2.0
# Which kernel configs to build, as data: LIQUIDGEMM_CONFIGS = all | ci | <id>,<id>,...
# (pip: -Ccmake.define.LIQUIDGEMM_CONFIGS=ci, or the environment variable LIQUIDGEMM_CONFIGS).
# The generator python/liquidgemm/_configs.py writes one TU per config into the build tree; nothing generated
# lands in the source tree.
if(DEFINED ENV{LIQUIDGEMM_CONFIGS} AND NOT "$ENV{LIQUIDGEMM_CONFIGS}" STREQUAL "")
  set(_liquidgemm_configs_default "$ENV{LIQUIDGEMM_CONFIGS}")
else()
  set(_liquidgemm_configs_default all)
endif()
set(LIQUIDGEMM_CONFIGS "${_liquidgemm_configs_default}" CACHE STRING "kernel configs to build: all | ci | <id>,<id>,...")

# liquidgemm_generate_kernels(<out_dir> <sources_var>): emit <out_dir>/<id>.cu and <out_dir>/kernel_list.inc.
function(liquidgemm_generate_kernels out_dir sources_var)
  set(generator "${PROJECT_SOURCE_DIR}/python/liquidgemm/_configs.py")
  set(template "${PROJECT_SOURCE_DIR}/kernels/w4a8_gemm.cu.in")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -E env "PYTHONPATH=${PROJECT_SOURCE_DIR}/python"
            "${Python_EXECUTABLE}" -m liquidgemm._configs
            --emit "${out_dir}" --select "${LIQUIDGEMM_CONFIGS}" --template "${template}"
    OUTPUT_VARIABLE ids ERROR_VARIABLE error OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "LIQUIDGEMM_CONFIGS='${LIQUIDGEMM_CONFIGS}': ${error}")
  endif()
  string(REPLACE "\n" ";" ids "${ids}")
  list(LENGTH ids count)
  message(STATUS "liquidgemm: ${count} kernel config(s) from LIQUIDGEMM_CONFIGS='${LIQUIDGEMM_CONFIGS}'")
  set(sources ${ids})
  list(TRANSFORM sources PREPEND "${out_dir}/")
  list(TRANSFORM sources APPEND ".cu")
  # Editing the list or the template re-runs the generator on the next build.
  set_property(DIRECTORY "${PROJECT_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${generator}" "${template}")
  set(${sources_var} "${sources}" PARENT_SCOPE)
endfunction()
