/* table — the one printer of the admin CLI's human output: columns sized to their widest
 * cell, two spaces apart, the last column unpadded; an empty table prints a sentence that says
 * so instead of a lone header. Cells are copied and made safe for a terminal (control bytes
 * become '?'), since they carry strings nodes and agents chose. The process's main thread. */
#ifndef DROVER_CLI_TABLE_H
#define DROVER_CLI_TABLE_H
#include <stddef.h>
#include <stdio.h>

#include "base/err.h"

struct json_object;

enum {
    TABLE_MAX_COLS = 16,
    TABLE_MAX_CELL = 60, /* a wider cell is cut to this with "..." (not in the last column) */
};

struct table {
    const char *headers[TABLE_MAX_COLS]; /* borrowed (string literals); none: no header line */
    size_t n_cols;
    char **cells; /* owned; row-major, n_cells of them */
    size_t n_cells, cap_cells;
};

/* Starts a table of n_cols columns (1..TABLE_MAX_COLS; more are ignored). headers holds n_cols
 * borrowed names, or is NULL for a table without a header line (key/value listings). */
void table_init(struct table *t, const char *const *headers, size_t n_cols);
/* Adds the next cell, row by row; NULL or "" prints as "-". Copies s. */
void table_add(struct table *t, const char *s);
void table_addf(struct table *t, const char *fmt, ...) PRINTF_LIKE(2, 3);
size_t table_rows(const struct table *t);
/* Prints the table to f; when it has no rows prints empty_msg (and a newline) instead, or
 * nothing when empty_msg is NULL. A last row left incomplete is padded with "-". */
void table_print(const struct table *t, FILE *f, const char *empty_msg);
void table_free(struct table *t);

/* A JSON value as one cell: strings as they are, null as "-", arrays of scalars joined with
 * ",", arrays of objects by their "id" or "name" (else a count), objects as k=v pairs.
 * Writes into out (cap bytes, always terminated) and returns out. */
const char *table_json_cell(struct json_object *v, char *out, size_t cap);
/* Adds one KEY VALUE row per member of the object o to a two-column table; nested objects
 * become "prefix.key" rows (up to a depth of 3), everything else one cell by
 * table_json_cell. prefix may be NULL. */
void table_add_json_kv(struct table *t, const char *prefix, struct json_object *o);

#endif
