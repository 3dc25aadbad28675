/* The configuration's own checks (config.c), which every public call that
 * takes a config, and the scheme built from it (scheme.c), run first. */
#ifndef MQ_CONFIG_H
#define MQ_CONFIG_H

#include "monoquant.h"

#include <stdbool.h>
#include <stddef.h>

/* Whether the caller's config (struct_size bytes, an earlier version's
 * smaller struct maybe) holds `field`; a field it lacks reads as its
 * default, 0. */
#define MQ_CONFIG_HAS(cfg, field)                                                                  \
    ((cfg)->struct_size >= offsetof(mq_config, field) + sizeof((cfg)->field))

/* MQ_OK when cfg is a config this library can read: not NULL, and filled by
 * mq_config_init() from a header whose mq_config it knows (struct_size);
 * else MQ_STATUS_E_INVALID_ARG saying which. Every public call that takes a
 * config checks it first. */
mq_status mq_config_usable(const mq_config *cfg);
/* The same test without a message. */
bool mq_config_size_ok(const mq_config *cfg);

#endif
