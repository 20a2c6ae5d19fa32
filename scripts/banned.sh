#!/usr/bin/env bash
# Fails if banned C functions appear in our sources (STYLE: sprintf, strcpy, strcat, atoi,
# gets, and raw malloc/calloc/realloc/free outside src/base/mem.c).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c')
if grep -nE '(^|[^_a-zA-Z0-9.>])(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets)[[:space:]]*\(' $files; then
    echo "banned: use snprintf / buf / strv_to_u64 instead" >&2
    status=1
fi
others=$(echo "$files" | grep -v '^src/base/mem.c$' || true)
if grep -nE '(^|[^_a-zA-Z0-9.>])(malloc|calloc|realloc|free|strdup|strndup)[[:space:]]*\(' $others; then
    echo "banned: use xmalloc/xcalloc/xrealloc/xfree/xstrdup from base/mem.h" >&2
    status=1
fi
exit $status
