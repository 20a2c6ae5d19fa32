/* test_store_mode — the SQLite file holds key hashes and node secrets: store_open creates it
 * owner-only (0600, whatever the umask lets through beyond that), and SQLite's -wal and -shm
 * files follow; an existing file's mode is the operator's and is left as it is. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/log.h"
#include "store/store.h"

struct fx {
    uv_loop_t loop;
    char dir[64];
    char path[128];
    mode_t old_umask;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static struct fx fx;

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    memset(&fx, 0, sizeof fx);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    snprintf(fx.dir, sizeof fx.dir, "/tmp/drover-store-mode-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.path, sizeof fx.path, "%s/drover.db", fx.dir);
    fx.old_umask = umask(022); /* the common default, which lets 0644 through */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    umask(fx.old_umask);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&fx.loop);
    nftw(fx.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(rc, 0);
    return 0;
}

static void open_close(bool sides_owner_only)
{
    struct store_config cfg = {.path = fx.path, .busy_timeout_ms = 2000};
    struct store *s = NULL;
    struct gw_error err = {0};
    if (store_open(&fx.loop, &cfg, &s, &err)) fail_msg("store_open: %s", err.msg);
    /* while open, the -wal and -shm files exist beside it, with the database's mode */
    char side[160];
    struct stat st;
    static const char *const suffix[] = {"-wal", "-shm"};
    for (int i = 0; i < 2 && sides_owner_only; i++) {
        snprintf(side, sizeof side, "%s%s", fx.path, suffix[i]);
        if (stat(side, &st) == 0 && (st.st_mode & 077) != 0)
            fail_msg("%s has mode %04o", side, (unsigned)(st.st_mode & 07777));
    }
    store_close(s);
    uv_run(&fx.loop, UV_RUN_NOWAIT);
}

static void test_new_file_is_owner_only(void **state)
{
    (void)state;
    open_close(true);
    struct stat st;
    assert_int_equal(stat(fx.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* and it is a working database: opening it again finds the schema */
    open_close(true);
    assert_int_equal(stat(fx.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_existing_mode_left_alone(void **state)
{
    (void)state;
    int fd = open(fx.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(fx.path, 0640), 0);
    open_close(false); /* logs store_file_mode, changes nothing */
    struct stat st;
    assert_int_equal(stat(fx.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_file_is_owner_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_mode_left_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
