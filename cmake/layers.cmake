# The layers of the library (README "Architecture"), each an OBJECT library.
# A layer's include path holds its own folder and the folders of the layers
# below it, never one above: internal headers are included by bare name, so an
# upward #include does not compile (tests/layers.cmake checks this for every
# header). The public header is reached through ${MQ_GENERATED_INCLUDE}, not
# through src/, so "stream/stream.h"-style paths find nothing either.
#
#   mq_layer(<name> DIR <folder> SOURCES <file>... [SEES <folder>...])
#
# defines the object library mq_layer_<name> that sees <folder> and the SEES
# folders (all relative to the source tree), and appends it to MQ_LAYER_TARGETS.

file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR}/src/monoquant.h ${MQ_GENERATED_INCLUDE}/monoquant.h
     COPY_ON_ERROR SYMBOLIC)

set(MQ_LAYER_TARGETS "")
function(mq_layer name)
  cmake_parse_arguments(L "" "DIR" "SOURCES;SEES" ${ARGN})
  set(target mq_layer_${name})
  add_library(${target} OBJECT ${L_SOURCES})
  # Hidden visibility: libmonoquant exports only MQ_API functions. Position-
  # independent in static builds too, so that libmonoquant.a can go into
  # another shared library (hidden symbols keep internal calls direct).
  set_target_properties(${target} PROPERTIES C_VISIBILITY_PRESET hidden
                                             POSITION_INDEPENDENT_CODE ON)
  set(dirs "")
  foreach(d IN LISTS L_DIR L_SEES)
    list(APPEND dirs ${CMAKE_CURRENT_SOURCE_DIR}/${d})
  endforeach()
  target_include_directories(${target} PRIVATE ${dirs} ${MQ_GENERATED_INCLUDE})
  target_compile_definitions(${target} PRIVATE CL_TARGET_OPENCL_VERSION=120
                                               $<$<BOOL:${MQ_OPENCL}>:MQ_HAVE_OPENCL>)
  # For the dependencies' headers (jansson, PCRE2, OpenCL) only: the objects
  # are linked into libmonoquant and monoquant_obj's users below.
  target_link_libraries(${target} PRIVATE ${MQ_DEPS})
  set(MQ_LAYER_TARGETS ${MQ_LAYER_TARGETS} ${target} PARENT_SCOPE)
endfunction()

# Bottom to top; each layer sees every one listed before it. host/ (the OpenCL
# back end, built with MQ_OPENCL) sees the layers up
# to backend/ and is seen by none: nothing in src/ knows a back end by name.
set(MQ_LAYER_ORDER common numerics io format backend quant stream hf eval run)
set(MQ_LAYER_SOURCES_common src/common/bigbuf.c src/common/dtype.c src/common/error.c src/common/pool.c
                            src/common/timing.c src/common/version.c)
set(MQ_LAYER_SOURCES_numerics src/numerics/reference.c src/numerics/observer.c
                              src/numerics/srcref.c)
set(MQ_LAYER_SOURCES_io src/io/cleanup.c src/io/dircopy.c src/io/gguf.c src/io/infile.c
                        src/io/outfile.c src/io/path.c)
set(MQ_LAYER_SOURCES_format src/format/imatrix.c src/format/imatrixnames.c src/format/model.c
                            src/format/safetensors.c)
set(MQ_LAYER_SOURCES_quant src/quant/config.c src/quant/dequantize.c src/quant/layout.c
                           src/quant/pattern.c src/quant/plan.c src/quant/qparams.c
                           src/quant/report.c src/quant/reportjson.c src/quant/scheme.c
                           src/quant/coverage.c src/quant/foreign.c src/quant/fused.c)
set(MQ_LAYER_SOURCES_backend src/backend/backend.c src/backend/cpu_backend.c src/backend/cpukern.c
                             src/backend/cpusrc.c src/backend/cpumse.c
                             src/backend/devset.c src/backend/twopass.c)
set(MQ_LAYER_SOURCES_stream src/stream/quantrows.c src/stream/ring.c src/stream/stream.c
                            src/stream/streamexec.c src/stream/writer.c src/stream/srcread.c)
set(MQ_LAYER_SOURCES_hf src/hf/hfconfig.c src/hf/hfindex.c src/hf/hfroot.c src/hf/hfrenames.c
                        src/hf/hfrenames_table.c)
set(MQ_LAYER_SOURCES_eval src/eval/eval.c src/eval/evalfwd.c src/eval/evalresult.c)
set(MQ_LAYER_SOURCES_run src/run/hfdir.c src/run/multidev.c src/run/quantize.c)

set(below "")
foreach(layer IN LISTS MQ_LAYER_ORDER)
  mq_layer(${layer} DIR src/${layer} SOURCES ${MQ_LAYER_SOURCES_${layer}} SEES ${below})
  list(APPEND below src/${layer})
  if(layer STREQUAL "backend")
    set(MQ_HOST_SEES ${below})
  endif()
endforeach()
set(MQ_SRC_LAYER_DIRS ${below})
# GCC notes the vector-argument ABI change of GCC 4.6 once in cpumse.c even
# though every helper taking vectors is always inlined; its pragma cannot
# silence a note.
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  set_source_files_properties(src/backend/cpumse.c PROPERTIES COMPILE_OPTIONS -Wno-psabi)
endif()

# The OpenCL back end is host/ plus the kernels, embedded as byte arrays so the
# tool needs no .cl files at run time. Without it only the CPU back end
# registers; the tests and benchmarks reach host/'s hooks through the
# registry, so they link either way.
if(MQ_OPENCL)
  set(MQ_CL_SOURCES cl_kernels/convert.cl cl_kernels/mse.cl cl_kernels/numerics.cl
                    cl_kernels/quantize.cl cl_kernels/source.cl)
  list(TRANSFORM MQ_CL_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/)
  set(MQ_EMBED_C ${CMAKE_CURRENT_BINARY_DIR}/mq_kernels_embed.c)
  add_custom_command(
    OUTPUT ${MQ_EMBED_C}
    COMMAND ${CMAKE_COMMAND} -DOUT=${MQ_EMBED_C} -DSRC_DIR=${CMAKE_CURRENT_SOURCE_DIR}/cl_kernels
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed.cmake
    DEPENDS ${MQ_CL_SOURCES} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed.cmake
    COMMENT "Embedding OpenCL kernel sources")
  mq_layer(host DIR host SOURCES
           host/cl_backend.c host/cl_buffers.c host/cl_convert.c host/cl_device.c
           host/cl_error.c host/cl_gemm.c host/cl_inventory.c host/cl_mse.c host/cl_pipeline.c
           host/cl_profile.c host/cl_program.c host/cl_qblocks.c host/cl_qbufs.c
           host/cl_qrows.c host/cl_qsplit.c host/cl_quantize.c host/cl_qsource.c host/cl_retry.c
           host/cl_source.c
           host/cl_staging.c ${MQ_EMBED_C}
           SEES ${MQ_HOST_SEES})
endif()

# The tool's own sources: on top, they see every layer of src/ but not host/.
mq_layer(cli DIR src/cli SOURCES src/cli/devices.c src/cli/esc.c src/cli/eval.c src/cli/inspect.c
         src/cli/main.c src/cli/numarg.c src/cli/paths.c src/cli/quantize.c
         src/cli/signals.c SEES ${MQ_SRC_LAYER_DIRS})
list(REMOVE_ITEM MQ_LAYER_TARGETS mq_layer_cli)

# monoquant_obj: the library's objects with every internal header, for what
# links them directly rather than libmonoquant: the tool, the tests and the
# benchmarks use internal functions, and the tests wrap calls with
# -Wl,--wrap=, which a shared library would hide.
add_library(monoquant_obj INTERFACE)
foreach(target IN LISTS MQ_LAYER_TARGETS)
  target_sources(monoquant_obj INTERFACE $<TARGET_OBJECTS:${target}>)
endforeach()
list(TRANSFORM MQ_SRC_LAYER_DIRS PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE mq_all_dirs)
target_include_directories(monoquant_obj INTERFACE ${mq_all_dirs} ${CMAKE_CURRENT_SOURCE_DIR}/host
                                                   ${MQ_GENERATED_INCLUDE})
target_compile_definitions(monoquant_obj INTERFACE $<$<BOOL:${MQ_OPENCL}>:MQ_HAVE_OPENCL>)
target_link_libraries(monoquant_obj INTERFACE ${MQ_DEPS})

# The AVX-512 clones of the host kernels (cpukern.c) use the full vector
# width: GCC's generic tuning otherwise halves it, and the quantize loop's
# correctly rounded division is its bottleneck.
if(CMAKE_C_COMPILER_ID STREQUAL "GNU" AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set_source_files_properties(src/backend/cpukern.c PROPERTIES COMPILE_OPTIONS
                              -mprefer-vector-width=512)
endif()
