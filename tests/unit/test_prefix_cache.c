/* prefix_cache: block keys stand for whole prefixes, matches are per node, memory stays under
 * its cap with LRU trimming, forget drops one node, and the prompt is rendered as the engine
 * (and the sim) sees it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw/prefix_cache.h"
#include "gw/registry_types.h"

static struct strv S(const char *s) {
    return strv_from_cstr(s);
}

/* n bytes of text that differ from any other seed's */
static void
text(char *out, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) out[i] = (char)('a' + (seed * 7 + i * 13 + (i / 5)) % 26);
    out[n] = '\0';
}

static void test_match_is_per_node_and_per_prefix(void **state)
{
    (void)state;
    struct prefix_cache *pc = prefix_cache_new(1000, 0, 16, 4096);
    struct node a = {0}, b = {0};
    char sys[257], p1[400], p2[400];
    text(sys, 256, 1);
    snprintf(p1, sizeof p1, "%s%s", sys, "user one asks a question here....");
    snprintf(p2, sizeof p2, "%s%s", sys, "user two asks something else!!!!!");
    struct prefix_keys k = prefix_cache_keys(pc, S("m"), S(p1));
    assert_int_equal(k.n, strlen(p1) / 16);
    assert_int_equal(prefix_cache_match(pc, &a, &k), 0);
    prefix_cache_insert(pc, &a, &k);
    assert_int_equal(prefix_cache_match(pc, &a, &k), k.n);
    assert_int_equal(prefix_cache_match(pc, &b, &k), 0); /* b was never sent it */
    /* p2 shares the 256-byte system prompt (16 blocks) and diverges afterwards */
    k = prefix_cache_keys(pc, S("m"), S(p2));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 16);
    /* the same text for another model is another prefix */
    k = prefix_cache_keys(pc, S("other"), S(p1));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 0);
    /* shorter than a block: no keys, no match */
    k = prefix_cache_keys(pc, S("m"), S("short"));
    assert_int_equal(k.n, 0);
    assert_int_equal(prefix_cache_node_entries(pc, &a), strlen(p1) / 16);
    assert_int_equal(prefix_cache_node_entries(pc, &b), 0);
    prefix_cache_free(pc);
}

static void test_memory_bounded_lru(void **state)
{
    (void)state;
    enum { CAP = 64 };
    struct prefix_cache *pc = prefix_cache_new(CAP, 0, 16, 4096);
    struct node a = {0}, b = {0};
    char t[20][161];
    for (unsigned i = 0; i < 20; i++) text(t[i], 160, 100 + i); /* 10 blocks each */
    for (unsigned i = 0; i < 20; i++) {
        struct prefix_keys k = prefix_cache_keys(pc, S("m"), S(t[i]));
        prefix_cache_insert(pc, i % 2 ? &b : &a, &k);
        assert_true(prefix_cache_entries(pc) <= CAP);
    }
    assert_int_equal(prefix_cache_entries(pc), CAP);
    assert_int_equal(prefix_cache_node_entries(pc, &a) + prefix_cache_node_entries(pc, &b), CAP);
    /* the newest prompts are whole, the oldest are gone */
    struct prefix_keys k = prefix_cache_keys(pc, S("m"), S(t[19]));
    assert_int_equal(prefix_cache_match(pc, &b, &k), 10);
    k = prefix_cache_keys(pc, S("m"), S(t[0]));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 0);
    /* using a prefix keeps it: t[14] touched again survives 5 more inserts */
    k = prefix_cache_keys(pc, S("m"), S(t[14]));
    prefix_cache_insert(pc, &a, &k);
    char u[5][161];
    for (unsigned i = 0; i < 5; i++) {
        text(u[i], 160, 500 + i);
        struct prefix_keys ku = prefix_cache_keys(pc, S("m"), S(u[i]));
        prefix_cache_insert(pc, &b, &ku);
    }
    k = prefix_cache_keys(pc, S("m"), S(t[14]));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 10);
    /* forget: one node's entries leave, the other's stay */
    size_t nb = prefix_cache_node_entries(pc, &b);
    prefix_cache_forget(pc, &a);
    assert_int_equal(prefix_cache_node_entries(pc, &a), 0);
    assert_int_equal(prefix_cache_match(pc, &a, &k), 0);
    assert_int_equal(prefix_cache_entries(pc), nb);
    /* freed slots are reused without passing the cap */
    for (unsigned i = 0; i < 20; i++) {
        struct prefix_keys kk = prefix_cache_keys(pc, S("m"), S(t[i]));
        prefix_cache_insert(pc, &a, &kk);
        assert_true(prefix_cache_entries(pc) <= CAP);
    }
    prefix_cache_free(pc);
}

/* The per-node cap (the engine's cache size): a node's oldest prefixes go first, other nodes'
 * entries stay. */
static void test_node_cap(void **state)
{
    (void)state;
    struct prefix_cache *pc = prefix_cache_new(1000, 25, 16, 4096);
    struct node a = {0}, b = {0};
    char t[4][161];
    for (unsigned i = 0; i < 4; i++) text(t[i], 160, 900 + i); /* 10 blocks each */
    struct prefix_keys k = prefix_cache_keys(pc, S("m"), S(t[3]));
    prefix_cache_insert(pc, &b, &k);
    for (unsigned i = 0; i < 3; i++) {
        k = prefix_cache_keys(pc, S("m"), S(t[i]));
        prefix_cache_insert(pc, &a, &k);
        assert_true(prefix_cache_node_entries(pc, &a) <= 25);
    }
    assert_int_equal(prefix_cache_node_entries(pc, &a), 25);
    assert_int_equal(prefix_cache_node_entries(pc, &b), 10);
    k = prefix_cache_keys(pc, S("m"), S(t[2]));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 10); /* the newest whole */
    k = prefix_cache_keys(pc, S("m"), S(t[1]));
    assert_int_equal(prefix_cache_match(pc, &a, &k), 10);
    k = prefix_cache_keys(pc, S("m"), S(t[0]));
    assert_true(prefix_cache_match(pc, &a, &k) < 10); /* the oldest lost its tail */
    k = prefix_cache_keys(pc, S("m"), S(t[3]));
    assert_int_equal(prefix_cache_match(pc, &b, &k), 10);
    prefix_cache_free(pc);
}

static void test_render_prompt(void **state)
{
    (void)state;
    char out[256];
    const char *chat =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi \"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},"
        "{\"type\":\"text\",\"text\":\"there\"}]}]}";
    size_t n = prefix_render_prompt(S(chat), out, sizeof out);
    assert_int_equal(n, strlen("system: be brief\nuser: hi there\n"));
    assert_memory_equal(out, "system: be brief\nuser: hi there\n", n);
    const char *comp = "{\"model\":\"m\",\"prompt\":\"once upon a time\"}";
    n = prefix_render_prompt(S(comp), out, sizeof out);
    assert_int_equal(n, 16);
    assert_memory_equal(out, "once upon a time", n);
    const char *gen = "{\"model\":\"m\",\"system\":\"S.\",\"prompt\":\"P\"}";
    n = prefix_render_prompt(S(gen), out, sizeof out);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "S.P", n);
    /* capped, never past cap */
    n = prefix_render_prompt(S(chat), out, 10);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "system: be", 10);
    assert_int_equal(prefix_render_prompt(S("not json"), out, sizeof out), 0);
    assert_int_equal(prefix_render_prompt(S("{\"input\":\"x\"}"), out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_is_per_node_and_per_prefix),
        cmocka_unit_test(test_memory_bounded_lru),
        cmocka_unit_test(test_node_cap),
        cmocka_unit_test(test_render_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
