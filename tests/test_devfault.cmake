# Fault injection: test_devfault.c defines __wrap_clCreateBuffer and
# __wrap_clEnqueueNDRangeKernel to make the device run out of memory (or fail
# otherwise) on demand. Works in shared builds too: the suites link the library's objects.
target_link_options(${name} PRIVATE -Wl,--wrap=clCreateBuffer -Wl,--wrap=clEnqueueNDRangeKernel)
