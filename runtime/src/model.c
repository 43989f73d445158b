/*
 * Loading a .bbcu file: the safetensors container, then every check bbcu.formats.packed.load_packed
 * makes (docs/engine.md, "Validation"), then a few of the C runtime's own: finite floats, and limits on
 * sizes (bbcu.h) so that no header can make the runtime allocate or index beyond what it checked.
 *
 * Every length and offset read from the file is checked before it is used, in that order: a file is
 * hostile until proven otherwise.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitops.h"
#include "internal.h"
#include "json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libbbcu reads little-endian tensors in place: it needs a little-endian CPU"
#endif

#define MAX_HEADER_BYTES 100000000u /* safetensors' own limit */
#define MAX_FILE_BYTES ((size_t)1 << 34)
#define MAX_OPS 4096
#define MAX_DIMS 8

static const char *const ARCHITECTURES[] = {"bbcu-l", "bbcu-m", "dncnn-bbcu", "dncnn3-bbcu"};
static const char SIGN_CONVENTION[] = "bit 1 = +1 = (value >= 0); sign(0) = +1";
static const char BIT_ORDER[] =
    "channel c of a pixel or tap -> word c // 64, bit c % 64 (least significant first); padding bits 0";

bbcu_status bbcu_fail(bbcu_error *error, bbcu_status status, const char *format, ...)
{
    if (error) {
        va_list args;
        va_start(args, format);
        error->status = status;
        vsnprintf(error->message, sizeof error->message, format, args);
        va_end(args);
    }
    return status;
}

/* ------------------------------------------------------------------ the container */

typedef enum Dtype { DTYPE_F32, DTYPE_U64 } Dtype;

typedef struct Tensor {
    const char *name;
    Dtype dtype;
    int ndim;
    int64_t shape[MAX_DIMS];
    const unsigned char *data;
    size_t bytes;
    int used;
} Tensor;

/* Everything a load works on; the failure paths free it in one place. */
typedef struct Loader {
    const char *where; /* the path, for messages */
    bbcu_error *error;
    JsonValue header, kwargs, graph;
    Tensor *tensors;
    size_t tensor_count;
    bbcu_model *model;
} Loader;

#define FAIL(loader, ...) bbcu_fail((loader)->error, BBCU_ERROR_FORMAT, __VA_ARGS__)

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int compare_begin(const void *a, const void *b)
{
    const Tensor *x = a, *y = b;
    return (x->data > y->data) - (x->data < y->data);
}

/* One tensor entry of the header: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}. */
static bbcu_status parse_tensor_entry(Loader *l, const JsonMember *m, const unsigned char *data, size_t data_size,
                                      Tensor *t)
{
    const JsonValue *v = &m->value, *dtype = json_get(v, "dtype"), *shape = json_get(v, "shape"),
                    *offsets = json_get(v, "data_offsets");
    t->name = m->key;
    if (v->type != JSON_OBJECT || v->count != 3 || !dtype || !shape || !offsets || dtype->type != JSON_STRING
        || shape->type != JSON_ARRAY || offsets->type != JSON_ARRAY || offsets->count != 2)
        return FAIL(l, "%s: not a readable safetensors file (malformed entry for tensor %.80s)", l->where, m->key);
    size_t item = 0;
    if (strcmp(dtype->string, "F32") == 0)
        t->dtype = DTYPE_F32, item = 4;
    else if (strcmp(dtype->string, "U64") == 0)
        t->dtype = DTYPE_U64, item = 8;
    else
        return FAIL(l, "%s: tensor %.80s has dtype %.20s; a packed model holds only F32 and U64", l->where, m->key,
                    dtype->string);
    if (shape->count > MAX_DIMS)
        return FAIL(l, "%s: tensor %.80s has %zu dimensions", l->where, m->key, shape->count);
    t->ndim = (int)shape->count;
    uint64_t elements = 1;
    for (int i = 0; i < t->ndim; i++) {
        const JsonValue *d = &shape->items[i];
        if (d->type != JSON_NUMBER || !d->is_integer || d->integer < 0 || (uint64_t)d->integer > MAX_FILE_BYTES)
            return FAIL(l, "%s: tensor %.80s has an invalid shape", l->where, m->key);
        t->shape[i] = d->integer;
        elements *= (uint64_t)d->integer; /* each factor <= 2^34 and the product is checked against */
        if (elements > MAX_FILE_BYTES)    /* the file size below, so it cannot wrap */
            return FAIL(l, "%s: tensor %.80s is larger than the file", l->where, m->key);
    }
    for (int i = 0; i < 2; i++)
        if (offsets->items[i].type != JSON_NUMBER || !offsets->items[i].is_integer || offsets->items[i].integer < 0)
            return FAIL(l, "%s: tensor %.80s has invalid data_offsets", l->where, m->key);
    const uint64_t begin = (uint64_t)offsets->items[0].integer, end = (uint64_t)offsets->items[1].integer;
    if (begin > end || end > data_size)
        return FAIL(l, "%s: not a readable safetensors file (tensor %.80s lies outside the file)", l->where, m->key);
    if (end - begin != elements * item)
        return FAIL(l, "%s: not a readable safetensors file (tensor %.80s: %llu bytes for %llu elements)", l->where,
                    m->key, (unsigned long long)(end - begin), (unsigned long long)elements);
    t->data = data + begin;
    t->bytes = (size_t)(end - begin);
    return BBCU_OK;
}

/* The header JSON and the tensor table; the tensors must tile the data area exactly, as safetensors
 * requires (no gaps, no overlaps, nothing after the last one). */
static bbcu_status parse_container(Loader *l, const unsigned char *file, size_t size)
{
    if (size < 8)
        return FAIL(l, "%s: not a readable safetensors file (%zu bytes)", l->where, size);
    const uint64_t header_size = read_le64(file);
    if (header_size > MAX_HEADER_BYTES || header_size > size - 8)
        return FAIL(l, "%s: not a readable safetensors file (header of %llu bytes in a %zu-byte file)", l->where,
                    (unsigned long long)header_size, size);
    char reason[200];
    if (json_parse((const char *)file + 8, (size_t)header_size, &l->header, reason, sizeof reason))
        return FAIL(l, "%s: not a readable safetensors file (%s)", l->where, reason);
    if (l->header.type != JSON_OBJECT)
        return FAIL(l, "%s: not a readable safetensors file (header is not an object)", l->where);
    const unsigned char *data = file + 8 + header_size;
    const size_t data_size = size - 8 - (size_t)header_size;
    l->tensors = calloc(l->header.count ? l->header.count : 1, sizeof *l->tensors);
    if (!l->tensors)
        return bbcu_fail(l->error, BBCU_ERROR_MEMORY, "%s: out of memory", l->where);
    for (size_t i = 0; i < l->header.count; i++) {
        const JsonMember *m = &l->header.members[i];
        if (strcmp(m->key, "__metadata__") == 0)
            continue;
        bbcu_status status = parse_tensor_entry(l, m, data, data_size, &l->tensors[l->tensor_count]);
        if (status)
            return status;
        l->tensor_count++;
    }
    qsort(l->tensors, l->tensor_count, sizeof *l->tensors, compare_begin);
    const unsigned char *expected = data;
    for (size_t i = 0; i < l->tensor_count; i++) {
        if (l->tensors[i].data != expected)
            return FAIL(l, "%s: not a readable safetensors file (tensor %.80s does not start where the previous "
                        "one ends)", l->where, l->tensors[i].name);
        expected += l->tensors[i].bytes;
    }
    if (expected != data + data_size)
        return FAIL(l, "%s: not a readable safetensors file (%zu bytes after the last tensor)", l->where,
                    (size_t)(data + data_size - expected));
    return BBCU_OK;
}

/* ------------------------------------------------------------------ the header */

static const char *metadata_string(Loader *l, const char *key)
{
    const JsonValue *metadata = json_get(&l->header, "__metadata__");
    const JsonValue *v = metadata ? json_get(metadata, key) : NULL;
    return v && v->type == JSON_STRING ? v->string : NULL;
}

/* A decimal integer written as Python's str(int) writes it. */
static int parse_int_text(const char *text, long *out)
{
    if (!text || !*text || strspn(text + (*text == '-'), "0123456789") != strlen(text + (*text == '-')))
        return -1;
    errno = 0;
    *out = strtol(text, NULL, 10);
    return errno ? -1 : 0;
}

/* A decimal float (as Python's repr(float) writes one); no hex floats, no words. */
static int parse_float_text(const char *text, double *out)
{
    if (!text || !*text || strspn(text, "0123456789+-.eE") != strlen(text))
        return -1;
    char *end;
    *out = strtod(text, &end);
    return *end ? -1 : 0;
}

/* Where the header's JSON number agrees with value (Python's ==, true counting as 1). */
static int json_equals(const JsonValue *v, double value)
{
    if (v->type == JSON_BOOL)
        return (double)v->boolean == value;
    return v->type == JSON_NUMBER && v->number == value;
}

static bbcu_status parse_header(Loader *l)
{
    const JsonValue *metadata = json_get(&l->header, "__metadata__");
    if (!metadata || metadata->type != JSON_OBJECT)
        return FAIL(l, "%s: not a packed bbcu model (metadata format=None)", l->where);
    for (size_t i = 0; i < metadata->count; i++)
        if (metadata->members[i].value.type != JSON_STRING)
            return FAIL(l, "%s: not a readable safetensors file (metadata %.60s is not a string)", l->where,
                        metadata->members[i].key);
    const char *format = metadata_string(l, "format"), *version = metadata_string(l, "format_version");
    if (!format || strcmp(format, "bbcu-packed") != 0)
        return FAIL(l, "%s: not a packed bbcu model (metadata format=%.40s)", l->where, format ? format : "None");
    if (!version || strcmp(version, "1") != 0)
        return FAIL(l, "%s: packed bbcu model version %.20s is not supported (this bbcu reads version 1)", l->where,
                    version ? version : "None");
    const char *architecture = metadata_string(l, "architecture");
    int known = 0;
    for (size_t i = 0; architecture && i < sizeof ARCHITECTURES / sizeof *ARCHITECTURES; i++)
        known |= strcmp(architecture, ARCHITECTURES[i]) == 0;
    if (!known)
        return FAIL(l, "%s: architecture %.40s is not supported; supported: bbcu-l, bbcu-m, dncnn-bbcu, dncnn3-bbcu",
                    l->where, architecture ? architecture : "None");
    const char *sign = metadata_string(l, "sign_convention"), *order = metadata_string(l, "bit_order");
    if (!sign || strcmp(sign, SIGN_CONVENTION) != 0)
        return FAIL(l, "%s: unknown sign_convention", l->where);
    if (!order || strcmp(order, BIT_ORDER) != 0)
        return FAIL(l, "%s: unknown bit_order", l->where);
    bbcu_model *m = l->model;
    snprintf(m->architecture, sizeof m->architecture, "%s", architecture);
    long scale, in_channels, out_channels;
    double k;
    const char *kwargs = metadata_string(l, "model_kwargs"), *graph = metadata_string(l, "graph");
    char reason[200];
    if (parse_int_text(metadata_string(l, "scale"), &scale) || parse_float_text(metadata_string(l, "k"), &k)
        || parse_int_text(metadata_string(l, "in_channels"), &in_channels)
        || parse_int_text(metadata_string(l, "out_channels"), &out_channels) || !metadata_string(l, "bbcu_version")
        || !kwargs || !graph)
        return FAIL(l, "%s: malformed metadata (scale, k, channel counts, model_kwargs, graph or bbcu_version "
                    "missing or not a number)", l->where);
    if (json_parse(kwargs, strlen(kwargs), &l->kwargs, reason, sizeof reason)
        || json_parse(graph, strlen(graph), &l->graph, reason, sizeof reason))
        return FAIL(l, "%s: malformed metadata (%s)", l->where, reason);
    if (l->kwargs.type != JSON_OBJECT || l->graph.type != JSON_ARRAY)
        return FAIL(l, "%s: malformed metadata (model_kwargs or graph)", l->where);
    if (scale < 1 || in_channels < 1 || out_channels < 1)
        return FAIL(l, "%s: malformed metadata (scale and channel counts must be positive)", l->where);
    if (scale > BBCU_MAX_SCALE || in_channels > BBCU_MAX_CHANNELS || out_channels > BBCU_MAX_CHANNELS)
        return FAIL(l, "%s: scale %ld or channels %ld/%ld beyond this runtime's limits (%d, %d)", l->where, scale,
                    in_channels, out_channels, BBCU_MAX_SCALE, BBCU_MAX_CHANNELS);
    if (!isfinite(k) || k == 0 || !isfinite((float)k) || (float)k == 0)
        return FAIL(l, "%s: malformed metadata (k=%g)", l->where, k);
    const JsonValue *kw_scale = json_get(&l->kwargs, "scale"), *kw_k = json_get(&l->kwargs, "k");
    if ((kw_scale && !json_equals(kw_scale, (double)scale)) || (kw_k && !json_equals(kw_k, k)))
        return FAIL(l, "%s: model_kwargs %s contradicts the header's", l->where,
                    kw_scale && !json_equals(kw_scale, (double)scale) ? "scale" : "k");
    m->scale = (int)scale;
    m->in_channels = (int)in_channels;
    m->out_channels = (int)out_channels;
    m->k = (float)k;
    return BBCU_OK;
}

/* ------------------------------------------------------------------ the graph */

typedef enum AttrType { ATTR_STR, ATTR_INT, ATTR_FLOAT, ATTR_BOOL } AttrType;

typedef struct OpSpec {
    const char *name;
    OpKind kind;
    int attr_count;
    const char *attrs[4];
    AttrType types[4];
} OpSpec;

static const OpSpec OP_SPECS[] = {
    {"input_scale", OP_INPUT_SCALE, 0, {0}, {0}},
    {"conv", OP_CONV, 4, {"name", "in_channels", "out_channels", "bias"}, {ATTR_STR, ATTR_INT, ATTR_INT, ATTR_BOOL}},
    {"leaky_relu", OP_LEAKY_RELU, 1, {"slope"}, {ATTR_FLOAT}},
    {"relu", OP_RELU, 0, {0}, {0}},
    {"pixel_shuffle", OP_PIXEL_SHUFFLE, 1, {"scale"}, {ATTR_INT}},
    {"bbcu_unit", OP_BBCU_UNIT, 3, {"name", "channels", "bias"}, {ATTR_STR, ATTR_INT, ATTR_BOOL}},
    {"bbcu_upsample", OP_BBCU_UPSAMPLE, 4, {"name", "channels", "scale", "bias"},
     {ATTR_STR, ATTR_INT, ATTR_INT, ATTR_BOOL}},
    {"add_bilinear_skip", OP_ADD_BILINEAR_SKIP, 1, {"scale"}, {ATTR_INT}},
    {"subtract_from_skip", OP_SUBTRACT_FROM_SKIP, 0, {0}, {0}},
    {"output_scale", OP_OUTPUT_SCALE, 0, {0}, {0}},
};

static const char *const ATTR_TYPE_NAMES[] = {"str", "int", "float", "bool"};

static int attr_ok(const JsonValue *v, AttrType type)
{
    switch (type) {
    case ATTR_STR:
        return v->type == JSON_STRING;
    case ATTR_INT:
        return v->type == JSON_NUMBER && v->is_integer && v->integer >= 1;
    case ATTR_FLOAT:
        return v->type == JSON_NUMBER && isfinite(v->number);
    default:
        return v->type == JSON_BOOL;
    }
}

/* The op's kind, with exactly its attributes, each of its JSON type (ints positive). */
static const OpSpec *check_op(Loader *l, int index, const JsonValue *op)
{
    const JsonValue *kind = json_get(op, "op");
    const OpSpec *spec = NULL;
    for (size_t i = 0; kind && kind->type == JSON_STRING && i < sizeof OP_SPECS / sizeof *OP_SPECS; i++)
        if (strcmp(kind->string, OP_SPECS[i].name) == 0)
            spec = &OP_SPECS[i];
    if (!spec) {
        FAIL(l, "%s: graph op %d: unknown operation", l->where, index);
        return NULL;
    }
    if (op->count != (size_t)spec->attr_count + 1) {
        FAIL(l, "%s: graph op %d (%s): has %zu attributes, expected %d", l->where, index, spec->name, op->count - 1,
             spec->attr_count);
        return NULL;
    }
    for (int i = 0; i < spec->attr_count; i++) {
        const JsonValue *v = json_get(op, spec->attrs[i]);
        if (!v) {
            FAIL(l, "%s: graph op %d (%s): attribute %s missing", l->where, index, spec->name, spec->attrs[i]);
            return NULL;
        }
        if (!attr_ok(v, spec->types[i])) {
            FAIL(l, "%s: graph op %d (%s): attribute %s is not a valid %s", l->where, index, spec->name,
                 spec->attrs[i], ATTR_TYPE_NAMES[spec->types[i]]);
            return NULL;
        }
    }
    return spec;
}

static long attr_int(const JsonValue *op, const char *key)
{
    const JsonValue *v = json_get(op, key);
    return v ? (long)(v->integer > 1L << 30 ? 1L << 30 : v->integer) : 0;
}

/* Fills the geometry of model->ops[index] and checks it against the features arriving (channels at
 * upscaling `upscaled`), as _check_graph does. */
static bbcu_status check_geometry(Loader *l, int index, const JsonValue *j, Op *op, int channels, int upscaled)
{
    const char *name = OP_SPECS[0].name;
    for (size_t i = 0; i < sizeof OP_SPECS / sizeof *OP_SPECS; i++)
        if (OP_SPECS[i].kind == op->kind)
            name = OP_SPECS[i].name;
    const long in = json_get(j, "in_channels") ? attr_int(j, "in_channels")
                    : json_get(j, "channels")  ? attr_int(j, "channels")
                                               : channels;
    const long scale = json_get(j, "scale") ? attr_int(j, "scale") : 1;
    const long out = op->kind == OP_CONV ? attr_int(j, "out_channels") : in;
    if (in > BBCU_MAX_CHANNELS || out > BBCU_MAX_CHANNELS || scale > BBCU_MAX_SCALE)
        return FAIL(l, "%s: graph op %d (%s): channels or scale beyond this runtime's limits (%d, %d)", l->where,
                    index, name, BBCU_MAX_CHANNELS, BBCU_MAX_SCALE);
    if (in != channels || (op->kind == OP_PIXEL_SHUFFLE && channels % (scale * scale)))
        return FAIL(l, "%s: graph op %d (%s): expects %ld channels but receives %d", l->where, index, name, in,
                    channels);
    if ((op->kind == OP_ADD_BILINEAR_SKIP || op->kind == OP_SUBTRACT_FROM_SKIP)
        && (channels != l->model->in_channels || scale != upscaled))
        return FAIL(l, "%s: graph op %d (%s): combines the %d-channel input resized x%ld with %d-channel features "
                    "upscaled x%d", l->where, index, name, l->model->in_channels, scale, channels, upscaled);
    op->in_channels = (int)in;
    op->out_channels = op->kind == OP_PIXEL_SHUFFLE ? (int)(in / (scale * scale)) : (int)out;
    op->scale = (int)scale;
    const JsonValue *slope = json_get(j, "slope");
    op->slope = slope ? (float)slope->number : 0.0f;
    if (!isfinite(op->slope))
        return FAIL(l, "%s: graph op %d (leaky_relu): slope is not finite", l->where, index);
    return BBCU_OK;
}

static bbcu_status check_names(Loader *l)
{
    for (size_t i = 0; i < l->graph.count; i++) {
        const JsonValue *a = json_get(&l->graph.items[i], "name");
        for (size_t j = 0; a && j < i; j++) {
            const JsonValue *b = json_get(&l->graph.items[j], "name");
            if (b && strcmp(a->string, b->string) == 0)
                return FAIL(l, "%s: graph op names repeated: %.80s", l->where, a->string);
        }
    }
    return BBCU_OK;
}

static bbcu_status check_graph(Loader *l)
{
    bbcu_model *m = l->model;
    if (l->graph.count < 1 || l->graph.count > MAX_OPS)
        return FAIL(l, "%s: graph has %zu operations (1 to %d)", l->where, l->graph.count, MAX_OPS);
    m->ops = calloc(l->graph.count, sizeof *m->ops);
    if (!m->ops)
        return bbcu_fail(l->error, BBCU_ERROR_MEMORY, "%s: out of memory", l->where);
    m->op_count = (int)l->graph.count;
    int channels = m->in_channels, upscaled = 1, inputs = 0, outputs = 0;
    for (int i = 0; i < m->op_count; i++) {
        const JsonValue *j = &l->graph.items[i];
        const OpSpec *spec = j->type == JSON_OBJECT ? check_op(l, i, j) : NULL;
        if (!spec)
            return j->type == JSON_OBJECT ? BBCU_ERROR_FORMAT : FAIL(l, "%s: graph op %d: unknown operation", l->where, i);
        m->ops[i].kind = spec->kind;
        bbcu_status status = check_geometry(l, i, j, &m->ops[i], channels, upscaled);
        if (status)
            return status;
        channels = m->ops[i].out_channels;
        if (spec->kind == OP_PIXEL_SHUFFLE || spec->kind == OP_BBCU_UPSAMPLE) {
            upscaled *= m->ops[i].scale;
            if (upscaled > BBCU_MAX_SCALE)
                return FAIL(l, "%s: graph upscales by more than %d", l->where, BBCU_MAX_SCALE);
        }
        inputs += spec->kind == OP_INPUT_SCALE;
        outputs += spec->kind == OP_OUTPUT_SCALE;
    }
    if (channels != m->out_channels)
        return FAIL(l, "%s: graph produces %d channels, metadata says %d", l->where, channels, m->out_channels);
    if (upscaled != m->scale)
        return FAIL(l, "%s: graph upscales by %d, metadata scale says %d", l->where, upscaled, m->scale);
    if (m->ops[0].kind != OP_INPUT_SCALE || inputs != 1)
        return FAIL(l, "%s: graph must begin with its only input_scale", l->where);
    if (m->ops[m->op_count - 1].kind != OP_OUTPUT_SCALE || outputs != 1)
        return FAIL(l, "%s: graph must end with its only output_scale", l->where);
    return check_names(l);
}

/* ------------------------------------------------------------------ the tensors */

static Tensor *find_tensor(Loader *l, const char *name)
{
    for (size_t i = 0; i < l->tensor_count; i++)
        if (strcmp(l->tensors[i].name, name) == 0)
            return &l->tensors[i];
    return NULL;
}

/* The tensor "<op>.<field>", checked for dtype and shape, copied into a new aligned buffer. */
static bbcu_status take(Loader *l, const char *op, const char *field, Dtype dtype, int ndim, const int64_t *shape,
                        void **out)
{
    char name[512];
    snprintf(name, sizeof name, "%s.%s", op, field);
    Tensor *t = find_tensor(l, name);
    if (!t)
        return FAIL(l, "%s: missing tensors %.200s", l->where, name);
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same)
        return FAIL(l, "%s: tensor %.200s has the wrong dtype or shape", l->where, name);
    t->used = 1;
    *out = malloc(t->bytes ? t->bytes : 1);
    if (!*out)
        return bbcu_fail(l->error, BBCU_ERROR_MEMORY, "%s: out of memory", l->where);
    memcpy(*out, t->data, t->bytes);
    if (dtype == DTYPE_F32)
        for (size_t i = 0; i < t->bytes / 4; i++)
            if (!isfinite(((const float *)*out)[i])) {
                free(*out);
                *out = NULL;
                return FAIL(l, "%s: tensor %.200s holds a non-finite value at index %zu", l->where, name, i);
            }
    return BBCU_OK;
}

/* A conv's weight (O, C, 3, 3) re-laid as (3, 3, C, O) for the float kernel, and its bias. */
static bbcu_status take_conv(Loader *l, const char *name, int has_bias, Op *op)
{
    const int c = op->in_channels, o = op->out_channels;
    const int64_t shape[4] = {o, c, 3, 3}, bias_shape[1] = {o};
    float *stored;
    bbcu_status status = take(l, name, "weight", DTYPE_F32, 4, shape, (void **)&stored);
    if (status)
        return status;
    const int few = bbcu_few_outputs(c, o), blocks = (o + BBCU_CONV_BLOCK - 1) / BBCU_CONV_BLOCK;
    op->weight = calloc((size_t)9 * c * (few ? o : blocks * BBCU_CONV_BLOCK), sizeof(float));
    if (!op->weight) {
        free(stored);
        return bbcu_fail(l->error, BBCU_ERROR_MEMORY, "%s: out of memory", l->where);
    }
    for (int oc = 0; oc < o; oc++)
        for (int ic = 0; ic < c; ic++)
            for (int tap = 0; tap < 9; tap++) {
                const int block = oc / BBCU_CONV_BLOCK, j = oc % BBCU_CONV_BLOCK;
                const size_t at = few ? ((size_t)oc * 9 + tap) * c + ic
                                      : (((size_t)block * 9 + tap) * c + ic) * BBCU_CONV_BLOCK + j;
                op->weight[at] = stored[((size_t)oc * c + ic) * 9 + tap];
            }
    free(stored);
    return has_bias ? take(l, name, "bias", DTYPE_F32, 1, bias_shape, (void **)&op->bias) : BBCU_OK;
}

/* Reorders rows of `row` elements from stored output channel j * parts + r to part r, channel j. */
static bbcu_status to_parts(Loader *l, void *data, int outputs, int parts, size_t row)
{
    unsigned char *stored = data, *copy = malloc((size_t)outputs * row);
    if (!copy)
        return bbcu_fail(l->error, BBCU_ERROR_MEMORY, "%s: out of memory", l->where);
    const int per_part = outputs / parts;
    for (int r = 0; r < parts; r++)
        for (int j = 0; j < per_part; j++)
            memcpy(copy + ((size_t)r * per_part + j) * row, stored + ((size_t)j * parts + r) * row, row);
    memcpy(stored, copy, (size_t)outputs * row);
    free(copy);
    return BBCU_OK;
}

static bbcu_status check_padding_bits(Loader *l, const char *name, const uint64_t *bits, int rows, int channels)
{
    const int cw = bbcu_channel_words(channels);
    if (channels % 64 == 0)
        return BBCU_OK;
    const uint64_t padding = ~((UINT64_C(1) << (channels % 64)) - 1);
    for (size_t i = 0; i < (size_t)rows; i++)
        if (bits[i * cw + cw - 1] & padding)
            return FAIL(l, "%s: tensor %.200s.weight_bits has bits set beyond its channel count", l->where, name);
    return BBCU_OK;
}

static bbcu_status take_binary(Loader *l, const char *name, int has_bias, Op *op)
{
    const int c = op->in_channels, parts = op->kind == OP_BBCU_UPSAMPLE ? op->scale * op->scale : 1;
    const int outputs = c * parts, cw = bbcu_channel_words(c);
    const int64_t shift_shape[1] = {c}, per_output[1] = {outputs}, bits_shape[4] = {outputs, 3, 3, cw};
    float **fields[5] = {&op->alpha, &op->gamma, &op->beta, &op->zeta, &op->binary_bias};
    static const char *const names[5] = {"alpha", "gamma", "beta", "zeta", "bias"};
    op->parts = parts;
    bbcu_status status = take(l, name, "shift", DTYPE_F32, 1, shift_shape, (void **)&op->shift);
    if (!status)
        status = take(l, name, "weight_bits", DTYPE_U64, 4, bits_shape, (void **)&op->bits);
    if (!status)
        status = check_padding_bits(l, name, op->bits, outputs * 9, c);
    if (!status)
        status = to_parts(l, op->bits, outputs, parts, (size_t)9 * cw * sizeof(uint64_t));
    for (int i = 0; i < 4 + has_bias && !status; i++) {
        status = take(l, name, names[i], DTYPE_F32, 1, per_output, (void **)fields[i]);
        if (!status)
            status = to_parts(l, *fields[i], outputs, parts, sizeof(float));
    }
    return status;
}

static bbcu_status take_tensors(Loader *l)
{
    for (int i = 0; i < l->model->op_count; i++) {
        const JsonValue *j = &l->graph.items[i], *name = json_get(j, "name"), *bias = json_get(j, "bias");
        Op *op = &l->model->ops[i];
        bbcu_status status = BBCU_OK;
        if (op->kind == OP_CONV)
            status = take_conv(l, name->string, bias->boolean, op);
        else if (op->kind == OP_BBCU_UNIT || op->kind == OP_BBCU_UPSAMPLE)
            status = take_binary(l, name->string, bias->boolean, op);
        if (status)
            return status;
    }
    for (size_t i = 0; i < l->tensor_count; i++)
        if (!l->tensors[i].used)
            return FAIL(l, "%s: unexpected tensors %.200s", l->where, l->tensors[i].name);
    return BBCU_OK;
}

/* ------------------------------------------------------------------ derived facts */

/* An op's multiply-adds per input pixel of the network, at `upscaled` times its resolution (binary
 * ones at BBCU_BINARY_MAC_WORK each); 0 for the ops that do none. */
static double op_work(const Op *op, long upscaled)
{
    const double pixels = (double)upscaled * upscaled;
    if (op->kind == OP_CONV)
        return pixels * 9 * op->in_channels * op->out_channels;
    if (op->kind == OP_BBCU_UNIT || op->kind == OP_BBCU_UPSAMPLE)
        return pixels * 9 * op->in_channels * op->in_channels * op->parts * BBCU_BINARY_MAC_WORK;
    return 0.0;
}

/* The facts tiling and progress need. How far an output pixel's input reaches, in input pixels: each
 * 3x3 conv adds one pixel of its own resolution (1 / upscaling so far input pixels), the bilinear skip
 * one more, counted in units of 1 / (product of all scales) so it is exact; the largest feature map
 * that exists whole; each op's work. */
static void measure(bbcu_model *m)
{
    long reach = 0, upscaled = 1, floats = m->in_channels;
    int tail = 0, tail_left = 0; /* a banded tail's ops, those still to come: only its input and output exist whole */
    for (int i = 0; i < m->op_count; i++) {
        Op *op = &m->ops[i];
        if (!tail_left && (tail = bbcu_banded_tail(m, i)))
            tail_left = tail;
        const long before = (long)op->in_channels * upscaled * upscaled;
        if (op->kind == OP_CONV || op->kind == OP_BBCU_UNIT || op->kind == OP_BBCU_UPSAMPLE)
            reach += m->scale / upscaled;
        op->work = op_work(op, upscaled);
        m->work += op->work;
        if (op->kind == OP_PIXEL_SHUFFLE || op->kind == OP_BBCU_UPSAMPLE)
            upscaled *= op->scale;
        const long after = (long)op->out_channels * upscaled * upscaled;
        if (!tail_left || tail_left == tail)
            floats = before > floats ? before : floats;
        if (!tail_left || tail_left == 1)
            floats = after > floats ? after : floats;
        tail_left -= tail_left > 0;
    }
    m->radius = (int)((reach + m->scale - 1) / m->scale) + 1;
    m->floats_per_pixel = (int)floats; /* floats per input pixel of the largest feature map */
}

/* Whether ops i .. i + count - 1 are of these kinds. */
static int kinds_at(const bbcu_model *m, int i, const OpKind *kinds, int count)
{
    for (int k = 0; k < count; k++)
        if (i + k >= m->op_count || m->ops[i + k].kind != kinds[k])
            return 0;
    return 1;
}

/* The ops of a full-precision tail from op i: upsamplers (conv, pixel_shuffle, leaky_relu each), then
 * conv, leaky_relu, conv (BBCU-L's conv_hr and conv_last); 0 when there is none. */
static int full_tail_length(const bbcu_model *m, int i)
{
    static const OpKind upsampler[3] = {OP_CONV, OP_PIXEL_SHUFFLE, OP_LEAKY_RELU};
    static const OpKind end[3] = {OP_CONV, OP_LEAKY_RELU, OP_CONV};
    int upsamplers = 0;
    while (upsamplers < BBCU_MAX_TAIL_STAGES - 1 && kinds_at(m, i + 3 * upsamplers, upsampler, 3))
        upsamplers++;
    return upsamplers && kinds_at(m, i + 3 * upsamplers, end, 3) ? 3 * upsamplers + 3 : 0;
}

/* The ops of a binary tail from op i: bbcu_upsamples, then bbcu_unit, leaky_relu, conv (BBCU-M's
 * conv_hr and conv_last); 0 when there is none. */
static int binary_tail_length(const bbcu_model *m, int i)
{
    static const OpKind end[3] = {OP_BBCU_UNIT, OP_LEAKY_RELU, OP_CONV};
    int upsamplers = 0;
    while (upsamplers < BBCU_MAX_TAIL_STAGES && i + upsamplers < m->op_count
           && m->ops[i + upsamplers].kind == OP_BBCU_UPSAMPLE)
        upsamplers++;
    return upsamplers && kinds_at(m, i + upsamplers, end, 3) ? upsamplers + 3 : 0;
}

int bbcu_banded_tail(const bbcu_model *m, int i)
{
    const int binary = binary_tail_length(m, i), count = binary ? binary : full_tail_length(m, i);
    if (!count)
        return 0;
    const Op *last = &m->ops[i + count - 1];
    return bbcu_few_outputs(last->in_channels, last->out_channels) ? count : 0;
}

/* ------------------------------------------------------------------ entry points */

void bbcu_free(bbcu_model *model)
{
    if (!model)
        return;
    for (int i = 0; i < model->op_count; i++) {
        Op *op = &model->ops[i];
        free(op->weight), free(op->bias), free(op->shift), free(op->bits);
        free(op->alpha), free(op->binary_bias), free(op->gamma), free(op->beta), free(op->zeta);
    }
    free(model->ops);
    free(model);
}

static bbcu_status load_bytes(const char *where, const unsigned char *data, size_t size, bbcu_model **model,
                              bbcu_error *error)
{
    Loader l = {where, error, {0}, {0}, {0}, NULL, 0, calloc(1, sizeof(bbcu_model))};
    bbcu_status status = l.model ? BBCU_OK : bbcu_fail(error, BBCU_ERROR_MEMORY, "%s: out of memory", where);
    if (!status)
        status = parse_container(&l, data, size);
    if (!status)
        status = parse_header(&l);
    if (!status)
        status = check_graph(&l);
    if (!status)
        status = take_tensors(&l);
    json_free(&l.header);
    json_free(&l.kwargs);
    json_free(&l.graph);
    free(l.tensors);
    if (status) {
        bbcu_free(l.model);
        return status;
    }
    measure(l.model);
    *model = l.model;
    if (error) {
        error->status = BBCU_OK;
        error->message[0] = '\0';
    }
    return BBCU_OK;
}

bbcu_status bbcu_load_memory(const void *data, size_t size, bbcu_model **model, bbcu_error *error)
{
    if (!model)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_load_memory: model is NULL");
    *model = NULL;
    if (!data && size)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_load_memory: data is NULL");
    return load_bytes("<memory>", data, size, model, error);
}

bbcu_status bbcu_load(const char *path, bbcu_model **model, bbcu_error *error)
{
    if (!model || !path)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_load: path and model must not be NULL");
    *model = NULL;
    FILE *file = fopen(path, "rb");
    if (!file)
        return bbcu_fail(error, BBCU_ERROR_IO, "%s: cannot open (%s)", path, strerror(errno));
    unsigned char *data = NULL;
    size_t size = 0, capacity = 0;
    bbcu_status status = BBCU_OK;
    for (;;) {
        if (size == capacity) {
            capacity = capacity ? 2 * capacity : 1 << 20;
            unsigned char *grown = capacity > MAX_FILE_BYTES ? NULL : realloc(data, capacity);
            if (!grown) {
                status = bbcu_fail(error, BBCU_ERROR_MEMORY, "%s: too large to load", path);
                break;
            }
            data = grown;
        }
        const size_t got = fread(data + size, 1, capacity - size, file);
        size += got;
        if (got == 0) {
            if (ferror(file))
                status = bbcu_fail(error, BBCU_ERROR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(file);
    if (!status)
        status = load_bytes(path, data, size, model, error);
    free(data);
    return status;
}

const char *bbcu_architecture(const bbcu_model *model) { return model->architecture; }
int bbcu_scale(const bbcu_model *model) { return model->scale; }
int bbcu_in_channels(const bbcu_model *model) { return model->in_channels; }
int bbcu_out_channels(const bbcu_model *model) { return model->out_channels; }
int bbcu_receptive_radius(const bbcu_model *model) { return model->radius; }
