/* The slot layout of an mmaplog ring file, for the C accelerators (mmaplog/_cwrite.c, mmaplog/_cread.c).
 *
 * mmaplog/layout.py owns the layout; this header restates the numbers C needs, by the same
 * names, and tests/test_cmodules.py reads every #define below and compares it with layout.py
 * (OFF_<FIELD> with the offset of <field> in layout.SLOT_DTYPE), so the two cannot drift apart.
 * Plain integer #defines only: the test parses them.
 */
#ifndef MMAPLOG_LAYOUT_H
#define MMAPLOG_LAYOUT_H

/* The major format version the writer writes (layout.FORMAT_VERSION[0]). */
#define FORMAT_MAJOR 2

/* A slot: a 48-byte header, the payload, an 8-byte trailer (check word, commit word). */
#define SLOT_HEADER_SIZE 48
#define SLOT_TRAILER_SIZE 8
#define MIN_SLOT_SIZE 64
#define MAX_SLOT_SIZE 65536

/* Field offsets inside a slot header (little-endian). */
#define OFF_POS 0
#define OFF_SEQ 8
#define OFF_TIME_NS 16
#define OFF_THREAD 24
#define OFF_REC_LEN 32
#define OFF_MSG_LEN 36
#define OFF_LENGTH 40
#define OFF_PART 42
#define OFF_LOGGER_ID 44
#define OFF_LEVEL 46
#define OFF_FLAGS 47

/* Slot flags. */
#define FLAG_FIRST 0x01
#define FLAG_LAST 0x02
#define FLAG_FIELDS 0x04
#define FLAG_TRUNCATED 0x08
#define FLAG_INLINE_LOGGER 0x10
#define FLAG_EXCEPTION 0x20
#define KNOWN_FLAGS 0x3F

#endif /* MMAPLOG_LAYOUT_H */
