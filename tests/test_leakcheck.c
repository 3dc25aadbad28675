/* tests/lsan.supp, which the sanitizer pass runs every suite with: an
 * allocation made through the C++ runtime (as PoCL's and LLVM's threads make
 * them, with stacks that the fast unwinder cuts at operator new) is silenced,
 * and one of our own is still reported. Each leak is made in a child (this
 * program again) whose exit runs the leak check; outside a sanitizer build
 * there is nothing to check. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define MQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MQ_ASAN 1
#endif
#endif

static const char *g_self;

/* In a thread that ends before the process does: no stack or register of a
 * live thread still holds the pointer when the check runs. */
static void *leak_cxx(void *unused)
{
    (void)unused;
    void *cxx = dlopen("libstdc++.so.6", RTLD_NOW);
    void *(*op_new)(size_t) = cxx ? (void *(*)(size_t))dlsym(cxx, "_Znwm") : NULL;
    if (!op_new) _exit(77);
    volatile char *p = op_new(64);
    p[0] = 1;
    return NULL;
}

static void *leak_c(void *unused)
{
    (void)unused;
    volatile char *p = malloc(64);
    p[0] = 1;
    return NULL;
}

/* The child's exit status: 0 when the check passed, LSan's 23 when it
 * reported a leak. */
static int run_child(const char *mode)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("ASAN_OPTIONS", "detect_leaks=1", 1);
        setenv("LSAN_OPTIONS",
               "suppressions=" MQ_SOURCE_DIR "/tests/lsan.supp:print_suppressions=0:exitcode=23",
               1);
        execl("/proc/self/exe", g_self, mode, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_cxx_runtime_silenced(void **state)
{
    (void)state;
#ifndef MQ_ASAN
    skip();
#endif
    int rc = run_child("--leak-cxx");
    if (rc == 77) skip(); /* no libstdc++ here: nothing of the kind to silence */
    assert_int_equal(rc, 0);
}

static void test_own_leak_reported(void **state)
{
    (void)state;
#ifndef MQ_ASAN
    skip();
#endif
    assert_int_equal(run_child("--leak-c"), 23);
}

int main(int argc, char **argv)
{
    g_self = argv[0];
    if (argc == 2) {
        pthread_t t;
        void *(*fn)(void *) = !strcmp(argv[1], "--leak-cxx") ? leak_cxx : leak_c;
        if (pthread_create(&t, NULL, fn, NULL) != 0 || pthread_join(t, NULL) != 0) return 1;
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cxx_runtime_silenced),
        cmocka_unit_test(test_own_leak_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
