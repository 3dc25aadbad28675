/* Builds the kernel program from the sources embedded at build time
 * (the .cl files of cl_kernels/, numerics.cl first). host/-internal. */
#ifndef MQ_CLPROGRAM_H
#define MQ_CLPROGRAM_H

#include "monoquant.h"

#include <CL/cl.h>

/* Builds for `dev` with `options` (the caller's -D constants and flags). A build
 * failure returns MQ_STATUS_E_DEVICE with the compiler's log in the message. */
mq_status mq_cl_program_build(cl_context ctx, cl_device_id dev, const char *options,
                              cl_program *out);

#endif
