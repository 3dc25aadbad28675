/* Names of the OpenCL 1.2 error codes (and the ICD loader's), so every device
 * failure reaches the user as e.g. "clEnqueueNDRangeKernel failed: CL_OUT_OF_RESOURCES". */
#include "cl_error.h"

#include "error.h"

#define MQ_CL_NAME(code)                                                                           \
    case code:                                                                                     \
        return #code

const char *mq_cl_error_name(cl_int err)
{
    switch (err) {
        MQ_CL_NAME(CL_SUCCESS);
        MQ_CL_NAME(CL_DEVICE_NOT_FOUND);
        MQ_CL_NAME(CL_DEVICE_NOT_AVAILABLE);
        MQ_CL_NAME(CL_COMPILER_NOT_AVAILABLE);
        MQ_CL_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        MQ_CL_NAME(CL_OUT_OF_RESOURCES);
        MQ_CL_NAME(CL_OUT_OF_HOST_MEMORY);
        MQ_CL_NAME(CL_PROFILING_INFO_NOT_AVAILABLE);
        MQ_CL_NAME(CL_MEM_COPY_OVERLAP);
        MQ_CL_NAME(CL_IMAGE_FORMAT_MISMATCH);
        MQ_CL_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED);
        MQ_CL_NAME(CL_BUILD_PROGRAM_FAILURE);
        MQ_CL_NAME(CL_MAP_FAILURE);
        MQ_CL_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        MQ_CL_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        MQ_CL_NAME(CL_COMPILE_PROGRAM_FAILURE);
        MQ_CL_NAME(CL_LINKER_NOT_AVAILABLE);
        MQ_CL_NAME(CL_LINK_PROGRAM_FAILURE);
        MQ_CL_NAME(CL_DEVICE_PARTITION_FAILED);
        MQ_CL_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
        MQ_CL_NAME(CL_INVALID_VALUE);
        MQ_CL_NAME(CL_INVALID_DEVICE_TYPE);
        MQ_CL_NAME(CL_INVALID_PLATFORM);
        MQ_CL_NAME(CL_INVALID_DEVICE);
        MQ_CL_NAME(CL_INVALID_CONTEXT);
        MQ_CL_NAME(CL_INVALID_QUEUE_PROPERTIES);
        MQ_CL_NAME(CL_INVALID_COMMAND_QUEUE);
        MQ_CL_NAME(CL_INVALID_HOST_PTR);
        MQ_CL_NAME(CL_INVALID_MEM_OBJECT);
        MQ_CL_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
        MQ_CL_NAME(CL_INVALID_IMAGE_SIZE);
        MQ_CL_NAME(CL_INVALID_SAMPLER);
        MQ_CL_NAME(CL_INVALID_BINARY);
        MQ_CL_NAME(CL_INVALID_BUILD_OPTIONS);
        MQ_CL_NAME(CL_INVALID_PROGRAM);
        MQ_CL_NAME(CL_INVALID_PROGRAM_EXECUTABLE);
        MQ_CL_NAME(CL_INVALID_KERNEL_NAME);
        MQ_CL_NAME(CL_INVALID_KERNEL_DEFINITION);
        MQ_CL_NAME(CL_INVALID_KERNEL);
        MQ_CL_NAME(CL_INVALID_ARG_INDEX);
        MQ_CL_NAME(CL_INVALID_ARG_VALUE);
        MQ_CL_NAME(CL_INVALID_ARG_SIZE);
        MQ_CL_NAME(CL_INVALID_KERNEL_ARGS);
        MQ_CL_NAME(CL_INVALID_WORK_DIMENSION);
        MQ_CL_NAME(CL_INVALID_WORK_GROUP_SIZE);
        MQ_CL_NAME(CL_INVALID_WORK_ITEM_SIZE);
        MQ_CL_NAME(CL_INVALID_GLOBAL_OFFSET);
        MQ_CL_NAME(CL_INVALID_EVENT_WAIT_LIST);
        MQ_CL_NAME(CL_INVALID_EVENT);
        MQ_CL_NAME(CL_INVALID_OPERATION);
        MQ_CL_NAME(CL_INVALID_GL_OBJECT);
        MQ_CL_NAME(CL_INVALID_BUFFER_SIZE);
        MQ_CL_NAME(CL_INVALID_MIP_LEVEL);
        MQ_CL_NAME(CL_INVALID_GLOBAL_WORK_SIZE);
        MQ_CL_NAME(CL_INVALID_PROPERTY);
        MQ_CL_NAME(CL_INVALID_IMAGE_DESCRIPTOR);
        MQ_CL_NAME(CL_INVALID_COMPILER_OPTIONS);
        MQ_CL_NAME(CL_INVALID_LINKER_OPTIONS);
        MQ_CL_NAME(CL_INVALID_DEVICE_PARTITION_COUNT);
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        return "CL_UNKNOWN_ERROR";
    }
}

bool mq_cl_is_oom(cl_int err)
{
    return err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
           err == CL_OUT_OF_HOST_MEMORY;
}

mq_status mq_cl_fail(cl_int err, const char *call)
{
    return mq_set_error(MQ_STATUS_E_DEVICE, "OpenCL %s failed: %s (%d)", call,
                        mq_cl_error_name(err), (int)err);
}
