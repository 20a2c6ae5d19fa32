/* op_result — names of the operation outcome classes and kinds. */
#include "proto/op_result.h"

static const char *const class_names[OP_CLASS_COUNT] = {
    "ok", "exception", "config_error", "unsafe", "aborted", "error",
};

static const char *const kind_names[OP_KIND_COUNT] = {
    "install", "upgrade", "delete", "load", "unload",
};

const char *op_class_name(enum op_class c)
{
    return (unsigned)c < OP_CLASS_COUNT ? class_names[c] : "?";
}

int op_class_parse(struct strv s, enum op_class *out)
{
    for (int i = 0; i < OP_CLASS_COUNT; i++) {
        if (strv_eq_cstr(s, class_names[i])) {
            *out = (enum op_class)i;
            return 0;
        }
    }
    return GW_E_INVALID;
}

bool op_class_is_explicit_failure(enum op_class c)
{
    return c == OP_CLASS_EXCEPTION || c == OP_CLASS_CONFIG_ERROR || c == OP_CLASS_UNSAFE ||
           c == OP_CLASS_ABORTED;
}

const char *op_kind_name(enum op_kind k)
{
    return (unsigned)k < OP_KIND_COUNT ? kind_names[k] : "?";
}

int op_kind_parse(struct strv s, enum op_kind *out)
{
    for (int i = 0; i < OP_KIND_COUNT; i++) {
        if (strv_eq_cstr(s, kind_names[i])) {
            *out = (enum op_kind)i;
            return 0;
        }
    }
    return GW_E_INVALID;
}

bool op_kind_leaves_target(enum op_kind k)
{
    return k == OP_INSTALL || k == OP_UPGRADE || k == OP_LOAD;
}
