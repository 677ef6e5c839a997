# SPDX-License-Identifier: Apache-2.0
# One place for compile flags. liquidgemm_compile_flags(<target>) applies them to a target.
option(LIQUIDGEMM_PTXAS_VERBOSE "print registers / spills / shared memory of every kernel (-Xptxas=-v)" OFF)

function(liquidgemm_compile_flags target)
  set_target_properties(${target} PROPERTIES
    CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF
    CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF
    # sm_90a only: WGMMA/TMA/setmaxnreg exist only on the arch-specific target (plain sm_90 compiles, then traps),
    # and "-real" skips the compute_90a PTX, which no other GPU could JIT anyway.
    CUDA_ARCHITECTURES 90a-real
    CUDA_RUNTIME_LIBRARY Static       # the wheel must not depend on the toolkit's libcudart version
    POSITION_INDEPENDENT_CODE ON
    CUDA_SEPARABLE_COMPILATION OFF)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${LIQUIDGEMM_PTXAS_VERBOSE}>>:-Xptxas=-v>
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endfunction()
