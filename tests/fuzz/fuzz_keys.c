/* fuzz_keys — key_spec_apply (the admin API's body for POST/PATCH /admin/v1/keys, and the spec
 * the store keeps) over arbitrary bytes, applied onto a fresh spec and onto a full one. It may
 * never crash or read past the input (exact-size copy); a refusal leaves the spec as it was and
 * says why; an accepted spec serialises to JSON that applies again to the same spec (the store
 * round trip). keys_mask_token over the same bytes never shows more than 9 of them. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/mem.h"
#include "gw/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const struct key_spec *a, const struct key_spec *b)
{
    if (strcmp(a->name, b->name) || strcmp(a->owner, b->owner) || strcmp(a->team, b->team) ||
        a->endpoints != b->endpoints || a->rpm != b->rpm || a->tpm != b->tpm ||
        a->max_concurrent != b->max_concurrent || a->budget_tokens != b->budget_tokens ||
        a->budget_period != b->budget_period || a->expires_ms != b->expires_ms ||
        a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], b->models[i])) return false;
    return true;
}

static void one(struct key_spec *s, const char *p, size_t n)
{
    struct key_spec before;
    key_spec_copy(&before, s);
    char why[200] = "";
    int rc = key_spec_apply(s, p, n, why, sizeof why);
    if (rc) {
        if (!why[0] || !same(s, &before)) __builtin_trap();
    } else {
        if (!s->name[0] || s->rpm > KEYS_MAX_RATE || s->tpm > KEYS_MAX_RATE ||
            s->n_models > KEYS_MAX_GLOBS || (s->endpoints & ~(unsigned)KEP_ALL))
            __builtin_trap();
        struct buf b;
        buf_init(&b, 1u << 20);
        if (key_spec_to_json(s, &b)) __builtin_trap();
        struct key_spec again;
        key_spec_init(&again);
        if (key_spec_apply(&again, b.p, b.len, why, sizeof why)) __builtin_trap();
        /* "*" is how an empty glob list is shown: the same entitlement */
        bool star = s->n_models == 0 && again.n_models == 1 && !strcmp(again.models[0], "*");
        if (star) {
            key_spec_free(&again);
            key_spec_init(&again);
            if (key_spec_apply(&again, b.p, b.len, why, sizeof why)) __builtin_trap();
            if (!key_spec_allows_model(&again, STRV_LIT("any"))) __builtin_trap();
        } else if (!same(s, &again)) {
            __builtin_trap();
        }
        key_spec_free(&again);
        buf_free(&b);
    }
    key_spec_free(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = xmalloc(size ? size : 1);
    if (size) memcpy(copy, data, size);
    struct key_spec s;
    key_spec_init(&s);
    one(&s, copy, size);
    key_spec_free(&s);
    key_spec_init(&s);
    static const char full[] = "{\"name\":\"n\",\"owner\":\"o\",\"team\":\"t\",\"models\":[\"a*\"],"
                               "\"endpoints\":[\"chat\"],\"rpm\":1,\"tpm\":2,\"max_concurrent\":3,"
                               "\"budget_tokens\":4,\"budget_period\":\"month\",\"expires_ms\":5}";
    char why[200];
    if (key_spec_apply(&s, full, sizeof full - 1, why, sizeof why)) __builtin_trap();
    one(&s, copy, size);
    key_spec_free(&s);
    char shown[32];
    keys_mask_token(strv_make(copy, size), shown, sizeof shown);
    if (strlen(shown) > 12) __builtin_trap();
    xfree(copy);
    return 0;
}
