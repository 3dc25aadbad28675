/* Companion tensor names of a quantized weight (see layout.h). */
#include "layout.h"

#include "error.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mq_name_with_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", name, suffix);
    return s;
}

mq_status mq_check_companion_names(const mq_model *in, const char *name, bool symmetric)
{
    const char *suffixes[2] = {MQ_SCALE_SUFFIX, MQ_ZP_SUFFIX};
    for (int k = 0; k < (symmetric ? 1 : 2); k++) {
        char *n = mq_name_with_suffix(name, suffixes[k]);
        if (!n) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
        bool clash = mq_model_index(in, n) >= 0;
        free(n);
        if (clash)
            return mq_set_error(MQ_STATUS_E_DATA,
                                "tensor '%s': the input already has '%s%s' (already quantized?)",
                                name, name, suffixes[k]);
    }
    return MQ_OK;
}
