# ctest: installs this build into a fresh prefix (cmake --install) and builds
# tests/consumer against it twice, through find_package(monoquant) and through
# pkg-config, then runs each program with the installed library. No network.
#   cmake -DBUILD_DIR=... -DWORK=... -DSOURCE=tests/consumer -DCC=... -DVERSION=...
#         [-DFLAGS=...] [-DLINK_FLAGS=...] -P consumer.cmake
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer: ${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
file(GLOB_RECURSE pc ${prefix}/*/monoquant.pc)
file(GLOB_RECURSE lib ${prefix}/*/libmonoquant.*)
if(NOT pc OR NOT lib)
  message(FATAL_ERROR "consumer: no monoquant.pc or libmonoquant under ${prefix}")
endif()
get_filename_component(pc_dir ${pc} DIRECTORY)
list(GET lib 0 lib)
get_filename_component(lib_dir ${lib} DIRECTORY)

foreach(mode cmake pkgconfig)
  set(dir ${WORK}/${mode})
  set(args -S ${SOURCE} -B ${dir} -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_TYPE=Release
           "-DCMAKE_C_FLAGS=-Wall -Wextra -Wpedantic -Werror ${FLAGS}"
           "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}" -DMQ_VERSION=${VERSION})
  if(mode STREQUAL "cmake")
    list(APPEND args -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  else()
    list(APPEND args -DMQ_CONSUMER_PKGCONFIG=ON)
  endif()
  step("configure (${mode})" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir} ${CMAKE_COMMAND} ${args})
  step("build (${mode})" ${CMAKE_COMMAND} --build ${dir})
  step("run (${mode})" ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${lib_dir} ${dir}/consumer)
  message("consumer (${mode}): ${step_output}")
endforeach()
