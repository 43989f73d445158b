/*
 * A small, strict JSON parser (RFC 8259) for the one place libbbcu reads JSON: a .bbcu file's header.
 *
 * The header comes from a file that may be hostile, so the parser bounds what it will build (nesting
 * depth, number of values) and refuses anything RFC 8259 does not allow: trailing commas, NaN or
 * Infinity, leading zeros, control characters or invalid UTF-8 in strings, lone surrogates, duplicate
 * object keys, and text after the value.
 */
#ifndef BBCU_RUNTIME_JSON_H
#define BBCU_RUNTIME_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum JsonType { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue JsonValue;
typedef struct JsonMember JsonMember;

struct JsonValue {
    JsonType type;
    int boolean;        /* JSON_BOOL */
    double number;      /* JSON_NUMBER */
    int is_integer;     /* JSON_NUMBER written without fraction or exponent, and within int64 */
    int64_t integer;    /* its value when is_integer */
    char *string;       /* JSON_STRING: decoded UTF-8, NUL-terminated */
    size_t length;      /* JSON_STRING: bytes (the string holds no NUL: \u0000 is refused) */
    JsonValue *items;   /* JSON_ARRAY */
    JsonMember *members; /* JSON_OBJECT, in file order */
    size_t count;       /* items or members */
};

struct JsonMember {
    char *key;
    JsonValue value;
};

/* Parses text[0, size) into *out. Returns 0, or -1 with a one-line reason in error[error_size]. */
int json_parse(const char *text, size_t size, JsonValue *out, char *error, size_t error_size);

/* Frees what json_parse built inside value (not value itself). */
void json_free(JsonValue *value);

/* The member `key` of an object, or NULL (also when value is not an object). */
const JsonValue *json_get(const JsonValue *value, const char *key);

#endif
