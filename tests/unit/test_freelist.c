/* freelist: bounded reuse, zeroed objects, LIFO reuse of the last freed, drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/freelist.h"

struct obj {
    char bytes[1200];
};

static void test_reuse_and_bound(void **state)
{
    (void)state;
    struct freelist f;
    freelist_init(&f, sizeof(struct obj), 2);
    struct obj *a = freelist_get(&f), *b = freelist_get(&f), *c = freelist_get(&f);
    memset(a->bytes, 'x', sizeof a->bytes);
    freelist_put(&f, a);
    freelist_put(&f, b);
    freelist_put(&f, c); /* over the bound: freed, not kept */
    assert_int_equal(f.n, 2);
    struct obj *d = freelist_get(&f);
    assert_ptr_equal(d, b); /* the last kept comes back first */
    struct obj *e = freelist_get(&f);
    assert_ptr_equal(e, a);
    for (size_t i = 0; i < sizeof e->bytes; i++) assert_int_equal(e->bytes[i], 0); /* zeroed */
    assert_int_equal(f.n, 0);
    freelist_put(&f, d);
    freelist_put(&f, e);
    freelist_drain(&f);
    assert_int_equal(f.n, 0);
    assert_null(f.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
