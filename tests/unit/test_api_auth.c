/* The Bearer check of src/gw/api.c (client, admin and join tokens): the scheme matches in any
 * case with any number of spaces after it (RFC 7235), and only the exact token passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw/gw.h"
#include "gw/api.h"
#include "net/http_server.h"

static bool check(const char *authorization, const char *want)
{
    struct http_header h[2] = {
        {STRV_LIT("Content-Type"), STRV_LIT("application/json")},
        {STRV_LIT("Authorization"), strv_from_cstr(authorization)},
    };
    struct http_request req;
    memset(&req, 0, sizeof req);
    req.headers = h;
    req.n_headers = authorization ? 2 : 1;
    return gw_bearer_matches(&req, want);
}

static void test_scheme_any_case_any_spaces(void **state)
{
    (void)state;
    static const char *const ok[] = {"Bearer sk-123",   "bearer sk-123",   "BEARER sk-123",
                                     "BeArEr sk-123",   "Bearer   sk-123", "bearer      sk-123",
                                     "Bearer sk-123  ", "Bearer sk-123\t"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!check(ok[i], "sk-123")) fail_msg("refused '%s'", ok[i]);
}

static void test_only_the_token_passes(void **state)
{
    (void)state;
    static const char *const no[] = {"Bearer sk-12",    "Bearer sk-1234",
                                     "Bearer sk-124",   "Bearer SK-123",
                                     "Bearersk-123",    "Bearer",
                                     "Bearer ",         "Bearer    ",
                                     "Basic sk-123",    "sk-123",
                                     "Bearer\tsk-123",  "Bear sk-123",
                                     "Bearer sk-123 x", "",
                                     "Token sk-123"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (check(no[i], "sk-123")) fail_msg("accepted '%s'", no[i]);
    assert_false(check(NULL, "sk-123"));
    /* an empty header never carries a non-empty token, and a longer token is not a prefix */
    assert_false(check("Bearer sk-123sk-123", "sk-123"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheme_any_case_any_spaces),
        cmocka_unit_test(test_only_the_token_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
