/* The catalogue (DESIGN §6): one validator that names the refused field, a JSON form that
 * reads back to the same entry, lookups by id before alias, replace/remove, name clashes
 * between entries, and selectors against node labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "base/json.h"
#include "gw/catalogue.h"

static int from(const char *text, struct cat_model **out, char *field, char *why)
{
    struct json_object *o = json_parse_strict(text, strlen(text), 16, NULL);
    assert_non_null(o);
    int rc = cat_model_from_json(o, out, field, 64, why, 160);
    json_object_put(o);
    return rc;
}

static struct cat_model *ok(const char *text)
{
    struct cat_model *m = NULL;
    char field[64] = "", why[160] = "";
    int rc = from(text, &m, field, why);
    if (rc) fail_msg("refused %s: field=%s why=%s", text, field, why);
    assert_non_null(m);
    return m;
}

static void test_full_entry_round_trip(void **state)
{
    (void)state;
    struct cat_model *m =
        ok("{\"id\":\"llama-3-8b\",\"aliases\":[\"llama3\",\"l3\"],\"engine\":\"vllm\","
           "\"capabilities\":[\"chat\",\"completions\"],\"min_devices\":2,\"min_vram_mb\":40000,"
           "\"selector\":{\"gpu\":\"a100\",\"zone\":\"eu\"},\"replicas\":{\"min\":1,\"max\":3},"
           "\"pinned\":true,\"load_options\":{\"ctx\":8192}}");
    assert_string_equal(m->id, "llama-3-8b");
    assert_int_equal(m->n_aliases, 2);
    assert_int_equal(m->engine, NODE_KIND_VLLM);
    assert_int_equal(m->caps, CAP_CHAT | CAP_COMPLETIONS);
    assert_int_equal(m->min_devices, 2);
    assert_int_equal(m->min_vram_mb, 40000);
    assert_int_equal(m->n_selector, 2);
    assert_int_equal(m->replicas_min, 1);
    assert_int_equal(m->replicas_max, 3);
    assert_true(m->pinned);
    assert_non_null(m->load_options_json);

    /* what the admin API shows reads back as the same entry (minus "source", which is ours) */
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(cat_model_to_json(m, &b), 0);
    struct json_object *o = json_parse_strict(b.p, b.len, 16, NULL);
    assert_non_null(o);
    struct json_object *src = NULL;
    assert_true(json_object_object_get_ex(o, "source", &src));
    assert_string_equal(json_object_get_string(src), "api");
    json_object_object_del(o, "source");
    struct cat_model *m2 = NULL;
    char field[64], why[160];
    assert_int_equal(cat_model_from_json(o, &m2, field, 64, why, 160), 0);
    json_object_put(o);
    assert_string_equal(m2->id, m->id);
    assert_string_equal(m2->aliases[1], "l3");
    assert_int_equal(m2->engine, m->engine);
    assert_int_equal(m2->caps, m->caps);
    assert_int_equal(m2->min_devices, m->min_devices);
    assert_int_equal(m2->min_vram_mb, m->min_vram_mb);
    assert_int_equal(m2->n_selector, 2);
    assert_int_equal(m2->replicas_max, 3);
    assert_true(m2->pinned);
    assert_string_equal(m2->load_options_json, m->load_options_json);
    buf_free(&b);
    cat_model_free(m2);
    cat_model_free(m);

    /* a bare entry: any engine, capabilities not declared (all assumed), no bounds */
    m = ok("{\"id\":\"x\"}");
    assert_int_equal(m->engine, -1);
    assert_int_equal(m->caps, 0);
    assert_int_equal(m->replicas_max, 0);
    assert_false(m->pinned);
    buf_init(&b, 1 << 20);
    assert_int_equal(cat_model_to_json(m, &b), 0);
    assert_null(strstr(b.p, "capabilities")); /* not declared: not shown as an empty list */
    assert_non_null(strstr(b.p, "\"engine\":\"any\""));
    buf_free(&b);
    cat_model_free(m);
}

/* Every refusal names the field, so the admin API and the file say what is wrong. */
static void test_refusals_name_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *json, *field;
    } rows[] = {
        {"{}", "id"},
        {"{\"id\":\"\"}", "id"},
        {"{\"id\":\"has space\"}", "id"},
        {"{\"id\":\"q\\\"uote\"}", "id"},
        {"{\"id\":7}", "id"},
        {"{\"id\":\"x\",\"colour\":1}", "colour"},
        {"{\"id\":\"x\",\"aliases\":\"y\"}", "aliases"},
        {"{\"id\":\"x\",\"aliases\":[\"x\"]}", "aliases"},
        {"{\"id\":\"x\",\"aliases\":[\"a b\"]}", "aliases"},
        {"{\"id\":\"x\",\"aliases\":[1]}", "aliases"},
        {"{\"id\":\"x\",\"aliases\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
         "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
         "aliases"},
        {"{\"id\":\"x\",\"engine\":\"tgi\"}", "engine"},
        {"{\"id\":\"x\",\"engine\":1}", "engine"},
        {"{\"id\":\"x\",\"capabilities\":[]}", "capabilities"},
        {"{\"id\":\"x\",\"capabilities\":[\"tools\"]}", "capabilities"},
        {"{\"id\":\"x\",\"capabilities\":\"chat\"}", "capabilities"},
        {"{\"id\":\"x\",\"min_devices\":65}", "min_devices"},
        {"{\"id\":\"x\",\"min_devices\":-1}", "min_devices"},
        {"{\"id\":\"x\",\"min_devices\":1.5}", "min_devices"},
        {"{\"id\":\"x\",\"min_vram_mb\":\"8G\"}", "min_vram_mb"},
        {"{\"id\":\"x\",\"selector\":[\"gpu\"]}", "selector"},
        {"{\"id\":\"x\",\"selector\":{\"gpu\":1}}", "selector"},
        {"{\"id\":\"x\",\"replicas\":3}", "replicas"},
        {"{\"id\":\"x\",\"replicas\":{\"min\":1,\"most\":2}}", "replicas.most"},
        {"{\"id\":\"x\",\"replicas\":{\"min\":1001}}", "replicas.min"},
        {"{\"id\":\"x\",\"replicas\":{\"max\":-1}}", "replicas.max"},
        {"{\"id\":\"x\",\"replicas\":{\"min\":3,\"max\":2}}", "replicas.max"},
        {"{\"id\":\"x\",\"pinned\":\"yes\"}", "pinned"},
        {"{\"id\":\"x\",\"load_options\":[1]}", "load_options"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct cat_model *m = (struct cat_model *)1;
        char field[64] = "", why[160] = "";
        int rc = from(rows[i].json, &m, field, why);
        if (rc != GW_E_INVALID || strcmp(field, rows[i].field) != 0)
            fail_msg("%s: rc=%d field=%s (want %s)", rows[i].json, rc, field, rows[i].field);
        assert_null(m);
        assert_true(strlen(why) > 0);
    }
    /* null means absent; max 0 means no upper bound even below min */
    struct cat_model *m = ok("{\"id\":\"x\",\"engine\":null,\"replicas\":{\"min\":3,\"max\":0},"
                             "\"pinned\":null,\"selector\":null}");
    assert_int_equal(m->replicas_min, 3);
    assert_int_equal(m->engine, -1);
    cat_model_free(m);
}

/* Lookups: an id wins over another entry's alias of the same name; put replaces by id;
 * remove forgets; a clash names the name in use. */
static void test_find_put_remove_clash(void **state)
{
    (void)state;
    struct catalogue c = {0};
    catalogue_put(&c, ok("{\"id\":\"a\",\"aliases\":[\"b-alias\",\"shared\"]}"));
    catalogue_put(&c, ok("{\"id\":\"shared\"}"));
    assert_string_equal(catalogue_find(&c, STRV_LIT("a"))->id, "a");
    assert_string_equal(catalogue_find(&c, STRV_LIT("b-alias"))->id, "a");
    assert_string_equal(catalogue_find(&c, STRV_LIT("shared"))->id, "shared");
    assert_null(catalogue_find(&c, STRV_LIT("sha")));
    assert_null(catalogue_find(&c, STRV_LIT("b-alias2")));

    /* replacing "a" is no clash with itself; taking another's name is */
    struct cat_model *a2 = ok("{\"id\":\"a\",\"aliases\":[\"b-alias\"],\"pinned\":true}");
    assert_null(catalogue_name_clash(&c, a2));
    struct cat_model *d = ok("{\"id\":\"d\",\"aliases\":[\"b-alias\"]}");
    assert_string_equal(catalogue_name_clash(&c, d), "b-alias");
    struct cat_model *e = ok("{\"id\":\"e\",\"aliases\":[\"a\"]}");
    assert_string_equal(catalogue_name_clash(&c, e), "a");
    cat_model_free(d);
    cat_model_free(e);

    catalogue_put(&c, a2);
    assert_int_equal(c.n, 2);
    assert_true(catalogue_find(&c, STRV_LIT("a"))->pinned);
    assert_null(catalogue_find(&c, STRV_LIT("nothing")));

    assert_true(catalogue_remove(&c, "a"));
    assert_false(catalogue_remove(&c, "a"));
    assert_null(catalogue_find(&c, STRV_LIT("b-alias")));
    assert_int_equal(c.n, 1);
    catalogue_free(&c);
}

static void test_selector(void **state)
{
    (void)state;
    struct registry reg;
    registry_init(&reg, NULL);
    struct node *n = NULL;
    assert_int_equal(
        registry_add(&reg, "n", "http://127.0.0.1:9001", NODE_KIND_VLLM, NULL, &n, NULL), 0);
    assert_int_equal(registry_set_label(n, "gpu", "a100"), 0);
    assert_int_equal(registry_set_label(n, "zone", "eu"), 0);
    struct cat_model *none = ok("{\"id\":\"x\"}");
    struct cat_model *one = ok("{\"id\":\"x\",\"selector\":{\"gpu\":\"a100\"}}");
    struct cat_model *both = ok("{\"id\":\"x\",\"selector\":{\"gpu\":\"a100\",\"zone\":\"eu\"}}");
    struct cat_model *wrong = ok("{\"id\":\"x\",\"selector\":{\"gpu\":\"h100\"}}");
    struct cat_model *more = ok("{\"id\":\"x\",\"selector\":{\"gpu\":\"a100\",\"rack\":\"1\"}}");
    assert_true(cat_selector_matches(none, n));
    assert_true(cat_selector_matches(one, n));
    assert_true(cat_selector_matches(both, n));
    assert_false(cat_selector_matches(wrong, n));
    assert_false(cat_selector_matches(more, n)); /* every label must match */
    cat_model_free(none);
    cat_model_free(one);
    cat_model_free(both);
    cat_model_free(wrong);
    cat_model_free(more);
    registry_free(&reg);
}

/* Issue 18: device constraints and max_per_node are validated, kept and shown. */
static void test_device_constraints(void **state)
{
    (void)state;
    struct cat_model *m = ok("{\"id\":\"x\",\"min_compute_capability\":\"8.0\","
                             "\"cuda_version\":{\"min\":\"12.1\",\"max\":12},"
                             "\"device_name\":\"*A100*\",\"max_per_node\":2}");
    assert_string_equal(m->min_compute_capability, "8.0");
    assert_string_equal(m->cuda_min, "12.1");
    assert_string_equal(m->cuda_max, "12");
    cat_model_free(m);
    /* max below min is refused; so is a range that is not a version */
    char field[64] = "", why[160] = "";
    assert_int_equal(
        from("{\"id\":\"x\",\"cuda_version\":{\"min\":\"12.4\",\"max\":\"12.1\"}}", &m, field, why),
        GW_E_INVALID);
    assert_string_equal(field, "cuda_version.max");
    assert_int_equal(from("{\"id\":\"x\",\"cuda_version\":{\"min\":\"twelve\"}}", &m, field, why),
                     GW_E_INVALID);
    assert_string_equal(field, "cuda_version.min");
    assert_int_equal(from("{\"id\":\"x\",\"cuda_version\":{\"low\":\"1\"}}", &m, field, why),
                     GW_E_INVALID);
    assert_string_equal(field, "cuda_version.low");
    assert_int_equal(from("{\"id\":\"x\",\"min_compute_capability\":\"8.x\"}", &m, field, why),
                     GW_E_INVALID);
    assert_string_equal(field, "min_compute_capability");
    assert_int_equal(from("{\"id\":\"x\",\"device_name\":\"\"}", &m, field, why), GW_E_INVALID);
    assert_string_equal(field, "device_name");
    assert_int_equal(from("{\"id\":\"x\",\"max_per_node\":0}", &m, field, why), GW_E_INVALID);
    assert_string_equal(field, "max_per_node");
    /* default max_per_node 1; the JSON form reads back to the same entry */
    m = ok("{\"id\":\"y\",\"cuda_version\":{\"max\":\"12.9\"},\"device_name\":\"NVIDIA *\"}");
    assert_int_equal(m->max_per_node, 1);
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(cat_model_to_json(m, &b), 0);
    struct json_object *o = json_parse_strict(b.p, b.len, 16, NULL);
    json_object_object_del(o, "source");
    struct cat_model *r = NULL;
    assert_int_equal(cat_model_from_json(o, &r, field, 64, why, 160), 0);
    assert_string_equal(r->cuda_max, "12.9");
    assert_string_equal(r->cuda_min, "");
    assert_string_equal(r->device_name, "NVIDIA *");
    assert_int_equal(r->max_per_node, 1);
    json_object_put(o);
    buf_free(&b);
    cat_model_free(m);
    cat_model_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_entry_round_trip),
        cmocka_unit_test(test_refusals_name_the_field),
        cmocka_unit_test(test_find_put_remove_clash),
        cmocka_unit_test(test_selector),
        cmocka_unit_test(test_device_constraints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
