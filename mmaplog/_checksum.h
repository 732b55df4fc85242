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
 * 32 bits and every change of up to 3 bits in a slot, and any other change but for a 2**-32
 * chance.  zlib's polynomial because the pure-Python paths then use zlib.crc32 at C speed.
 *
 * Slice-by-8 tables, built once per module by mmaplog_crc32_init() (not thread-safe: call it
 * from the module's init function).  A header only (static functions), so each extension
 * keeps one copy and neither depends on the other.
 */
#ifndef MMAPLOG_CHECKSUM_H
#define MMAPLOG_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t mmaplog_crc_table[8][256];

static inline void mmaplog_crc32_init(void)
{
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

/* Continue a CRC-32: crc32_update(crc32_update(0, a, n), b, m) == zlib.crc32(a + b). Little-endian hosts. */
static inline uint32_t mmaplog_crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
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
    return ~c;
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
