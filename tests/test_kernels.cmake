# The source dequantization checks this suite shares with the other back
# end's (srccheck.c: a back end's dequantize_source against the reference).
target_sources(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/srccheck.c)
