/*
 * Recursive-descent JSON parser; see json.h for what it refuses and why.
 */
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_VALUES (1 << 20) /* bounds the memory a header can make the parser allocate */

typedef struct Parser {
    const char *text;
    size_t size, at;
    int depth;
    size_t values;
    char *error;
    size_t error_size;
} Parser;

static int fail(Parser *p, const char *format, ...)
{
    if (p->error_size) {
        char reason[160];
        va_list args;
        va_start(args, format);
        vsnprintf(reason, sizeof reason, format, args);
        va_end(args);
        snprintf(p->error, p->error_size, "invalid JSON at byte %zu: %s", p->at, reason);
    }
    return -1;
}

static void skip_space(Parser *p)
{
    while (p->at < p->size) {
        const char c = p->text[p->at];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        p->at++;
    }
}

static int peek(const Parser *p) { return p->at < p->size ? (unsigned char)p->text[p->at] : -1; }

static int expect_literal(Parser *p, const char *word)
{
    const size_t n = strlen(word);
    if (p->size - p->at < n || memcmp(p->text + p->at, word, n) != 0)
        return fail(p, "unexpected character");
    p->at += n;
    return 0;
}

/* ------------------------------------------------------------------ strings */

static int hex4(Parser *p, unsigned *out)
{
    if (p->size - p->at < 4)
        return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        const char c = p->text[p->at++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(p, "bad \\u escape");
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[0, n), or 0 (overlong forms and surrogates are invalid). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    unsigned cp, min;
    if ((s[0] & 0xE0) == 0xC0)
        len = 2, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0)
        len = 3, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0)
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int parse_escape(Parser *p, char *out, size_t *written)
{
    const char c = p->text[p->at++];
    static const char plain[] = "\"\\/bfnrt", meaning[] = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(plain, c) : NULL;
    if (hit) {
        *out = meaning[hit - plain];
        *written = 1;
        return 0;
    }
    if (c != 'u')
        return fail(p, "bad escape");
    unsigned cp;
    if (hex4(p, &cp))
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(p, "lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned low;
        if (p->size - p->at < 2 || p->text[p->at] != '\\' || p->text[p->at + 1] != 'u')
            return fail(p, "lone high surrogate");
        p->at += 2;
        if (hex4(p, &low))
            return -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return fail(p, "bad surrogate pair");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp == 0)
        return fail(p, "\\u0000 in a string");
    *written = put_utf8(cp, out);
    return 0;
}

/* Parses the string starting at the opening quote into a new NUL-terminated buffer. */
static int parse_string(Parser *p, char **out, size_t *length)
{
    p->at++; /* opening quote */
    size_t end = p->at;
    while (end < p->size && p->text[end] != '"')
        end += p->text[end] == '\\' ? 2 : 1;
    if (end >= p->size)
        return fail(p, "unterminated string");
    /* Decoded text is never longer than the raw text. */
    char *buffer = malloc(end - p->at + 1);
    if (!buffer)
        return fail(p, "out of memory");
    size_t n = 0;
    while (p->text[p->at] != '"') {
        const unsigned char c = (unsigned char)p->text[p->at];
        if (c < 0x20) {
            free(buffer);
            return fail(p, "control character in a string");
        }
        if (c == '\\') {
            size_t written = 0;
            p->at++;
            if (parse_escape(p, buffer + n, &written)) {
                free(buffer);
                return -1;
            }
            n += written;
            continue;
        }
        const size_t len = utf8_sequence((const unsigned char *)p->text + p->at, end - p->at);
        if (!len) {
            free(buffer);
            return fail(p, "invalid UTF-8 in a string");
        }
        memcpy(buffer + n, p->text + p->at, len);
        n += len;
        p->at += len;
    }
    p->at++; /* closing quote */
    buffer[n] = '\0';
    *out = buffer;
    *length = n;
    return 0;
}

/* ------------------------------------------------------------------ numbers */

static int digits(Parser *p)
{
    const size_t start = p->at;
    while (p->at < p->size && p->text[p->at] >= '0' && p->text[p->at] <= '9')
        p->at++;
    return p->at > start;
}

static int parse_number(Parser *p, JsonValue *v)
{
    const size_t start = p->at;
    if (peek(p) == '-')
        p->at++;
    if (peek(p) == '0') {
        p->at++;
        if (peek(p) >= '0' && peek(p) <= '9')
            return fail(p, "leading zero");
    } else if (!digits(p)) {
        return fail(p, "bad number");
    }
    int integer = 1;
    if (peek(p) == '.') {
        p->at++;
        integer = 0;
        if (!digits(p))
            return fail(p, "bad fraction");
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->at++;
        integer = 0;
        if (peek(p) == '+' || peek(p) == '-')
            p->at++;
        if (!digits(p))
            return fail(p, "bad exponent");
    }
    char literal[64];
    const size_t n = p->at - start;
    if (n >= sizeof literal)
        return fail(p, "number too long");
    memcpy(literal, p->text + start, n);
    literal[n] = '\0';
    v->type = JSON_NUMBER;
    v->number = strtod(literal, NULL);
    if (integer) {
        errno = 0;
        const long long parsed = strtoll(literal, NULL, 10);
        v->is_integer = errno == 0;
        v->integer = parsed;
    }
    return 0;
}

/* ------------------------------------------------------------------ values */

static int parse_value(Parser *p, JsonValue *v);

static int parse_array(Parser *p, JsonValue *v)
{
    v->type = JSON_ARRAY;
    p->at++;
    skip_space(p);
    if (peek(p) == ']') {
        p->at++;
        return 0;
    }
    size_t capacity = 0;
    for (;;) {
        if (v->count == capacity) {
            capacity = capacity ? 2 * capacity : 8;
            JsonValue *grown = realloc(v->items, capacity * sizeof *grown);
            if (!grown)
                return fail(p, "out of memory");
            v->items = grown;
        }
        memset(&v->items[v->count], 0, sizeof *v->items);
        v->count++;
        if (parse_value(p, &v->items[v->count - 1]))
            return -1;
        skip_space(p);
        if (peek(p) == ',') {
            p->at++;
            continue;
        }
        if (peek(p) == ']') {
            p->at++;
            return 0;
        }
        return fail(p, "expected ',' or ']'");
    }
}

static int parse_object(Parser *p, JsonValue *v)
{
    v->type = JSON_OBJECT;
    p->at++;
    skip_space(p);
    if (peek(p) == '}') {
        p->at++;
        return 0;
    }
    size_t capacity = 0;
    for (;;) {
        skip_space(p);
        if (peek(p) != '"')
            return fail(p, "expected a key");
        if (v->count == capacity) {
            capacity = capacity ? 2 * capacity : 8;
            JsonMember *grown = realloc(v->members, capacity * sizeof *grown);
            if (!grown)
                return fail(p, "out of memory");
            v->members = grown;
        }
        JsonMember *m = &v->members[v->count];
        memset(m, 0, sizeof *m);
        v->count++;
        size_t key_length;
        if (parse_string(p, &m->key, &key_length))
            return -1;
        for (size_t i = 0; i + 1 < v->count; i++)
            if (strcmp(v->members[i].key, m->key) == 0)
                return fail(p, "duplicate key \"%.60s\"", m->key);
        skip_space(p);
        if (peek(p) != ':')
            return fail(p, "expected ':'");
        p->at++;
        if (parse_value(p, &m->value))
            return -1;
        skip_space(p);
        if (peek(p) == ',') {
            p->at++;
            continue;
        }
        if (peek(p) == '}') {
            p->at++;
            return 0;
        }
        return fail(p, "expected ',' or '}'");
    }
}

static int parse_value(Parser *p, JsonValue *v)
{
    if (++p->values > MAX_VALUES)
        return fail(p, "more than %d values", MAX_VALUES);
    skip_space(p);
    const int c = peek(p);
    int status;
    if (c == '{' || c == '[') {
        if (++p->depth > MAX_DEPTH)
            return fail(p, "nested deeper than %d", MAX_DEPTH);
        status = c == '{' ? parse_object(p, v) : parse_array(p, v);
        p->depth--;
        return status;
    }
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->string, &v->length);
    }
    if (c == 't' || c == 'f') {
        v->type = JSON_BOOL;
        v->boolean = c == 't';
        return expect_literal(p, c == 't' ? "true" : "false");
    }
    if (c == 'n') {
        v->type = JSON_NULL;
        return expect_literal(p, "null");
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, v);
    return fail(p, c < 0 ? "unexpected end" : "unexpected character");
}

int json_parse(const char *text, size_t size, JsonValue *out, char *error, size_t error_size)
{
    Parser p = {text, size, 0, 0, 0, error, error_size};
    memset(out, 0, sizeof *out);
    if (parse_value(&p, out) == 0) {
        skip_space(&p);
        if (p.at == p.size)
            return 0;
        fail(&p, "text after the value");
    }
    json_free(out);
    return -1;
}

void json_free(JsonValue *value)
{
    for (size_t i = 0; value->type == JSON_ARRAY && i < value->count; i++)
        json_free(&value->items[i]);
    for (size_t i = 0; value->type == JSON_OBJECT && i < value->count; i++) {
        free(value->members[i].key);
        json_free(&value->members[i].value);
    }
    free(value->items);
    free(value->members);
    free(value->string);
    memset(value, 0, sizeof *value);
}

const JsonValue *json_get(const JsonValue *value, const char *key)
{
    if (value->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < value->count; i++)
        if (strcmp(value->members[i].key, key) == 0)
            return &value->members[i].value;
    return NULL;
}
