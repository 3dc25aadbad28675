/* The public interface as a whole: the version the library reports agrees
 * with its header and its build. */
#include "testutil.h"

#include "monoquant.h"

#include <stdio.h>
#include <string.h>

static void test_version(void **state)
{
    (void)state;
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", MQ_VERSION_MAJOR, MQ_VERSION_MINOR, MQ_VERSION_PATCH);
    assert_string_equal(MQ_VERSION_STRING, built);
    assert_string_equal(MQ_VERSION_STRING, MQ_PROJECT_VERSION);
    assert_string_equal(MQ_VERSION, MQ_VERSION_STRING);
    assert_string_equal(mq_version(), MQ_VERSION_STRING);
    assert_int_equal(mq_version_number(), MQ_VERSION_NUMBER);
    assert_int_equal(MQ_VERSION_NUMBER,
                     MQ_VERSION_MAJOR * 10000 + MQ_VERSION_MINOR * 100 + MQ_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
