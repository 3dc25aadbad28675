/* Placeholder until the OpenCL backend lands: reports that no device exists. */
#include "backend.h"
#include "error.h"

mq_status mq_opencl_backend_open(const char *spec, size_t max_alloc_override, bool *none_found,
                                 mq_backend **out)
{
    (void)max_alloc_override;
    (void)out;
    *none_found = true;
    return mq_set_error(MQ_STATUS_E_DEVICE, "device '%s': OpenCL backend not built", spec);
}
