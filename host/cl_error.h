/* OpenCL error codes as names, and the one way host/ turns a failed OpenCL call
 * into an mq_status: the call, the code's name and its number in the message. */
#ifndef MQ_CLERROR_H
#define MQ_CLERROR_H

#include "monoquant.h"

#include <CL/cl.h>

/* "CL_OUT_OF_RESOURCES" etc.; "CL_UNKNOWN_ERROR" for codes it does not know. */
const char *mq_cl_error_name(cl_int err);
/* Sets "OpenCL <call> failed: <NAME> (<code>)" and returns MQ_STATUS_E_DEVICE
 * (mq_cl_failed in cl_state.h also keeps the code with the backend, for the
 * out-of-memory retry). */
mq_status mq_cl_fail(cl_int err, const char *call);
/* The device (or the host serving it) ran out of memory: CL_MEM_OBJECT_ALLOCATION_FAILURE,
 * CL_OUT_OF_RESOURCES or CL_OUT_OF_HOST_MEMORY. */
bool mq_cl_is_oom(cl_int err);

#endif
