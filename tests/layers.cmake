# ctest: the build enforces the layers of cmake/layers.cmake. With each
# layer's own include path (its object library's INCLUDE_DIRECTORIES),
#   - every header of the layers at or below it is found, and a file that
#     includes all of them compiles;
#   - every header of a layer above it (and host/'s, outside host/) is not
#     found, and a file that includes one fails to compile for that reason;
#   - no file of src/ or host/ names a header by a path ("../stream/stream.h"
#     would reach past the include path).
#   cmake -DCC=... -DINFO=<generated layer info> -DSOURCE_DIR=... -DWORK=... -P layers.cmake
cmake_minimum_required(VERSION 3.18)
include(${INFO}) # MQ_ORDER, MQ_HOST_BELOW, MQ_OPENCL and INC_<layer>, FLAGS
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

set(failures 0)
macro(fail msg)
  message(SEND_ERROR "${msg}")
  math(EXPR failures "${failures} + 1")
endmacro()

# Every internal header, by folder.
set(folders ${MQ_ORDER} host)
foreach(f IN LISTS folders)
  if(f STREQUAL "host")
    file(GLOB hs RELATIVE ${SOURCE_DIR}/host ${SOURCE_DIR}/host/*.h)
  else()
    file(GLOB hs RELATIVE ${SOURCE_DIR}/src/${f} ${SOURCE_DIR}/src/${f}/*.h)
  endif()
  set(HEADERS_${f} ${hs})
endforeach()

# No header named by a path.
file(GLOB_RECURSE code ${SOURCE_DIR}/src/*.[ch] ${SOURCE_DIR}/host/*.[ch])
foreach(file IN LISTS code)
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"[^\"]*/")
  if(lines)
    fail("${file}: includes a header by a path (${lines}); internal headers go by name")
  endif()
endforeach()

# What layer `layer` may see: the src/ layers up to itself (host: up to
# backend/, plus host/; cli: all of src/).
function(allowed layer out)
  set(seen "")
  if(layer STREQUAL "host")
    set(seen ${MQ_HOST_BELOW} host)
  elseif(layer STREQUAL "cli")
    set(seen ${MQ_ORDER})
  else()
    foreach(f IN LISTS MQ_ORDER)
      list(APPEND seen ${f})
      if(f STREQUAL layer)
        break()
      endif()
    endforeach()
  endif()
  set(${out} ${seen} PARENT_SCOPE)
endfunction()

function(compile layer src out_rc out_text)
  set(incs ${INC_${layer}})
  list(TRANSFORM incs PREPEND -I)
  execute_process(COMMAND ${CC} ${FLAGS} ${incs} -fsyntax-only ${src}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE text)
  set(${out_rc} ${rc} PARENT_SCOPE)
  set(${out_text} "${text}" PARENT_SCOPE)
endfunction()

set(layers ${MQ_ORDER} host cli)
set(checked 0)
foreach(layer IN LISTS layers)
  allowed(${layer} seen)
  set(below "")
  set(above "")
  foreach(f IN LISTS folders)
    foreach(h IN LISTS HEADERS_${f})
      if(f IN_LIST seen)
        list(APPEND below ${h})
      else()
        list(APPEND above ${h})
      endif()
    endforeach()
  endforeach()

  # One pass over every header: -MG lists a header it cannot find by its bare
  # name, and one it finds by its path.
  set(probe ${WORK}/${layer}_all.c)
  set(text "")
  foreach(h IN LISTS below above)
    string(APPEND text "#include \"${h}\"\n")
  endforeach()
  file(WRITE ${probe} "${text}")
  set(incs ${INC_${layer}})
  list(TRANSFORM incs PREPEND -I)
  execute_process(COMMAND ${CC} ${FLAGS} ${incs} -MM -MG ${probe}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    fail("${layer}: listing the headers failed: ${err}")
  endif()
  string(REGEX REPLACE "\\\\\n" " " deps "${deps}")
  string(REGEX REPLACE "[ \t\n]+" ";" deps "${deps}")
  foreach(h IN LISTS below above)
    math(EXPR checked "${checked} + 1")
    set(found FALSE)
    foreach(d IN LISTS deps)
      if(d MATCHES "/${h}$")
        set(found TRUE)
      endif()
    endforeach()
    if(h IN_LIST below AND NOT found)
      fail("${layer}: '${h}', of a layer below it, is not on its include path")
    elseif(h IN_LIST above AND found)
      fail("${layer}: '${h}', of a layer above it, is on its include path (upward include)")
    endif()
  endforeach()

  # Real compiles: everything below together, and the first header above.
  set(text "")
  foreach(h IN LISTS below)
    string(APPEND text "#include \"${h}\"\n")
  endforeach()
  file(WRITE ${WORK}/${layer}_below.c "${text}int mq_layer_probe;\n")
  compile(${layer} ${WORK}/${layer}_below.c rc out)
  if(NOT rc EQUAL 0)
    fail("${layer}: the headers at or below it do not compile together:\n${out}")
  endif()
  if(above)
    list(GET above 0 up)
    file(WRITE ${WORK}/${layer}_up.c "#include \"${up}\"\nint mq_layer_probe;\n")
    compile(${layer} ${WORK}/${layer}_up.c rc out)
    # gcc: "x.h: No such file or directory"; clang: "'x.h' file not found".
    if(rc EQUAL 0 OR NOT out MATCHES "(${up}: No such file|'${up}' file not found)")
      fail("${layer}: including '${up}' from a layer below it did not fail as it must (${rc}):\n${out}")
    else()
      message("${layer}: #include \"${up}\" fails: not found")
    endif()
  endif()
endforeach()

if(failures GREATER 0)
  message(FATAL_ERROR "layers: ${failures} failures")
endif()
list(LENGTH layers n)
message("layers: ${n} layers x every header (${checked} checks): no upward include is possible")
