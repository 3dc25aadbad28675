# Install rules: libmonoquant, its two headers (monoquant.h and the generated
# monoquant_version.h), the monoquant tool, a CMake package
# (find_package(monoquant) -> monoquant::monoquant) and monoquant.pc. Both
# find the installed files from their own place, so a tree installed with
# `cmake --install BUILD --prefix DIR` works wherever it lands.
include(CMakePackageConfigHelpers)

set(MQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/monoquant)
install(TARGETS monoquant EXPORT monoquantTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS monoquant_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/src/monoquant.h ${MQ_GENERATED_INCLUDE}/monoquant_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# The package config finds what a static library's users must link too.
get_target_property(MQ_LIBRARY_TYPE monoquant TYPE)
if(MQ_LIBRARY_TYPE STREQUAL "SHARED_LIBRARY")
  set(MQ_PACKAGE_SHARED ON)
else()
  set(MQ_PACKAGE_SHARED OFF)
endif()
install(EXPORT monoquantTargets NAMESPACE monoquant:: DESTINATION ${MQ_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/monoquantConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/monoquantConfig.cmake
                              INSTALL_DESTINATION ${MQ_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/monoquantConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION}
                                 COMPATIBILITY ${MQ_PACKAGE_COMPATIBILITY})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/monoquantConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/monoquantConfigVersion.cmake
        DESTINATION ${MQ_CMAKE_DIR})

# monoquant.pc: prefix relative to the .pc file (${pcfiledir}).
file(RELATIVE_PATH MQ_PC_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" MQ_PC_PREFIX "\${pcfiledir}/${MQ_PC_PREFIX}")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(MQ_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(MQ_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(MQ_PC_REQUIRES "jansson libpcre2-8")
if(MQ_OPENCL)
  string(APPEND MQ_PC_REQUIRES " OpenCL clblast")
endif()
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/monoquant.pc.in
               ${CMAKE_CURRENT_BINARY_DIR}/monoquant.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/monoquant.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
