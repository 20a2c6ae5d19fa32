/* test_clock — base/clock: the injected monotonic source, the real clocks' sanity, and the
 * wall clock's testing offset (what `testing.clock_control` moves for the whole gateway). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "base/clock.h"

static uint64_t fake_us(void *ctx)
{
    return *(const uint64_t *)ctx;
}

static void test_source_is_injected_and_restored(void **state)
{
    uint64_t t = 5000123;
    clock_set_source(fake_us, &t);
    assert_int_equal(clock_mono_us(), 5000123);
    assert_int_equal(clock_mono_ms(), 5000);
    t += 2500000;
    assert_int_equal(clock_mono_ms(), 7500);
    clock_set_source(NULL, NULL);
    uint64_t a = clock_mono_us();
    assert_true(a != 7500123);
    assert_true(clock_mono_us() >= a); /* the real clock never runs backwards */
}

static uint64_t real_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_wall_is_epoch_ms_plus_offset(void **state)
{
    assert_int_equal(clock_wall_offset_ms(), 0);
    uint64_t before = real_wall_ms();
    uint64_t w = clock_wall_ms();
    assert_true(w >= before && w <= real_wall_ms());

    const int64_t day = 24 * 3600 * 1000;
    assert_int_equal(clock_advance_wall_ms(day), day);
    assert_int_equal(clock_advance_wall_ms(day), 2 * day);
    before = real_wall_ms();
    w = clock_wall_ms();
    assert_true(w >= before + 2 * (uint64_t)day && w <= real_wall_ms() + 2 * (uint64_t)day);

    /* a negative or zero advance changes nothing: the reported wall time never runs back */
    assert_int_equal(clock_advance_wall_ms(-day), 2 * day);
    assert_int_equal(clock_advance_wall_ms(0), 2 * day);

    /* an absurd advance saturates instead of wrapping the epoch */
    int64_t big = clock_advance_wall_ms(INT64_MAX);
    assert_true(big > 2 * day);
    assert_int_equal(clock_advance_wall_ms(INT64_MAX), big);
    assert_true(clock_wall_ms() > real_wall_ms());
}

static void test_wall_ignores_the_monotonic_source(void **state)
{
    uint64_t t = 1;
    clock_set_source(fake_us, &t);
    uint64_t w = clock_wall_ms();
    assert_true(w > 1000u * 1000u * 1000u * 1000u); /* after 2001: still the epoch clock */
    clock_set_source(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_is_injected_and_restored),
        cmocka_unit_test(test_wall_is_epoch_ms_plus_offset),
        cmocka_unit_test(test_wall_ignores_the_monotonic_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
