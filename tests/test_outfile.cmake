# Fault injection: test_outfile.c defines __wrap_<fn> for each call the
# outfile module makes to the disk (pwrite64 is what pwrite becomes with
# _FILE_OFFSET_BITS=64). Works in shared builds too: the suites link the library's objects.
target_link_options(${name} PRIVATE
  -Wl,--wrap=write -Wl,--wrap=pwrite -Wl,--wrap=pwrite64 -Wl,--wrap=fsync -Wl,--wrap=rename)
