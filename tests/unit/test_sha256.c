/* test_sha256 — SHA-256 against the FIPS 180-4 / NIST CAVS example vectors (empty, "abc", the
 * 448-bit message, one million 'a', and inputs around the padding boundaries), secret_equal,
 * and the format and uniqueness of random secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/mem.h"
#include "base/sha256.h"

static void check_hex(const char *msg, size_t len, const char *want)
{
    char got[65];
    sha256_hex(msg, len, got);
    assert_string_equal(got, want);
}

static void test_nist_vectors(void **state)
{
    (void)state;
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                       "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_hex(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
    (void)state;
    size_t n = 1000000;
    char *m = xmalloc(n);
    memset(m, 'a', n);
    check_hex(m, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    xfree(m);
}

/* 55, 56 and 64 bytes are where the padding needs one block, two blocks, a fresh block. */
static void test_padding_boundaries(void **state)
{
    (void)state;
    char m[64];
    memset(m, 'a', sizeof m);
    check_hex(m, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    check_hex(m, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    check_hex(m, 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
    check_hex(m, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    uint8_t raw[32];
    sha256("abc", 3, raw);
    assert_int_equal(raw[0], 0xba);
    assert_int_equal(raw[31], 0xad);
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(secret_equal("", ""));
    assert_true(secret_equal("abcdef", "abcdef"));
    assert_false(secret_equal("abcdef", "abcdeg"));
    assert_false(secret_equal("bbcdef", "abcdef"));
    assert_false(secret_equal("abc", "abcd"));
    assert_false(secret_equal("abcd", "abc"));
    assert_false(secret_equal("", "a"));
    assert_false(secret_equal(NULL, "a"));
    assert_false(secret_equal("a", NULL));
}

static bool is_lower_hex64(const char *s)
{
    if (strlen(s) != 64) return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void test_random_secret(void **state)
{
    (void)state;
    enum { N = 64 };
    char s[N][65];
    for (int i = 0; i < N; i++) {
        memset(s[i], 'X', sizeof s[i]);
        assert_int_equal(random_secret_hex(s[i]), 0);
        assert_true(is_lower_hex64(s[i]));
        for (int j = 0; j < i; j++) assert_string_not_equal(s[i], s[j]);
    }
    /* A hash of a secret has the same shape, and differs from the secret. */
    char h[65];
    sha256_hex(s[0], 64, h);
    assert_true(is_lower_hex64(h));
    assert_false(secret_equal(h, s[0]));
}

static void test_random_bytes_large(void **state)
{
    (void)state;
    /* getrandom returns at most 32 MiB - 1 per call and may be short above 256 bytes: the
     * loop must fill everything. */
    size_t n = 1 << 16;
    uint8_t *a = xcalloc(1, n);
    assert_int_equal(random_bytes(a, n), 0);
    size_t zeros = 0;
    for (size_t i = n - 4096; i < n; i++) zeros += a[i] == 0;
    assert_true(zeros < 64); /* ~16 expected; all zero would mean the tail was never written */
    assert_int_equal(random_bytes(a, 0), 0);
    xfree(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),       cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_padding_boundaries), cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_random_secret),      cmocka_unit_test(test_random_bytes_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
