/* monoquant._core: the CPython binding of libmonoquant. It moves tensors in and
 * out over the buffer protocol and maps mq_config from a dict; everything
 * torch-shaped (modules, state_dicts, settings resolution) lives in Python. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <time.h>

#include "monoquant.h"

static PyObject *quantization_error;

/* Raises QuantizationError(message) with .status set to the mq_status name. */
static PyObject *raise_status(mq_status st, const char *context)
{
    const char *msg = mq_last_error();
    PyObject *text;
    if (context)
        text = PyUnicode_FromFormat("%s: %s", context, msg && *msg ? msg : mq_status_str(st));
    else
        text = PyUnicode_FromString(msg && *msg ? msg : mq_status_str(st));
    if (!text) return NULL;
    PyObject *exc = PyObject_CallOneArg(quantization_error, text);
    Py_DECREF(text);
    if (!exc) return NULL;
    PyObject *status = PyUnicode_FromString(mq_status_str(st));
    if (status) {
        PyObject_SetAttrString(exc, "status", status);
        Py_DECREF(status);
    }
    PyErr_SetObject(quantization_error, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *config_error(const char *fmt, const char *what)
{
    PyErr_Format(quantization_error, fmt, what);
    return NULL;
}

/* Progress of a run, handed to a Python callable with the GIL taken again. The
 * library cannot be stopped from a callback, so the first exception it raises
 * is kept and raised when the run returns. */
typedef struct {
    PyObject *callable;
    PyObject *error_type, *error_value, *error_tb;
} progress_ctx;

static void progress_cb(const mq_progress *p, void *user)
{
    progress_ctx *ctx = user;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!ctx->error_type) {
        /* Paths are bytes: decoded as os.fsdecode does, so that any name passes. */
        PyObject *file = PyUnicode_DecodeFSDefault(p->file ? p->file : "");
        PyObject *r = file ? PyObject_CallFunction(
                                 ctx->callable, "nnKKN", (Py_ssize_t)p->tensors_done,
                                 (Py_ssize_t)p->tensors_total, (unsigned long long)p->bytes_done,
                                 (unsigned long long)p->bytes_total, file)
                           : NULL;
        if (r)
            Py_DECREF(r);
        else
            PyErr_Fetch(&ctx->error_type, &ctx->error_value, &ctx->error_tb);
    }
    PyGILState_Release(g);
}

static int get_bool(PyObject *d, const char *key, bool *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) return 0;
    int t = PyObject_IsTrue(v);
    if (t < 0) return -1;
    *out = t != 0;
    return 0;
}

/* A positive finite number, at most 1 when `fraction` (the config file's and
 * the CLI's rule for the search's options); None leaves *out. */
static int get_positive(PyObject *d, const char *key, bool fraction, double *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) return 0;
    double x = PyBool_Check(v) ? -1.0 : PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) PyErr_Clear();
    if (!(x > 0.0) || !(x <= (fraction ? 1.0 : DBL_MAX))) {
        config_error(fraction ? "%s must be a number in (0, 1]" : "%s must be a positive number",
                     key);
        return -1;
    }
    *out = x;
    return 0;
}

static int add_patterns(PyObject *d, const char *key, mq_config *cfg, bool include)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) return 0;
    PyObject *seq = PySequence_Fast(v, "include/exclude must be a list of strings");
    if (!seq) return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc == 0; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (!s) {
            PyErr_Clear();
            config_error("%s patterns must be strings", key);
            rc = -1;
            break;
        }
        mq_status st = include ? mq_config_add_include(cfg, s) : mq_config_add_exclude(cfg, s);
        if (st != MQ_OK) {
            raise_status(st, key);
            rc = -1;
        }
    }
    Py_DECREF(seq);
    return rc;
}

/* Fills cfg (already mq_config_init'ed) from a dict whose keys are the field
 * names of mq_config; None leaves the library's default. */
static int config_from_dict(PyObject *d, mq_config *cfg, progress_ctx *progress)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "config must be a dict");
        return -1;
    }
    /* The preset sets the scheme; the scheme fields given refine it (as the CLI). */
    PyObject *preset = PyDict_GetItemString(d, "preset");
    if (preset && preset != Py_None) {
        const char *s = PyUnicode_Check(preset) ? PyUnicode_AsUTF8(preset) : NULL;
        if (!s) {
            PyErr_Clear();
            config_error("%s must be a string", "preset");
            return -1;
        }
        mq_status st = mq_config_set_preset(cfg, s);
        if (st != MQ_OK) {
            raise_status(st, NULL);
            return -1;
        }
    }
    PyObject *dtype = PyDict_GetItemString(d, "dtype");
    if (dtype && dtype != Py_None) {
        const char *s = PyUnicode_Check(dtype) ? PyUnicode_AsUTF8(dtype) : NULL;
        if (!mq_qdtype_parse(s, &cfg->dtype)) {
            PyErr_Clear();
            PyErr_Format(quantization_error, "unsupported dtype %s (%s)", s ? s : "(not a string)",
                         mq_qdtype_names());
            return -1;
        }
    }
    /* group_size: a positive count, or 0 for per channel (Python's -1 / "channel"). */
    PyObject *group = PyDict_GetItemString(d, "group_size");
    if (group && group != Py_None) {
        Py_ssize_t g = PyLong_AsSsize_t(group);
        if (g == -1 && PyErr_Occurred()) return -1;
        if (g < 0) {
            config_error("%s must be a positive count, or 0 for per channel", "group_size");
            return -1;
        }
        cfg->group_size = (size_t)g;
    }
    if (get_bool(d, "symmetric", &cfg->symmetric) ||
        get_bool(d, "per_channel", &cfg->per_channel) ||
        get_bool(d, "weights_only", &cfg->weights_only) ||
        get_bool(d, "skip_nonfinite", &cfg->skip_nonfinite) ||
        get_bool(d, "fp16_saturate", &cfg->fp16_saturate) ||
        get_bool(d, "follow_symlinks", &cfg->follow_symlinks))
        return -1;
    if (add_patterns(d, "include", cfg, true) || add_patterns(d, "exclude", cfg, false)) return -1;
    PyObject *obs = PyDict_GetItemString(d, "observer");
    if (obs && obs != Py_None) {
        const char *s = PyUnicode_Check(obs) ? PyUnicode_AsUTF8(obs) : NULL;
        if (s && strcmp(s, "mse") == 0) {
            cfg->observer = MQ_OBSERVER_MSE;
        } else if (s && strcmp(s, "minmax") == 0) {
            cfg->observer = MQ_OBSERVER_MINMAX;
        } else {
            PyErr_Clear();
            config_error("%s must be \"minmax\" or \"mse\"", "observer");
            return -1;
        }
    }
    /* The search's options; 0 in mq_config keeps each default. */
    if (get_positive(d, "observer_maxshrink", true, &cfg->observer_maxshrink) ||
        get_positive(d, "observer_grid", false, &cfg->observer_grid) ||
        get_positive(d, "observer_norm", false, &cfg->observer_norm))
        return -1;
    PyObject *pat = PyDict_GetItemString(d, "observer_patience");
    if (pat && pat != Py_None) {
        long p = PyLong_Check(pat) && !PyBool_Check(pat) ? PyLong_AsLong(pat) : 0;
        if (p == -1 && PyErr_Occurred()) PyErr_Clear();
        if (p < 1 || p > 1000000) {
            config_error("%s must be a positive integer (at most 1000000)", "observer_patience");
            return -1;
        }
        cfg->observer_patience = (unsigned)p;
    }
    PyObject *dev = PyDict_GetItemString(d, "device");
    if (dev && dev != Py_None) {
        const char *s = PyUnicode_Check(dev) ? PyUnicode_AsUTF8(dev) : NULL;
        if (!s) {
            PyErr_Clear();
            config_error("%s must be a string", "device");
            return -1;
        }
        mq_status st = mq_config_set_device(cfg, s);
        if (st != MQ_OK) {
            raise_status(st, "device");
            return -1;
        }
    }
    PyObject *imx = PyDict_GetItemString(d, "imatrix");
    if (imx && imx != Py_None) {
        const char *s = PyUnicode_Check(imx) ? PyUnicode_AsUTF8(imx) : NULL;
        if (!s) {
            PyErr_Clear();
            config_error("%s must be a string", "imatrix");
            return -1;
        }
        mq_status st = mq_config_set_imatrix(cfg, s);
        if (st != MQ_OK) {
            raise_status(st, "imatrix");
            return -1;
        }
    }
    PyObject *limit = PyDict_GetItemString(d, "memory_limit");
    if (limit && limit != Py_None) {
        unsigned long long v = PyLong_AsUnsignedLongLong(limit);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        cfg->memory_limit = v;
    }
    PyObject *cb = PyDict_GetItemString(d, "progress");
    if (cb && cb != Py_None && progress) {
        if (!PyCallable_Check(cb)) {
            PyErr_SetString(PyExc_TypeError, "progress must be callable");
            return -1;
        }
        progress->callable = cb;
        cfg->progress = progress_cb;
        cfg->progress_user = progress;
    }
    /* A scheme the settings cannot form (asymmetric FP8, groups with W8A8, ...). */
    mq_status st = mq_config_check(cfg);
    if (st != MQ_OK) {
        raise_status(st, NULL);
        return -1;
    }
    return 0;
}

/* Restores a callback's exception; returns -1 when there was one. */
static int progress_error(progress_ctx *ctx)
{
    if (!ctx->error_type) return 0;
    PyErr_Restore(ctx->error_type, ctx->error_value, ctx->error_tb);
    ctx->error_type = ctx->error_value = ctx->error_tb = NULL;
    return -1;
}

static int dtype_from_name(const char *s, mq_dtype *out)
{
    for (int i = 0; i < MQ_DTYPE_COUNT_; i++) {
        if (strcmp(mq_dtype_name((mq_dtype)i), s) == 0) {
            *out = (mq_dtype)i;
            return 0;
        }
    }
    return -1;
}

static PyObject *shape_tuple(const mq_tensor *t)
{
    PyObject *shape = PyTuple_New(t->rank);
    for (int k = 0; shape && k < t->rank; k++) {
        PyObject *v = PyLong_FromLongLong(t->shape[k]);
        if (!v) {
            Py_CLEAR(shape);
            break;
        }
        PyTuple_SET_ITEM(shape, k, v);
    }
    return shape;
}

/* A Python buffer the library reads in place: released (under the GIL) when
 * the last model that holds the tensor lets go of it. */
static void release_view(void *user)
{
    Py_buffer *view = user;
    PyGILState_STATE g = PyGILState_Ensure();
    PyBuffer_Release(view);
    PyGILState_Release(g);
    PyMem_RawFree(view);
}

/* Adds one (name, dtype, shape, buffer) to m without copying: a contiguous
 * CPU tensor or array is read where it is (mq_model_add_tensor_ref), its
 * buffer held until the models let go of it. */
static int add_input(mq_model *m, PyObject *item)
{
    const char *name, *dtype_name;
    PyObject *shape_obj, *buf_obj;
    if (!PyArg_ParseTuple(item, "ssOO;tensors are (name, dtype, shape, buffer)", &name, &dtype_name,
                          &shape_obj, &buf_obj))
        return -1;
    mq_dtype dtype;
    if (dtype_from_name(dtype_name, &dtype)) {
        PyErr_Format(quantization_error, "tensor '%s': unsupported dtype %s", name, dtype_name);
        return -1;
    }
    PyObject *seq = PySequence_Fast(shape_obj, "shape must be a sequence");
    if (!seq) return -1;
    Py_ssize_t rank = PySequence_Fast_GET_SIZE(seq);
    int64_t shape[MQ_MAX_RANK];
    if (rank > MQ_MAX_RANK) {
        Py_DECREF(seq);
        PyErr_Format(quantization_error, "tensor '%s': rank %zd above %d", name, rank, MQ_MAX_RANK);
        return -1;
    }
    size_t count = 1;
    for (Py_ssize_t k = 0; k < rank; k++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (v < 0 || (v > 0 && count > SIZE_MAX / (size_t)v)) {
            Py_DECREF(seq);
            PyErr_Format(quantization_error, "tensor '%s': bad shape", name);
            return -1;
        }
        shape[k] = v;
        count *= (size_t)v;
    }
    Py_DECREF(seq);
    Py_buffer *view = PyMem_RawMalloc(sizeof *view);
    if (!view) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyObject_GetBuffer(buf_obj, view, PyBUF_C_CONTIGUOUS) < 0) {
        PyMem_RawFree(view);
        return -1;
    }
    size_t esize = mq_dtype_size(dtype);
    if (count > SIZE_MAX / esize || (size_t)view->len != count * esize) {
        PyErr_Format(quantization_error, "tensor '%s': buffer holds %zd bytes, shape needs %zu",
                     name, view->len, count > SIZE_MAX / esize ? SIZE_MAX : count * esize);
        PyBuffer_Release(view);
        PyMem_RawFree(view);
        return -1;
    }
    /* With the GIL held: the release callback of a failed add takes it too,
     * which PyGILState_Ensure allows from the thread that holds it. */
    mq_status st =
        mq_model_add_tensor_ref(m, name, dtype, (int)rank, shape, view->buf, release_view, view);
    if (st != MQ_OK) {
        raise_status(st, NULL);
        return -1;
    }
    return 0;
}

static PyObject *output_list(const mq_model *out)
{
    size_t n = mq_model_count(out);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        const mq_tensor *t = mq_model_tensor(out, i);
        PyObject *shape = shape_tuple(t);
        PyObject *data = PyByteArray_FromStringAndSize(t->data, (Py_ssize_t)t->nbytes);
        PyObject *row = shape && data
                            ? Py_BuildValue("(ssOO)", t->name, mq_dtype_name(t->dtype), shape, data)
                            : NULL;
        Py_XDECREF(shape);
        Py_XDECREF(data);
        if (!row)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, row);
    }
    return list;
}

static PyObject *skipped_list(const mq_skip_list *s)
{
    size_t n = s ? mq_skip_list_count(s) : 0;
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *row = Py_BuildValue("(ss)", mq_skip_list_name(s, i), mq_skip_list_reason(s, i));
        if (!row)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, row);
    }
    return list;
}

PyDoc_STRVAR(quantize_doc,
             "quantize(tensors, config) -> (tensors, skipped, info)\n\n"
             "tensors: list of (name, safetensors dtype, shape, C-contiguous buffer).\n"
             "Returns the output tensors as (name, dtype, shape, bytearray), the skipped\n"
             "tensors as (name, reason), and a dict naming the backend and device.");

static PyObject *py_quantize(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *tensors, *cfg_dict, *result = NULL;
    if (!PyArg_ParseTuple(args, "OO!", &tensors, &PyDict_Type, &cfg_dict)) return NULL;
    mq_config cfg;
    mq_config_init(&cfg);
    mq_model *in = NULL, *out = NULL;
    mq_skip_list *skipped = NULL;
    mq_report *report = NULL;
    progress_ctx progress = {0};
    PyObject *seq = NULL;
    if (config_from_dict(cfg_dict, &cfg, &progress)) goto done;
    seq = PySequence_Fast(tensors, "tensors must be a sequence");
    if (!seq) goto done;
    mq_status st = mq_model_new(&in);
    if (st != MQ_OK) {
        raise_status(st, NULL);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
        if (add_input(in, PySequence_Fast_GET_ITEM(seq, i))) goto done;
    PyThreadState *ts = PyEval_SaveThread();
    st = mq_dynamic_quantize_report(in, &cfg, &out, &skipped, &report);
    PyEval_RestoreThread(ts);
    if (progress_error(&progress)) goto done;
    if (st != MQ_OK) {
        raise_status(st, NULL);
        goto done;
    }
    PyObject *outs = output_list(out);
    PyObject *skips = outs ? skipped_list(skipped) : NULL;
    PyObject *info =
        skips ? Py_BuildValue("{sssssssK}", "backend", mq_report_backend(report), "platform",
                              mq_report_platform(report), "device", mq_report_device(report),
                              "fp16_overflow", (unsigned long long)mq_report_fp16_overflow(report))
              : NULL;
    if (info) result = PyTuple_Pack(3, outs, skips, info);
    Py_XDECREF(outs);
    Py_XDECREF(skips);
    Py_XDECREF(info);
done:
    Py_XDECREF(seq);
    mq_report_free(report);
    mq_skip_list_free(skipped);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
    return result;
}

PyDoc_STRVAR(quantize_file_doc,
             "quantize_file(src, dst, config, report_path) -> None\n\n"
             "Streams a safetensors file or model directory through mq_quantize_file\n"
             "and writes the run's JSON report to report_path.");

static PyObject *py_quantize_file(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *src_obj, *dst_obj, *report_obj, *cfg_dict, *result = NULL;
    PyObject *src = NULL, *dst = NULL, *rpath = NULL;
    if (!PyArg_ParseTuple(args, "OOO!O", &src_obj, &dst_obj, &PyDict_Type, &cfg_dict, &report_obj))
        return NULL;
    mq_config cfg;
    mq_config_init(&cfg);
    mq_report *report = NULL;
    progress_ctx progress = {0};
    if (!PyUnicode_FSConverter(src_obj, &src) || !PyUnicode_FSConverter(dst_obj, &dst) ||
        !PyUnicode_FSConverter(report_obj, &rpath))
        goto done;
    if (config_from_dict(cfg_dict, &cfg, &progress)) goto done;
    const char *in_path = PyBytes_AS_STRING(src), *out_path = PyBytes_AS_STRING(dst);
    struct timespec t0, t1;
    mq_status st;
    PyThreadState *ts = PyEval_SaveThread();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = mq_quantize_file(in_path, out_path, &cfg, &report);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st == MQ_OK) {
        double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        st = mq_report_write_json(report, &cfg, in_path, out_path, seconds,
                                  PyBytes_AS_STRING(rpath));
    }
    PyEval_RestoreThread(ts);
    if (progress_error(&progress)) goto done;
    if (st != MQ_OK) {
        raise_status(st, NULL);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    mq_report_free(report);
    mq_config_free(&cfg);
    Py_XDECREF(rpath);
    Py_XDECREF(dst);
    Py_XDECREF(src);
    return result;
}

PyDoc_STRVAR(scheme_doc,
             "scheme(config) -> dict\n\n"
             "The scheme fields of the mq_config a settings dict gives (preset applied\n"
             "first, then checked): preset, dtype, symmetric, per_channel, weights_only,\n"
             "group_size, block_size.");

static PyObject *py_scheme(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cfg_dict, *result = NULL;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &cfg_dict)) return NULL;
    mq_config cfg;
    mq_config_init(&cfg);
    if (config_from_dict(cfg_dict, &cfg, NULL)) goto done;
    const char *preset = mq_config_preset(&cfg), *dtype = mq_qdtype_name(cfg.dtype);
    result = Py_BuildValue("{szsssOsOsOsnsn}", "preset", preset, "dtype", dtype ? dtype : "?",
                           "symmetric", cfg.symmetric ? Py_True : Py_False, "per_channel",
                           cfg.per_channel ? Py_True : Py_False, "weights_only",
                           cfg.weights_only ? Py_True : Py_False, "group_size",
                           (Py_ssize_t)cfg.group_size, "block_size", (Py_ssize_t)cfg.block_size);
done:
    mq_config_free(&cfg);
    return result;
}

PyDoc_STRVAR(preset_names_doc, "preset_names() -> str\n\n"
                               "The valid preset names, comma-separated (mq_preset_names).");

static PyObject *py_preset_names(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(mq_preset_names());
}

PyDoc_STRVAR(device_info_doc, "device_info(spec) -> (kind, platform, name)\n\n"
                              "Opens the device mq_device_open(spec) gives, and closes it.");

static PyObject *py_device_info(PyObject *self, PyObject *args)
{
    (void)self;
    const char *spec;
    if (!PyArg_ParseTuple(args, "s", &spec)) return NULL;
    mq_device *d = NULL;
    mq_status st;
    PyThreadState *ts = PyEval_SaveThread();
    st = mq_device_open(spec, &d);
    PyEval_RestoreThread(ts);
    if (st != MQ_OK) return raise_status(st, spec);
    PyObject *r =
        Py_BuildValue("(sss)", mq_device_kind(d), mq_device_platform(d), mq_device_name(d));
    mq_device_close(d);
    return r;
}

PyDoc_STRVAR(device_list_doc,
             "device_list() -> [dict]\n\n"
             "Every OpenCL device mq_device_list_get lists: spec (\"P:D\"), platform, name,\n"
             "type, compute_units, global_mem, max_alloc, unified, auto.");

static PyObject *py_device_list(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    mq_device_list l;
    mq_status st = mq_device_list_get(&l);
    if (st != MQ_OK) return raise_status(st, NULL);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && i < l.n_devices; i++) {
        const mq_device_info *d = &l.devices[i];
        const mq_platform_info *p = NULL;
        for (size_t k = 0; k < l.n_platforms; k++)
            if (i >= l.platforms[k].first && i < l.platforms[k].first + l.platforms[k].count)
                p = &l.platforms[k];
        char spec[32];
        snprintf(spec, sizeof spec, "%u:%u", d->platform, d->index);
        PyObject *row = Py_BuildValue(
            "{sssssssssIsKsKsOsO}", "spec", spec, "platform", p ? p->name : "", "name", d->name,
            "type", d->type ? d->type : "", "compute_units", d->compute_units, "global_mem",
            (unsigned long long)d->global_mem, "max_alloc", (unsigned long long)d->max_alloc,
            "unified", d->unified ? Py_True : Py_False, "auto", d->is_auto ? Py_True : Py_False);
        if (!row || PyList_Append(out, row) < 0) Py_CLEAR(out);
        Py_XDECREF(row);
    }
    mq_device_list_free(&l);
    return out;
}

static PyMethodDef methods[] = {
    {"quantize", py_quantize, METH_VARARGS, quantize_doc},
    {"quantize_file", py_quantize_file, METH_VARARGS, quantize_file_doc},
    {"scheme", py_scheme, METH_VARARGS, scheme_doc},
    {"preset_names", py_preset_names, METH_NOARGS, preset_names_doc},
    {"device_info", py_device_info, METH_VARARGS, device_info_doc},
    {"device_list", py_device_list, METH_NOARGS, device_list_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "monoquant._core",
    "The C binding of libmonoquant.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    quantization_error = PyErr_NewExceptionWithDoc(
        "monoquant.QuantizationError",
        "A quantization failed: bad input (NaN/Inf weights, an unsupported dtype), a bad "
        "setting, or an I/O or device failure. The message names the tensor or file and the "
        "cause; .status is the library's status name.",
        PyExc_ValueError, NULL);
    if (!quantization_error || PyModule_AddObjectRef(m, "QuantizationError", quantization_error) ||
        PyModule_AddStringConstant(m, "VERSION", MQ_VERSION)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
