/* sha256 — SHA-256 (FIPS 180-4), for node secrets: the gateway stores only their hash. */
#ifndef DROVER_BASE_SHA256_H
#define DROVER_BASE_SHA256_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

void sha256(const void *data, size_t len, uint8_t out[32]);
/* Lowercase hex digest of data, NUL-terminated (65 bytes). */
void sha256_hex(const void *data, size_t len, char out[65]);
/* Constant-time comparison of two NUL-terminated strings of equal length; false otherwise. */
bool secret_equal(const char *a, const char *b);
/* n random bytes from the kernel (getrandom); GW_E_IO on failure. */
int random_bytes(void *p, size_t n) WUR;
/* A new secret: 32 random bytes as 64 lowercase hex chars plus NUL. */
int random_secret_hex(char out[65]) WUR;

#endif
