/* The report's JSON file (mq_report_write_json): every tensor, the skipped
 * and left-out ones, the devices, the scheme and its coverage, read through
 * report.h like any other reader of a report. */
#include "report.h"
#include "scheme.h"

#include "coverage.h"
#include "dtype.h"
#include "error.h"
#include "outfile.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

static json_t *shape_json(const mq_report_entry *e)
{
    json_t *a = json_array();
    for (int k = 0; a && k < e->rank; k++)
        json_array_append_new(a, json_integer(e->shape[k]));
    return a;
}

/* The Linear layers and how many the run quantized, with the warning when
 * under half of them took the scheme (null otherwise). */
static json_t *coverage_json(const mq_report *r, const mq_scheme *sc)
{
    mq_coverage c;
    mq_coverage_of(r, sc, &c);
    char *warning = mq_coverage_warning(r, sc);
    json_t *o =
        json_pack("{s:I, s:I, s:o}", "linear_layers", (json_int_t)c.linear, "quantized",
                  (json_int_t)c.quantized, "warning", warning ? mq_json_str(warning) : json_null());
    free(warning);
    return o;
}

static json_t *report_json(const mq_report *r, const mq_scheme *sc, const char *input,
                           const char *output, double seconds)
{
    json_t *q = json_array(), *s = json_array();
    for (size_t i = 0; i < mq_report_count(r); i++) {
        const mq_report_entry *e = mq_report_entry_at(r, i);
        if (e->action == MQ_ACTION_SKIP) {
            json_array_append_new(s, json_pack("{s:o, s:o}", "name", mq_json_str(e->name), "reason",
                                               mq_json_str(e->reason)));
            continue;
        }
        json_t *o = json_pack("{s:o, s:o, s:s, s:s, s:I, s:I}", "name", mq_json_str(e->name),
                              "shape", shape_json(e), "dtype_in", mq_dtype_name(e->dtype_in),
                              "dtype_out", mq_dtype_name(e->dtype_out), "bytes_in",
                              (json_int_t)e->bytes_in, "bytes_out", (json_int_t)e->bytes_out);
        if (o && !mq_scheme_quantizes(sc))
            json_object_set_new(o, "fp16_overflow", json_integer((json_int_t)e->fp16_overflow));
        if (o && e->action == MQ_ACTION_QUANTIZE) {
            /* JSON has no infinity: an exact tensor's SQNR is null. */
            json_object_set_new(o, "weight_sqnr_db",
                                isfinite(e->weight_sqnr_db) ? json_real(e->weight_sqnr_db)
                                                            : json_null());
            json_object_set_new(o, "max_abs_error", json_real(e->max_abs_error));
            json_object_set_new(o, "clamped", json_integer((json_int_t)e->clamped));
            if (sc->observer == MQ_OBSERVER_MSE)
                json_object_set_new(o, "imatrix", json_boolean(e->imatrix));
        }
        json_array_append_new(q, o);
    }
    json_t *left = json_array();
    for (size_t i = 0; i < mq_report_left_out_count(r); i++)
        json_array_append_new(left, json_pack("{s:o, s:o}", "file",
                                              mq_json_str(mq_report_left_out_file(r, i)), "reason",
                                              mq_json_str(mq_report_left_out_reason(r, i))));
    json_t *dev =
        json_pack("{s:o, s:o, s:o}", "backend", mq_json_str(mq_report_backend(r)), "platform",
                  mq_json_str(mq_report_platform(r)), "name", mq_json_str(mq_report_device(r)));
    /* Every device that ran, with the files (shards) each quantized. */
    json_t *devs = json_array();
    for (size_t i = 0; i < mq_report_device_count(r); i++)
        json_array_append_new(devs,
                              json_pack("{s:o, s:o, s:o, s:I}", "backend",
                                        mq_json_str(mq_report_device_backend_at(r, i)), "platform",
                                        mq_json_str(mq_report_device_platform_at(r, i)), "name",
                                        mq_json_str(mq_report_device_name_at(r, i)), "files",
                                        (json_int_t)mq_report_device_files_at(r, i)));
    const char *dtype = mq_qdtype_name(sc->target);
    json_t *root = json_pack(
        "{s:o, s:o, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:f}", "input",
        mq_json_str(input), "output", mq_json_str(output), "dtype", dtype ? dtype : "?", "scheme",
        !mq_scheme_quantizes(sc) ? "none" : (sc->symmetric ? "sym" : "asym"), "per_channel",
        sc->gran != MQ_GRAN_TENSOR, "device", dev, "devices", devs, "quantized", q, "skipped", s,
        "left_out", left, "bytes_in", (json_int_t)mq_report_bytes_in(r), "bytes_out",
        (json_int_t)mq_report_bytes_out(r), "fp16_overflow", (json_int_t)mq_report_fp16_overflow(r),
        "seconds", seconds);
    if (root) {
        json_object_set_new(root, "preset", json_string(sc->preset));
        json_object_set_new(root, "quantization_scheme", json_string(sc->label));
        json_object_set_new(root, "observer", json_string(mq_observer_name(sc->observer)));
        if (sc->observer == MQ_OBSERVER_MSE)
            json_object_set_new(root, "observer_options",
                                json_pack("{s:f, s:f, s:f, s:i}", "maxshrink", sc->mse.maxshrink,
                                          "grid", sc->mse.grid, "norm", sc->mse.norm, "patience",
                                          (int)sc->mse.patience));
        json_object_set_new(root, "group_size",
                            sc->group ? json_integer((json_int_t)sc->group) : json_null());
        json_object_set_new(root, "block_size",
                            sc->block ? json_integer((json_int_t)sc->block) : json_null());

        json_object_set_new(root, "coverage", coverage_json(r, sc));
    }
    return root;
}

mq_status mq_report_write_json(const mq_report *r, const mq_config *cfg, const char *input,
                               const char *output, double seconds, const char *path)
{
    mq_clear_error();
    mq_status st;
    mq_scheme sc;
    if (!r || !cfg || !path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "report: NULL argument");
    if ((st = mq_scheme_init(&sc, cfg)) != MQ_OK) return st;
    json_t *root = report_json(r, &sc, input, output, seconds);
    if (!root) return mq_set_error(MQ_STATUS_E_NOMEM, "report '%s': out of memory", path);
    st = mq_outfile_write_json(path, root, JSON_INDENT(2), "report");
    json_decref(root);
    return st;
}
