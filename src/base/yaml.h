/* yaml — loads one YAML document into a small tree with line numbers, so config loaders can
 * answer "file:line: reason". Anchors, aliases and tags are refused (a config has no use for
 * them and they are how YAML bombs work). The input is capped (max_bytes). Any thread; one
 * tree per caller. */
#ifndef DROVER_BASE_YAML_H
#define DROVER_BASE_YAML_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum ynode_type { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ };

struct ynode {
    enum ynode_type type;
    int line;            /* 1-based line where the node starts */
    char *scalar;        /* YNODE_SCALAR: owned, NUL-terminated */
    bool quoted;         /* scalar was quoted ('x' or "x"): never a number/bool/null */
    char **keys;         /* YNODE_MAP: owned keys, n entries */
    int *key_lines;      /* YNODE_MAP: line of each key */
    struct ynode **kids; /* MAP values or SEQ items, n entries, owned */
    size_t n;
};

/* Parses a whole buffer. Returns owned root (free with ynode_free) or NULL with err's message
 * "line N: reason". An empty document gives an empty map. */
struct ynode *yaml_parse(const char *p, size_t len, struct gw_error *err);
/* Reads and parses a file of at most max_bytes; err's message is "file:line: reason". */
struct ynode *yaml_load_file(const char *path, size_t max_bytes, struct gw_error *err);
void ynode_free(struct ynode *n);

/* Map lookup (NULL when absent or n is not a map). Borrowed. */
struct ynode *ynode_get(const struct ynode *map, const char *key);

/* Scalar conversions; GW_E_INVALID when the node is not a scalar of that kind. */
int ynode_bool(const struct ynode *n, bool *out) WUR;    /* true/false/yes/no/on/off */
int ynode_u64(const struct ynode *n, uint64_t *out) WUR; /* decimal, no sign */
int ynode_double(const struct ynode *n, double *out) WUR;
/* Duration: a bare integer is milliseconds, or with a unit: 250ms, 5s, 2m, 1h. */
int ynode_duration_ms(const struct ynode *n, uint64_t *out) WUR;
/* Size: a bare integer is bytes, or with a unit: 16KiB, 16KB (same), 4MiB, 1GiB. */
int ynode_size_bytes(const struct ynode *n, uint64_t *out) WUR;
/* Same conversions on a plain string (for environment variables and flags). */
int parse_bool_str(const char *s, bool *out) WUR;
int parse_duration_ms_str(const char *s, uint64_t *out) WUR;
int parse_size_bytes_str(const char *s, uint64_t *out) WUR;

#endif
