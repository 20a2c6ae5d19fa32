/* test_sim_cache — the LRU prefix cache: hits, eviction order, prefix matching, block keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sim/sim_cache.h"

static void test_insert_touch(void **state)
{
    (void)state;
    struct sim_cache c;
    sim_cache_init(&c, 4);
    assert_false(sim_cache_touch(&c, 1));
    sim_cache_insert(&c, 1);
    sim_cache_insert(&c, 2);
    assert_true(sim_cache_touch(&c, 1));
    assert_true(sim_cache_touch(&c, 2));
    sim_cache_insert(&c, 2); /* no duplicate */
    assert_int_equal(c.n, 2);
    sim_cache_free(&c);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    struct sim_cache c;
    sim_cache_init(&c, 3);
    sim_cache_insert(&c, 10);
    sim_cache_insert(&c, 20);
    sim_cache_insert(&c, 30);
    assert_true(sim_cache_touch(&c, 10)); /* 20 is now the LRU */
    sim_cache_insert(&c, 40);
    assert_false(sim_cache_touch(&c, 20));
    assert_true(sim_cache_touch(&c, 10));
    assert_true(sim_cache_touch(&c, 30));
    assert_true(sim_cache_touch(&c, 40));
    assert_int_equal(c.evictions, 1);
    assert_int_equal(c.n, 3);
    sim_cache_free(&c);
}

static void test_many_keys_bounded(void **state)
{
    (void)state;
    struct sim_cache c;
    sim_cache_init(&c, 64);
    for (uint64_t k = 0; k < 10000; k++) sim_cache_insert(&c, k * 7919);
    assert_int_equal(c.n, 64);
    for (uint64_t k = 10000 - 64; k < 10000; k++) assert_true(sim_cache_touch(&c, k * 7919));
    assert_false(sim_cache_touch(&c, 0));
    sim_cache_free(&c);
}

static void test_disabled(void **state)
{
    (void)state;
    struct sim_cache c;
    sim_cache_init(&c, 0);
    sim_cache_insert(&c, 1);
    assert_false(sim_cache_touch(&c, 1));
    uint64_t keys[2] = {1, 2};
    assert_int_equal(sim_cache_match(&c, keys, 2), 0);
    sim_cache_free(&c);
}

static void test_prefix_match(void **state)
{
    (void)state;
    struct sim_cache c;
    sim_cache_init(&c, 128);
    const char *a = "aaaaaaaabbbbbbbbccccccccdddddddd"; /* 4 blocks of 8 */
    const char *b = "aaaaaaaabbbbbbbbXXXXXXXXdddddddd"; /* shares 2 blocks */
    uint64_t ka[8], kb[8];
    size_t na = sim_cache_block_keys(5, a, strlen(a), 8, ka, 8);
    size_t nb = sim_cache_block_keys(5, b, strlen(b), 8, kb, 8);
    assert_int_equal(na, 4);
    assert_int_equal(nb, 4);
    assert_int_equal(ka[1], kb[1]);
    assert_true(ka[3] != kb[3]); /* same bytes, different prefix: different key */
    assert_int_equal(sim_cache_match(&c, ka, na), 0);
    assert_int_equal(sim_cache_match(&c, ka, na), 4);
    assert_int_equal(sim_cache_match(&c, kb, nb), 2);
    /* another seed (model) shares nothing */
    uint64_t kc[8];
    size_t nc = sim_cache_block_keys(6, a, strlen(a), 8, kc, 8);
    assert_int_equal(sim_cache_match(&c, kc, nc), 0);
    sim_cache_free(&c);
}

static void test_block_keys_partial_and_max(void **state)
{
    (void)state;
    uint64_t k[4];
    assert_int_equal(sim_cache_block_keys(0, "abcdefg", 7, 8, k, 4), 0);
    assert_int_equal(sim_cache_block_keys(0, "abcdefghabcdefghabcdefgh", 24, 8, k, 2), 2);
    assert_int_equal(sim_cache_block_keys(0, "abcdefgh", 8, 0, k, 4), 0);
}

static void test_shortest_prefix_kept(void **state)
{
    (void)state;
    /* A long prompt filling the cache keeps its first blocks, which later prompts share. */
    struct sim_cache c;
    sim_cache_init(&c, 4);
    uint64_t k[6] = {1, 2, 3, 4, 5, 6};
    sim_cache_match(&c, k, 6);
    assert_true(sim_cache_touch(&c, 1));
    assert_true(sim_cache_touch(&c, 2));
    sim_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_touch),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_many_keys_bounded),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_prefix_match),
        cmocka_unit_test(test_block_keys_partial_and_max),
        cmocka_unit_test(test_shortest_prefix_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
