/* The version of the library as built, for callers that want to compare it
 * with the header they were compiled against. */
#include "monoquant.h"

const char *mq_version(void)
{
    return MQ_VERSION_STRING;
}

unsigned mq_version_number(void)
{
    return MQ_VERSION_NUMBER;
}
