# SPDX-License-Identifier: Apache-2.0
# Optional dependencies: GRADPACK_WITH_<X> = AUTO | ON | OFF.
#   AUTO: use it when found, otherwise turn the feature off with one STATUS line.
#   ON:   it must be found; otherwise configuration fails with the command that fixes it.
#   OFF:  never used.
foreach(feature CUDA IBVERBS HWLOC GLOO MPI)
  set(GRADPACK_WITH_${feature} AUTO CACHE STRING "Build with ${feature}: AUTO, ON or OFF")
  set_property(CACHE GRADPACK_WITH_${feature} PROPERTY STRINGS AUTO ON OFF)
endforeach()

# Decides one feature: sets GRADPACK_HAVE_<feature> in the caller's scope.
macro(gradpack_decide feature found why fixit)
  string(TOUPPER "${GRADPACK_WITH_${feature}}" _mode)
  if(NOT _mode MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "GRADPACK_WITH_${feature}=${GRADPACK_WITH_${feature}}: expected AUTO, ON or OFF")
  endif()
  if(_mode STREQUAL "OFF")
    set(GRADPACK_HAVE_${feature} 0)
    message(STATUS "gradpack: ${feature} off (GRADPACK_WITH_${feature}=OFF)")
  elseif(${found})
    set(GRADPACK_HAVE_${feature} 1)
    message(STATUS "gradpack: ${feature} on")
  elseif(_mode STREQUAL "ON")
    message(FATAL_ERROR "gradpack: GRADPACK_WITH_${feature}=ON but ${why}. Fix: ${fixit}, "
                        "or configure with -DGRADPACK_WITH_${feature}=AUTO")
  else()
    set(GRADPACK_HAVE_${feature} 0)
    message(STATUS "gradpack: ${feature} off: ${why}")
  endif()
endmacro()

macro(gradpack_resolve_features)
  # CUDA: a working nvcc; no GPU is needed to build.
  set(_cuda_found FALSE)
  if(NOT GRADPACK_WITH_CUDA STREQUAL "OFF")
    include(CheckLanguage)
    if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
    endif()
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      set(CMAKE_CUDA_ARCHITECTURES ${GRADPACK_CUDA_ARCHITECTURES})
      enable_language(CUDA)
      find_package(CUDAToolkit)
      if(CUDAToolkit_FOUND)
        set(_cuda_found TRUE)
      endif()
    endif()
  endif()
  gradpack_decide(CUDA _cuda_found "no CUDA compiler (nvcc) was found"
                  "install the CUDA toolkit and put nvcc on the PATH")

  # Header only: libibverbs.so.1 is dlopened at run time, never linked. A NOTFOUND cached by an
  # earlier configure (before libibverbs-dev was installed) is searched again.
  if(NOT IBVERBS_INCLUDE_DIR)
    unset(IBVERBS_INCLUDE_DIR CACHE)
  endif()
  find_path(IBVERBS_INCLUDE_DIR infiniband/verbs.h)
  set(_ib_found FALSE)
  if(IBVERBS_INCLUDE_DIR)
    set(_ib_found TRUE)
  endif()
  gradpack_decide(IBVERBS _ib_found "infiniband/verbs.h was not found"
                  "apt-get install libibverbs-dev")

  find_path(HWLOC_INCLUDE_DIR hwloc.h)
  find_library(HWLOC_LIBRARY hwloc)
  set(_hwloc_found FALSE)
  if(HWLOC_INCLUDE_DIR AND HWLOC_LIBRARY)
    set(_hwloc_found TRUE)
  endif()
  gradpack_decide(HWLOC _hwloc_found "hwloc.h or libhwloc was not found"
                  "apt-get install libhwloc-dev")

  # Gloo: Debian's libgloo-dev ships a CMake package that defines the imported target `gloo`.
  set(_gloo_found FALSE)
  if(NOT GRADPACK_WITH_GLOO STREQUAL "OFF")
    find_package(Gloo CONFIG QUIET)
    if(TARGET gloo)
      set(_gloo_found TRUE)
    endif()
  endif()
  gradpack_decide(GLOO _gloo_found "the Gloo CMake package (target gloo) was not found"
                  "apt-get install libgloo-dev")

  # MPI: the C and C++ bindings (bench/peers/mpi_perf is C). Gives MPI::MPI_C and MPI::MPI_CXX.
  set(_mpi_found FALSE)
  if(NOT GRADPACK_WITH_MPI STREQUAL "OFF")
    find_package(MPI QUIET COMPONENTS C CXX)
    if(MPI_C_FOUND AND MPI_CXX_FOUND)
      set(_mpi_found TRUE)
    endif()
  endif()
  gradpack_decide(MPI _mpi_found "no MPI C/C++ compiler wrapper (mpicc, mpicxx) was found"
                  "apt-get install libopenmpi-dev openmpi-bin")
endmacro()
