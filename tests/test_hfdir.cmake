# Fault injection: test_hfdir.c defines __wrap_copy_file_range (to force the
# read/write fallback or a copy error) and __wrap_rename (to fail the final
# rename of the directory). Works in shared builds too: the suites link the library's objects.
target_link_options(${name} PRIVATE -Wl,--wrap=copy_file_range -Wl,--wrap=rename)
