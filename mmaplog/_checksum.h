/* Slot checksums of the mmaplog ring format, shared by mmaplog/_cwrite.c and mmaplog/_cread.c.
 *
 * Format 2.x: a slot's check word is the CRC-32 of zlib (reflected polynomial 0xEDB88320,
 * initial value and final xor 0xFFFFFFFF: the value zlib.crc32 returns) over the slot's header
 * and the payload bytes it uses; its zero padding is not summed but required.  Format 1.x:
 * adler32 over everything before the trailer (read only: nothing writes 1.x any more).
 *
 * CRC-32 rather than adler32: adler32's sums do not see a byte moved together with a
 * compensating change (digits swapped, one byte up and its neighbour down), exactly what a
 * copy of a slot mixing an old and a new record can hold; a CRC detects every burst of up to
 * 32 bits, every change of up to 3 bits in up to 11 KiB (2 bits beyond), and any other change
 * but for a 2**-32 chance.  zlib's polynomial because the pure-Python paths then use zlib.crc32 at C speed.
 *
 * x86-64 CPUs with PCLMULQDQ (every one since 2010) fold 16 bytes per carry-less multiplication
 * for inputs of 64 bytes and more: per slot as fast as the SSE2 adler32 it replaces (measured in
 * bench/test_checksum.py); shorter inputs, tails and other CPUs use slice-by-8 tables.  Both are
 * checked against zlib.crc32 for every length in tests/test_cread.py.  mmaplog_crc32_init() builds
 * the tables and probes the CPU once per process (pthread_once: every interpreter that loads the
 * module calls it from the module's exec slot).  A header only (static functions), so each extension keeps one copy and neither
 * depends on the other.
 */
#ifndef MMAPLOG_CHECKSUM_H
#define MMAPLOG_CHECKSUM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t mmaplog_crc_table[8][256];

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MMAPLOG_CRC_CLMUL 1
#include <immintrin.h>
static int mmaplog_crc_clmul_ok; /* set by mmaplog_crc32_init() where the CPU has PCLMULQDQ and SSE4.1 */
#endif

static void mmaplog_crc32_build(void)
{
#ifdef MMAPLOG_CRC_CLMUL
    __builtin_cpu_init();
    mmaplog_crc_clmul_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        mmaplog_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = mmaplog_crc_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = mmaplog_crc_table[0][c & 0xFF] ^ (c >> 8);
            mmaplog_crc_table[t][i] = c;
        }
    }
}

static pthread_once_t mmaplog_crc_once = PTHREAD_ONCE_INIT;

/* Build the tables once per process: a module's exec slot may run in several interpreters at once. */
static inline void mmaplog_crc32_init(void) { (void)pthread_once(&mmaplog_crc_once, mmaplog_crc32_build); }

/* Slice-by-8 on the inverted register `c` (zlib's internal state). */
static inline uint32_t mmaplog_crc32_tables(uint32_t c, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint32_t lo = (uint32_t)w ^ c, hi = (uint32_t)(w >> 32);
        c = mmaplog_crc_table[7][lo & 0xFF] ^ mmaplog_crc_table[6][(lo >> 8) & 0xFF] ^
            mmaplog_crc_table[5][(lo >> 16) & 0xFF] ^ mmaplog_crc_table[4][lo >> 24] ^
            mmaplog_crc_table[3][hi & 0xFF] ^ mmaplog_crc_table[2][(hi >> 8) & 0xFF] ^
            mmaplog_crc_table[1][(hi >> 16) & 0xFF] ^ mmaplog_crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = mmaplog_crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#ifdef MMAPLOG_CRC_CLMUL
/* Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ", 2009; the constants are those of zlib/Chromium's crc32_simd.c for the reflected
 * polynomial 0xEDB88320).  `n` >= 64 and a multiple of 16; `c` is the inverted register. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t mmaplog_crc32_clmul(uint32_t c, const unsigned char *p,
                                                                            size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0x0000000000, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    __m128i x0, x5;
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    p += 64;
    n -= 64;
    while (n >= 64) { /* four blocks of 16 in parallel */
        __m128i x6, x7, x8;
        x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(p + 0x30)));
        p += 64;
        n -= 64;
    }
    /* Fold the four into one, then single blocks of 16. */
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x4), x5);
    while (n >= 16) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), _mm_loadu_si128((const __m128i *)p)),
                           x5);
        p += 16;
        n -= 16;
    }
    /* 128 bits to 64, then Barrett reduction to 32. */
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x2r = _mm_clmulepi64_si128(x1, x0, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2r);
    x2r = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_clmulepi64_si128(x1, k5k0, 0x00);
    x1 = _mm_xor_si128(x1, x2r);
    x2r = _mm_and_si128(x1, mask32);
    x2r = _mm_clmulepi64_si128(x2r, poly, 0x10);
    x2r = _mm_and_si128(x2r, mask32);
    x2r = _mm_clmulepi64_si128(x2r, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2r);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

/* Continue a CRC-32: crc32_update(crc32_update(0, a, n), b, m) == zlib.crc32(a + b).  Little-endian hosts. */
/* Twin: zlib.crc32 in layout.slot_check and _codec.crc32_rows (docs/MAP.md). */
static inline uint32_t mmaplog_crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
#ifdef MMAPLOG_CRC_CLMUL
    if (n >= 64 && mmaplog_crc_clmul_ok) {
        size_t bulk = n & ~(size_t)15;
        c = mmaplog_crc32_clmul(c, p, bulk);
        p += bulk;
        n -= bulk;
    }
#endif
    return ~mmaplog_crc32_tables(c, p, n);
}

/* ------------------------------------------------------------------ adler32 (format 1.x, reading) */

#define MMAPLOG_ADLER_MOD 65521u
#define MMAPLOG_ADLER_NMAX 5552 /* largest n with 255n(n+1)/2 + (n+1)(MOD-1) < 2**32, as in zlib */

#if defined(__SSE2__)
#include <emmintrin.h>

static inline uint32_t mmaplog_hsum32(__m128i v)
{
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(v);
}
#endif

/* zlib.adler32(data, adler) */
static inline uint32_t mmaplog_adler32_update(uint32_t adler, const unsigned char *p, size_t n)
{
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    while (n > 0) {
        size_t k = n < MMAPLOG_ADLER_NMAX ? n : MMAPLOG_ADLER_NMAX;
        n -= k;
#if defined(__SSE2__)
        /* 16 bytes per step: a grows by their sum, b by 16 a plus their sum weighted 16..1. */
        size_t blocks = k / 16;
        if (blocks) {
            const __m128i zero = _mm_setzero_si128();
            const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
            const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
            __m128i vs = zero, vps = zero, vw = zero;
            for (size_t i = 0; i < blocks; i++) {
                __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * i));
                vps = _mm_add_epi32(vps, vs);
                vs = _mm_add_epi32(vs, _mm_sad_epu8(v, zero));
                vw = _mm_add_epi32(vw, _mm_madd_epi16(_mm_unpacklo_epi8(v, zero), w_lo));
                vw = _mm_add_epi32(vw, _mm_madd_epi16(_mm_unpackhi_epi8(v, zero), w_hi));
            }
            /* vs and vps hold their sums in lanes 0 and 2 (from _mm_sad_epu8); vw in all four. */
            b += (uint32_t)(16 * blocks) * a + 16 * mmaplog_hsum32(vps) + mmaplog_hsum32(vw);
            a += mmaplog_hsum32(vs);
            p += 16 * blocks;
            k -= 16 * blocks;
        }
#else
        while (k >= 16) {
            uint32_t s = 0, w = 0;
            for (int j = 0; j < 16; j++) {
                s += p[j];
                w += (uint32_t)(16 - j) * p[j];
            }
            b += 16 * a + w;
            a += s;
            p += 16;
            k -= 16;
        }
#endif
        while (k--) {
            a += *p++;
            b += a;
        }
        a %= MMAPLOG_ADLER_MOD;
        b %= MMAPLOG_ADLER_MOD;
    }
    return (b << 16) | a;
}

#endif /* MMAPLOG_CHECKSUM_H */
