/* sim_fault — parser for the fault grammar documented in sim_fault.h and docs/sim.md.
 * The parser is total over its input: every byte string either yields a fault or a one-line
 * reason, never a partial result. Pure; any thread. */
#include "sim/sim_fault.h"

#include <string.h>

enum { SIM_FAULT_MAX_MS = 3600 * 1000 };

void sim_fault_clear(struct sim_fault *f)
{
    memset(f, 0, sizeof *f);
    f->cut_after = -1;
}

bool sim_fault_is_none(const struct sim_fault *f)
{
    return f->status == 0 && !f->reset && !f->hang && !f->reset_after_complete &&
           f->cut_after < 0 && f->slow_headers_ms == 0;
}

static int need_num(struct strv key, struct strv val, bool has_val, uint64_t max, uint64_t *out,
                    struct gw_error *err)
{
    if (!has_val) return gw_error_set(err, GW_E_PARSE, "fault '%.*s' needs a value", STRV_FMT(key));
    if (strv_to_u64(val, out) || *out > max)
        return gw_error_set(err, GW_E_PARSE, "fault '%.*s': bad number '%.*s'", STRV_FMT(key),
                            STRV_FMT(val));
    return 0;
}

static int no_val(struct strv key, bool has_val, struct gw_error *err)
{
    if (has_val) return gw_error_set(err, GW_E_PARSE, "fault '%.*s' takes no value", STRV_FMT(key));
    return 0;
}

static int parse_item(struct strv item, struct sim_fault *f, struct gw_error *err)
{
    long eq = strv_index(item, '=');
    struct strv key = item, val = STRV_NULL;
    bool has_val = eq >= 0;
    if (has_val) {
        key = strv_trim(strv_sub(item, 0, (size_t)eq));
        val = strv_trim(strv_sub(item, (size_t)eq + 1, item.len));
    }
    uint64_t n = 0;
    int rc;
    if (strv_eq_cstr(key, "status")) {
        if ((rc = need_num(key, val, has_val, 599, &n, err))) return rc;
        if (n < 100) return gw_error_set(err, GW_E_PARSE, "fault status must be 100..599");
        f->status = (int)n;
    } else if (strv_eq_cstr(key, "retry_after")) {
        if ((rc = need_num(key, val, has_val, 86400, &n, err))) return rc;
        f->has_retry_after = true;
        f->retry_after_s = (uint32_t)n;
    } else if (strv_eq_cstr(key, "cut_after")) {
        if ((rc = need_num(key, val, has_val, INT32_MAX, &n, err))) return rc;
        f->cut_after = (int64_t)n;
    } else if (strv_eq_cstr(key, "slow_headers")) {
        if ((rc = need_num(key, val, has_val, SIM_FAULT_MAX_MS, &n, err))) return rc;
        f->slow_headers_ms = n;
    } else if (strv_eq_cstr(key, "reset")) {
        if ((rc = no_val(key, has_val, err))) return rc;
        f->reset = true;
    } else if (strv_eq_cstr(key, "hang")) {
        if ((rc = no_val(key, has_val, err))) return rc;
        f->hang = true;
    } else if (strv_eq_cstr(key, "reset_after_complete")) {
        if ((rc = no_val(key, has_val, err))) return rc;
        f->reset_after_complete = true;
    } else if (strv_eq_cstr(key, "none")) {
        if ((rc = no_val(key, has_val, err))) return rc;
    } else {
        return gw_error_set(err, GW_E_PARSE, "unknown fault '%.*s'", STRV_FMT(key));
    }
    return 0;
}

int sim_fault_parse(struct strv spec, struct sim_fault *out, struct gw_error *err)
{
    struct sim_fault f;
    sim_fault_clear(&f);
    while (spec.len) {
        long semi = strv_index(spec, ';');
        size_t n = semi < 0 ? spec.len : (size_t)semi;
        struct strv item = strv_trim(strv_sub(spec, 0, n));
        spec = strv_sub(spec, n + (semi < 0 ? 0 : 1), spec.len);
        if (item.len == 0) continue;
        int rc = parse_item(item, &f, err);
        if (rc) return rc;
    }
    int kinds = (f.status != 0) + f.reset + f.hang;
    if (kinds > 1)
        return gw_error_set(err, GW_E_PARSE, "faults status, reset and hang exclude each other");
    if (f.has_retry_after && f.status == 0)
        return gw_error_set(err, GW_E_PARSE, "retry_after needs status=");
    *out = f;
    return 0;
}
