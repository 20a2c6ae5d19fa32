/* table — aligned text tables for the admin CLI (`drover nodes`, `models`, `ops`). Every
 * command builds its rows here and prints them once, so widths, the empty-list sentence and
 * the sanitising of cells (control bytes from node-chosen strings never reach a terminal)
 * are decided in one place. The process's main thread. */
#include "cli/table.h"

#include <stdarg.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"

void table_init(struct table *t, const char *const *headers, size_t n_cols)
{
    memset(t, 0, sizeof *t);
    if (n_cols == 0) n_cols = 1;
    if (n_cols > TABLE_MAX_COLS) n_cols = TABLE_MAX_COLS;
    t->n_cols = n_cols;
    for (size_t i = 0; headers && i < n_cols; i++) t->headers[i] = headers[i];
}

void table_add(struct table *t, const char *s)
{
    if (!s || !*s) s = "-";
    if (t->n_cells == t->cap_cells) {
        t->cap_cells = t->cap_cells ? 2 * t->cap_cells : 64;
        t->cells = xrealloc(t->cells, t->cap_cells * sizeof *t->cells);
    }
    char *c = xstrdup(s);
    for (unsigned char *p = (unsigned char *)c; *p; p++)
        if (*p < 0x20 || *p == 0x7f) *p = '?';
    t->cells[t->n_cells++] = c;
}

void table_addf(struct table *t, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) tmp[0] = '\0';
    table_add(t, tmp);
}

size_t table_rows(const struct table *t)
{
    return (t->n_cells + t->n_cols - 1) / t->n_cols;
}

/* Printed width of a cell: its bytes, cut to TABLE_MAX_CELL except in the last column. */
static size_t cell_width(const char *s, bool last)
{
    size_t n = strlen(s);
    return !last && n > TABLE_MAX_CELL ? TABLE_MAX_CELL : n;
}

static void print_cell(FILE *f, const char *s, size_t width, bool last)
{
    size_t n = strlen(s);
    if (last) {
        fputs(s, f);
        return;
    }
    if (n > TABLE_MAX_CELL) {
        fprintf(f, "%.*s...", TABLE_MAX_CELL - 3, s);
        n = TABLE_MAX_CELL;
    } else {
        fputs(s, f);
    }
    for (size_t i = n; i < width + 2; i++) fputc(' ', f);
}

void table_print(const struct table *t, FILE *f, const char *empty_msg)
{
    size_t rows = table_rows(t);
    if (rows == 0) {
        if (empty_msg) fprintf(f, "%s\n", empty_msg);
        return;
    }
    size_t width[TABLE_MAX_COLS] = {0};
    bool header = t->headers[0] != NULL;
    for (size_t c = 0; c < t->n_cols; c++) {
        bool last = c + 1 == t->n_cols;
        if (header) width[c] = cell_width(t->headers[c] ? t->headers[c] : "", last);
        for (size_t r = 0; r < rows; r++) {
            size_t i = r * t->n_cols + c;
            size_t w = cell_width(i < t->n_cells ? t->cells[i] : "-", last);
            if (w > width[c]) width[c] = w;
        }
    }
    if (header) {
        for (size_t c = 0; c < t->n_cols; c++)
            print_cell(f, t->headers[c] ? t->headers[c] : "", width[c], c + 1 == t->n_cols);
        fputc('\n', f);
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            size_t i = r * t->n_cols + c;
            print_cell(f, i < t->n_cells ? t->cells[i] : "-", width[c], c + 1 == t->n_cols);
        }
        fputc('\n', f);
    }
}

void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n_cells; i++) xfree(t->cells[i]);
    xfree(t->cells);
    memset(t, 0, sizeof *t);
}

/* Appends s to out at *used, keeping out terminated; false once it is full. */
static bool put(char *out, size_t cap, size_t *used, const char *s)
{
    int w = snprintf(out + *used, cap - *used, "%s", s);
    if (w < 0 || (size_t)w >= cap - *used) {
        *used = cap - 1;
        return false;
    }
    *used += (size_t)w;
    return true;
}

static const char *scalar(struct json_object *v)
{
    if (!v || json_object_is_type(v, json_type_null)) return "-";
    if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

const char *table_json_cell(struct json_object *v, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    if (cap < 2) return out;
    if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            const char *s = scalar(e);
            if (json_object_is_type(e, json_type_object)) {
                struct json_object *id = NULL;
                if (!json_object_object_get_ex(e, "id", &id) &&
                    !json_object_object_get_ex(e, "name", &id)) {
                    snprintf(out, cap, "%zu items", n);
                    return out;
                }
                s = scalar(id);
            }
            ok = (i == 0 || put(out, cap, &used, ",")) && put(out, cap, &used, s);
        }
        if (n == 0) put(out, cap, &used, "-");
        return out;
    }
    if (json_object_is_type(v, json_type_object)) {
        bool ok = true, any = false;
        json_object_object_foreach(v, k, e)
        {
            if (!ok) break;
            ok = (!any || put(out, cap, &used, ",")) && put(out, cap, &used, k) &&
                 put(out, cap, &used, "=") && put(out, cap, &used, scalar(e));
            any = true;
        }
        if (!any) put(out, cap, &used, "-");
        return out;
    }
    put(out, cap, &used, scalar(v));
    return out;
}

static void kv_rows(struct table *t, const char *prefix, struct json_object *o, int depth)
{
    json_object_object_foreach(o, k, v)
    {
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k);
        if (json_object_is_type(v, json_type_object) && depth < 3 &&
            json_object_object_length(v) > 0) {
            /* labels and selectors read best as k=v on one line; deeper records expand */
            bool flat = true;
            json_object_object_foreach(v, k2, v2)
            {
                (void)k2;
                flat = flat && !json_object_is_type(v2, json_type_object) &&
                       !json_object_is_type(v2, json_type_array);
            }
            if (!flat || json_object_object_length(v) > 8) {
                kv_rows(t, key, v, depth + 1);
                continue;
            }
        }
        char cell[1024];
        table_add(t, key);
        table_add(t, table_json_cell(v, cell, sizeof cell));
    }
}

void table_add_json_kv(struct table *t, const char *prefix, struct json_object *o)
{
    if (o && json_object_is_type(o, json_type_object)) kv_rows(t, prefix, o, 0);
}
