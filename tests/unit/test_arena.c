/* test_arena — the request arena: 16-byte alignment, the cap (NULL, never abort), big
 * allocations in chunks of their own, reset reusing the first chunk, strndup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/arena.h"

static void test_alignment(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256, 1 << 20);
    for (size_t n = 0; n < 200; n++) {
        unsigned char *p = arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, n); /* ASan: the whole block is ours */
    }
    arena_free(&a);
}

static void test_cap(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256, 1024);
    assert_null(arena_alloc(&a, 1025));
    assert_null(arena_alloc(&a, SIZE_MAX));
    assert_null(arena_alloc(&a, SIZE_MAX - 7)); /* rounding up must not wrap */
    int n = 0;
    while (arena_alloc(&a, 100)) n++;
    assert_int_equal(n, 1024 / 112); /* 100 rounds up to 112 */
    assert_true(a.used_bytes <= a.max_bytes);
    assert_non_null(arena_alloc(&a, 1024 - a.used_bytes)); /* what is left still fits */
    assert_null(arena_alloc(&a, 1));
    assert_null(arena_strndup(&a, "x", 1));
    struct strv v = arena_strv(&a, STRV_LIT("abc"));
    assert_int_equal(v.len, 0);
    arena_free(&a);
}

static void test_big_allocations(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256, 1 << 24);
    char *small1 = arena_alloc(&a, 16);
    char *big = arena_alloc(&a, 1 << 20);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 16, 0);
    memset(big, 1, 1 << 20);
    char *small2 = arena_alloc(&a, 16);
    assert_non_null(small2);
    memset(small1, 2, 16);
    memset(small2, 3, 16);
    assert_int_equal(big[0], 1);
    assert_int_equal(big[(1 << 20) - 1], 1);
    char *big2 = arena_alloc(&a, 3000);
    assert_non_null(big2);
    memset(big2, 4, 3000);
    assert_int_equal(big[12345], 1);
    arena_reset(&a);
    assert_int_equal(a.used_bytes, 0);
    assert_non_null(arena_alloc(&a, 1 << 20));
    arena_free(&a);
}

static void test_reset_reuses(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 1024, 1 << 20);
    void *first = arena_alloc(&a, 32);
    for (int i = 0; i < 100; i++) assert_non_null(arena_alloc(&a, 100)); /* more chunks */
    assert_non_null(arena_alloc(&a, 50000));
    arena_reset(&a);
    assert_int_equal(a.used_bytes, 0);
    void *again = arena_alloc(&a, 32);
    assert_ptr_equal(again, first);
    /* The cap counts from zero again after a reset. */
    arena_free(&a);
    arena_init(&a, 0, 64); /* 0 chunk size picks a default */
    assert_non_null(arena_alloc(&a, 64));
    assert_null(arena_alloc(&a, 1));
    arena_reset(&a);
    assert_non_null(arena_alloc(&a, 64));
    arena_free(&a);
    arena_free(&a); /* idempotent */
}

static void test_strndup(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 64, 4096);
    const char src[] = "hello\0world";
    char *s = arena_strndup(&a, src, 5);
    assert_string_equal(s, "hello");
    s = arena_strndup(&a, src, sizeof src - 1);
    assert_memory_equal(s, src, sizeof src); /* embedded NUL copied, terminated */
    s = arena_strndup(&a, NULL, 0);
    assert_string_equal(s, "");
    struct strv v = arena_strv(&a, STRV_LIT("copy me"));
    assert_true(strv_eq_cstr(v, "copy me"));
    char stack[] = "mutable";
    v = arena_strv(&a, strv_from_cstr(stack));
    stack[0] = 'X';
    assert_true(strv_eq_cstr(v, "mutable"));       /* a copy, not a view of stack */
    assert_null(arena_strndup(&a, src, SIZE_MAX)); /* n + 1 must not wrap to 0 */
    assert_null(arena_strndup(&a, src, 5000));
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment),       cmocka_unit_test(test_cap),
        cmocka_unit_test(test_big_allocations), cmocka_unit_test(test_reset_reuses),
        cmocka_unit_test(test_strndup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
