# The fuzz targets' entry points, without libFuzzer's main, so the saved
# crashers in tests/fuzz/regressions and the seed corpus replay in every build.
target_sources(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_safetensors.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_hfjson.c)
target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
target_compile_definitions(${name} PRIVATE MQ_FUZZ_NO_MAIN
                                           MQ_FUZZ_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fuzz")
