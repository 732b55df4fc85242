/* Reader-side accelerator for mmaplog: slot validation, record rows and JSON lines.
 *
 * Loaded only through mmaplog/_native.py.  Each function here mirrors a pure path
 * byte for byte (tests/test_cread.py runs both on the same inputs):
 *
 *   Collector.feed   _codec.valid_slots + the one-slot half of _codec.assemble
 *   records          reader._to_rows for the records a Collector gathered
 *   json_lines       cli._output.JsonFormatter.block
 *
 * Hostile input: a slot's fields are read only from slots wholly inside the buffer
 * handed in, every index taken from a file or from the caller is checked against the
 * table it indexes, and record rows are read and written only inside their buffer
 * at offsets checked against the row size.  Layout constants are exported as LAYOUT
 * so the Python side can refuse a module built against another format.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define CREAD_BIG_ENDIAN 1 /* the file and the record rows are little-endian: use the pure paths */
#endif

#include "_layout.h"

#define EXTRAS (FLAG_FIELDS | FLAG_INLINE_LOGGER | FLAG_EXCEPTION)
#define WHOLE (FLAG_FIRST | FLAG_LAST)
#define LOGGER_IDS 65536 /* logger ids are u16 */

static uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

#include "_checksum.h"

static int all_zero(const unsigned char *p, size_t n)
{
#if defined(__SSE2__)
    __m128i acc = _mm_setzero_si128();
    while (n >= 16) {
        acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) != 0xFFFF)
        return 0;
#endif
    uint64_t word = 0;
    while (n >= 8) {
        word |= rd64(p);
        p += 8;
        n -= 8;
    }
    while (n--)
        word |= *p++;
    return word == 0;
}

/* Whether `stored` is the check of a slot's body[0, size) whose header and payload take `used` bytes.
 * Format 2.x: CRC-32 of body[0, used), and body[used, size) must be zero.  Format 1.x (legacy): adler32 of
 * body[0, size); zero padding is the usual case there and its effect is known (a stays, b grows
 * by a for each zero byte), so only the used part is summed then. */
static int slot_check_ok(const unsigned char *body, size_t size, size_t used, int legacy, uint32_t stored)
{
    if (!legacy)
        return all_zero(body + used, size - used) && mmaplog_crc32_update(0, body, used) == stored;
    if (used < size && all_zero(body + used, size - used)) {
        uint32_t ad = mmaplog_adler32_update(1, body, used);
        uint64_t a = ad & 0xFFFF, b = ad >> 16;
        b = (b + a * (uint64_t)(size - used)) % MMAPLOG_ADLER_MOD;
        return (uint32_t)((b << 16) | a) == stored;
    }
    return mmaplog_adler32_update(1, body, size) == stored;
}

/* Where a slot's pos puts it: (pos - 1) % slot_count must be its index.  Slots are fed in
 * index order and a ring holds at most two laps at once, so the lap (pos - 1 - index) of the
 * last two slots that passed answers almost every slot without a 64-bit division. */
typedef struct {
    uint64_t slot_count;
    uint64_t laps[2];
} Placement;

static int placed(Placement *p, uint64_t pos, uint64_t index)
{
    uint64_t at = pos - 1;
    if (at < index)
        return 0;
    uint64_t lap = at - index;
    if (lap == p->laps[0] || lap == p->laps[1])
        return 1;
    if (lap % p->slot_count)
        return 0;
    p->laps[1] = p->laps[0];
    p->laps[0] = lap;
    return 1;
}

/* Twin: the checks of _codec.valid_slots, in one pass over one slot of `size` bytes at ring `index` (docs/MAP.md). */
static int slot_is_valid(const unsigned char *s, size_t size, Placement *where, uint64_t index, int legacy)
{
    uint64_t pos = rd64(s + OFF_POS), seq = rd64(s + OFF_SEQ);
    uint32_t rec_len = rd32(s + OFF_REC_LEN), msg_len = rd32(s + OFF_MSG_LEN);
    uint16_t length = rd16(s + OFF_LENGTH), part = rd16(s + OFF_PART);
    unsigned flags = s[OFF_FLAGS];
    size_t payload = size - SLOT_HEADER_SIZE - SLOT_TRAILER_SIZE;
    if (pos == 0 || rd32(s + size - 4) != (uint32_t)pos)
        return 0;
    if (!placed(where, pos, index))
        return 0;
    if (seq == 0 || pos >= ((uint64_t)1 << 63) || seq >= ((uint64_t)1 << 63))
        return 0;
    if (length > payload || (flags & ~KNOWN_FLAGS))
        return 0;
    if (((flags & FLAG_FIRST) != 0) != (part == 0))
        return 0;
    if (msg_len > rec_len)
        return 0;
    if ((flags & WHOLE) == WHOLE && length != rec_len)
        return 0;
    if (!(flags & EXTRAS) && msg_len != rec_len)
        return 0;
    return slot_check_ok(s, size - SLOT_TRAILER_SIZE, SLOT_HEADER_SIZE + (size_t)length, legacy, rd32(s + size - SLOT_TRAILER_SIZE));
}

/* ------------------------------------------------------------ record layout */

/* The fields of reader.RECORD_DTYPE, in this order, and their widths. */
enum {
    R_SEQ, R_TIME, R_LEVEL, R_THREAD, R_PID, R_FLAGS, R_FILE, R_LOGGER, R_MESSAGE, R_FIELDS, R_EXCEPTION,
    R_PATHNAME, R_LINENO, R_FUNCNAME, R_N
};
static const Py_ssize_t field_width[R_N] = {8, 8, 1, 8, 4, 1, 4, sizeof(PyObject *), sizeof(PyObject *),
                                            sizeof(PyObject *), sizeof(PyObject *), sizeof(PyObject *), 4,
                                            sizeof(PyObject *)};
/* The object fields: the store owns one reference in each. */
static const int object_fields[] = {R_LOGGER, R_MESSAGE, R_FIELDS, R_EXCEPTION, R_PATHNAME, R_FUNCNAME};
#define N_OBJECTS ((int)(sizeof object_fields / sizeof object_fields[0]))

typedef struct {
    Py_ssize_t itemsize;
    Py_ssize_t off[R_N];
} Layout;

/* Parse (itemsize, offset, ...) and check that every field lies inside a row and none overlap. */
static int parse_layout(PyObject *spec, Layout *layout)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != R_N + 1) {
        PyErr_SetString(PyExc_ValueError, "layout must be a tuple (itemsize, 14 field offsets)");
        return -1;
    }
    for (int i = 0; i <= R_N; i++) {
        Py_ssize_t v = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, i));
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (i == 0)
            layout->itemsize = v;
        else
            layout->off[i - 1] = v;
    }
    if (layout->itemsize <= 0 || layout->itemsize > 4096)
        goto bad;
    for (int i = 0; i < R_N; i++) {
        if (layout->off[i] < 0 || layout->off[i] > layout->itemsize - field_width[i])
            goto bad;
        for (int j = 0; j < i; j++) {
            if (layout->off[i] < layout->off[j] + field_width[j] && layout->off[j] < layout->off[i] + field_width[i])
                goto bad;
        }
    }
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "record layout has a field outside a row or overlapping another");
    return -1;
}

static PyObject *get_object(const char *row, Py_ssize_t off)
{
    PyObject *obj;
    memcpy(&obj, row + off, sizeof obj);
    return obj;
}

/* Store a new reference; the field must not hold one. */
static void set_object(char *row, Py_ssize_t off, PyObject *obj)
{
    memcpy(row + off, &obj, sizeof obj);
}

/* ------------------------------------------------------------- RecordStore */

/* The memory of a record array: zeroed, exported as a writable buffer of `count` rows, and
 * owning one reference for each non-NULL object field, which it releases when it goes away.
 * numpy counts references when it stores into an object field of any array, owner of its
 * memory or not, so the store's references stay exact while the array lives. */
typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t count, capacity, exports;
    size_t mapped; /* bytes mapped with mmap, or 0 when `data` came from PyMem_Malloc */
    Layout layout;
} RecordStore;

/* Memory for rows and side entries; callers write every field they use (bytes between fields
 * are left as they are).  Large blocks are
 * mapped directly and offered huge pages (a million rows fill 66 MB), and the last blocks
 * freed are kept, given back to the kernel lazily (MADV_FREE), for the next read: reading
 * a log again then costs no page faults while memory is plentiful, and nothing when not. */
#define MAP_FROM ((size_t)4 << 20)
#define KEEP_MAX ((size_t)256 << 20)
#define KEEP_BLOCKS 2

typedef struct {
    char *data;
    size_t size;
} KeptBlock;

/* Per-module state: the module's types and its kept blocks (guarded by the GIL of the interpreter
 * that owns the module, like every entry point of this module). */
typedef struct {
    PyTypeObject *record_store_type;
    PyTypeObject *collector_type;
    KeptBlock kept[KEEP_BLOCKS];
} cread_state;

static inline cread_state *module_state(PyObject *module) { return (cread_state *)PyModule_GetState(module); }

/* The state of the module that made `type` (one of this module's heap types, never subclassed). */
static inline cread_state *type_state(PyTypeObject *type) { return (cread_state *)PyType_GetModuleState(type); }

static char *rows_alloc(cread_state *st, size_t bytes, size_t *mapped)
{
    KeptBlock *kept = st->kept;
    *mapped = 0;
#if defined(MAP_ANONYMOUS)
    if (bytes >= MAP_FROM) {
        int best = -1;
        for (int i = 0; i < KEEP_BLOCKS; i++) {
            if (kept[i].data != NULL && kept[i].size >= bytes && (best < 0 || kept[i].size < kept[best].size))
                best = i;
        }
        if (best >= 0) {
            char *p = kept[best].data;
            *mapped = kept[best].size;
            kept[best].data = NULL;
            return p;
        }
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
#if defined(MADV_HUGEPAGE)
            (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
            *mapped = bytes;
            return (char *)p;
        }
    }
#endif
    return PyMem_Malloc(bytes ? bytes : 1);
}

static void rows_free(cread_state *st, char *data, size_t mapped)
{
    KeptBlock *kept = st->kept;
    if (data == NULL)
        return;
#if defined(MAP_ANONYMOUS)
    if (mapped) {
#if defined(MADV_FREE)
        if (mapped <= KEEP_MAX) {
            for (int i = 0; i < KEEP_BLOCKS; i++) {
                if (kept[i].data == NULL && madvise(data, mapped, MADV_FREE) == 0) {
                    kept[i].data = data;
                    kept[i].size = mapped;
                    return;
                }
            }
        }
#endif
        munmap(data, mapped);
        return;
    }
#endif
    PyMem_Free(data);
}

static int store_traverse(RecordStore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (self->data != NULL) {
        for (Py_ssize_t i = 0; i < self->count; i++) {
            char *row = self->data + i * self->layout.itemsize;
            for (int k = 0; k < N_OBJECTS; k++)
                Py_VISIT(get_object(row, self->layout.off[object_fields[k]]));
        }
    }
    return 0;
}

/* Drop the objects the rows hold; the rows stay valid for an exported view (None in every object field). */
static int store_clear(RecordStore *self)
{
    if (self->data != NULL) {
        for (Py_ssize_t i = 0; i < self->count; i++) {
            char *row = self->data + i * self->layout.itemsize;
            for (int k = 0; k < N_OBJECTS; k++) {
                PyObject *old = get_object(row, self->layout.off[object_fields[k]]);
                if (old != NULL && old != Py_None) {
                    Py_INCREF(Py_None);
                    set_object(row, self->layout.off[object_fields[k]], Py_None);
                    Py_DECREF(old);
                }
            }
        }
    }
    return 0;
}

static void store_dealloc(RecordStore *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->data != NULL) {
        for (Py_ssize_t i = 0; i < self->count; i++) {
            char *row = self->data + i * self->layout.itemsize;
            for (int k = 0; k < N_OBJECTS; k++)
                Py_XDECREF(get_object(row, self->layout.off[object_fields[k]]));
        }
        rows_free(type_state(type), self->data, self->mapped);
    }
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int store_getbuffer(RecordStore *self, Py_buffer *view, int flags)
{
    int rc = PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->count * self->layout.itemsize, 0, flags);
    if (rc == 0)
        self->exports++;
    return rc;
}

static void store_releasebuffer(RecordStore *self, Py_buffer *Py_UNUSED(view)) { self->exports--; }

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif

static PyType_Slot store_slots[] = {
    {Py_tp_doc, "The memory of a record array (numpy.ndarray(buffer=store)); releases its objects when it goes away."},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_traverse, store_traverse},
    {Py_tp_clear, store_clear},
    {Py_bf_getbuffer, store_getbuffer},
    {Py_bf_releasebuffer, store_releasebuffer},
    {0, NULL},
};

static PyType_Spec store_spec = {
    .name = "mmaplog._cread.RecordStore",
    .basicsize = sizeof(RecordStore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = store_slots,
};

static RecordStore *store_new(cread_state *st, const Layout *layout, Py_ssize_t capacity)
{
    if (capacity < 0 || (capacity && (size_t)capacity > (size_t)PY_SSIZE_T_MAX / (size_t)layout->itemsize)) {
        PyErr_NoMemory();
        return NULL;
    }
    RecordStore *store = PyObject_GC_New(RecordStore, st->record_store_type);
    if (store == NULL)
        return NULL;
    store->layout = *layout;
    store->count = 0;
    store->capacity = 0;
    store->exports = 0;
    store->mapped = 0;
    /* Rows are written whole before they count; pages of rows never used are never touched. */
    store->data = rows_alloc(st, (size_t)capacity * (size_t)layout->itemsize, &store->mapped);
    PyObject_GC_Track(store);
    if (store->data == NULL) {
        Py_DECREF(store);
        PyErr_NoMemory();
        return NULL;
    }
    store->capacity = capacity;
    return store;
}

/* Room for `need` rows (the new ones not yet written). */
/* Rows a Collector reserves at most before it has seen a slot (1 << 20 rows of a few dozen bytes each). */
#define COLLECTOR_FIRST_ROWS ((Py_ssize_t)1 << 20)

static int store_reserve(RecordStore *store, Py_ssize_t need)
{
    if (need <= store->capacity)
        return 0;
    if (store->exports) {
        PyErr_SetString(PyExc_BufferError, "record rows are exported and cannot move");
        return -1;
    }
    Py_ssize_t cap = store->capacity > 0 ? store->capacity : 4096;
    while (cap < need) {
        if (cap > PY_SSIZE_T_MAX / 2 / store->layout.itemsize) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    cread_state *st = type_state(Py_TYPE(store));
    size_t mapped;
    char *data = rows_alloc(st, (size_t)cap * (size_t)store->layout.itemsize, &mapped);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, store->data, (size_t)(store->count * store->layout.itemsize));
    rows_free(st, store->data, store->mapped);
    store->data = data;
    store->mapped = mapped;
    store->capacity = cap;
    return 0;
}

/* ---------------------------------------------------------------- Collector */
/* Twin: _codec.assemble builds the same record rows in Python (docs/MAP.md). */

/* What the Collector keeps beside each row, for ordering and for the Python side. */
#define SIDE_SIZE 16
#define SIDE_POS 0      /* u64: the slot's pos */
#define SIDE_MSG_LEN 8  /* u32 */
#define SIDE_LOGGER 12  /* u16 */
#define SIDE_FLAGS 14   /* u8 */

typedef struct {
    PyObject_HEAD
    Py_ssize_t slot_size;
    uint64_t slot_count;
    Placement where;
    uint32_t pid, file;
    Py_ssize_t exports;
    /* One row per one-slot record, in ring order; a record with extras (fields, exception,
     * inline logger) holds its raw payload as bytes in `message` and None elsewhere. */
    RecordStore *store;
    unsigned char *side;
    size_t side_mapped;
    Py_ssize_t side_capacity;
    Py_ssize_t rows, empty, invalid, extras, truncated;
    uint64_t last_seq;
    int in_order, loggers_set;
    /* 1: format 1.x slots (adler32 check); 0: format 2.x (CRC-32, zero padding). */
    int legacy;
    /* Logger names by id as read before the slots (a list; None: not known yet). */
    PyObject *names;
    /* Valid slots of records longer than one slot, whole, in ring order. */
    unsigned char *multi;
    Py_ssize_t multi_count, multi_capacity;
    unsigned char seen[LOGGER_IDS / 8];
} Collector;

static unsigned char *side_alloc(cread_state *st, Py_ssize_t capacity, size_t *mapped)
{
    return (unsigned char *)rows_alloc(st, (size_t)capacity * SIDE_SIZE, mapped);
}

static int collector_init(Collector *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"slot_size", "slot_count", "pid", "file", "layout", "names", "legacy", NULL};
    Py_ssize_t slot_size;
    unsigned long long slot_count;
    unsigned long pid, file;
    PyObject *spec, *names;
    int legacy = 0;
    Layout layout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nKkkOO!|p", kwlist, &slot_size, &slot_count, &pid, &file, &spec,
                                     &PyList_Type, &names, &legacy))
        return -1;
    if (slot_size < SLOT_HEADER_SIZE + SLOT_TRAILER_SIZE || slot_size > MAX_SLOT_SIZE || slot_size % 8 || slot_count < 1) {
        PyErr_SetString(PyExc_ValueError, "bad slot geometry");
        return -1;
    }
    if (pid > 0xFFFFFFFFul || file > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "pid and file must fit in 32 bits");
        return -1;
    }
    if (self->store != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Collector cannot be initialised twice");
        return -1;
    }
    if (parse_layout(spec, &layout) < 0)
        return -1;
    /* A row per slot up to a bound (pages never used are never touched); beyond it, and when the memory is not
     * there, grow.  The bound keeps a header that declares billions of slots (a damaged or hostile file) from
     * reserving memory in proportion to what it declares rather than to what it holds. */
    Py_ssize_t capacity = slot_count <= (uint64_t)COLLECTOR_FIRST_ROWS ? (Py_ssize_t)slot_count : COLLECTOR_FIRST_ROWS;
    cread_state *st = type_state(Py_TYPE(self));
    self->store = store_new(st, &layout, capacity);
    if (self->store != NULL) {
        self->side = side_alloc(st, capacity, &self->side_mapped);
        self->side_capacity = self->side != NULL ? capacity : 0;
    }
    if (self->store == NULL || self->side == NULL) {
        PyErr_Clear();
        Py_CLEAR(self->store);
        self->store = store_new(st, &layout, 0);
        if (self->store == NULL)
            return -1;
    }
    self->slot_size = slot_size;
    self->slot_count = slot_count;
    self->where.slot_count = slot_count;
    self->where.laps[0] = self->where.laps[1] = 0; /* lap 0 is always a multiple of slot_count */
    self->pid = (uint32_t)pid;
    self->file = (uint32_t)file;
    self->in_order = 1;
    self->legacy = legacy;
    Py_INCREF(names);
    self->names = names;
    return 0;
}

static int collector_traverse(Collector *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->store);
    Py_VISIT(self->names);
    return 0;
}

static int collector_clear(Collector *self)
{
    Py_CLEAR(self->store);
    Py_CLEAR(self->names);
    return 0;
}

static void collector_dealloc(Collector *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    collector_clear(self);
    rows_free(type_state(type), (char *)self->side, self->side_mapped);
    PyMem_Free(self->multi);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* Make room for `need` items of `item` bytes in *buf, doubling. */
static int grow(void **buf, Py_ssize_t *capacity, Py_ssize_t need, size_t item)
{
    if (need <= *capacity)
        return 0;
    Py_ssize_t cap = *capacity ? *capacity : 64;
    while (cap < need) {
        if (cap > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)item) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    void *grown = PyMem_Realloc(*buf, (size_t)cap * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = grown;
    *capacity = cap;
    return 0;
}

static int collector_ready(Collector *self)
{
    if (self->store == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Collector is not initialised");
        return -1;
    }
    return 0;
}

/* Room for `slots` more rows and side entries. */
static int reserve_rows(Collector *self, Py_ssize_t slots)
{
    Py_ssize_t need = self->rows + slots;
    if (store_reserve(self->store, need) < 0)
        return -1;
    if (need > self->side_capacity) {
        Py_ssize_t cap = self->side_capacity ? self->side_capacity : 4096;
        while (cap < need) {
            if (cap > PY_SSIZE_T_MAX / 2 / SIDE_SIZE) {
                PyErr_NoMemory();
                return -1;
            }
            cap *= 2;
        }
        size_t mapped;
        unsigned char *side = side_alloc(type_state(Py_TYPE(self)), cap, &mapped);
        if (side == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (self->side != NULL)
            memcpy(side, self->side, (size_t)self->rows * SIDE_SIZE);
        rows_free(type_state(Py_TYPE(self)), (char *)self->side, self->side_mapped);
        self->side = side;
        self->side_mapped = mapped;
        self->side_capacity = cap;
    }
    return 0;
}

PyDoc_STRVAR(feed_doc,
"feed(buffer, first_index)\n--\n\n"
"Validate the slots in ``buffer`` (whole slots, the first at ring index ``first_index``) and keep\n"
"what they hold: one-slot records as rows, slots of longer records whole.");

static PyObject *collector_feed(Collector *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long first;
    if (collector_ready(self) < 0 || !PyArg_ParseTuple(args, "y*K", &view, &first))
        return NULL;
    RecordStore *store = self->store;
    size_t size = (size_t)self->slot_size;
    Py_ssize_t n = view.len / self->slot_size;
    if (self->exports || self->loggers_set) {
        PyErr_SetString(PyExc_RuntimeError, "Collector is finished and cannot take more slots");
        goto fail;
    }
    if (view.len % self->slot_size || first > self->slot_count || (uint64_t)n > self->slot_count - first) {
        PyErr_SetString(PyExc_ValueError, "buffer does not hold whole slots inside the ring");
        goto fail;
    }
    /* Room for every slot of the buffer up front: the loop below fails only for memory. */
    if (reserve_rows(self, n) < 0)
        goto fail;
    const unsigned char *base = (const unsigned char *)view.buf;
    const Py_ssize_t *off = store->layout.off;
    Py_ssize_t known = PyList_GET_SIZE(self->names);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *s = base + (size_t)i * size;
        if (rd64(s + OFF_POS) == 0) {
            self->empty++;
            continue;
        }
        if (!slot_is_valid(s, size, &self->where, first + (uint64_t)i, self->legacy)) {
            self->invalid++;
            continue;
        }
        unsigned flags = s[OFF_FLAGS];
        if ((flags & WHOLE) != WHOLE) {
            if (grow((void **)&self->multi, &self->multi_capacity, self->multi_count + 1, size) < 0)
                goto fail;
            memcpy(self->multi + (size_t)self->multi_count * size, s, size);
            self->multi_count++;
            continue;
        }
        const char *payload = (const char *)s + SLOT_HEADER_SIZE;
        Py_ssize_t length = rd16(s + OFF_LENGTH); /* <= the payload size: checked by slot_is_valid */
        PyObject *text = (flags & EXTRAS) ? PyBytes_FromStringAndSize(payload, length)
                                          : PyUnicode_DecodeUTF8(payload, length, "replace");
        if (text == NULL)
            goto fail;
        uint16_t logger = rd16(s + OFF_LOGGER_ID);
        PyObject *name = Py_None;
        if (flags & EXTRAS)
            self->extras++; /* the Python side splits its payload */
        else if (logger < known)
            name = PyList_GET_ITEM(self->names, logger); /* set_loggers() checks it against the final names */
        if (flags & FLAG_TRUNCATED)
            self->truncated++;
        Py_ssize_t r = self->rows++;
        char *row = store->data + r * store->layout.itemsize;
        memcpy(row + off[R_SEQ], s + OFF_SEQ, 8);
        memcpy(row + off[R_TIME], s + OFF_TIME_NS, 8);
        memcpy(row + off[R_THREAD], s + OFF_THREAD, 8);
        row[off[R_LEVEL]] = (char)s[OFF_LEVEL];
        row[off[R_FLAGS]] = (char)flags;
        memcpy(row + off[R_PID], &self->pid, 4);
        memcpy(row + off[R_FILE], &self->file, 4);
        Py_INCREF(name);
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
        set_object(row, off[R_LOGGER], name);
        set_object(row, off[R_MESSAGE], text);
        set_object(row, off[R_FIELDS], Py_None);
        set_object(row, off[R_EXCEPTION], Py_None);
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
        set_object(row, off[R_PATHNAME], Py_None); /* the source location: filled from the fields in Python */
        set_object(row, off[R_FUNCNAME], Py_None);
        memset(row + off[R_LINENO], 0, 4);
        store->count = self->rows; /* the store releases the objects of its first `count` rows */
        unsigned char *side = self->side + r * SIDE_SIZE;
        memcpy(side + SIDE_POS, s + OFF_POS, 8);
        memcpy(side + SIDE_MSG_LEN, s + OFF_MSG_LEN, 4);
        memcpy(side + SIDE_LOGGER, s + OFF_LOGGER_ID, 2);
        side[SIDE_FLAGS] = (unsigned char)flags;
        side[SIDE_FLAGS + 1] = 0;
        uint64_t seq = rd64(s + OFF_SEQ);
        if (r && seq <= self->last_seq)
            self->in_order = 0;
        self->last_seq = seq;
        self->seen[logger >> 3] |= (unsigned char)(1u << (logger & 7));
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&view);
    return NULL;
}

PyDoc_STRVAR(set_loggers_doc,
"set_loggers(names)\n--\n\n"
"Name the logger of every row without extras names[logger_id] (a list covering every id in\n"
"logger_ids(), read after the slots); rows whose name feed() took from the names given at\n"
"construction keep it where it is equal.  Ends feeding.");

static PyObject *collector_set_loggers(Collector *self, PyObject *names)
{
    if (collector_ready(self) < 0)
        return NULL;
    if (!PyList_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "names must be a list");
        return NULL;
    }
    if (self->loggers_set) {
        PyErr_SetString(PyExc_RuntimeError, "loggers are set already");
        return NULL;
    }
    RecordStore *store = self->store;
    Py_ssize_t table = PyList_GET_SIZE(names), known = PyList_GET_SIZE(self->names);
    /* Ids whose name differs from the one feed() used. */
    unsigned char changed[LOGGER_IDS / 8];
    int any = 0;
    memset(changed, 0, sizeof changed);
    for (Py_ssize_t id = 0; id < LOGGER_IDS; id++) {
        if (!(self->seen[id >> 3] & (1u << (id & 7))))
            continue;
        if (id >= table) {
            PyErr_SetString(PyExc_IndexError, "names does not cover every logger id");
            return NULL;
        }
        PyObject *now = PyList_GET_ITEM(names, id);
        PyObject *before = id < known ? PyList_GET_ITEM(self->names, id) : Py_None;
        int same = now == before;
        if (!same && before != Py_None) {
            same = PyObject_RichCompareBool(now, before, Py_EQ);
            if (same < 0)
                return NULL;
        }
        if (!same) {
            changed[id >> 3] |= (unsigned char)(1u << (id & 7));
            any = 1;
        }
    }
    Py_ssize_t off = store->layout.off[R_LOGGER];
    for (Py_ssize_t r = 0; any && r < store->count && r < self->rows; r++) {
        const unsigned char *side = self->side + r * SIDE_SIZE;
        uint16_t id = rd16(side + SIDE_LOGGER);
        if ((side[SIDE_FLAGS] & EXTRAS) || !(changed[id >> 3] & (1u << (id & 7))))
            continue;
        char *row = store->data + r * store->layout.itemsize;
        PyObject *name = PyList_GET_ITEM(names, id);
        PyObject *old = get_object(row, off);
        Py_INCREF(name);
        set_object(row, off, name);
        Py_XDECREF(old);
    }
    self->loggers_set = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(rows_doc, "rows()\n--\n\nThe RecordStore holding one row per one-slot record, in ring order.");

static PyObject *collector_rows(Collector *self, PyObject *Py_UNUSED(unused))
{
    if (collector_ready(self) < 0)
        return NULL;
    Py_INCREF(self->store);
    return (PyObject *)self->store;
}

PyDoc_STRVAR(multi_doc, "multi_slots()\n--\n\nThe slots of records longer than one slot, as bytes, in ring order.");

static PyObject *collector_multi(Collector *self, PyObject *Py_UNUSED(unused))
{
    return PyBytes_FromStringAndSize((const char *)self->multi, self->multi_count * self->slot_size);
}

PyDoc_STRVAR(loggers_doc, "logger_ids()\n--\n\nThe logger ids of the one-slot records, ascending.");

static PyObject *collector_loggers(Collector *self, PyObject *Py_UNUSED(unused))
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (long id = 0; id < LOGGER_IDS; id++) {
        if (!(self->seen[id >> 3] & (1u << (id & 7))))
            continue;
        PyObject *value = PyLong_FromLong(id);
        if (value == NULL || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(value);
    }
    return out;
}

static PyObject *collector_get_empty(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->empty); }
static PyObject *collector_get_invalid(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->invalid); }
static PyObject *collector_get_count(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->rows); }

static PyObject *collector_get_multi(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->multi_count); }
static PyObject *collector_get_in_order(Collector *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->in_order); }
static PyObject *collector_get_extras(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->extras); }
static PyObject *collector_get_truncated(Collector *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->truncated); }

static int collector_getbuffer(Collector *self, Py_buffer *view, int flags)
{
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "Collector side entries are read-only");
        view->obj = NULL;
        return -1;
    }
    static char empty[1];
    Py_ssize_t count = self->rows;
    int rc = PyBuffer_FillInfo(view, (PyObject *)self, self->side ? (void *)self->side : (void *)empty,
                               count * SIDE_SIZE, 1, flags);
    if (rc == 0)
        self->exports++;
    return rc;
}

static void collector_releasebuffer(Collector *self, Py_buffer *Py_UNUSED(view)) { self->exports--; }


static PyMethodDef collector_methods[] = {
    {"feed", (PyCFunction)collector_feed, METH_VARARGS, feed_doc},

    {"set_loggers", (PyCFunction)collector_set_loggers, METH_O, set_loggers_doc},
    {"rows", (PyCFunction)collector_rows, METH_NOARGS, rows_doc},
    {"multi_slots", (PyCFunction)collector_multi, METH_NOARGS, multi_doc},
    {"logger_ids", (PyCFunction)collector_loggers, METH_NOARGS, loggers_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef collector_getset[] = {
    {"empty", (getter)collector_get_empty, NULL, "Slots never written (pos 0).", NULL},
    {"invalid", (getter)collector_get_invalid, NULL, "Written slots that failed validation.", NULL},
    {"count", (getter)collector_get_count, NULL, "Valid one-slot records kept (rows).", NULL},
    {"multi_count", (getter)collector_get_multi, NULL, "Valid slots of longer records kept.", NULL},
    {"in_order", (getter)collector_get_in_order, NULL, "True when the rows' seqs rise strictly.", NULL},
    {"extras", (getter)collector_get_extras, NULL, "Rows whose payload the Python side must split.", NULL},
    {"truncated", (getter)collector_get_truncated, NULL, "Rows of records the writer cut short.", NULL},

    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(collector_doc,
"Collector(slot_size, slot_count, pid, file, layout, names)\n--\n\n"
"Gathers the valid slots of one ring file, fed in chunks, as record rows of ``layout`` (see\n"
"_codec.record_layout) in ring order; ``names`` lists logger names by id as known so far.  Its buffer holds a 16-byte side entry per\n"
"row: the slot's pos (u64), msg_len (u32), logger_id (u16), flags (u8), a zero byte.");

static PyType_Slot collector_slots[] = {
    {Py_tp_doc, (void *)collector_doc},
    {Py_tp_dealloc, collector_dealloc},
    {Py_tp_traverse, collector_traverse},
    {Py_tp_clear, collector_clear},
    {Py_tp_methods, collector_methods},
    {Py_tp_getset, collector_getset},
    {Py_tp_init, collector_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_bf_getbuffer, collector_getbuffer},
    {Py_bf_releasebuffer, collector_releasebuffer},
    {0, NULL},
};

static PyType_Spec collector_spec = {
    .name = "mmaplog._cread.Collector",
    .basicsize = sizeof(Collector),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = collector_slots,
};

PyDoc_STRVAR(reorder_doc,
"reorder(store, source)\n--\n\n"
"A new RecordStore whose row r is the row source[r] of ``store``, moved (``store`` keeps None\n"
"there), or, where source[r] < 0, a row of zeros and None for the caller to fill in.  Rows of\n"
"``store`` not named stay in it.  ``source`` is a buffer of int64 naming each row at most once.");

static PyObject *cread_reorder(PyObject *module, PyObject *args)
{
    PyObject *store_obj;
    Py_buffer source;
    cread_state *st = module_state(module);
    if (!PyArg_ParseTuple(args, "O!y*", st->record_store_type, &store_obj, &source))
        return NULL;
    RecordStore *store = (RecordStore *)store_obj, *out = NULL;
    unsigned char *taken = NULL;
    if (source.itemsize != 8 || source.len % 8) {
        PyErr_SetString(PyExc_ValueError, "source must be a buffer of int64");
        goto done;
    }
    Py_ssize_t n = source.len / 8;
    const int64_t *src = (const int64_t *)source.buf;
    taken = PyMem_Calloc((size_t)store->count / 8 + 1, 1);
    if (taken == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t s;
        memcpy(&s, src + r, 8);
        if (s < 0)
            continue;
        if (s >= store->count || (taken[s >> 3] & (1u << (s & 7)))) {
            PyErr_SetString(PyExc_ValueError, "source names a row that is not there or names it twice");
            goto done;
        }
        taken[s >> 3] |= (unsigned char)(1u << (s & 7));
    }
    out = store_new(st, &store->layout, n);
    if (out == NULL)
        goto done;
    out->count = n;
    Py_ssize_t size = store->layout.itemsize;
    const Py_ssize_t *off = store->layout.off;
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t s;
        memcpy(&s, src + r, 8);
        char *row = out->data + r * size;
        if (s < 0) {
            memset(row, 0, (size_t)size);
            for (int k = 0; k < N_OBJECTS; k++) {
                Py_INCREF(Py_None);
                set_object(row, off[object_fields[k]], Py_None);
            }
            continue;
        }
        char *old = store->data + s * size;
        memcpy(row, old, (size_t)size);
        for (int k = 0; k < N_OBJECTS; k++) {
            Py_INCREF(Py_None);
            set_object(old, off[object_fields[k]], Py_None);
        }
    }
done:
    PyMem_Free(taken);
    PyBuffer_Release(&source);
    return (PyObject *)out;
}

/* --------------------------------------------------------------- JSON lines */
/* Twin: JsonFormatter.block (mmaplog/cli/_output.py) writes the same lines in Python (docs/MAP.md). */

typedef struct {
    PyObject *bytes; /* a bytearray used as the growing buffer */
    char *p;
    Py_ssize_t len, cap;
} Out;

static int out_reserve(Out *o, Py_ssize_t extra)
{
    if (o->len + extra <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 65536;
    while (cap < o->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    if (PyByteArray_Resize(o->bytes, cap) < 0)
        return -1;
    o->p = PyByteArray_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

/* Callers reserve first. */
static void out_raw(Out *o, const char *s, Py_ssize_t n)
{
    memcpy(o->p + o->len, s, (size_t)n);
    o->len += n;
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal digits of v into buf (at most 20), returning how many; two digits per step. */
static int u64_text(uint64_t v, char buf[20])
{
    char tmp[20];
    int n = 20;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100);
        v /= 100;
        n -= 2;
        memcpy(tmp + n, digit_pairs + 2 * pair, 2);
    }
    if (v >= 10) {
        n -= 2;
        memcpy(tmp + n, digit_pairs + 2 * v, 2);
    }
    else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(buf, tmp + n, (size_t)(20 - n));
    return 20 - n;
}

static void out_u64(Out *o, uint64_t v)
{
    o->len += u64_text(v, o->p + o->len);
}

/* A number printed again and again (a thread id, a pid): its text is kept. */
typedef struct {
    uint64_t value;
    int valid, len;
    char text[20];
} NumberCache;

static void out_cached_u64(Out *o, NumberCache *cache, uint64_t v)
{
    if (!cache->valid || cache->value != v) {
        cache->len = u64_text(v, cache->text);
        cache->value = v;
        cache->valid = 1;
    }
    memcpy(o->p + o->len, cache->text, (size_t)cache->len);
    o->len += cache->len;
}

static void out_digits(Out *o, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o->p[o->len + i] = (char)('0' + v % 10);
        v /= 10;
    }
    o->len += width;
}

static const char hexdigits[] = "0123456789abcdef";

static void out_uescape(Out *o, Py_UCS4 c)
{
    char *p = o->p + o->len;
    p[0] = '\\';
    p[1] = 'u';
    p[2] = hexdigits[(c >> 12) & 15];
    p[3] = hexdigits[(c >> 8) & 15];
    p[4] = hexdigits[(c >> 4) & 15];
    p[5] = hexdigits[c & 15];
    o->len += 6;
}

/* json.encoder.encode_basestring, then \u escapes for DEL, C1 controls and lone surrogates
 * (cli._output.json_string), as UTF-8. */
static int out_json_string(Out *o, PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return -1;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || out_reserve(o, 6 * n + 2) < 0) /* 6: the longest escape of one character */
        return n > (PY_SSIZE_T_MAX - 2) / 6 ? (PyErr_NoMemory(), -1) : -1;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    char *p = o->p;
    Py_ssize_t len = o->len;
    p[len++] = '"';
    if (kind == PyUnicode_1BYTE_KIND && PyUnicode_IS_ASCII(text)) {
        const unsigned char *s = (const unsigned char *)data;
        Py_ssize_t i = 0;
        while (i < n) {
            Py_ssize_t run = i;
#if defined(__SSE2__)
            /* 16 characters at a time while none needs an escape (controls, '"', '\\', DEL). */
            const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
            const __m128i del = _mm_set1_epi8(0x7F), space = _mm_set1_epi8(0x20);
            while (run + 16 <= n) {
                __m128i v = _mm_loadu_si128((const __m128i *)(s + run));
                /* ASCII bytes are below 0x80, so a signed compare finds the controls. */
                __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, space),
                                           _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                        _mm_or_si128(_mm_cmpeq_epi8(v, backslash), _mm_cmpeq_epi8(v, del))));
                if (_mm_movemask_epi8(bad))
                    break;
                run += 16;
            }
#endif
            while (run < n && s[run] >= 0x20 && s[run] != '"' && s[run] != '\\' && s[run] != 0x7F)
                run++;
            memcpy(p + len, s + i, (size_t)(run - i));
            len += run - i;
            if (run == n)
                break;
            o->len = len;
            unsigned char c = s[run];
            switch (c) {
            case '"': p[len++] = '\\'; p[len++] = '"'; break;
            case '\\': p[len++] = '\\'; p[len++] = '\\'; break;
            case '\n': p[len++] = '\\'; p[len++] = 'n'; break;
            case '\r': p[len++] = '\\'; p[len++] = 'r'; break;
            case '\t': p[len++] = '\\'; p[len++] = 't'; break;
            case '\b': p[len++] = '\\'; p[len++] = 'b'; break;
            case '\f': p[len++] = '\\'; p[len++] = 'f'; break;
            default: out_uescape(o, c); len = o->len;
            }
            i = run + 1;
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
                p[len++] = (char)c;
                continue;
            }
            switch (c) {
            case '"': p[len++] = '\\'; p[len++] = '"'; continue;
            case '\\': p[len++] = '\\'; p[len++] = '\\'; continue;
            case '\n': p[len++] = '\\'; p[len++] = 'n'; continue;
            case '\r': p[len++] = '\\'; p[len++] = 'r'; continue;
            case '\t': p[len++] = '\\'; p[len++] = 't'; continue;
            case '\b': p[len++] = '\\'; p[len++] = 'b'; continue;
            case '\f': p[len++] = '\\'; p[len++] = 'f'; continue;
            default: break;
            }
            if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || (c >= 0xD800 && c <= 0xDFFF)) {
                o->len = len;
                out_uescape(o, c);
                len = o->len;
            }
            else if (c < 0x800) {
                p[len++] = (char)(0xC0 | (c >> 6));
                p[len++] = (char)(0x80 | (c & 0x3F));
            }
            else if (c < 0x10000) {
                p[len++] = (char)(0xE0 | (c >> 12));
                p[len++] = (char)(0x80 | ((c >> 6) & 0x3F));
                p[len++] = (char)(0x80 | (c & 0x3F));
            }
            else {
                p[len++] = (char)(0xF0 | (c >> 18));
                p[len++] = (char)(0x80 | ((c >> 12) & 0x3F));
                p[len++] = (char)(0x80 | ((c >> 6) & 0x3F));
                p[len++] = (char)(0x80 | (c & 0x3F));
            }
        }
    }
    p[len++] = '"';
    o->len = len;
    return 0;
}

/* Append a str as UTF-8, lone surrogates as backslash escapes (the CLI's output encoding). */
static int out_text(Out *o, PyObject *text)
{
    PyObject *encoded = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
    if (encoded == NULL)
        return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(encoded);
    if (out_reserve(o, n) < 0) {
        Py_DECREF(encoded);
        return -1;
    }
    out_raw(o, PyBytes_AS_STRING(encoded), n);
    Py_DECREF(encoded);
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* "YYYY-MM-DDTHH:MM:SS" of `seconds` since the epoch, UTC, proleptic Gregorian (numpy's
 * datetime_as_string); every int64 of nanoseconds falls in years 1677..2262. */
static void iso_seconds(int64_t seconds, char out[19])
{
    int64_t days = floor_div(seconds, 86400);
    int64_t rem = seconds - days * 86400;
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = (int64_t)yoe + era * 400 + (month <= 2);
    unsigned hms[3] = {(unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60)};
    unsigned ymd[3] = {(unsigned)year, month, day};
    Out o = {NULL, out, 0, 19};
    out_digits(&o, ymd[0], 4);
    for (int i = 1; i < 3; i++) {
        o.p[o.len++] = '-';
        out_digits(&o, ymd[i], 2);
    }
    o.p[o.len++] = 'T';
    for (int i = 0; i < 3; i++) {
        if (i)
            o.p[o.len++] = ':';
        out_digits(&o, hms[i], 2);
    }
}

static int bytes_table(PyObject *seq, Py_ssize_t min_len, const char *what)
{
    if (!PyTuple_Check(seq) || PyTuple_GET_SIZE(seq) < min_len) {
        PyErr_Format(PyExc_ValueError, "%s must be a tuple of at least %zd bytes", what, min_len);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(seq, i))) {
            PyErr_Format(PyExc_TypeError, "%s must hold bytes", what);
            return -1;
        }
    }
    return 0;
}

static int out_bytes(Out *o, PyObject *b)
{
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (out_reserve(o, n) < 0)
        return -1;
    out_raw(o, PyBytes_AS_STRING(b), n);
    return 0;
}

/* An object field of a row; numpy reads a NULL there as None. */
static PyObject *row_object(const char *row, Py_ssize_t off)
{
    PyObject *obj = get_object(row, off);
    return obj == NULL ? Py_None : obj;
}

PyDoc_STRVAR(json_doc,
"json_lines(rows, layout, levels, ends, fields_json)\n--\n\n"
"The JSON lines of JsonFormatter.block for ``rows`` (a C-contiguous record array) as UTF-8\n"
"bytes; ``levels`` holds the JSON level names of 0..255, ``ends`` the closing host and\n"
"process of each file, ``fields_json`` turns fields into JSON text.  Returns None where a\n"
"row holds something the pure formatter must judge (a message or logger that is not a str,\n"
"a file index past ``ends``).");

static PyObject *cread_json_lines(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *rows, *spec, *levels, *ends, *fields_json;
    if (!PyArg_ParseTuple(args, "OOOOO", &rows, &spec, &levels, &ends, &fields_json))
        return NULL;
    Layout layout;
    if (parse_layout(spec, &layout) < 0 || bytes_table(levels, 256, "levels") < 0 || bytes_table(ends, 0, "ends") < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(rows, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    PyObject *result = NULL;
    Out o = {NULL, NULL, 0, 0};
    if (view.itemsize != layout.itemsize || view.len % layout.itemsize) {
        PyErr_SetString(PyExc_ValueError, "rows do not match the record layout");
        goto done;
    }
    o.bytes = PyByteArray_FromStringAndSize(NULL, 0);
    if (o.bytes == NULL)
        goto done;
    Py_ssize_t n = view.len / layout.itemsize;
    if (n < PY_SSIZE_T_MAX / 256 && out_reserve(&o, 192 * n) < 0) /* most lines fit: one allocation */
        goto done;
    const Py_ssize_t *off = layout.off;
    Py_ssize_t n_ends = PyTuple_GET_SIZE(ends);
    NumberCache thread_text = {0, 0, 0, {0}}, pid_text = {0, 0, 0, {0}};
    int64_t cached_second = 0;
    char head[19];
    int cached = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        const char *row = (const char *)view.buf + r * layout.itemsize;
        uint64_t seq, thread;
        int64_t time_ns;
        uint32_t pid, file;
        memcpy(&seq, row + off[R_SEQ], 8);
        memcpy(&time_ns, row + off[R_TIME], 8);
        memcpy(&thread, row + off[R_THREAD], 8);
        memcpy(&pid, row + off[R_PID], 4);
        memcpy(&file, row + off[R_FILE], 4);
        PyObject *logger = row_object(row, off[R_LOGGER]), *message = row_object(row, off[R_MESSAGE]);
        PyObject *exception = row_object(row, off[R_EXCEPTION]);
        if (!PyUnicode_Check(message) || !PyUnicode_Check(logger) ||
            (exception != Py_None && !PyUnicode_Check(exception)) || file >= (uint64_t)n_ends) {
            /* The pure formatter would fail or decide differently on this row: leave the block to it. */
            Py_INCREF(Py_None);
            result = Py_None;
            goto done;
        }
        unsigned char level = (unsigned char)row[off[R_LEVEL]];
        int64_t micros_total = floor_div(time_ns, 1000);
        int64_t second = floor_div(micros_total, 1000000);
        unsigned micros = (unsigned)(micros_total - second * 1000000);
        if (!cached || second != cached_second) {
            iso_seconds(second, head);
            cached_second = second;
            cached = 1;
        }
        if (out_reserve(&o, 160) < 0)
            goto done;
        out_raw(&o, "{\"seq\":", 7);
        out_u64(&o, seq);
        out_raw(&o, ",\"time\":\"", 9);
        out_raw(&o, head, 19);
        o.p[o.len++] = '.';
        out_digits(&o, micros, 6);
        out_raw(&o, "Z\",\"level\":", 11);
        if (out_bytes(&o, PyTuple_GET_ITEM(levels, level)) < 0 || out_reserve(&o, 16) < 0)
            goto done;
        out_raw(&o, ",\"logger\":", 10);
        if (out_json_string(&o, logger) < 0 || out_reserve(&o, 64) < 0)
            goto done;
        out_raw(&o, ",\"thread\":", 10);
        out_cached_u64(&o, &thread_text, thread);
        out_raw(&o, ",\"pid\":", 7);
        out_cached_u64(&o, &pid_text, pid);
        out_raw(&o, ",\"message\":", 11);
        if (out_json_string(&o, message) < 0)
            goto done;
        PyObject *fields = row_object(row, off[R_FIELDS]);
        int has_fields = PyObject_IsTrue(fields);
        if (has_fields < 0)
            goto done;
        if (has_fields) {
            Py_INCREF(fields);
            PyObject *text = PyObject_CallOneArg(fields_json, fields);
            Py_DECREF(fields);
            if (text == NULL)
                goto done;
            if (!PyUnicode_Check(text)) {
                Py_DECREF(text);
                PyErr_SetString(PyExc_TypeError, "fields_json must return str");
                goto done;
            }
            int rc = out_reserve(&o, 10);
            if (rc == 0) {
                out_raw(&o, ",\"fields\":", 10);
                rc = out_text(&o, text);
            }
            Py_DECREF(text);
            if (rc < 0)
                goto done;
        }
        /* Read again: fields_json ran Python code. */
        exception = row_object(row, off[R_EXCEPTION]);
        if (exception != Py_None && !PyUnicode_Check(exception)) {
            PyErr_SetString(PyExc_TypeError, "exception changed while rendering");
            goto done;
        }
        if (exception != Py_None && PyUnicode_GET_LENGTH(exception) > 0) {
            if (out_reserve(&o, 13) < 0)
                goto done;
            out_raw(&o, ",\"exception\":", 13);
            if (out_json_string(&o, exception) < 0)
                goto done;
        }
        if (out_bytes(&o, PyTuple_GET_ITEM(ends, file)) < 0 || out_reserve(&o, 1) < 0)
            goto done;
        o.p[o.len++] = '\n';
    }
    if (PyByteArray_Resize(o.bytes, o.len) < 0)
        goto done;
    result = o.bytes;
    o.bytes = NULL;
done:
    Py_XDECREF(o.bytes);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(valid_doc,
"valid_mask(buffer, slot_size, slot_count, index, legacy=False)\n--\n\n"
"One byte per slot of ``buffer`` (whole slots): 1 where the slot passes every check of\n"
"_codec.valid_slots at the ring index given by ``index`` (a buffer of uint64, one per slot);\n"
"``legacy``: format 1.x slots (adler32) instead of 2.x (CRC-32).");

static PyObject *cread_valid_mask(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view, index;
    Py_ssize_t slot_size;
    unsigned long long slot_count;
    int legacy = 0;
    if (!PyArg_ParseTuple(args, "y*nKy*|p", &view, &slot_size, &slot_count, &index, &legacy))
        return NULL;
    PyObject *out = NULL;
    if (slot_size < SLOT_HEADER_SIZE + SLOT_TRAILER_SIZE || slot_size > MAX_SLOT_SIZE || slot_size % 8 || slot_count < 1 ||
        view.len % slot_size) {
        PyErr_SetString(PyExc_ValueError, "buffer does not hold whole slots of a valid size");
        goto done;
    }
    Py_ssize_t n = view.len / slot_size;
    if (index.len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "index must hold one uint64 per slot");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        goto done;
    char *mask = PyBytes_AS_STRING(out);
    Placement where = {slot_count, {0, 0}};
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t at;
        memcpy(&at, (const char *)index.buf + 8 * i, 8);
        const unsigned char *s = (const unsigned char *)view.buf + i * slot_size;
        mask[i] = (char)(at < slot_count && slot_is_valid(s, (size_t)slot_size, &where, at, legacy));
    }
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&index);
    return out;
}

static PyMethodDef cread_methods[] = {
    {"reorder", cread_reorder, METH_VARARGS, reorder_doc},
    {"json_lines", cread_json_lines, METH_VARARGS, json_doc},
    {"valid_mask", cread_valid_mask, METH_VARARGS, valid_doc},
    {NULL, NULL, 0, NULL},
};

static int cread_traverse(PyObject *module, visitproc visit, void *arg)
{
    cread_state *st = module_state(module);
    Py_VISIT(st->record_store_type);
    Py_VISIT(st->collector_type);
    return 0;
}

static int cread_clear(PyObject *module)
{
    cread_state *st = module_state(module);
    Py_CLEAR(st->record_store_type);
    Py_CLEAR(st->collector_type);
    return 0;
}

/* The kept blocks go back to the kernel with the module (no store is left: each holds the module). */
static void cread_free(void *module)
{
    cread_state *st = module_state((PyObject *)module);
    cread_clear((PyObject *)module);
#if defined(MAP_ANONYMOUS)
    for (int i = 0; i < KEEP_BLOCKS; i++) {
        if (st->kept[i].data != NULL)
            munmap(st->kept[i].data, st->kept[i].size);
        st->kept[i].data = NULL;
    }
#endif
}

static int cread_exec(PyObject *module)
{
#ifdef CREAD_BIG_ENDIAN
    PyErr_SetString(PyExc_ImportError, "mmaplog._cread reads little-endian data on little-endian machines only");
    return -1;
#else
    cread_state *st = module_state(module);
    mmaplog_crc32_init();
    st->record_store_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &store_spec, NULL);
    if (st->record_store_type == NULL)
        return -1;
    st->collector_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &collector_spec, NULL);
    if (st->collector_type == NULL)
        return -1;
    if (PyModule_AddType(module, st->collector_type) < 0)
        return -1;
    PyObject *layout = Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s}", "slot_header", SLOT_HEADER_SIZE,
                                     "slot_trailer", SLOT_TRAILER_SIZE, "first", FLAG_FIRST, "last", FLAG_LAST,
                                     "fields", FLAG_FIELDS, "inline_logger", FLAG_INLINE_LOGGER, "exception",
                                     FLAG_EXCEPTION, "truncated", FLAG_TRUNCATED, "known_flags", KNOWN_FLAGS,
                                     "max_slot_size", MAX_SLOT_SIZE, "slot_check", "crc32+adler32");
    if (layout == NULL)
        return -1;
    int rc = PyModule_AddObject(module, "LAYOUT", layout);
    if (rc < 0)
        Py_DECREF(layout);
    return rc;
#endif
}

static PyModuleDef_Slot cread_slots[] = {
    {Py_mod_exec, cread_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef cread_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmaplog._cread",
    .m_doc = "Reader-side accelerator (see mmaplog/_native.py).",
    .m_size = sizeof(cread_state),
    .m_methods = cread_methods,
    .m_slots = cread_slots,
    .m_traverse = cread_traverse,
    .m_clear = cread_clear,
    .m_free = cread_free,
};

PyMODINIT_FUNC PyInit__cread(void) { return PyModuleDef_Init(&cread_module); }
