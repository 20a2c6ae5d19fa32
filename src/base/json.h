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

/* In a JSON text already validated by json_parse_strict whose root is an object, finds the
 * top-level member key (no escapes in the key) and gives the byte span [start, end) of its
 * value, quotes included, when that value is a string. GW_E_NOTFOUND when absent,
 * GW_E_INVALID when not a string. Used to rewrite one value without re-serialising the rest. */
int json_top_string_span(const char *p, size_t len, const char *key, size_t *start,
                         size_t *end) WUR;

#endif
