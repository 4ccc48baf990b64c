/* The 64-bit finaliser of MurmurHash3, shared by plop's C extensions: every
 * input bit affects every output bit, so keys built from pointers and small
 * ints spread over an open-addressing table indexed by the low bits. */
#ifndef PLOP_MIX64_H
#define PLOP_MIX64_H

#include <stdint.h>

static inline uint64_t
plop_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif
