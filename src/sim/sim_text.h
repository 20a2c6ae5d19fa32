/* sim_text — the simulated model's "weights": deterministic pseudo-words from a prompt seed,
 * approximate token counts, and unit-length embedding vectors. Same input, same output, on
 * every node and every run. Pure functions; any thread. */
#ifndef DROVER_SIM_SIM_TEXT_H
#define DROVER_SIM_SIM_TEXT_H
#include <stddef.h>
#include <stdint.h>

enum { SIM_TEXT_BYTES_PER_TOKEN = 4 };

/* 64-bit FNV-1a with a final mix, continuing from seed (use 0 to start). */
uint64_t sim_text_hash(uint64_t seed, const void *p, size_t len);
/* splitmix64 step: advances *state, returns the next pseudo-random value. */
uint64_t sim_text_rand(uint64_t *state);
/* Approximate token count: one token per 4 bytes, rounded up. */
uint64_t sim_text_tokens(size_t bytes);
/* The text of generated token i (0-based) for seed: a word, with a leading space after the
 * first token. Returns a static string. */
const char *sim_text_token(uint64_t seed, uint64_t i);
/* Fills out[0..dims) with a unit-length vector derived from p[0..len). */
void sim_text_embedding(const char *p, size_t len, unsigned dims, double *out);

#endif
