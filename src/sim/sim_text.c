/* sim_text — word table and hashing behind the simulated generation. A token's word depends
 * only on (seed, index), so a stream and a non-stream answer to the same prompt concatenate
 * to the same text. Pure; any thread. */
#include "sim/sim_text.h"

#include <math.h>

static const char *const words[] = {
    " the",     " a",      " model",  " token",   " river",    " stone",  " light",  " quiet",
    " engine",  " signal", " garden", " north",   " little",   " window", " paper",  " silver",
    " morning", " cloud",  " number", " simple",  " green",    " bridge", " over",   " under",
    " and",     " with",   " slowly", " bright",  " question", " answer", " forest", " harbor",
    " winter",  " summer", " road",   " lantern", " copper",   " thread", " field",  " echo",
    " mirror",  " valley", " is",     " was",     " runs",     " holds",  " finds",  " keeps",
    " of",      " in",     " to",     " from",    " every",    " other",  " gentle", " amber",
    " orbit",   " pixel",  " kernel", " vector",  " socket",   " buffer", " cache",  " route",
};

enum { N_WORDS = sizeof words / sizeof words[0] };

uint64_t sim_text_hash(uint64_t seed, const void *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t sim_text_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t sim_text_tokens(size_t bytes)
{
    /* no overflow near SIZE_MAX */
    return (uint64_t)(bytes / SIM_TEXT_BYTES_PER_TOKEN) + (bytes % SIM_TEXT_BYTES_PER_TOKEN != 0);
}

const char *sim_text_token(uint64_t seed, uint64_t i)
{
    uint64_t st = seed ^ (i * 0xd1342543de82ef95ULL);
    const char *w = words[sim_text_rand(&st) % N_WORDS];
    return i == 0 ? w + 1 : w; /* the first word has no leading space */
}

void sim_text_embedding(const char *p, size_t len, unsigned dims, double *out)
{
    uint64_t st = sim_text_hash(0x5eed, p, len);
    double norm = 0;
    for (unsigned i = 0; i < dims; i++) {
        /* uniform in [-1, 1) */
        out[i] = (double)(sim_text_rand(&st) >> 11) / (double)(1ULL << 52) - 1.0;
        norm += out[i] * out[i];
    }
    norm = sqrt(norm);
    if (norm > 0)
        for (unsigned i = 0; i < dims; i++) out[i] /= norm;
}
