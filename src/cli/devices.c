/* monoquant devices: lists OpenCL platforms and devices in the manner of
 * `clinfo -l`, with what matters for quantizing, and marks the one "auto" picks. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char devices_usage[] =
    "usage: monoquant devices\n"
    "\n"
    "Lists the OpenCL platforms and devices: type, compute units, global memory,\n"
    "largest buffer, fp16/fp64 support. '*' marks the device that --device auto\n"
    "picks: the first GPU, else the first accelerator, else none and the host path\n"
    "(on a CPU the host path is faster than a CPU OpenCL device). Select one with\n"
    "--device P:D, gpu, cpu, opencl (the best one) or part of its name.\n";

int mq_cli_devices(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(devices_usage, stdout);
            return MQ_EXIT_OK;
        }
        fprintf(stderr, "monoquant devices: unexpected argument '%s'\n", mq_cli_esc(argv[i]));
        fputs(devices_usage, stderr);
        return MQ_EXIT_USAGE;
    }
#ifndef MQ_HAVE_OPENCL
    puts("built without OpenCL (MQ_OPENCL=OFF): --device auto and host use the host reference");
    return MQ_EXIT_OK;
#endif
    mq_device_list inv;
    mq_status st = mq_device_list_get(&inv);
    if (st != MQ_OK) return mq_cli_fail(st);
    if (inv.n_platforms == 0) {
        puts("no OpenCL platform found: --device auto uses the host path");
        mq_device_list_free(&inv);
        return MQ_EXIT_OK;
    }
    bool any_auto = false;
    for (size_t p = 0; p < inv.n_platforms; p++) {
        const mq_platform_info *pl = &inv.platforms[p];
        printf("Platform #%zu: %s (%s)\n", p, mq_cli_esc(pl->name), mq_cli_esc(pl->version));
        if (pl->error[0])
            printf(" `-- skipped: %s\n", mq_cli_esc(pl->error));
        else if (pl->count == 0)
            printf(" `-- no devices\n");
        for (size_t k = 0; k < pl->count; k++) {
            const mq_device_info *d = &inv.devices[pl->first + k];
            const char *branch = k + 1 == pl->count ? " `--" : " +--";
            char gmem[32], alloc[32];
            any_auto = any_auto || d->is_auto;
            printf("%s%s Device #%u [%u:%u]: %s\n", branch, d->is_auto ? " *" : "  ", d->index,
                   d->platform, d->index, mq_cli_esc(d->name));
            printf("%s        %s, %u compute units, %s global memory, %s max allocation,"
                   " fp16 %s, fp64 %s, %s\n",
                   k + 1 == pl->count ? "    " : " |  ", mq_cli_esc(d->type), d->compute_units,
                   mq_cli_bytes(d->global_mem, gmem, sizeof gmem),
                   mq_cli_bytes(d->max_alloc, alloc, sizeof alloc), d->fp16 ? "yes" : "no",
                   d->fp64 ? "yes" : "no",
                   d->unified ? "host memory (zero-copy staging)" : "own memory (pinned staging)");
        }
    }
    if (any_auto)
        puts("* = the device --device auto uses (the first GPU, else the first accelerator)");
    else
        puts("no OpenCL GPU or accelerator: --device auto uses the host path, which on a CPU is\n"
             "faster than a CPU OpenCL device (run one with --device cpu, opencl or P:D)");
    mq_device_list_free(&inv);
    return MQ_EXIT_OK;
}
