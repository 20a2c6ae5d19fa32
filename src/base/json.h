/* json — strict json-c wrapper. API bodies are parsed in strict mode with UTF-8 validation,
 * a depth cap and no trailing bytes; getters are typed and tell "absent" (GW_E_NOTFOUND) from
 * "wrong type" (GW_E_INVALID). Objects returned by the getters are borrowed from their
 * parent; the caller puts the root once (json_object_put). Any thread, one object tree per
 * thread. */
#ifndef DROVER_BASE_JSON_H
#define DROVER_BASE_JSON_H
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"

enum { JSON_DEFAULT_MAX_DEPTH = 64 };

/* Parses exactly len bytes as one JSON value. Returns owned root, or NULL with err filled
 * (GW_E_PARSE for syntax, bad UTF-8, NUL bytes or trailing bytes; GW_E_DEPTH past max_depth).
 * Only RFC 8259 JSON is taken: no NaN/Infinity, single quotes, comments or raw control bytes in
 * strings. max_depth counts nesting levels ("[[]]" is 2). A bare top-level null is refused
 * (GW_E_INVALID): NULL means an error here. */
struct json_object *json_parse_strict(const char *p, size_t len, int max_depth,
                                      struct gw_error *err);

/* Typed getters on an object's member. out is untouched on error. */
int json_get_str(struct json_object *o, const char *key, struct strv *out) WUR; /* borrowed */
int json_get_int(struct json_object *o, const char *key, int64_t *out) WUR;     /* integers only */
int json_get_num(struct json_object *o, const char *key, double *out) WUR;      /* int or double */
int json_get_bool(struct json_object *o, const char *key, bool *out) WUR;
int json_get_obj(struct json_object *o, const char *key, struct json_object **out) WUR;
int json_get_arr(struct json_object *o, const char *key, struct json_object **out) WUR;
/* True if key is present with JSON null. */
bool json_is_null(struct json_object *o, const char *key);

/* Appends s as a JSON string literal (with quotes) to out; GW_E_LIMIT past out's cap. */
struct buf;
int json_append_str(struct buf *out, const char *s, size_t len) WUR;
/* The same literal written at dst, which has room for json_str_len(s, len) bytes; returns
 * that many (no NUL). For writers that reserve an output's bytes once and fill them in place. */
size_t json_str_len(const char *s, size_t len);
size_t json_put_str(char *dst, const char *s, size_t len);

/* In a JSON text already validated by json_parse_strict whose root is an object, finds the
 * top-level member key (no escapes in the key) and gives the byte span [start, end) of its
 * value, quotes included, when that value is a string. GW_E_NOTFOUND when absent,
 * GW_E_INVALID when not a string. Used to rewrite one value without re-serialising the rest. */
int json_top_string_span(const char *p, size_t len, const char *key, size_t *start,
                         size_t *end) WUR;

/* json_reader — an allocation-free pull reader for hot paths that need a few members of a
 * body, not a tree (request validation). Same rules as json_parse_strict: RFC 8259 only, UTF-8
 * checked (no overlong forms, no surrogates), no raw control bytes or NUL in strings, no NUL
 * in member names (\u0000), max_depth nesting levels, nothing but whitespace after the value.
 * Every call validates what it passes over; an error (GW_E_PARSE, GW_E_DEPTH) is final and
 * fills err. Strings come out decoded (escapes resolved, UTF-8; a lone \u surrogate becomes
 * U+FFFD): dst gets at most cap bytes, *len the full decoded length. */
enum json_kind {
    JSON_K_NULL,
    JSON_K_BOOL,
    JSON_K_INT, /* a number without fraction or exponent */
    JSON_K_DOUBLE,
    JSON_K_STRING,
    JSON_K_ARRAY,
    JSON_K_OBJECT,
};
struct json_reader {
    const char *p;
    size_t len, pos;
    int depth, max_depth;
    bool fresh; /* just entered a container: no member or element read yet */
    struct gw_error *err;
};
void json_reader_init(struct json_reader *r, const char *p, size_t len, int max_depth,
                      struct gw_error *err);
/* The kind of the next value (whitespace skipped), without consuming it. */
int json_reader_peek(struct json_reader *r, enum json_kind *kind) WUR;
/* Passes over one whole value, checking all of it. */
int json_reader_skip(struct json_reader *r) WUR;
/* Reads a string value (GW_E_PARSE "not a string" otherwise); dst may be NULL. */
int json_reader_string(struct json_reader *r, char *dst, size_t cap, size_t *len) WUR;
int json_reader_bool(struct json_reader *r, bool *out) WUR;
/* Consumes the '{' or '[' of the next value (kind says which is expected). */
int json_reader_enter(struct json_reader *r, enum json_kind kind) WUR;
/* In the object entered last: *more false at its '}' (the object is left); otherwise the next
 * member's name (decoded as above) and its ':' are consumed, and its value is next. */
int json_reader_member(struct json_reader *r, char *name, size_t cap, size_t *name_len,
                       bool *more) WUR;
/* In the array entered last: *more false at its ']' (left); otherwise an element is next. */
int json_reader_element(struct json_reader *r, bool *more) WUR;
/* Only whitespace may be left. */
int json_reader_end(struct json_reader *r) WUR;

#endif
