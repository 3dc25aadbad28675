# The program under test gets tests/tools/sigshim.c preloaded, which sends
# the signal at a chosen call; the shim carries no sanitizer (the program's
# runtime must come first), and mq-genmodel writes the sharded input.
if(NOT TARGET mq_sigshim)
  add_library(mq_sigshim MODULE ${CMAKE_SOURCE_DIR}/tests/tools/sigshim.c)
  target_compile_options(mq_sigshim PRIVATE -fno-sanitize=all)
  target_link_options(mq_sigshim PRIVATE -fno-sanitize=all)
  target_link_libraries(mq_sigshim PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
endif()
target_compile_definitions(${name} PRIVATE MQ_SIGSHIM_PATH="$<TARGET_FILE:mq_sigshim>"
                                           MQ_GENMODEL_PATH="$<TARGET_FILE:mq_genmodel>")
add_dependencies(${name} mq_sigshim mq_genmodel)
