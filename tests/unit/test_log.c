/* test_log — log_quote's escaping and truncation, log_parse_level, and the shape of the line
 * log_event writes (captured from stderr). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

static const char *q(char *out, size_t cap, const char *s)
{
    return log_quote(out, cap, s, strlen(s));
}

static void test_quote_plain(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(q(out, sizeof out, "abc"), "abc");
    assert_string_equal(q(out, sizeof out, "127.0.0.1:8080"), "127.0.0.1:8080");
    assert_string_equal(q(out, sizeof out, "llama3.2:1b"), "llama3.2:1b");
    assert_ptr_equal(log_quote(out, sizeof out, "x", 1), out);
}

static void test_quote_escapes(void **state)
{
    (void)state;
    char out[128];
    assert_string_equal(q(out, sizeof out, ""), "\"\"");
    assert_string_equal(q(out, sizeof out, "a b"), "\"a b\"");
    assert_string_equal(q(out, sizeof out, "k=v"), "\"k=v\"");
    assert_string_equal(q(out, sizeof out, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(q(out, sizeof out, "C:\\path"), "\"C:\\\\path\"");
    assert_string_equal(q(out, sizeof out, "two\nlines"), "\"two\\nlines\"");
    assert_string_equal(q(out, sizeof out, "cr\rtab\t"), "\"cr\\x0dtab\\x09\"");
    assert_string_equal(q(out, sizeof out, "\x01\x1f\x7f"), "\"\\x01\\x1f\\x7f\"");
    assert_string_equal(q(out, sizeof out, "caf\xc3\xa9"), "\"caf\xc3\xa9\"");
    /* A NUL inside the value is escaped, not a cut. */
    assert_string_equal(log_quote(out, sizeof out, "a\0b", 3), "\"a\\x00b\"");
}

/* Whatever the cap: NUL-terminated inside it, and a quoted value is never left open. */
static void test_quote_truncation(void **state)
{
    (void)state;
    const char *inputs[] = {"plain_value_that_is_long", "needs quoting \"here\"\n\x01 and more",
                            "\x01\x01\x01\x01\x01\x01"};
    for (size_t k = 0; k < 3; k++) {
        for (size_t cap = 1; cap < 48; cap++) {
            char out[64];
            memset(out, 'Z', sizeof out);
            log_quote(out, cap, inputs[k], strlen(inputs[k]));
            size_t n = strnlen(out, sizeof out);
            assert_true(n < cap);
            if (n > 0 && out[0] == '"') {
                assert_true(n >= 2);
                assert_int_equal(out[n - 1], '"');
                /* the closing quote is not an escaped one */
                size_t bs = 0;
                while (n >= 2 + bs && out[n - 2 - bs] == '\\') bs++;
                assert_int_equal(bs % 2, 0);
            }
            assert_int_equal(out[cap], 'Z'); /* nothing written past cap */
        }
    }
    char one[1] = {'Z'};
    log_quote(one, 1, "a b", 3);
    assert_int_equal(one[0], '\0');
    char none[1] = {'Z'};
    log_quote(none, 0, "a b", 3);
    assert_int_equal(none[0], 'Z');
}

static void test_parse_level(void **state)
{
    (void)state;
    enum log_level l = LOG_ERROR;
    assert_int_equal(log_parse_level("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_parse_level("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_parse_level("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_parse_level("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_parse_level("off", &l), 0);
    assert_int_equal(l, LOG_OFF);
    const char *bad[] = {"", "inf", "infoo", "info ", "verbose", "warning", "0", "trace"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = LOG_WARN;
        assert_int_equal(log_parse_level(bad[i], &l), GW_E_INVALID);
        assert_int_equal(l, LOG_WARN);
    }
    assert_int_equal(log_parse_level(NULL, &l), GW_E_INVALID);
}

/* Runs fn with stderr redirected to a temp file and returns what it wrote. */
static size_t capture(void (*fn)(void), char *out, size_t cap)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return n;
}

static void emit_levels(void)
{
    log_set_level(LOG_WARN);
    LOGI("hidden", "k=%d", 1);
    LOGW("shown", "addr=%s n=%d", "127.0.0.1:8080", 2);
    LOGE("bare", "%s", "");
    log_set_level(LOG_INFO);
}

static void emit_long(void)
{
    char big[5000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    LOGE("long", "k=%s", big);
}

static void test_event_lines(void **state)
{
    (void)state;
    char out[8192];
    capture(emit_levels, out, sizeof out);
    assert_null(strstr(out, "hidden"));
    char *line = strstr(out, "level=warn event=shown addr=127.0.0.1:8080 n=2\n");
    assert_non_null(line);
    assert_true(strncmp(out, "ts=", 3) == 0);
    assert_int_equal(out[3 + 4], '-'); /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
    assert_int_equal(out[3 + 23], 'Z');
    assert_non_null(strstr(out, "level=error event=bare\n"));
    size_t n = capture(emit_long, out, sizeof out);
    assert_true(n < 2048); /* bounded, one line, still ends in a newline */
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', n - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_plain),      cmocka_unit_test(test_quote_escapes),
        cmocka_unit_test(test_quote_truncation), cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_event_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
