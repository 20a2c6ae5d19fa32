/* test_sim_text — the simulator's "weights": the hash and splitmix64 against reference values,
 * token counts at every rounding edge, the generated words (one table, a leading space on all
 * but the first, a function of (seed, index) only, so a stream and a non-stream answer are the
 * same text), and embeddings (unit length, deterministic, input-dependent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "sim/sim_text.h"

/* FNV-1a over the bytes from the offset basis xor seed, then the final mix, written out here
 * independently of the module. */
static uint64_t ref_hash(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static void test_hash_reference_and_sensitivity(void **state)
{
    (void)state;
    assert_true(sim_text_hash(0, "", 0) == ref_hash(0, "", 0));
    assert_true(sim_text_hash(0, "hello", 5) == ref_hash(0, "hello", 5));
    assert_true(sim_text_hash(42, "hello", 5) == ref_hash(42, "hello", 5));
    /* same input, same value; seed, content, length and order all matter */
    assert_true(sim_text_hash(0, "hello", 5) == sim_text_hash(0, "hello", 5));
    assert_true(sim_text_hash(0, "hello", 5) != sim_text_hash(1, "hello", 5));
    assert_true(sim_text_hash(0, "hello", 5) != sim_text_hash(0, "hellp", 5));
    assert_true(sim_text_hash(0, "ab", 2) != sim_text_hash(0, "ba", 2));
    assert_true(sim_text_hash(0, "a", 1) != sim_text_hash(0, "a\0", 2));
    /* bytes above 0x7f are unsigned */
    assert_true(sim_text_hash(0, "\xff", 1) == ref_hash(0, "\xff", 1));
}

/* splitmix64 from state 0: the published first outputs (Vigna's reference implementation). */
static void test_rand_is_splitmix64(void **state)
{
    (void)state;
    uint64_t st = 0;
    assert_true(sim_text_rand(&st) == 0xe220a8397b1dcdafULL);
    assert_true(st == 0x9e3779b97f4a7c15ULL);
    assert_true(sim_text_rand(&st) == 0x6e789e6aa1b965f4ULL);
    assert_true(sim_text_rand(&st) == 0x06c45d188009454fULL);
    uint64_t a = 7, b = 7;
    for (int i = 0; i < 100; i++) assert_true(sim_text_rand(&a) == sim_text_rand(&b));
}

static void test_tokens_round_up(void **state)
{
    (void)state;
    assert_int_equal(sim_text_tokens(0), 0);
    for (size_t b = 1; b <= 4; b++) assert_int_equal(sim_text_tokens(b), 1);
    assert_int_equal(sim_text_tokens(5), 2);
    assert_true(sim_text_tokens(SIZE_MAX) == (uint64_t)(SIZE_MAX / 4 + 1)); /* no wrap */
    assert_int_equal(sim_text_tokens(8), 2);
    assert_int_equal(sim_text_tokens(9), 3);
    assert_int_equal(sim_text_tokens(4000), 1000);
    assert_int_equal(sim_text_tokens(4001), 1001);
    assert_true(sim_text_tokens((size_t)16 << 20) == (uint64_t)4 << 20); /* a 16 MiB body */
}

/* Every token is a short lowercase word; the first has no leading space, every other one
 * exactly one; the text depends on (seed, index) only, not on the order tokens are asked in. */
static void test_token_words(void **state)
{
    (void)state;
    char forward[64][16];
    for (uint64_t i = 0; i < 64; i++) {
        const char *w = sim_text_token(99, i);
        size_t n = strlen(w);
        assert_true(n > 0 && n < sizeof forward[0]);
        size_t start = 0;
        if (i == 0) {
            assert_true(w[0] != ' ');
        } else {
            assert_true(w[0] == ' ');
            start = 1;
        }
        assert_true(n > start);
        for (size_t k = start; k < n; k++) assert_true(w[k] >= 'a' && w[k] <= 'z');
        memcpy(forward[i], w, n + 1);
    }
    for (uint64_t i = 64; i-- > 0;) assert_string_equal(sim_text_token(99, i), forward[i]);
    /* another seed gives another text (64 words from a 64-word table cannot all agree) */
    size_t same = 0;
    for (uint64_t i = 0; i < 64; i++) same += strcmp(sim_text_token(100, i), forward[i]) == 0;
    assert_true(same < 64);
    /* the words vary along one answer: more than a handful of distinct ones in 64 */
    size_t distinct = 0;
    for (size_t i = 0; i < 64; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(forward[i], forward[j]) == 0;
        distinct += !seen;
    }
    assert_true(distinct >= 16);
    /* index 0 of any seed is the bare form of a table word (the same word with a space exists) */
    for (uint64_t seed = 0; seed < 32; seed++) {
        const char *w0 = sim_text_token(seed, 0);
        bool found = false;
        for (uint64_t s = 0; s < 64 && !found; s++)
            for (uint64_t i = 1; i < 64 && !found; i++)
                found = strcmp(sim_text_token(s, i) + 1, w0) == 0;
        assert_true(found);
    }
}

static double norm_of(const double *v, unsigned n)
{
    double s = 0;
    for (unsigned i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

static void test_embedding_unit_and_deterministic(void **state)
{
    (void)state;
    static const unsigned dims[] = {1, 2, 16, 384, 4096};
    static double a[4096], b[4096];
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        unsigned d = dims[k];
        sim_text_embedding("the quick fox", 13, d, a);
        sim_text_embedding("the quick fox", 13, d, b);
        assert_memory_equal(a, b, d * sizeof a[0]);
        assert_true(fabs(norm_of(a, d) - 1.0) < 1e-9);
        for (unsigned i = 0; i < d; i++) assert_true(a[i] >= -1.0 && a[i] <= 1.0);
    }
    /* another input points elsewhere; an empty input still gives a unit vector */
    sim_text_embedding("the quick fox", 13, 16, a);
    sim_text_embedding("the quick fix", 13, 16, b);
    double dot = 0;
    for (unsigned i = 0; i < 16; i++) dot += a[i] * b[i];
    assert_true(dot < 0.999);
    sim_text_embedding("", 0, 16, a);
    assert_true(fabs(norm_of(a, 16) - 1.0) < 1e-9);
    /* the components come from one stream per input: a longer vector starts in the same
     * direction as a shorter one (only the normalisation differs) */
    sim_text_embedding("x", 1, 8, a);
    sim_text_embedding("x", 1, 16, b);
    double ra = a[1] / a[0], rb = b[1] / b[0];
    assert_true(fabs(ra - rb) < 1e-9);
    /* zero dims writes nothing */
    a[0] = 123.0;
    sim_text_embedding("x", 1, 0, a);
    assert_true(a[0] == 123.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_reference_and_sensitivity),
        cmocka_unit_test(test_rand_is_splitmix64),
        cmocka_unit_test(test_tokens_round_up),
        cmocka_unit_test(test_token_words),
        cmocka_unit_test(test_embedding_unit_and_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
