/* The agent's upgrade check, pure parts: template expansion into an argv (a name stays one
 * literal word, whatever it holds; typos in placeholders and bad names are refused), the
 * digest a check printed (the inventory's rules), the cache on a clock of the test's own
 * (a new item is due at once, a result lives for the interval and is dropped after twice it,
 * a failure forgets the latest digest and backs off, the failure log is rate-limited per item
 * and overall, unlisted items are pruned), and the agent config keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_config.h"
#include "agent/agent_upgrade.h"
#include "base/mem.h"

#define MIN_MS (60 * 1000ULL)
#define HOUR_MS (60 * MIN_MS)

static void test_expand(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl, *name;
        const char *want[6]; /* the words; want[0] NULL: refused */
    } rows[] = {
        {"/opt/check {name}", "cuda12", {"/opt/check", "cuda12"}},
        {"  check   --model={name}  ", "llama3.2:1b", {"check", "--model=llama3.2:1b"}},
        /* what a shell would run, or split, stays one literal word */
        {"check {name}",
         "a b; rm -rf / $(id) `id` 'q' \"d\"",
         {"check", "a b; rm -rf / $(id) `id` 'q' \"d\""}},
        {"check {name}", "*", {"check", "*"}},
        {"check '{name}' \"x {name} y\"", "m", {"check", "m", "x m y"}},
        {"check 'two words' \"say \\\"hi\\\" \\\\ \\n\"",
         "m",
         {"check", "two words", "say \"hi\" \\ \\n"}},
        {"check a\\ b \\'", "m", {"check", "a b", "'"}},
        {"check '' {name}", "m", {"check", "", "m"}},
        {"jq '.x{}' {name}", "m", {"jq", ".x{}", "m"}},
        {"check {name}{name}", "m", {"check", "mm"}},
        {"check {version}", "m", {NULL}},
        {"check ${HOME}", "m", {NULL}},
        {"check 'open", "m", {NULL}},
        {"check \"open", "m", {NULL}},
        {"check \\", "m", {NULL}},
        {"   ", "m", {NULL}},
        {"'' {name}", "m", {NULL}},
        {"check {name}", "-rf", {NULL}},
        {"check {name}", "", {NULL}},
        {"check {name}", "a\nb", {NULL}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct agent_argv av;
        char why[200] = "";
        int rc = agent_upgrade_expand(rows[i].tmpl, rows[i].name, &av, why, sizeof why);
        if (!rows[i].want[0]) {
            assert_int_equal(rc, GW_E_INVALID);
            assert_true(why[0] != '\0');
            assert_int_equal(av.n, 0);
            continue;
        }
        assert_int_equal(rc, 0);
        size_t n = 0;
        while (n < 6 && rows[i].want[n]) n++;
        assert_int_equal(av.n, n);
        for (size_t k = 0; k < n; k++) assert_string_equal(av.v[k], rows[i].want[k]);
        assert_null(av.v[n]);
        agent_argv_free(&av);
    }
    /* a long name cannot hide past the word limit, and 64 words is the most */
    char many[64 * 2 + 8];
    for (int i = 0; i < 64; i++) memcpy(many + 2 * i, "w ", 2);
    many[128] = '\0';
    struct agent_argv av;
    char why[200];
    assert_int_equal(agent_upgrade_expand(many, "m", &av, why, sizeof why), 0);
    assert_int_equal(av.n, 64);
    agent_argv_free(&av);
    many[128] = 'w';
    many[129] = '\0';
    assert_int_equal(agent_upgrade_expand(many, "m", &av, why, sizeof why), GW_E_INVALID);
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(agent_upgrade_expand("c {name}", longname, &av, why, sizeof why),
                     GW_E_INVALID);
    assert_int_equal(agent_upgrade_template_check("c {name} {nmae}", why, sizeof why),
                     GW_E_INVALID);
    assert_non_null(strstr(why, "{nmae}"));
    assert_int_equal(agent_upgrade_template_check("c {name}", why, sizeof why), 0);
}

static void test_digest_parse(void **state)
{
    (void)state;
    char d79[80], d80[81];
    memset(d79, 'a', 79);
    d79[79] = '\0';
    memset(d80, 'a', 80);
    d80[80] = '\0';
    static char out[5000];
    memset(out, 'x', sizeof out);
    const struct {
        struct strv out;
        bool truncated;
        const char *want; /* NULL: refused */
    } rows[] = {
        {STRV_LIT("sha256:abc\n"), false, "sha256:abc"},
        {STRV_LIT("  sha256:abc \r\n\n"), false, "sha256:abc"},
        {STRV_LIT("sha256:abc"), false, "sha256:abc"},
        {{d79, 79}, false, d79},
        {{d80, 80}, false, NULL},
        {STRV_LIT(""), false, NULL},
        {STRV_LIT(" \n\n"), false, NULL},
        {STRV_LIT("sha256:a\nsha256:b\n"), false, NULL},
        {STRV_LIT("sha256:a\tb\x01"), false, NULL},
        {STRV_LIT("sha256:a"), true, NULL},
        {{out, sizeof out}, false, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char digest[NODE_API_MAX_DIGEST] = "junk", why[200] = "";
        int rc =
            agent_upgrade_digest_parse(rows[i].out, rows[i].truncated, digest, why, sizeof why);
        if (rows[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(digest, rows[i].want);
            /* what the gateway's inventory parser takes */
            assert_true(node_api_digest_is_valid(strv_from_cstr(digest)));
        } else {
            assert_int_equal(rc, GW_E_INVALID);
            assert_string_equal(digest, "");
            assert_true(why[0] != '\0');
        }
    }
}

/* The inventory parser and the check agree on what a digest is. */
static void test_digest_rules_match_the_inventory(void **state)
{
    (void)state;
    const char *vals[] = {"sha256:ok", "with space", "x\x7f", "tab\there", "nl\n"};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct node_api_inv_items l = {0};
        int rc = node_api_inv_items_add(&l, STRV_LIT("n"), STRV_NULL, strv_from_cstr(vals[i]),
                                        strv_from_cstr(vals[i]), NULL);
        assert_int_equal(rc == 0, node_api_digest_is_valid(strv_from_cstr(vals[i])));
        xfree(l.v);
    }
}

static void test_cache_ttl(void **state)
{
    (void)state;
    struct agent_upgrade_cache c;
    agent_upgrade_cache_init(&c, HOUR_MS);
    uint64_t now = 5000; /* the test's clock */
    assert_non_null(agent_upgrade_cache_note(&c, true, "m1", "sha256:old", now));
    assert_non_null(agent_upgrade_cache_note(&c, false, "cuda12", NULL, now));
    assert_int_equal(c.n, 2);
    assert_true(c.v[0].is_model); /* models first */

    /* new items are due at once; each is taken once */
    struct agent_upgrade_entry *e1 = agent_upgrade_cache_take_due(&c, now);
    struct agent_upgrade_entry *e2 = agent_upgrade_cache_take_due(&c, now);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_ptr_not_equal(e1, e2);
    assert_null(agent_upgrade_cache_take_due(&c, now));
    struct agent_upgrade_entry *m = agent_upgrade_cache_find(&c, true, "m1");
    assert_null(agent_upgrade_cache_latest(&c, m, now)); /* not checked yet: unknown */

    unsigned sup;
    now += 200;
    assert_int_equal(
        agent_upgrade_cache_done(&c, true, "m1", "sha256:new", now, 1700000000000, &sup),
        AGENT_UPGRADE_LOG_NONE);
    m = agent_upgrade_cache_find(&c, true, "m1");
    assert_string_equal(agent_upgrade_cache_latest(&c, m, now), "sha256:new");
    assert_int_equal(m->checked_wall_ms, 1700000000000);
    assert_string_equal(m->digest, "sha256:old");

    /* cached: not due again until the interval passed */
    now += HOUR_MS - 1;
    assert_null(agent_upgrade_cache_take_due(&c, now));
    now += 1;
    m = agent_upgrade_cache_take_due(&c, now);
    assert_non_null(m);
    assert_string_equal(m->name, "m1");
    /* a late refresh keeps the answer up to twice the interval, then it is dropped */
    assert_non_null(agent_upgrade_cache_latest(&c, m, now + HOUR_MS - 1));
    assert_null(agent_upgrade_cache_latest(&c, m, now + HOUR_MS));

    /* a failed refresh forgets it at once (never a stale answer for a failed check) */
    assert_int_equal(agent_upgrade_cache_done(&c, true, "m1", NULL, now, 0, &sup),
                     AGENT_UPGRADE_LOG_FAILED);
    m = agent_upgrade_cache_find(&c, true, "m1");
    assert_null(agent_upgrade_cache_latest(&c, m, now));
    assert_int_equal(m->checked_wall_ms, -1);
    assert_int_equal(m->failures, 1);
    /* retried after a minute, doubling, at most the interval */
    assert_int_equal(m->due_ms, now + MIN_MS);
    assert_null(agent_upgrade_cache_take_due(&c, now + MIN_MS - 1));
    uint64_t t = now;
    uint64_t want[] = {2 * MIN_MS,  4 * MIN_MS, 8 * MIN_MS, 16 * MIN_MS,
                       32 * MIN_MS, HOUR_MS,    HOUR_MS};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        t = m->due_ms;
        assert_ptr_equal(agent_upgrade_cache_take_due(&c, t), m);
        (void)agent_upgrade_cache_done(&c, true, "m1", NULL, t, 0, &sup);
        m = agent_upgrade_cache_find(&c, true, "m1");
        assert_int_equal(m->due_ms - t, want[i]);
    }
    /* a success after failures says so, and resets the schedule */
    t = m->due_ms;
    assert_ptr_equal(agent_upgrade_cache_take_due(&c, t), m);
    assert_int_equal(agent_upgrade_cache_done(&c, true, "m1", "sha256:n2", t, 1, &sup),
                     AGENT_UPGRADE_LOG_OK);
    m = agent_upgrade_cache_find(&c, true, "m1");
    assert_int_equal(m->failures, 0);
    assert_int_equal(m->due_ms, t + HOUR_MS);
    assert_string_equal(agent_upgrade_cache_latest(&c, m, t), "sha256:n2");

    /* a result for an item that went away meanwhile is ignored */
    assert_int_equal(agent_upgrade_cache_done(&c, true, "gone", "x", t, 0, &sup),
                     AGENT_UPGRADE_LOG_NONE);
    agent_upgrade_cache_free(&c);
}

static void test_cache_listing_and_prune(void **state)
{
    (void)state;
    struct agent_upgrade_cache c;
    agent_upgrade_cache_init(&c, 10 * MIN_MS);
    uint64_t now = 0;
    const char *names[] = {"zeta", "alpha", "mid", "beta"};
    for (size_t i = 0; i < 4; i++)
        assert_non_null(agent_upgrade_cache_note(&c, true, names[i], "d", now));
    assert_non_null(agent_upgrade_cache_note(&c, true, "alpha", "d2", now)); /* no duplicate */
    assert_int_equal(c.n, 4);
    assert_string_equal(c.v[0].name, "alpha"); /* sorted */
    assert_string_equal(c.v[0].digest, "d2");
    assert_string_equal(c.v[3].name, "zeta");
    /* the same name as a backend is another item */
    assert_non_null(agent_upgrade_cache_note(&c, false, "alpha", NULL, now));
    assert_int_equal(c.n, 5);

    /* a new listing without "mid": it is no longer checked, and pruned after 2 intervals */
    now += MIN_MS;
    agent_upgrade_cache_unlist(&c, true);
    for (size_t i = 0; i < 4; i++)
        if (strcmp(names[i], "mid")) (void)agent_upgrade_cache_note(&c, true, names[i], "d", now);
    struct agent_upgrade_entry *e;
    unsigned taken = 0;
    while ((e = agent_upgrade_cache_take_due(&c, now))) {
        assert_string_not_equal(e->name, "mid");
        taken++;
    }
    assert_int_equal(taken, 4);
    agent_upgrade_cache_prune(&c, 20 * MIN_MS - 1); /* "mid" was last listed at 0 */
    assert_non_null(agent_upgrade_cache_find(&c, true, "mid"));
    agent_upgrade_cache_prune(&c, 20 * MIN_MS);
    assert_null(agent_upgrade_cache_find(&c, true, "mid"));
    assert_int_equal(c.n, 4);
    /* the backend listing did not change the backends */
    assert_true(agent_upgrade_cache_find(&c, false, "alpha")->listed);
    agent_upgrade_cache_free(&c);

    /* bounded */
    agent_upgrade_cache_init(&c, HOUR_MS);
    char name[32];
    for (unsigned i = 0; i < AGENT_UPGRADE_MAX_ENTRIES; i++) {
        snprintf(name, sizeof name, "m%05u", i);
        assert_non_null(agent_upgrade_cache_note(&c, i % 2, name, NULL, 0));
    }
    assert_null(agent_upgrade_cache_note(&c, true, "one-more", NULL, 0));
    assert_non_null(agent_upgrade_cache_note(&c, true, "m00001", NULL, 0)); /* known: fine */
    agent_upgrade_cache_free(&c);
}

static void test_failure_log_limits(void **state)
{
    (void)state;
    struct agent_upgrade_cache c;
    agent_upgrade_cache_init(&c, HOUR_MS);
    uint64_t now = 0;
    (void)agent_upgrade_cache_note(&c, false, "b", NULL, now);
    unsigned sup = 99, logged = 0, total = 0;
    /* failing every minute for an hour: the first line, then one per ten minutes with the
     * count of the ones held back */
    for (now = 0; now < HOUR_MS; now += MIN_MS) {
        (void)agent_upgrade_cache_take_due(&c, now);
        if (agent_upgrade_cache_done(&c, false, "b", NULL, now, 0, &sup) ==
            AGENT_UPGRADE_LOG_FAILED) {
            logged++;
            if (logged > 1) assert_int_equal(sup, 9);
        }
        total++;
    }
    assert_int_equal(total, 60);
    assert_int_equal(logged, 6);
    agent_upgrade_cache_free(&c);

    /* across items: AGENT_UPGRADE_LOG_BURST a minute, then the count of the held back */
    struct agent_upgrade_loglimit l = {0};
    unsigned dropped = 0, allowed = 0;
    for (int i = 0; i < 25; i++) allowed += agent_upgrade_log_allow(&l, 1000, &dropped);
    assert_int_equal(allowed, AGENT_UPGRADE_LOG_BURST);
    assert_true(agent_upgrade_log_allow(&l, 1000 + MIN_MS, &dropped));
    assert_int_equal(dropped, 25 - AGENT_UPGRADE_LOG_BURST);
    assert_true(agent_upgrade_log_allow(&l, 1000 + MIN_MS, &dropped));
    assert_int_equal(dropped, 0);
}

static void test_installed_quota(void **state)
{
    (void)state;
    static const size_t rows[][3] = {
        /* models, backends, backends' places of 64 */
        {0, 0, 0},      {10, 5, 5}, {100, 10, 10}, {10, 100, 54},
        {100, 100, 32}, {64, 1, 1}, {0, 200, 64},  {30, 40, 34},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(agent_upgrade_backend_quota(rows[i][0], rows[i][1], 64), rows[i][2]);
}

static void test_config_keys(void **state)
{
    (void)state;
    struct agent_config c;
    struct gw_error err = {0};
    assert_int_equal(agent_config_load(&c, NULL, NULL, NULL, 0, &err), 0);
    assert_null(c.upgrade_check_models); /* off unless configured */
    assert_null(c.upgrade_check_backends);
    assert_int_equal(c.upgrade_check_interval_ms, HOUR_MS);
    assert_int_equal(c.upgrade_check_timeout_ms, 60000);
    assert_int_equal(c.upgrade_check_concurrency, 2);
    agent_config_free(&c);

    const char *sets[] = {"upgrade_check.models=/opt/latest model {name}",
                          "upgrade_check.interval=10m", "upgrade_check.concurrency=4",
                          "upgrade_check.timeout=5s"};
    char *env[] = {"DROVER_AGENT_UPGRADE_CHECK_BACKENDS=/opt/latest backend {name}", NULL};
    assert_int_equal(agent_config_load(&c, NULL, env, sets, 4, &err), 0);
    assert_string_equal(c.upgrade_check_models, "/opt/latest model {name}");
    assert_string_equal(c.upgrade_check_backends, "/opt/latest backend {name}");
    assert_int_equal(c.upgrade_check_interval_ms, 10 * MIN_MS);
    assert_int_equal(c.upgrade_check_concurrency, 4);
    assert_int_equal(c.upgrade_check_timeout_ms, 5000);
    agent_config_free(&c);

    static const struct {
        const char *set, *says;
    } bad[] = {
        {"upgrade_check.models=check {version}", "upgrade_check.models: unknown placeholder"},
        {"upgrade_check.backends=check 'open {name}", "upgrade_check.backends: "},
        {"upgrade_check.concurrency=0", "upgrade_check.concurrency"},
        {"upgrade_check.concurrency=65", "upgrade_check.concurrency"},
        {"upgrade_check.concurrency=two", "upgrade_check.concurrency"},
        {"upgrade_check.interval=10ms", "upgrade_check.interval"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_error e2 = {0};
        assert_int_equal(agent_config_load(&c, NULL, NULL, &bad[i].set, 1, &e2), GW_E_INVALID);
        assert_non_null(strstr(e2.msg, bad[i].says));
        agent_config_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_digest_parse),
        cmocka_unit_test(test_digest_rules_match_the_inventory),
        cmocka_unit_test(test_cache_ttl),
        cmocka_unit_test(test_cache_listing_and_prune),
        cmocka_unit_test(test_failure_log_limits),
        cmocka_unit_test(test_installed_quota),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
