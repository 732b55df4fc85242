/* Slot encoding shared by the writer's C append (mmaplog/_cwrite.c) and the async worker (mmaplog/_casync.c).
 *
 * The commit protocol (invalid trailer, body, trailer, with release fences) and the %-format of the common
 * conversions straight into UTF-8.  A header only (static inline functions): each extension keeps one copy.
 * Include <Python.h> and "_checksum.h" first; the slot layout comes from "_layout.h".
 */
#ifndef MMAPLOG_SLOT_H
#define MMAPLOG_SLOT_H

#include <stdint.h>
#include <string.h>

#include "_layout.h"

/* Take the next value of a counter (mmaplog/_counter.py: the writer's seqs and a file's positions) as an
 * unsigned 64-bit number: one tp_iternext call, which the GIL makes atomic.  -1 with an exception set when it
 * fails or ran out. */
static int mmaplog_next_u64(PyObject *counter, unsigned long long *out)
{
    PyObject *value = Py_TYPE(counter)->tp_iternext ? Py_TYPE(counter)->tp_iternext(counter) : NULL;
    if (value == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "mmaplog: a counter ran out");
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(value);
    Py_DECREF(value);
    if (*out == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* mmaplog._cwrite.Counter (mmaplog/_counter.py): the value next() takes now, and the value it stops at. */
typedef struct {
    PyObject_HEAD
    unsigned long long next;
    unsigned long long stop;
} MmaplogCounter;

/* Take the next value of ``counter``: one step of a Counter of ``counter_type`` (no int is made; the GIL makes
 * it atomic, as it does tp_iternext), else mmaplog_next_u64.  -1 with an exception set when it ran out. */
static inline int mmaplog_claim(PyObject *counter, PyTypeObject *counter_type, unsigned long long *out)
{
    if (counter_type != NULL && Py_IS_TYPE(counter, counter_type)) {
        MmaplogCounter *c = (MmaplogCounter *)counter;
        if (c->next >= c->stop) {
            PyErr_SetString(PyExc_RuntimeError, "mmaplog: a counter ran out");
            return -1;
        }
        *out = c->next++;
        return 0;
    }
    return mmaplog_next_u64(counter, out);
}

#ifndef FMT_UNHANDLED
#define FMT_UNHANDLED (-2)
#endif

/* The commit word a slot carries while record `pos` is written into it: the echo of position
 * pos + (slot_count | 1), which is neither pos nor the slot's previous position pos - slot_count
 * (slot_count | 1 is odd and below 2**32, so neither it nor its double is 0 mod 2**32). */
static inline uint32_t mmaplog_invalid_echo(unsigned long long pos, unsigned long long count)
{
    return (uint32_t)((pos + (count | 1)) & 0xFFFFFFFFu);
}

/* Copy and commit one slot at ``slot`` for record position ``pos``, seqlock-like for live readers: first a
 * trailer that matches neither the old nor the new body (check 0, commit echo of no position the slot holds
 * meanwhile), then the body, then the real trailer in one aligned 8-byte store.  The release fences keep each
 * step's stores visible before the next step's on weakly ordered CPUs (AArch64); a reader that reads the slot
 * twice and finds both copies equal has a whole slot.  The payload is ``data`` then ``extra`` (a record's
 * message and its fields; ``en`` 0 for none).  The check is CRC-32 of the header and the payload as they now
 * lie in the slot, contiguous and in cache; the padding is zero (docs/FORMAT.md). */
static inline void mmaplog_store_slot2(unsigned char *slot, Py_ssize_t size, Py_ssize_t payload,
                                       unsigned long long count, const unsigned char *header, const char *data,
                                       Py_ssize_t n, const char *extra, Py_ssize_t en, unsigned long long pos)
{
    uint64_t *word = (uint64_t *)(slot + size - SLOT_TRAILER_SIZE);
    __atomic_store_n(word, (uint64_t)mmaplog_invalid_echo(pos, count) << 32, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(slot, header, SLOT_HEADER_SIZE);
    memcpy(slot + SLOT_HEADER_SIZE, data, (size_t)n);
    if (en > 0)
        memcpy(slot + SLOT_HEADER_SIZE + n, extra, (size_t)en);
    memset(slot + SLOT_HEADER_SIZE + n + en, 0, (size_t)(payload - n - en));
    uint32_t check = mmaplog_crc32_update(0, slot, (size_t)(SLOT_HEADER_SIZE + n + en));
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(word, ((uint64_t)(pos & 0xFFFFFFFFu) << 32) | check, __ATOMIC_RELAXED);
}

/* mmaplog_store_slot2 for a payload of one piece (inlined: the fields' branch folds away). */
static inline void mmaplog_store_slot(unsigned char *slot, Py_ssize_t size, Py_ssize_t payload,
                                      unsigned long long count, const unsigned char *header, const char *data,
                                      Py_ssize_t n, unsigned long long pos)
{
    mmaplog_store_slot2(slot, size, payload, count, header, data, n, NULL, 0, pos);
}

/* ---- msg % args straight into UTF-8, for the conversions logging calls use most.
 *
 * Handles %d %i %u (exact int within 64 bits), %s (exact str or int), %f and %.Nf (exact float, through
 * the interpreter's own PyOS_double_to_string) and %%; no flags, width or mapping keys.  Anything else
 * returns -2 and the caller uses PyUnicode_Format, so the text is always what ``msg % args`` gives.
 * Returns the length written into out[0..cap), -1 with an exception set (memory), or -2 (not handled).
 */
static inline Py_ssize_t put_bytes(char *out, Py_ssize_t cap, Py_ssize_t at, const char *src, Py_ssize_t len)
{
    if (len > cap - at)
        return FMT_UNHANDLED;
    memcpy(out + at, src, (size_t)len);
    return at + len;
}

static inline Py_ssize_t put_int(char *out, Py_ssize_t cap, Py_ssize_t at, PyObject *value)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return FMT_UNHANDLED;
    }
    char digits[24];
    int i = (int)sizeof(digits);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[--i] = '-';
    return put_bytes(out, cap, at, digits + i, (Py_ssize_t)sizeof(digits) - i);
}

#ifdef MMAPLOG_FAST_FIXED
#include <math.h>
#define FMT_SLOW (-3)
/* ``x`` with ``precision`` decimals in integer arithmetic, when that is exact: |x| * 10**precision below
 * 2**40 and not within 0.0002 of a tie.  The product computed in doubles is then within 2**-13 of the true
 * one, so the integer nearest to it is the correctly rounded value, which is what Python's %f prints
 * (round-half-even on the exact binary value); the sign is kept for -0.0 and for negatives that round to 0,
 * as Python does.  Returns the new length, or FMT_SLOW for PyOS_double_to_string. */
static inline Py_ssize_t put_fixed_fast(char *out, Py_ssize_t cap, Py_ssize_t at, double x, int precision)
{
    static const double powers[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
    if (precision < 0 || precision > 12 || !isfinite(x))
        return FMT_SLOW;
    double y = fabs(x) * powers[precision];
    if (!(y < 1099511627776.0))
        return FMT_SLOW;
    double r = nearbyint(y);
    if (!(fabs(y - r) <= 0.4998))
        return FMT_SLOW;
    unsigned long long v = (unsigned long long)r;
    char digits[48];
    int i = (int)sizeof(digits);
    for (int k = 0; k < precision; k++) {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    }
    if (precision > 0)
        digits[--i] = '.';
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (signbit(x))
        digits[--i] = '-';
    return put_bytes(out, cap, at, digits + i, (Py_ssize_t)sizeof(digits) - i);
}
#endif

static inline Py_ssize_t format_utf8(const char *fmt, Py_ssize_t fmt_len, PyObject *const *args, Py_ssize_t nargs, char *out,
                              Py_ssize_t cap)
{
    Py_ssize_t at = 0, used = 0, i = 0;
    while (i < fmt_len) {
        const char *pct = memchr(fmt + i, '%', (size_t)(fmt_len - i));
        Py_ssize_t stop = pct ? pct - fmt : fmt_len;
        at = put_bytes(out, cap, at, fmt + i, stop - i);
        if (at < 0)
            return at;
        if (pct == NULL)
            break;
        i = stop + 1;
        if (i >= fmt_len)
            return FMT_UNHANDLED; /* a lone '%' at the end: let the interpreter raise */
        int precision = -1;
        if (fmt[i] == '.') {
            precision = 0;
            i++;
            while (i < fmt_len && fmt[i] >= '0' && fmt[i] <= '9' && precision < 100)
                precision = precision * 10 + (fmt[i++] - '0');
            if (i >= fmt_len || precision > 50)
                return FMT_UNHANDLED;
        }
        char conv = fmt[i++];
        if (conv == '%' && precision < 0) {
            at = put_bytes(out, cap, at, "%", 1);
            if (at < 0)
                return at;
            continue;
        }
        if (used >= nargs)
            return FMT_UNHANDLED;
        PyObject *value = args[used++];
        if ((conv == 'd' || conv == 'i' || conv == 'u') && precision < 0 && PyLong_CheckExact(value)) {
            at = put_int(out, cap, at, value);
        }
        else if (conv == 's' && precision < 0 && PyUnicode_CheckExact(value)) {
            Py_ssize_t len;
            const char *text = PyUnicode_AsUTF8AndSize(value, &len);
            if (text == NULL) {
                PyErr_Clear();
                return FMT_UNHANDLED;
            }
            at = put_bytes(out, cap, at, text, len);
        }
        else if (conv == 's' && precision < 0 && PyLong_CheckExact(value)) {
            at = put_int(out, cap, at, value);
        }
        else if (conv == 'f' && PyFloat_CheckExact(value)) {
#ifdef MMAPLOG_FAST_FIXED
            Py_ssize_t fast = put_fixed_fast(out, cap, at, PyFloat_AS_DOUBLE(value), precision < 0 ? 6 : precision);
            if (fast != FMT_SLOW) {
                at = fast;
            }
            else
#endif
            {
                char *text = PyOS_double_to_string(PyFloat_AS_DOUBLE(value), 'f', precision < 0 ? 6 : precision, 0,
                                                   NULL);
                if (text == NULL)
                    return -1;
                at = put_bytes(out, cap, at, text, (Py_ssize_t)strlen(text));
                PyMem_Free(text);
            }
        }
        else {
            return FMT_UNHANDLED;
        }
        if (at < 0)
            return at;
    }
    return used == nargs ? at : FMT_UNHANDLED;
}

#endif /* MMAPLOG_SLOT_H */
