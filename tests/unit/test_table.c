/* test_table — the CLI's table printer: aligned columns, the empty-list sentence, cells cut
 * and sanitised, JSON values as cells. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json.h"
#include "base/mem.h"
#include "cli/table.h"

/* Prints t into a string (owned by the caller). */
static char *render(const struct table *t, const char *empty)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    assert_non_null(f);
    table_print(t, f, empty);
    fclose(f);
    return p;
}

static void test_columns_align(void **state)
{
    (void)state;
    static const char *const cols[] = {"NAME", "ADMIN", "MODELS"};
    struct table t;
    table_init(&t, cols, 3);
    table_add(&t, "gpu-long-name");
    table_add(&t, "approved");
    table_add(&t, "m1,m2");
    table_add(&t, "b");
    table_add(&t, NULL); /* absent prints as "-" */
    table_add(&t, "m3");
    assert_int_equal(table_rows(&t), 2);
    char *s = render(&t, "no nodes");
    assert_string_equal(s, "NAME           ADMIN     MODELS\n"
                           "gpu-long-name  approved  m1,m2\n"
                           "b              -         m3\n");
    xfree(s); /* open_memstream memory: xfree is free */
    table_free(&t);
}

static void test_empty_says_so(void **state)
{
    (void)state;
    static const char *const cols[] = {"ID", "NODE"};
    struct table t;
    table_init(&t, cols, 2);
    char *s = render(&t, "no operations");
    assert_string_equal(s, "no operations\n");
    xfree(s); /* open_memstream memory: xfree is free */
    s = render(&t, NULL);
    assert_string_equal(s, "");
    xfree(s); /* open_memstream memory: xfree is free */
    table_free(&t);
}

static void test_cells_cut_and_sanitised(void **state)
{
    (void)state;
    static const char *const cols[] = {"A", "B"};
    struct table t;
    table_init(&t, cols, 2);
    char longs[200];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    table_add(&t, longs);
    table_add(&t, "evil\x1b[2Jline\nbreak");
    table_addf(&t, "%d", 42); /* an incomplete last row is padded with "-" */
    char *s = render(&t, NULL);
    char *line2 = strchr(s, '\n') + 1;
    /* the first column is cut to TABLE_MAX_CELL with "..." */
    assert_memory_equal(line2 + TABLE_MAX_CELL - 3, "...  evil?[2Jline?break\n", 24);
    assert_non_null(strstr(s, "\n42"));
    assert_null(strchr(s, '\x1b'));
    xfree(s); /* open_memstream memory: xfree is free */
    table_free(&t);
}

static void test_json_cells_and_kv(void **state)
{
    (void)state;
    const char *doc = "{\"name\":\"n0\",\"labels\":{\"zone\":\"a\",\"gpu\":\"h100\"},"
                      "\"models\":[{\"id\":\"m1\"},{\"id\":\"m2\"}],\"aliases\":[],"
                      "\"last\":null,\"ok\":true,"
                      "\"discovery\":{\"engine\":{\"kind\":\"llamacpp\"},\"devices\":[1,2]}}";
    struct json_object *o = json_parse_strict(doc, strlen(doc), 8, NULL);
    assert_non_null(o);
    struct table t;
    table_init(&t, NULL, 2);
    table_add_json_kv(&t, NULL, o);
    char *s = render(&t, NULL);
    /* a nested record expands to dotted keys; a flat one (labels, engine) stays on one line */
    assert_string_equal(s, "name               n0\n"
                           "labels             zone=a,gpu=h100\n"
                           "models             m1,m2\n"
                           "aliases            -\n"
                           "last               -\n"
                           "ok                 true\n"
                           "discovery.engine   kind=llamacpp\n"
                           "discovery.devices  1,2\n");
    xfree(s); /* open_memstream memory: xfree is free */
    table_free(&t);
    char cell[8];
    struct json_object *m = NULL;
    assert_true(json_object_object_get_ex(o, "labels", &m));
    assert_string_equal(table_json_cell(m, cell, sizeof cell), "zone=a,"); /* cut, terminated */
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_align),
        cmocka_unit_test(test_empty_says_so),
        cmocka_unit_test(test_cells_cut_and_sanitised),
        cmocka_unit_test(test_json_cells_and_kv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
