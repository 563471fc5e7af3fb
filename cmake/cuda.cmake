# cmake/cuda.cmake — the CUDA backend: csrc/cuda/*.c (host side, C11) and kernels/*.cu, built into
# cocola_core. Included by CMakeLists.txt right after the cocola_core target.
#
# COCOLA_CUDA:
#   AUTO     (default) build the backend when nvcc, cuBLAS and cuDNN are found, else build without it
#   ON       build it or stop with an error
#   OFF      never
#   EMULATE  developer check on machines without a GPU: the kernels compiled as host C++ (CCK_EMULATE)
#            and linked against csrc/cuda/emulate (host stand-ins for the CUDA runtime, cuBLAS, cuDNN),
#            so that spec/cuda_parity_spec.lua runs the backend's code here; never for real use.
#
# The core never names the backend: device.c calls cc_cuda_backend_init through a weak reference,
# and the linker is told to keep it (-u) because a weak reference alone does not pull an archive
# member. cudart is linked statically (a machine without the CUDA runtime in its loader path still
# loads the module; without a driver the backend just does not register); cuBLAS and cuDNN are
# shared, found through an RPATH. The rock never requires CUDA.

set(COCOLA_CUDA AUTO CACHE STRING "CUDA backend: AUTO, ON, OFF or EMULATE")
set_property(CACHE COCOLA_CUDA PROPERTY STRINGS AUTO ON OFF EMULATE)
string(TOUPPER "${COCOLA_CUDA}" COCOLA_CUDA_MODE)
set(COCOLA_CUDA_ENABLED OFF)

if(COCOLA_CUDA_MODE STREQUAL "OFF")
  message(STATUS "cocola: CUDA backend off (COCOLA_CUDA=OFF)")
  return()
endif()
if(NOT COCOLA_CUDA_MODE MATCHES "^(AUTO|ON|EMULATE)$")
  message(FATAL_ERROR "COCOLA_CUDA must be AUTO, ON, OFF or EMULATE (got ${COCOLA_CUDA})")
endif()

# reports why the backend is not built: an error for ON, a note for AUTO
macro(cocola_cuda_unavailable why)
  if(COCOLA_CUDA_MODE STREQUAL "AUTO")
    message(STATUS "cocola: CUDA backend not built: ${why}")
    return()
  endif()
  message(FATAL_ERROR "cocola: COCOLA_CUDA=${COCOLA_CUDA_MODE} but ${why}")
endmacro()

file(GLOB COCOLA_CUDA_HOST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.c)
file(GLOB COCOLA_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cu)

if(COCOLA_CUDA_MODE STREQUAL "EMULATE")
  # only the CUDA headers are needed (for the API's types and prototypes)
  find_path(COCOLA_CUDA_INCLUDE_DIR cuda_runtime_api.h
            HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES include PATHS /usr/local/cuda/include)
  find_path(COCOLA_CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${COCOLA_CUDA_INCLUDE_DIR} ENV CUDNN_HOME PATH_SUFFIXES include PATHS /usr/include)
  if(NOT COCOLA_CUDA_INCLUDE_DIR OR NOT COCOLA_CUDNN_INCLUDE_DIR)
    cocola_cuda_unavailable("the CUDA and cuDNN headers were not found")
  endif()
  enable_language(CXX)
  file(GLOB COCOLA_CUDA_EMU_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/emulate/*.c)
  add_library(cocola_cuda_kernels OBJECT ${COCOLA_CUDA_KERNEL_SOURCES})
  set_source_files_properties(${COCOLA_CUDA_KERNEL_SOURCES} PROPERTIES LANGUAGE CXX)
  set_property(TARGET cocola_cuda_kernels PROPERTY COMPILE_OPTIONS "")
  target_compile_options(cocola_cuda_kernels PRIVATE -x c++ -std=c++17 -O2 -Wall -Wextra -Werror
                         -Wno-unknown-pragmas)
  target_compile_definitions(cocola_cuda_kernels PRIVATE CCK_EMULATE __host__= __device__= __global__=)
  target_include_directories(cocola_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc
                             ${CMAKE_CURRENT_SOURCE_DIR}/kernels)
  target_include_directories(cocola_cuda_kernels SYSTEM PRIVATE ${COCOLA_CUDA_INCLUDE_DIR} ${COCOLA_CUDNN_INCLUDE_DIR})
  set_target_properties(cocola_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)

  target_sources(cocola_core PRIVATE ${COCOLA_CUDA_HOST_SOURCES} ${COCOLA_CUDA_EMU_SOURCES}
                 $<TARGET_OBJECTS:cocola_cuda_kernels>)
  target_include_directories(cocola_core SYSTEM PRIVATE ${COCOLA_CUDA_INCLUDE_DIR} ${COCOLA_CUDNN_INCLUDE_DIR})
  target_compile_definitions(cocola_core PUBLIC COCOLA_WITH_CUDA COCOLA_CUDA_EMULATED)
  target_link_libraries(cocola_core PUBLIC stdc++)
  target_link_options(cocola_core INTERFACE "LINKER:-u,cc_cuda_backend_init")
  set(COCOLA_CUDA_ENABLED ON)
  message(STATUS "cocola: CUDA backend EMULATED on the host (developer check, no GPU code)")
  return()
endif()

# ---- the real backend ----
# nvcc: CUDACXX or PATH first, else the usual install locations
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(COCOLA_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
               PATHS /usr/local/cuda/bin /opt/cuda/bin)
  if(COCOLA_NVCC)
    set(ENV{CUDACXX} ${COCOLA_NVCC})
  endif()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  cocola_cuda_unavailable("no working CUDA compiler (nvcc) was found")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90) # A100, H100/H200 (PTX of 90 for later GPUs)
endif()
enable_language(CUDA)
if(COCOLA_CUDA_MODE STREQUAL "ON")
  find_package(CUDAToolkit REQUIRED)
else()
  find_package(CUDAToolkit QUIET)
endif()
if(NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cudart_static OR NOT TARGET CUDA::cublas)
  cocola_cuda_unavailable("the CUDA toolkit (cudart, cuBLAS) was not found")
endif()
find_path(COCOLA_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV CUDNN_HOME
          PATH_SUFFIXES include PATHS /usr/include /usr/include/x86_64-linux-gnu)
find_library(COCOLA_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} ENV CUDNN_HOME
             PATH_SUFFIXES lib64 lib PATHS /usr/lib/x86_64-linux-gnu)
if(NOT COCOLA_CUDNN_INCLUDE_DIR OR NOT COCOLA_CUDNN_LIBRARY)
  cocola_cuda_unavailable("cuDNN (cudnn.h, libcudnn) was not found")
endif()

add_library(cocola_cuda_kernels OBJECT ${COCOLA_CUDA_KERNEL_SOURCES})
# the project's compile options are for gcc (C); the kernels get their own
set_property(TARGET cocola_cuda_kernels PROPERTY COMPILE_OPTIONS "")
target_compile_options(cocola_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra
                       -Xcompiler=-Wno-unknown-pragmas>)
# warnings are errors in CI only: a newer nvcc on a user's machine (deprecations) must not break the rock
option(COCOLA_CUDA_WERROR "treat warnings of the CUDA kernels as errors (for CI)" OFF)
if(COCOLA_CUDA_WERROR)
  target_compile_options(cocola_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
endif()
target_include_directories(cocola_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc
                           ${CMAKE_CURRENT_SOURCE_DIR}/kernels)
set_target_properties(cocola_cuda_kernels PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                      POSITION_INDEPENDENT_CODE ON CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")

target_sources(cocola_core PRIVATE ${COCOLA_CUDA_HOST_SOURCES} $<TARGET_OBJECTS:cocola_cuda_kernels>)
target_include_directories(cocola_core SYSTEM PRIVATE ${CUDAToolkit_INCLUDE_DIRS} ${COCOLA_CUDNN_INCLUDE_DIR})
target_compile_definitions(cocola_core PUBLIC COCOLA_WITH_CUDA)
# cocola_core was created before CUDA was enabled: it carries CUDA objects, so it needs the setting
set_target_properties(cocola_core PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
target_link_libraries(cocola_core PUBLIC CUDA::cudart_static CUDA::cublas ${COCOLA_CUDNN_LIBRARY} stdc++)
target_link_options(cocola_core INTERFACE "LINKER:-u,cc_cuda_backend_init")

# NCCL (installed beside the toolkit): the GPU collectives of cocola.distributed (csrc/cuda/cuda_nccl.c)
find_path(COCOLA_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME PATH_SUFFIXES include)
find_library(COCOLA_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ENV NCCL_HOME PATH_SUFFIXES lib64 lib)
if(COCOLA_NCCL_INCLUDE_DIR AND COCOLA_NCCL_LIBRARY)
  message(STATUS "cocola: NCCL: ${COCOLA_NCCL_LIBRARY}")
  target_compile_definitions(cocola_core PUBLIC COCOLA_HAVE_NCCL)
  target_include_directories(cocola_core SYSTEM PRIVATE ${COCOLA_NCCL_INCLUDE_DIR})
  target_link_libraries(cocola_core PUBLIC ${COCOLA_NCCL_LIBRARY})
  # the Lua bindings reference these weakly: pull the archive member in
  target_link_options(cocola_core INTERFACE "LINKER:-u,cc_nccl_init")
  get_filename_component(COCOLA_NCCL_LIBRARY_DIR ${COCOLA_NCCL_LIBRARY} DIRECTORY)
  list(APPEND CMAKE_BUILD_RPATH ${COCOLA_NCCL_LIBRARY_DIR})
  list(APPEND CMAKE_INSTALL_RPATH ${COCOLA_NCCL_LIBRARY_DIR})
else()
  message(STATUS "cocola: NCCL not found: cocola.distributed stages CUDA tensors through the host")
endif()

# the module (built and installed) finds cuBLAS and cuDNN where they were found at build time, even
# where that directory is not in the loader's path (CMake leaves the toolkit's directory out of the
# automatic RPATH: it is an implicit link directory of the CUDA language)
get_filename_component(COCOLA_CUDNN_LIBRARY_DIR ${COCOLA_CUDNN_LIBRARY} DIRECTORY)
list(APPEND CMAKE_BUILD_RPATH ${CUDAToolkit_LIBRARY_DIR} ${COCOLA_CUDNN_LIBRARY_DIR})
list(REMOVE_DUPLICATES CMAKE_BUILD_RPATH)
list(APPEND CMAKE_INSTALL_RPATH ${CUDAToolkit_LIBRARY_DIR} ${COCOLA_CUDNN_LIBRARY_DIR})
list(REMOVE_DUPLICATES CMAKE_INSTALL_RPATH)

set(COCOLA_CUDA_ENABLED ON)
message(STATUS "cocola: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, sm ${CMAKE_CUDA_ARCHITECTURES}, "
               "cuDNN ${COCOLA_CUDNN_LIBRARY})")
