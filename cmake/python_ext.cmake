# The Python package's extension module monoquant._core (python/monoquant/_core.c),
# linked to the static libmonoquant. MQ_PYTHON_EXT (set by pyproject.toml for
# scikit-build-core) requires it and installs it into the package (component
# "python"). A test build with an MQ_PYTHON interpreter that has the development
# headers builds it too, beside copies of the package sources in
# ${CMAKE_BINARY_DIR}/python, so that the tests import the package from the tree.
if(MQ_PYTHON_EXT)
  find_package(Python 3.8 REQUIRED COMPONENTS Interpreter Development.Module)
elseif(MQ_BUILD_TESTS AND MQ_PYTHON AND NOT MQ_SANITIZE)
  # (A sanitized module cannot load into an uninstrumented interpreter.)
  set(Python_EXECUTABLE ${MQ_PYTHON})
  find_package(Python 3.8 QUIET COMPONENTS Interpreter Development.Module)
  if(NOT Python_Development.Module_FOUND)
    message(STATUS "No Python development headers for ${MQ_PYTHON}: the package tests will skip")
    return()
  endif()
else()
  return()
endif()

# A shared module needs position-independent code in the static library too.
set_target_properties(monoquant PROPERTIES POSITION_INDEPENDENT_CODE ON)
set(MQ_PY_DIR ${CMAKE_BINARY_DIR}/python)
python_add_library(monoquant_py MODULE WITH_SOABI ${CMAKE_CURRENT_LIST_DIR}/../python/monoquant/_core.c)
set_target_properties(monoquant_py PROPERTIES OUTPUT_NAME _core C_VISIBILITY_PRESET hidden
                                              LIBRARY_OUTPUT_DIRECTORY ${MQ_PY_DIR}/monoquant)
target_link_libraries(monoquant_py PRIVATE monoquant)
# Only PyInit__core is exported: libmonoquant's symbols stay inside the module.
target_link_options(monoquant_py PRIVATE -Wl,--exclude-libs,ALL)
install(TARGETS monoquant_py LIBRARY DESTINATION monoquant COMPONENT python)

get_filename_component(MQ_PY_SRC ${CMAKE_CURRENT_LIST_DIR}/../python ABSOLUTE)
file(GLOB MQ_PY_FILES CONFIGURE_DEPENDS RELATIVE ${MQ_PY_SRC} ${MQ_PY_SRC}/*/*.py
     ${MQ_PY_SRC}/*/py.typed ${MQ_PY_SRC}/*/*.pyi)
set(MQ_PY_COPIES)
foreach(f IN LISTS MQ_PY_FILES)
  add_custom_command(OUTPUT ${MQ_PY_DIR}/${f}
                     COMMAND ${CMAKE_COMMAND} -E copy ${MQ_PY_SRC}/${f} ${MQ_PY_DIR}/${f}
                     DEPENDS ${MQ_PY_SRC}/${f})
  list(APPEND MQ_PY_COPIES ${MQ_PY_DIR}/${f})
endforeach()
add_custom_target(monoquant_py_files ALL DEPENDS ${MQ_PY_COPIES})
add_dependencies(monoquant_py monoquant_py_files)
