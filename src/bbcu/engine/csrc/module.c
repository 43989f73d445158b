/*
 * bbcu.engine._bitops: the CPython face of the packed 1-bit kernels.
 *
 * Every argument is checked here (dtype, rank, shape, C-contiguity, padding bits), because the kernels
 * index raw memory: a wrong array must become a ValueError, never a crash. The arithmetic runs with
 * the GIL released. bbcu.engine.kernels is the typed, documented wrapper to call instead.
 */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "bitops.h"

/* Keeps 9 * channels, the largest |dot|, far inside int32. */
#define MAX_CHANNELS (1 << 26)

static const IsaKernels *current_isa;
static int num_threads = 1;

static int words_for(long channels) { return (int)((channels + 63) / 64); }

/* ------------------------------------------------------------------ argument checks */

static const char *dtype_name(int typenum)
{
    switch (typenum) {
    case NPY_FLOAT32:
        return "float32";
    case NPY_UINT64:
        return "uint64";
    default:
        return "int32";
    }
}

/* Returns obj as an array when it is a C-contiguous, aligned numpy array of dtype typenum whose shape
 * matches dims (-1 = any size); otherwise NULL with a ValueError saying what was expected. */
static PyArrayObject *expect_array(PyObject *obj, const char *fn, const char *arg, int typenum, int ndim,
                                   const npy_intp *dims, const char *shape_text)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a numpy %s array of shape %s, got %s", fn, arg,
                     dtype_name(typenum), shape_text, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    if (PyArray_TYPE(arr) != typenum) {
        PyErr_Format(PyExc_ValueError, "%s: %s must have dtype %s, got %S", fn, arg, dtype_name(typenum),
                     (PyObject *)PyArray_DESCR(arr));
        return NULL;
    }
    int shape_ok = PyArray_NDIM(arr) == ndim;
    for (int i = 0; shape_ok && i < ndim; i++)
        shape_ok = dims[i] < 0 || PyArray_DIM(arr, i) == dims[i];
    if (!shape_ok) {
        PyObject *shape = PyObject_GetAttrString(obj, "shape");
        PyErr_Format(PyExc_ValueError, "%s: %s must have shape %s, got %R", fn, arg, shape_text, shape);
        Py_XDECREF(shape);
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(arr) || !PyArray_ISALIGNED(arr)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be C-contiguous (use numpy.ascontiguousarray)", fn, arg);
        return NULL;
    }
    return arr;
}

/* As expect_array, but None is allowed and gives a NULL data pointer. Returns -1 on error. */
static int optional_floats(PyObject *obj, const char *fn, const char *arg, int ndim, const npy_intp *dims,
                           const char *shape_text, const float **data)
{
    *data = NULL;
    if (obj == Py_None)
        return 0;
    PyArrayObject *arr = expect_array(obj, fn, arg, NPY_FLOAT32, ndim, dims, shape_text);
    if (!arr)
        return -1;
    *data = PyArray_DATA(arr);
    return 0;
}

/* Padding bits past `channels` must be 0: a set one would count in every popcount. It also catches a
 * `channels` that does not match how the array was packed. */
static int check_padding_bits(const uint64_t *words, size_t vectors, int per_vector, int channels, const char *fn,
                              const char *arg)
{
    if (channels % 64 == 0)
        return 0;
    const uint64_t padding = ~((UINT64_C(1) << (channels % 64)) - 1);
    for (size_t i = 0; i < vectors; i++)
        if (words[i * per_vector + per_vector - 1] & padding) {
            PyErr_Format(PyExc_ValueError,
                         "%s: %s has bits set past channel %d (padding bits must be 0: was it packed for more "
                         "channels?)",
                         fn, arg, channels);
            return -1;
        }
    return 0;
}

/* ------------------------------------------------------------------ packing */

static PyObject *pack_activations(PyObject *self, PyObject *args)
{
    PyObject *x_obj, *shift_obj;
    if (!PyArg_ParseTuple(args, "OO:pack_activations", &x_obj, &shift_obj))
        return NULL;
    const npy_intp x_dims[3] = {-1, -1, -1};
    PyArrayObject *x = expect_array(x_obj, "pack_activations", "x", NPY_FLOAT32, 3, x_dims, "(H, W, C)");
    if (!x)
        return NULL;
    const npy_intp channels = PyArray_DIM(x, 2);
    const npy_intp shift_dims[1] = {channels};
    PyArrayObject *shift = expect_array(shift_obj, "pack_activations", "shift", NPY_FLOAT32, 1, shift_dims, "(C,)");
    if (!shift)
        return NULL;
    if (channels < 1) {
        PyErr_SetString(PyExc_ValueError, "pack_activations: x must have at least one channel");
        return NULL;
    }
    const int cw = words_for(channels);
    const npy_intp dims[3] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), cw};
    PyArrayObject *packed = (PyArrayObject *)PyArray_EMPTY(3, dims, NPY_UINT64, 0);
    if (!packed)
        return NULL;
    const float *xs = PyArray_DATA(x), *shifts = PyArray_DATA(shift);
    uint64_t *out = PyArray_DATA(packed);
    const size_t pixels = (size_t)dims[0] * dims[1];
    const PackSignsFn pack_signs = current_isa->pack_signs;
    Py_BEGIN_ALLOW_THREADS;
    for (size_t p = 0; p < pixels; p++)
        pack_signs(xs + p * channels, shifts, (int)channels, out + p * cw);
    Py_END_ALLOW_THREADS;
    return (PyObject *)packed;
}

static PyObject *pack_weights(PyObject *self, PyObject *args)
{
    PyObject *w_obj;
    if (!PyArg_ParseTuple(args, "O:pack_weights", &w_obj))
        return NULL;
    const npy_intp w_dims[4] = {-1, -1, 3, 3};
    PyArrayObject *w = expect_array(w_obj, "pack_weights", "w", NPY_FLOAT32, 4, w_dims, "(O, C, 3, 3)");
    if (!w)
        return NULL;
    const npy_intp out_channels = PyArray_DIM(w, 0), channels = PyArray_DIM(w, 1);
    if (channels < 1) {
        PyErr_SetString(PyExc_ValueError, "pack_weights: w must have at least one input channel");
        return NULL;
    }
    const int cw = words_for(channels);
    const npy_intp dims[4] = {out_channels, 3, 3, cw};
    PyArrayObject *packed = (PyArrayObject *)PyArray_ZEROS(4, dims, NPY_UINT64, 0);
    if (!packed)
        return NULL;
    const float *ws = PyArray_DATA(w);
    uint64_t *out = PyArray_DATA(packed);
    for (npy_intp o = 0; o < out_channels; o++)
        for (npy_intp c = 0; c < channels; c++)
            for (int tap = 0; tap < 9; tap++)
                if (ws[(o * channels + c) * 9 + tap] >= 0.0f)
                    out[(o * 9 + tap) * cw + c / 64] |= UINT64_C(1) << (c % 64);
    return (PyObject *)packed;
}

/* ------------------------------------------------------------------ convolution */

/* The conv's geometry, taken from (and checked against) xp, wp and channels. */
static int parse_geometry(PyObject *xp_obj, PyObject *wp_obj, int channels, const char *fn, ConvArgs *a)
{
    const npy_intp x_dims[3] = {-1, -1, -1}, w_dims[4] = {-1, 3, 3, -1};
    PyArrayObject *xp = expect_array(xp_obj, fn, "xp", NPY_UINT64, 3, x_dims, "(H, W, Cw)");
    if (!xp)
        return -1;
    PyArrayObject *wp = expect_array(wp_obj, fn, "wp", NPY_UINT64, 4, w_dims, "(O, 3, 3, Cw)");
    if (!wp)
        return -1;
    if (channels < 1) {
        PyErr_Format(PyExc_ValueError, "%s: channels must be at least 1, got %d", fn, channels);
        return -1;
    }
    const int cw = words_for(channels);
    if (PyArray_DIM(xp, 2) != cw || PyArray_DIM(wp, 3) != cw) {
        PyErr_Format(PyExc_ValueError,
                     "%s: channels=%d needs %d words per pixel (ceil(channels / 64)), but xp has %zd and wp has %zd",
                     fn, channels, cw, (Py_ssize_t)PyArray_DIM(xp, 2), (Py_ssize_t)PyArray_DIM(wp, 3));
        return -1;
    }
    if (PyArray_DIM(xp, 0) < 1 || PyArray_DIM(xp, 1) < 1 || PyArray_DIM(wp, 0) < 1) {
        PyErr_Format(PyExc_ValueError, "%s: H, W and O must all be at least 1", fn);
        return -1;
    }
    if (PyArray_DIM(xp, 0) > INT_MAX || PyArray_DIM(xp, 1) > INT_MAX || PyArray_DIM(wp, 0) > INT_MAX
        || channels > MAX_CHANNELS) {
        PyErr_Format(PyExc_ValueError, "%s: too large (at most %d channels, and H, W, O below 2^31)", fn, MAX_CHANNELS);
        return -1;
    }
    a->x = PyArray_DATA(xp);
    a->w = PyArray_DATA(wp);
    a->height = (int)PyArray_DIM(xp, 0);
    a->width = (int)PyArray_DIM(xp, 1);
    a->out_channels = (int)PyArray_DIM(wp, 0);
    a->channels = channels;
    a->channel_words = cw;
    if (check_padding_bits(a->x, (size_t)a->height * a->width, cw, channels, fn, "xp")
        || check_padding_bits(a->w, (size_t)a->out_channels * 9, cw, channels, fn, "wp"))
        return -1;
    return 0;
}

/* Runs the conv described by `a` on the current ISA and thread count, GIL released. */
static int run_conv(ConvArgs *a)
{
    const IsaKernels *isa = current_isa;
    a->o_lanes = bbcu_o_lanes(isa, a->out_channels);
    uint64_t *wl = bbcu_lane_weights(isa, a->w, a->out_channels, a->channel_words);
    if (bbcu_reads_wl(isa) && !wl) {
        PyErr_NoMemory();
        return -1;
    }
    a->wl = wl;
    const int threads = bbcu_threads_for(a, num_threads);
    int status;
    Py_BEGIN_ALLOW_THREADS;
    status = bbcu_run_rows(a, isa, threads);
    Py_END_ALLOW_THREADS;
    free(wl);
    if (status) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *binary_conv3x3_raw(PyObject *self, PyObject *args)
{
    PyObject *xp_obj, *wp_obj;
    int channels;
    if (!PyArg_ParseTuple(args, "OOi:binary_conv3x3_raw", &xp_obj, &wp_obj, &channels))
        return NULL;
    ConvArgs a = {0};
    if (parse_geometry(xp_obj, wp_obj, channels, "binary_conv3x3_raw", &a))
        return NULL;
    const npy_intp dims[3] = {a.height, a.width, a.out_channels};
    PyArrayObject *raw = (PyArrayObject *)PyArray_EMPTY(3, dims, NPY_INT32, 0);
    if (!raw)
        return NULL;
    a.raw = PyArray_DATA(raw);
    if (run_conv(&a)) {
        Py_DECREF(raw);
        return NULL;
    }
    return (PyObject *)raw;
}

/* An optional row range (begin, end) with 0 <= begin < end <= height into *from, *to (0, 0 for None:
 * every row). */
static int parse_rows(PyObject *rows_obj, int height, const char *fn, int *from, int *to)
{
    *from = *to = 0;
    if (rows_obj == Py_None)
        return 0;
    int begin, end;
    if (!PyTuple_Check(rows_obj) || !PyArg_ParseTuple(rows_obj, "ii", &begin, &end)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: rows must be a (begin, end) pair of ints", fn);
        return -1;
    }
    if (begin < 0 || begin >= end || end > height) {
        PyErr_Format(PyExc_ValueError, "%s: rows (%d, %d) must satisfy 0 <= begin < end <= H = %d", fn, begin, end,
                     height);
        return -1;
    }
    *from = begin, *to = end;
    return 0;
}

/* A new float32 array for an output: zeros where only some rows are computed, so none is left undefined. */
static PyArrayObject *new_output(int nd, const npy_intp *dims, int type, int some_rows)
{
    return (PyArrayObject *)(some_rows ? PyArray_ZEROS(nd, dims, type, 0) : PyArray_EMPTY(nd, dims, type, 0));
}

/* The output array: `out` when given (checked), else a new one. Returns a new reference. */
static PyArrayObject *output_array(PyObject *out_obj, const npy_intp *dims, const char *fn, int some_rows)
{
    if (out_obj == Py_None)
        return new_output(3, dims, NPY_FLOAT32, some_rows);
    PyArrayObject *out = expect_array(out_obj, fn, "out", NPY_FLOAT32, 3, dims, "(H, W, O)");
    if (!out)
        return NULL;
    if (!PyArray_ISWRITEABLE(out)) {
        PyErr_Format(PyExc_ValueError, "%s: out must be writeable", fn);
        return NULL;
    }
    Py_INCREF(out);
    return out;
}

/* Checks binary_conv3x3's sub-pixel shuffle against the geometry in `a` and stores it there. */
static int parse_shuffle(int shuffle, ConvArgs *a, const char *fn)
{
    if (shuffle < 1 || shuffle > 8) {
        PyErr_Format(PyExc_ValueError, "%s: shuffle must be between 1 and 8, got %d", fn, shuffle);
        return -1;
    }
    if (a->out_channels % (shuffle * shuffle)) {
        PyErr_Format(PyExc_ValueError, "%s: shuffle %d needs output channels divisible by %d, got %d", fn, shuffle,
                     shuffle * shuffle, a->out_channels);
        return -1;
    }
    if ((long)a->height * shuffle > INT_MAX || (long)a->width * shuffle > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: the shuffled output is too large", fn);
        return -1;
    }
    a->shuffle = shuffle;
    return 0;
}

static PyObject *binary_conv3x3(PyObject *self, PyObject *args)
{
    static const char *fn = "binary_conv3x3";
    PyObject *xp_obj, *wp_obj, *scale_obj, *bias_obj, *gamma_obj, *beta_obj, *zeta_obj, *residual_obj,
        *next_shift_obj, *out_obj, *leaky_obj, *rows_obj;
    int channels, shuffle;
    if (!PyArg_ParseTuple(args, "OOiOOOOOOOOiOO:binary_conv3x3", &xp_obj, &wp_obj, &channels, &scale_obj, &bias_obj,
                          &gamma_obj, &beta_obj, &zeta_obj, &residual_obj, &next_shift_obj, &out_obj, &shuffle,
                          &leaky_obj, &rows_obj))
        return NULL;
    ConvArgs a = {0};
    if (parse_geometry(xp_obj, wp_obj, channels, fn, &a) || parse_shuffle(shuffle, &a, fn)
        || parse_rows(rows_obj, a.height, fn, &a.rows_from, &a.rows_to))
        return NULL;
    const int some_rows = a.rows_to > 0;
    if (leaky_obj != Py_None) {
        a.leaky = 1;
        a.leaky_slope = (float)PyFloat_AsDouble(leaky_obj);
        if (a.leaky_slope == -1.0f && PyErr_Occurred())
            return NULL;
    }
    const int group = a.out_channels / (shuffle * shuffle); /* channels of each output pixel */
    const npy_intp per_channel[1] = {a.out_channels}, per_input[3] = {a.height, a.width, group},
                   per_output[3] = {(npy_intp)a.height * shuffle, (npy_intp)a.width * shuffle, group};
    if (scale_obj == Py_None) {
        PyErr_Format(PyExc_ValueError, "%s: scale is required", fn);
        return NULL;
    }
    const int rprelu_given = (gamma_obj != Py_None) + (beta_obj != Py_None) + (zeta_obj != Py_None);
    if (rprelu_given != 0 && rprelu_given != 3) {
        PyErr_Format(PyExc_ValueError, "%s: RPReLU needs all of gamma, beta and zeta", fn);
        return NULL;
    }
    if (optional_floats(scale_obj, fn, "scale", 1, per_channel, "(O,)", &a.scale)
        || optional_floats(bias_obj, fn, "bias", 1, per_channel, "(O,)", &a.bias)
        || optional_floats(gamma_obj, fn, "rprelu gamma", 1, per_channel, "(O,)", &a.gamma)
        || optional_floats(beta_obj, fn, "rprelu beta", 1, per_channel, "(O,)", &a.beta)
        || optional_floats(zeta_obj, fn, "rprelu zeta", 1, per_channel, "(O,)", &a.zeta)
        || optional_floats(residual_obj, fn, "residual", 3, per_input, "(H, W, O / shuffle^2)", &a.residual)
        || optional_floats(next_shift_obj, fn, "next_shift", 1, per_channel, "(O,)", &a.next_shift))
        return NULL;
    PyArrayObject *y = output_array(out_obj, per_output, fn, some_rows);
    if (!y)
        return NULL;
    a.y = PyArray_DATA(y);
    const uintptr_t y_bytes = (uintptr_t)per_output[0] * per_output[1] * group * sizeof(float),
                    residual_bytes = (uintptr_t)a.height * a.width * group * sizeof(float);
    const uintptr_t y_at = (uintptr_t)a.y, residual_at = (uintptr_t)a.residual;
    const int same = residual_at == y_at && shuffle == 1;
    if (a.residual && !same && residual_at < y_at + y_bytes && y_at < residual_at + residual_bytes) {
        PyErr_Format(PyExc_ValueError, "%s: out must be the residual array itself (without shuffle) or not overlap it",
                     fn);
        Py_DECREF(y);
        return NULL;
    }
    PyObject *bits = Py_None;
    if (a.next_shift) {
        const npy_intp bit_dims[3] = {per_output[0], per_output[1], words_for(group)};
        bits = (PyObject *)new_output(3, bit_dims, NPY_UINT64, some_rows);
        if (!bits) {
            Py_DECREF(y);
            return NULL;
        }
        a.next_bits = PyArray_DATA((PyArrayObject *)bits);
    } else {
        Py_INCREF(bits);
    }
    if (run_conv(&a)) {
        Py_DECREF(y);
        Py_DECREF(bits);
        return NULL;
    }
    return Py_BuildValue("(NN)", (PyObject *)y, bits);
}

/* ------------------------------------------------------------------ float conv */

static PyObject *float_conv3x3(PyObject *self, PyObject *args)
{
    static const char *fn = "float_conv3x3";
    PyObject *x_obj, *w_obj, *bias_obj, *rows_obj;
    if (!PyArg_ParseTuple(args, "OOOO:float_conv3x3", &x_obj, &w_obj, &bias_obj, &rows_obj))
        return NULL;
    const npy_intp any3[3] = {-1, -1, -1};
    PyArrayObject *x = expect_array(x_obj, fn, "x", NPY_FLOAT32, 3, any3, "(H, W, C)");
    if (!x)
        return NULL;
    const npy_intp w_dims[3] = {-1, 9, PyArray_DIM(x, 2)};
    PyArrayObject *w = expect_array(w_obj, fn, "weight", NPY_FLOAT32, 3, w_dims, "(O, 9, C)");
    if (!w)
        return NULL;
    if (PyArray_DIM(x, 0) < 1 || PyArray_DIM(x, 1) < 1 || PyArray_DIM(x, 2) < 1 || PyArray_DIM(w, 0) < 1
        || PyArray_DIM(x, 0) > INT_MAX || PyArray_DIM(x, 1) > INT_MAX || PyArray_DIM(x, 2) > MAX_CHANNELS
        || PyArray_DIM(w, 0) > MAX_CHANNELS) {
        PyErr_Format(PyExc_ValueError, "%s: H, W, C and O must be positive (and H, W below 2^31)", fn);
        return NULL;
    }
    FloatConvArgs a = {PyArray_DATA(x), PyArray_DATA(w), NULL, (int)PyArray_DIM(x, 0), (int)PyArray_DIM(x, 1),
                       (int)PyArray_DIM(x, 2), (int)PyArray_DIM(w, 0), NULL, 0, 0};
    const npy_intp per_channel[1] = {a.out_channels};
    if (optional_floats(bias_obj, fn, "bias", 1, per_channel, "(O,)", &a.bias)
        || parse_rows(rows_obj, a.height, fn, &a.rows_from, &a.rows_to))
        return NULL;
    const npy_intp y_dims[3] = {a.height, a.width, a.out_channels};
    PyArrayObject *y = new_output(3, y_dims, NPY_FLOAT32, a.rows_to > 0);
    if (!y)
        return NULL;
    a.y = PyArray_DATA(y);
    Py_BEGIN_ALLOW_THREADS;
    bbcu_float_conv3x3(&a, current_isa, num_threads);
    Py_END_ALLOW_THREADS;
    return (PyObject *)y;
}

static PyObject *add_bilinear(PyObject *self, PyObject *args)
{
    static const char *fn = "add_bilinear";
    PyObject *skip_obj, *x_obj;
    int scale;
    if (!PyArg_ParseTuple(args, "OiO:add_bilinear", &skip_obj, &scale, &x_obj))
        return NULL;
    const npy_intp any3[3] = {-1, -1, -1};
    PyArrayObject *skip = expect_array(skip_obj, fn, "skip", NPY_FLOAT32, 3, any3, "(H, W, C)");
    if (!skip)
        return NULL;
    if (scale < 1 || scale > 64 || PyArray_DIM(skip, 0) < 1 || PyArray_DIM(skip, 1) < 1 || PyArray_DIM(skip, 2) < 1
        || PyArray_DIM(skip, 0) * scale > INT_MAX || PyArray_DIM(skip, 1) * scale > INT_MAX
        || PyArray_DIM(skip, 2) > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: need a non-empty skip and a scale between 1 and 64", fn);
        return NULL;
    }
    const npy_intp x_dims[3] = {PyArray_DIM(skip, 0) * scale, PyArray_DIM(skip, 1) * scale, PyArray_DIM(skip, 2)};
    PyArrayObject *x = expect_array(x_obj, fn, "x", NPY_FLOAT32, 3, x_dims, "(s*H, s*W, C)");
    if (!x)
        return NULL;
    if (!PyArray_ISWRITEABLE(x)) {
        PyErr_Format(PyExc_ValueError, "%s: x must be writeable", fn);
        return NULL;
    }
    const uintptr_t x_at = (uintptr_t)PyArray_DATA(x), skip_at = (uintptr_t)PyArray_DATA(skip);
    if (x_at < skip_at + (uintptr_t)PyArray_NBYTES(skip) && skip_at < x_at + (uintptr_t)PyArray_NBYTES(x)) {
        PyErr_Format(PyExc_ValueError, "%s: x must not overlap skip", fn);
        return NULL;
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS;
    failed = bbcu_add_bilinear(PyArray_DATA(skip), (int)PyArray_DIM(skip, 0), (int)PyArray_DIM(skip, 1),
                               (int)PyArray_DIM(skip, 2), scale, 0, 0, PyArray_DATA(x), num_threads);
    Py_END_ALLOW_THREADS;
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ ISA and threads */

static PyObject *available_isas(PyObject *self, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    for (int i = 0; names && i < bbcu_isa_count(); i++) {
        if (!bbcu_isa_supported(bbcu_isa_at(i)))
            continue;
        PyObject *name = PyUnicode_FromString(bbcu_isa_at(i)->name);
        if (!name || PyList_Append(names, name)) {
            Py_XDECREF(name);
            Py_CLEAR(names);
            break;
        }
        Py_DECREF(name);
    }
    return names;
}

static PyObject *set_isa(PyObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:set_isa", &name))
        return NULL;
    if (strcmp(name, "auto") == 0) {
        current_isa = bbcu_isa_best();
        Py_RETURN_NONE;
    }
    static const char *const known[] = {"portable", "avx2", "avx512", "amx", "neon"};
    int is_known = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        is_known |= strcmp(name, known[i]) == 0;
    if (!is_known) {
        PyErr_Format(PyExc_ValueError, "set_isa: unknown ISA '%s' (choose portable, avx2, avx512, amx, neon or auto)",
                     name);
        return NULL;
    }
    const IsaKernels *isa = bbcu_isa_find(name); /* NULL: a path of another architecture */
    if (!isa || !bbcu_isa_supported(isa)) {
        PyErr_Format(PyExc_RuntimeError, "set_isa: this CPU (or this build) cannot run the '%s' kernels", name);
        return NULL;
    }
    current_isa = isa;
    Py_RETURN_NONE;
}

static PyObject *get_isa(PyObject *self, PyObject *unused) { return PyUnicode_FromString(current_isa->name); }

static PyObject *set_num_threads(PyObject *self, PyObject *args)
{
    int n;
    if (!PyArg_ParseTuple(args, "i:set_num_threads", &n))
        return NULL;
    if (n < 1) {
        PyErr_Format(PyExc_ValueError, "set_num_threads: need at least 1 thread, got %d", n);
        return NULL;
    }
    num_threads = n;
    Py_RETURN_NONE;
}

static PyObject *get_num_threads(PyObject *self, PyObject *unused) { return PyLong_FromLong(num_threads); }

/* ------------------------------------------------------------------ ceilings */

static PyObject *ceiling_rate(PyObject *self, PyObject *args)
{
    const char *kind;
    long rounds;
    int threads;
    if (!PyArg_ParseTuple(args, "sli:ceiling_rate", &kind, &rounds, &threads))
        return NULL;
    const int binary = strcmp(kind, "binary") == 0;
    if (!binary && strcmp(kind, "fma") != 0) {
        PyErr_Format(PyExc_ValueError, "ceiling_rate: kind must be 'binary' or 'fma', got '%s'", kind);
        return NULL;
    }
    if (rounds < 1 || threads < 1 || threads > 4096) {
        PyErr_Format(PyExc_ValueError, "ceiling_rate: rounds and threads must be positive (threads <= 4096)");
        return NULL;
    }
    const CeilingFn loop = binary ? current_isa->binary_ceiling : current_isa->fma_ceiling;
    double rate;
    Py_BEGIN_ALLOW_THREADS;
    rate = bbcu_ceiling_rate(loop, rounds, threads);
    Py_END_ALLOW_THREADS;
    return PyFloat_FromDouble(rate);
}

static PyMethodDef METHODS[] = {
    {"pack_activations", pack_activations, METH_VARARGS, "pack_activations(x, shift) -> uint64 (H, W, Cw)"},
    {"pack_weights", pack_weights, METH_VARARGS, "pack_weights(w) -> uint64 (O, 3, 3, Cw)"},
    {"binary_conv3x3_raw", binary_conv3x3_raw, METH_VARARGS, "binary_conv3x3_raw(xp, wp, channels) -> int32"},
    {"binary_conv3x3", binary_conv3x3, METH_VARARGS,
     "binary_conv3x3(xp, wp, channels, scale, bias, gamma, beta, zeta, residual, next_shift, out, shuffle, leaky, "
     "rows) -> (y, bits)"},
    {"float_conv3x3", float_conv3x3, METH_VARARGS,
     "float_conv3x3(x, weight, bias, rows) -> float32 (H, W, O); weight (O, 9, C), zero padding"},
    {"add_bilinear", add_bilinear, METH_VARARGS,
     "add_bilinear(skip, scale, x): x += bilinear_up(skip, scale), as F.interpolate(align_corners=False)"},
    {"available_isas", available_isas, METH_NOARGS, "available_isas() -> list of ISA names this CPU runs"},
    {"set_isa", set_isa, METH_VARARGS, "set_isa(name): force 'portable', 'avx2', 'avx512', 'neon' or 'auto'"},
    {"get_isa", get_isa, METH_NOARGS, "get_isa() -> name of the ISA in use"},
    {"set_num_threads", set_num_threads, METH_VARARGS, "set_num_threads(n)"},
    {"get_num_threads", get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"ceiling_rate", ceiling_rate, METH_VARARGS,
     "ceiling_rate(kind, rounds, threads) -> MACs/s of the current ISA's 'binary' or 'fma' peak loop"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_bitops", "Packed XNOR-popcount kernels.", -1, METHODS, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bitops(void)
{
    import_array();
    current_isa = bbcu_isa_best();
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    num_threads = cpus > 0 ? (int)cpus : 1;
    return PyModule_Create(&MODULE);
}
