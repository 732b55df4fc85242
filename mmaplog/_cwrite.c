/* Writer-side accelerator for mmaplog: the one-slot record append and the loggers' level methods.
 *
 * Everything here has a pure-Python twin that writes the same bytes
 * (RingWriter._append and the emitters in mmaplog/logger.py); the tests run
 * both.  The accelerator only takes the common case (a str message that fits
 * one slot, a registered logger name, no fields or traceback) and hands
 * anything else to the Python code it was given, so the on-disk layout and
 * the odd cases keep a single owner (mmaplog/layout.py, mmaplog/writer.py).
 *
 * It relies on the GIL to make a record's claim (two counters) and its copy
 * one step; mmaplog/_native.py does not load it on free-threaded builds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mmaplog._cwrite writes the little-endian slot layout with native stores"
#endif

/* Slot layout (mmaplog/layout.py, docs/FORMAT.md): a 48-byte header, the payload, an 8-byte trailer. */
#include "_layout.h"
#define FLAG_WHOLE (FLAG_FIRST | FLAG_LAST)
/* FORMAT_MAJOR (_layout.h) is the format this module writes: the writer refuses a build for another one. */

#include "_checksum.h"
#include "_slot.h"
#include "_emitter.h"
#include "_located.h"

static inline int64_t wall_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* what time.time_ns() reads */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ Appender */
/* Twin: RingWriter._append (mmaplog/writer.py) is the Python form of Appender.append (docs/MAP.md). */

typedef struct {
    PyObject_HEAD
    Py_buffer view;         /* the writable mapping; view.obj is NULL while no ring is targeted */
    PyObject *positions;    /* counter of slot positions for the targeted file (mmaplog._counter) */
    PyObject *seqs;         /* counter of record sequence numbers, the writer's (mmaplog._counter) */
    PyObject *names;        /* dict: logger name -> name-table id (the writer's, mutated in place) */
    PyObject *slow;         /* slow(message, level, logger) -> seq: the pure-Python append */
    PyObject *full;         /* full(seq, data, level, logger, stamp, ident) -> seq: the file is full */
    PyObject *failed;       /* failed(exception) -> 0: counts and reports a record that was lost */
    PyObject *slow_record;  /* slow_record(record) -> seq: write_batch's pure-Python path for one record */
    PyObject *slow_write;   /* slow_write(message, **options) -> seq: RingWriter.write's pure-Python path */
    PyObject *fault;        /* fault(state) -> seen: the SIGBUS guard caught a store (RingWriter._fault); or None */
    PyObject *slow_fields;  /* slow_fields(message, level, logger, fields_json) -> seq: RingWriter._append_fields in
                             * Python, for the records with fields that append_fields leaves to it; or None */
    PyTypeObject *counter_type; /* this module's Counter (borrowed: the module outlives its types' instances) */
    const uint64_t *faults; /* the mapping's fault counter in the SIGBUS guard (mmaplog._sigbus), or NULL */
    uint64_t seen;          /* its value once the last fault was dealt with */
    unsigned long long generation; /* bumped by target() and release(): state taken before a Python call is stale */
    unsigned long long count, limit;
    Py_ssize_t base, size, payload;
} Appender;

/* LogRecord's slots, in the order of its constructor's parameters, then the cached message (None). */
#define RECORD_SLOTS 9
enum { R_LOGGER, R_LEVEL, R_MSG, R_ARGS, R_FIELDS, R_TIME_NS, R_THREAD, R_EXCEPTION, R_MESSAGE };
static const char *const RECORD_SLOT_NAMES[RECORD_SLOTS] = {
    "logger", "level", "msg", "args", "fields", "time_ns", "thread", "exception", "_message",
};

/* Per-module state: the module's types, the names it looks up, and the record class of use_record_type(). */
typedef struct {
    PyTypeObject *appender_type;
    PyTypeObject *emitter_type;
    PyTypeObject *counter_type;
    PyObject *record_names[RECORD_SLOTS]; /* interned RECORD_SLOT_NAMES */
    PyObject *str_message, *str_append;   /* interned "message", "_append" */
    /* write()'s keywords (interned) and defaults (20 and ""). */
    PyObject *str_kw_level, *str_kw_logger, *str_kw_fields, *str_kw_time_ns, *str_kw_thread, *str_kw_exception;
    PyObject *default_level, *empty_name;
    PyObject *record_type;                       /* mmaplog.LogRecord, once use_record_type() was called */
    Py_ssize_t record_type_offsets[RECORD_SLOTS]; /* where its slots live; [0] == 0: read by attribute */
    MmaplogLocatedApi located;                   /* published as the capsule LOCATED_API_CAPSULE (_located.h) */
} cwrite_state;

static inline cwrite_state *module_state(PyObject *module) { return (cwrite_state *)PyModule_GetState(module); }

/* The state of the module that made `type` (Appender or Emitter: heap types that cannot be subclassed). */
static inline cwrite_state *type_state(PyTypeObject *type) { return (cwrite_state *)PyType_GetModuleState(type); }

/* An Appender made with __new__ only has no callbacks: every method refuses to run (never a crash). */
static int appender_ready(Appender *self)
{
    if (self->seqs == NULL || self->slow == NULL || self->full == NULL || self->failed == NULL ||
        self->slow_record == NULL || self->slow_write == NULL || self->fault == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._cwrite.Appender is not initialised (call __init__ first)");
        return 0;
    }
    return 1;
}

static void appender_release_view(Appender *self)
{
    self->generation++;
    if (self->view.obj != NULL) {
        PyBuffer_Release(&self->view);
        self->view.obj = NULL;
    }
    self->view.buf = NULL;
    self->faults = NULL;
    Py_CLEAR(self->positions);
    Py_CLEAR(self->names);
}

static int appender_traverse(Appender *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->positions);
    Py_VISIT(self->seqs);
    Py_VISIT(self->names);
    Py_VISIT(self->slow);
    Py_VISIT(self->full);
    Py_VISIT(self->failed);
    Py_VISIT(self->slow_record);
    Py_VISIT(self->slow_write);
    Py_VISIT(self->fault);
    Py_VISIT(self->slow_fields);
    return 0;
}

static int appender_clear(Appender *self)
{
    appender_release_view(self);
    Py_CLEAR(self->seqs);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->full);
    Py_CLEAR(self->failed);
    Py_CLEAR(self->slow_record);
    Py_CLEAR(self->slow_write);
    Py_CLEAR(self->fault);
    Py_CLEAR(self->slow_fields);
    return 0;
}

static void appender_dealloc(Appender *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    appender_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int appender_init(Appender *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"seqs", "slow", "full", "failed", "slow_record", "slow_write", "fault", "slow_fields",
                             NULL};
    PyObject *seqs, *slow, *full, *failed, *slow_record = Py_None, *slow_write = Py_None, *fault = Py_None,
             *slow_fields = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|OOOO:Appender", kwlist, &seqs, &slow, &full, &failed,
                                     &slow_record, &slow_write, &fault, &slow_fields))
        return -1;
    if (!PyCallable_Check(slow) || !PyCallable_Check(full) || !PyCallable_Check(failed) ||
        (slow_record != Py_None && !PyCallable_Check(slow_record)) ||
        (slow_write != Py_None && !PyCallable_Check(slow_write)) || (fault != Py_None && !PyCallable_Check(fault)) ||
        (slow_fields != Py_None && !PyCallable_Check(slow_fields))) {
        PyErr_SetString(PyExc_TypeError, "Appender: slow, full, failed, slow_record, slow_write, fault and "
                                         "slow_fields must be callables");
        return -1;
    }
    self->counter_type = type_state(Py_TYPE(self))->counter_type;
    Py_INCREF(slow_fields);
    Py_XSETREF(self->slow_fields, slow_fields);
    Py_INCREF(fault);
    Py_XSETREF(self->fault, fault);
    Py_INCREF(slow_record);
    Py_XSETREF(self->slow_record, slow_record);
    Py_INCREF(slow_write);
    Py_XSETREF(self->slow_write, slow_write);
    Py_INCREF(seqs);
    Py_XSETREF(self->seqs, seqs);
    Py_INCREF(slow);
    Py_XSETREF(self->slow, slow);
    Py_INCREF(full);
    Py_XSETREF(self->full, full);
    Py_INCREF(failed);
    Py_XSETREF(self->failed, failed);
    return 0;
}

PyDoc_STRVAR(appender_target_doc,
"target(mm, positions, names, slot_count, data_offset, slot_size, limit, counter=None, seen=0)\n--\n\n"
"Write into the ring mapped by ``mm`` from now on (after opening, rotation, or a changed limit).\n"
"``counter`` is the mapping's fault counter in the SIGBUS guard (mmaplog._sigbus.counter), checked\n"
"after every store against ``seen``.");

static PyObject *appender_target(Appender *self, PyObject *args)
{
    PyObject *mm, *positions, *names, *limit_obj, *counter = Py_None;
    unsigned long long count, seen = 0;
    Py_ssize_t base, size;
    if (!PyArg_ParseTuple(args, "OOO!KnnO|OK:target", &mm, &positions, &PyDict_Type, &names, &count, &base, &size,
                          &limit_obj, &counter, &seen))
        return NULL;
    const uint64_t *faults = NULL;
    if (counter != Py_None) {
        faults = PyCapsule_GetPointer(counter, "mmaplog._sigbus.counter");
        if (faults == NULL)
            return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(mm, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (count == 0 || base < 0 || view.len < base || size <= SLOT_HEADER_SIZE + SLOT_TRAILER_SIZE || size % 8 ||
        (unsigned long long)(view.len - base) / (unsigned long long)size < count ||
        ((uintptr_t)view.buf + (uintptr_t)base) % 8) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "Appender.target: the slots do not fit the mapping");
        return NULL;
    }
    /* limit: the last position this file takes; anything at or past 2**64 - 1 means "never full". */
    unsigned long long limit = PyLong_AsUnsignedLongLong(limit_obj);
    if (limit == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyBuffer_Release(&view);
            return NULL;
        }
        PyErr_Clear();
        limit = UINT64_MAX;
    }
    appender_release_view(self);
    self->view = view;
    Py_INCREF(positions);
    self->positions = positions;
    Py_INCREF(names);
    self->names = names;
    self->faults = faults;
    self->seen = seen;
    self->count = count;
    self->limit = limit;
    self->base = base;
    self->size = size;
    self->payload = size - SLOT_HEADER_SIZE - SLOT_TRAILER_SIZE;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(appender_release_doc,
"release()\n--\n\nStop writing into the mapping (before it is closed); later appends take the slow path.");

static PyObject *appender_release(Appender *self, PyObject *Py_UNUSED(ignored))
{
    appender_release_view(self);
    Py_RETURN_NONE;
}

static PyObject *call_slow(Appender *self, PyObject *message, PyObject *level, PyObject *logger)
{
    PyObject *args[3] = {message, level, logger};
    return PyObject_Vectorcall(self->slow, args, 3, NULL);
}

/* A record was claimed and could not be written: count it (the writer reports it once); never raise. */
static PyObject *lost(Appender *self)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *res = self->failed ? PyObject_CallOneArg(self->failed, value ? value : Py_None) : NULL;
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (res == NULL) {
        PyErr_Clear();
        return PyLong_FromLong(0);
    }
    return res;
}

/* The name-table id of ``logger`` and the level as a byte, or -1 (no exception set) for the slow path. */
static long fast_ids(Appender *self, PyObject *level_obj, PyObject *logger, long *level_out)
{
    /* Exact types only: a str subclass's __eq__/__hash__ or an int subclass would run Python code here. */
    if (self->view.obj == NULL || self->seqs == NULL || !PyLong_CheckExact(level_obj) || !PyUnicode_CheckExact(logger))
        return -1;
    long level = PyLong_AsLong(level_obj);
    if (level < 0 || level > 255) {
        PyErr_Clear();
        return -1;
    }
    PyObject *lid_obj = PyDict_GetItemWithError(self->names, logger); /* borrowed */
    if (lid_obj == NULL) {
        PyErr_Clear();
        return -1;
    }
    long lid = PyLong_AsLong(lid_obj);
    if (lid < 0 || lid > 0xFFFF) {
        PyErr_Clear();
        return -1;
    }
    *level_out = level;
    return lid;
}

/* The slot commit protocol lives in _slot.h (shared with the async worker in _casync.c).  ``fields`` is NULL for
 * a plain record, else the record's fields (bytes), stored after the message. */
static inline void store_slot(Appender *self, unsigned char *slot, const unsigned char *header, const char *data,
                              Py_ssize_t n, PyObject *fields, unsigned long long pos)
{
    if (fields == NULL)
        mmaplog_store_slot(slot, self->size, self->payload, self->count, header, data, n, pos);
    else
        mmaplog_store_slot2(slot, self->size, self->payload, self->count, header, data, n, PyBytes_AS_STRING(fields),
                            PyBytes_GET_SIZE(fields), pos);
}

#define FAULT_ATTEMPTS 3

/* Ask the writer's fault(state); returns the counter value it now sees, or -1 (the record is lost, counted). */
static long long call_fault(Appender *self, int state)
{
    PyObject *arg = PyLong_FromLong(state);
    PyObject *res = arg ? PyObject_CallOneArg(self->fault, arg) : NULL;
    Py_XDECREF(arg);
    long long seen = res ? PyLong_AsLongLong(res) : -1;
    Py_XDECREF(res);
    if (PyErr_Occurred()) {
        PyObject *gone = lost(self); /* counts it */
        Py_XDECREF(gone);
        return -1;
    }
    return seen;
}

/* The guard's counter moved across the store of record ``seq`` at ``offset``: the store went to an anonymous
 * page.  The writer repairs the file and maps it again over the same addresses (Python code, under its lock);
 * then, if this appender still targets that mapping, the record is stored again, so that a write call that
 * returns a seq leaves a readable record.  A second fault (the disk cannot back the page) counts it as lost. */
static PyObject *after_fault(Appender *self, Py_ssize_t offset, const unsigned char *header, const char *data,
                             Py_ssize_t n, PyObject *fields, unsigned long long pos, unsigned long long seq,
                             PyObject *level_obj, PyObject *logger, int64_t stamp, unsigned long long ident)
{
    if (self->fault == Py_None)
        return PyLong_FromUnsignedLongLong(seq);
    unsigned long long generation = self->generation;
    /* Another thread's fault may move the counter between a repair and our store again (its own repair then
     * drops our page): try a few times; a page that faults every time (the disk cannot back it) is given up. */
    for (int attempt = 0; attempt < FAULT_ATTEMPTS; attempt++) {
        long long seen = call_fault(self, 0);
        if (seen < 0)
            return PyLong_FromLong(0);
        if (generation != self->generation || self->view.obj == NULL || self->faults == NULL) {
            /* Closed or rotated while the repair ran: the writer keeps the record if the rotated file holds it,
             * else writes it again, with its fields, in the current file (fault(3, None, record); 0 and counted
             * when closed). */
            PyObject *bytes = PyBytes_FromStringAndSize(data, n);
            if (bytes == NULL)
                return lost(self);
            PyObject *res = fields == NULL
                ? PyObject_CallFunction(self->fault, "iO(KOOOLKK)", 3, Py_None, seq, bytes, level_obj, logger,
                                        (long long)stamp, ident, pos)
                : PyObject_CallFunction(self->fault, "iO(KOOOLKKO)", 3, Py_None, seq, bytes, level_obj, logger,
                                        (long long)stamp, ident, pos, fields);
            Py_DECREF(bytes);
            return res ? res : lost(self);
        }
        self->seen = (uint64_t)seen;
        store_slot(self, (unsigned char *)self->view.buf + offset, header, data, n, fields, pos);
        if (__atomic_load_n(self->faults, __ATOMIC_ACQUIRE) == self->seen)
            return PyLong_FromUnsignedLongLong(seq);
    }
    long long seen = call_fault(self, 1); /* counted as lost; the file is mapped again, no anonymous page kept */
    if (seen >= 0 && generation == self->generation)
        self->seen = (uint64_t)seen;
    return PyLong_FromLong(0);
}

/* Claim, copy and commit one record: ``n`` UTF-8 bytes of message, then ``fields`` (bytes: the record has
 * FLAG_FIELDS; NULL: none), together at most one payload (the caller checked it).  Returns its seq (never NULL).
 * Between the claim and the commit no Python code runs (only itertools.count's C __next__ on exact counters);
 * the generation check makes that a rule, not an assumption. */
static inline __attribute__((always_inline)) PyObject *
append_slot(Appender *self, const char *data, Py_ssize_t n, PyObject *fields, long level, long lid, PyObject *level_obj,
            PyObject *logger, int64_t stamp, unsigned long long ident)
{
    unsigned long long seq, pos;
    unsigned long long generation = self->generation;
    if (self->view.obj == NULL || self->seqs == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the ring was closed");
        return lost(self);
    }
    if (mmaplog_claim(self->seqs, self->counter_type, &seq) < 0)
        return lost(self);
    if (mmaplog_claim(self->positions, self->counter_type, &pos) < 0)
        return lost(self);
    if (generation != self->generation || self->view.obj == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the ring changed while a record was claimed");
        return lost(self);
    }
    if (pos > self->limit) { /* the file is full: the writer rotates and writes this record in the next file */
        PyObject *bytes = PyBytes_FromStringAndSize(data, n);
        if (bytes == NULL)
            return lost(self);
        PyObject *res = fields == NULL
            ? PyObject_CallFunction(self->full, "KOOOLK", seq, bytes, level_obj, logger, (long long)stamp, ident)
            : PyObject_CallFunction(self->full, "KOOOLKO", seq, bytes, level_obj, logger, (long long)stamp, ident,
                                    fields);
        Py_DECREF(bytes);
        return res ? res : lost(self);
    }
    if (pos == 0)
        return lost(self);

    unsigned char header[SLOT_HEADER_SIZE];
    Py_ssize_t en = fields == NULL ? 0 : PyBytes_GET_SIZE(fields);
    uint32_t rec_len = (uint32_t)(n + en), msg_len = (uint32_t)n;
    uint16_t length = (uint16_t)(n + en), part = 0, lid16 = (uint16_t)lid;
    memcpy(header + OFF_POS, &pos, 8);
    memcpy(header + OFF_SEQ, &seq, 8);
    memcpy(header + OFF_TIME_NS, &stamp, 8);
    memcpy(header + OFF_THREAD, &ident, 8);
    memcpy(header + OFF_REC_LEN, &rec_len, 4);
    memcpy(header + OFF_MSG_LEN, &msg_len, 4);
    memcpy(header + OFF_LENGTH, &length, 2);
    memcpy(header + OFF_PART, &part, 2);
    memcpy(header + OFF_LOGGER_ID, &lid16, 2);
    header[OFF_LEVEL] = (unsigned char)level;
    header[OFF_FLAGS] = fields == NULL ? FLAG_WHOLE : (FLAG_WHOLE | FLAG_FIELDS);

    Py_ssize_t offset = self->base + (Py_ssize_t)((pos - 1) % self->count) * self->size;
    store_slot(self, (unsigned char *)self->view.buf + offset, header, data, n, fields, pos);
    /* The SIGBUS guard's check: one load.  A moved counter means the store may sit in an anonymous page. */
    if (self->faults != NULL && __atomic_load_n(self->faults, __ATOMIC_ACQUIRE) != self->seen)
        return after_fault(self, offset, header, data, n, fields, pos, seq, level_obj, logger, stamp, ident);
    return PyLong_FromUnsignedLongLong(seq);
}

/* append_slot for a plain record and for one with fields: each its own copy, so the plain one has no branch
 * on fields left (bench/icount.py counts the difference). */
static PyObject *append_bytes(Appender *self, const char *data, Py_ssize_t n, long level, long lid, PyObject *level_obj,
                              PyObject *logger, int64_t stamp, unsigned long long ident)
{
    return append_slot(self, data, n, NULL, level, lid, level_obj, logger, stamp, ident);
}

static PyObject *append_with_fields(Appender *self, const char *data, Py_ssize_t n, PyObject *fields, long level,
                                    long lid, PyObject *level_obj, PyObject *logger)
{
    return append_slot(self, data, n, fields, level, lid, level_obj, logger, wall_clock_ns(),
                       (unsigned long long)PyThread_get_thread_ident());
}

/* What a fast path returns when it leaves the record to the slow path: NotImplemented, a new reference.
 * NULL always means an exception is set. */
#define TAKE_SLOW_PATH() Py_NewRef(Py_NotImplemented)

/* The fast append; returns the record's seq, TAKE_SLOW_PATH() when the slow path must take it, or NULL with
 * an exception set. */
static PyObject *append_fast_at(Appender *self, PyObject *message, PyObject *level_obj, PyObject *logger,
                                int64_t stamp, unsigned long long ident)
{
    long level;
    long lid = fast_ids(self, level_obj, logger, &level);
    if (lid < 0 || !PyUnicode_CheckExact(message))
        return TAKE_SLOW_PATH();
    Py_ssize_t n;
    const char *data = PyUnicode_AsUTF8AndSize(message, &n);
    if (data == NULL) { /* lone surrogates: the slow path renders them */
        PyErr_Clear();
        return TAKE_SLOW_PATH();
    }
    if (n > self->payload)
        return TAKE_SLOW_PATH();
    return append_bytes(self, data, n, level, lid, level_obj, logger, stamp, ident);
}

static PyObject *append_fast(Appender *self, PyObject *message, PyObject *level_obj, PyObject *logger)
{
    return append_fast_at(self, message, level_obj, logger, wall_clock_ns(),
                          (unsigned long long)PyThread_get_thread_ident());
}

PyDoc_STRVAR(appender_append_doc,
"append(message, level, logger)\n--\n\n"
"Append one record and return its seq, as RingWriter._append does (0 if it was lost); never raises.");

static PyObject *appender_append(Appender *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "append(message, level, logger) takes 3 arguments");
        return NULL;
    }
    if (!appender_ready(self))
        return NULL;
    PyObject *res = append_fast(self, args[0], args[1], args[2]);
    if (res != Py_NotImplemented)
        return res;
    Py_DECREF(res);
    return call_slow(self, args[0], args[1], args[2]);
}


static int keyword_is(PyObject *name, PyObject *interned, const char *text)
{
    return name == interned || PyUnicode_CompareWithASCIIString(name, text) == 0;
}

PyDoc_STRVAR(appender_write_doc,
"write(message, *, level=20, logger='', fields=None, time_ns=None, thread=None, exception=None)\n--\n\n"
"RingWriter.write: a plain record is appended here; fields, a traceback, a given time or thread go to\n"
"the Python method.  Returns the record's seq (0 if it could not be written); never raises.");

static PyObject *appender_write(Appender *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    cwrite_state *st = type_state(Py_TYPE(self));
    PyObject *level = st->default_level, *logger = st->empty_name, *stamp_obj = Py_None, *ident_obj = Py_None;
    if (!appender_ready(self))
        return NULL;
    if (nargs != 1 || self->slow_write == Py_None)
        goto python;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        if (keyword_is(name, st->str_kw_level, "level"))
            level = value;
        else if (keyword_is(name, st->str_kw_logger, "logger"))
            logger = value;
        else if (keyword_is(name, st->str_kw_time_ns, "time_ns"))
            stamp_obj = value;
        else if (keyword_is(name, st->str_kw_thread, "thread"))
            ident_obj = value;
        else if (value != Py_None ||
                 !(keyword_is(name, st->str_kw_fields, "fields") || keyword_is(name, st->str_kw_exception, "exception")))
            goto python;
    }
    if (stamp_obj == Py_None && ident_obj == Py_None) {
        PyObject *res = append_fast(self, args[0], level, logger);
        if (res != Py_NotImplemented)
            return res;
        Py_DECREF(res);
        return call_slow(self, args[0], level, logger);
    }
    /* A given time or thread (the stdlib bridge, handlers replaying records): exact ints in range only. */
    int64_t stamp = wall_clock_ns();
    unsigned long long ident = (unsigned long long)PyThread_get_thread_ident();
    if (stamp_obj != Py_None) {
        if (!PyLong_CheckExact(stamp_obj))
            goto python;
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(stamp_obj, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            goto python;
        }
        stamp = (int64_t)value;
    }
    if (ident_obj != Py_None) {
        ident = PyLong_CheckExact(ident_obj) ? PyLong_AsUnsignedLongLong(ident_obj) : (unsigned long long)-1;
        if (!PyLong_CheckExact(ident_obj) || (ident == (unsigned long long)-1 && PyErr_Occurred())) {
            PyErr_Clear();
            goto python;
        }
    }
    PyObject *res = append_fast_at(self, args[0], level, logger, stamp, ident);
    if (res != Py_NotImplemented)
        return res;
    Py_DECREF(res);
python:
    if (self->slow_write == Py_None) {
        PyErr_SetString(PyExc_TypeError, "Appender.write needs slow_write");
        return NULL;
    }
    return PyObject_Vectorcall(self->slow_write, args, nargsf, kwnames);
}
#define FMT_UNHANDLED (-2)
#define SLOT_PAYLOAD_STACK 4096

/* A new reference to slot ``i`` of ``record``: read in place for a LogRecord, by attribute otherwise. */
static PyObject *record_get(const cwrite_state *st, PyObject *record, int i)
{
    if (Py_TYPE(record) == (PyTypeObject *)st->record_type && st->record_type_offsets[0]) {
        PyObject *value = *(PyObject **)((char *)record + st->record_type_offsets[i]);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(record, st->record_names[i]);
}

/* One record of write_batch in C: 1 written (or counted as lost), 0 for the Python path, -1 on an error.
 *
 * Reading a record's attributes and rendering its message can run Python code (properties, __str__,
 * __repr__ of the arguments), which may close the writer or rotate it.  So every Python value is taken
 * and the text rendered first; only then are the target's state and the logger's id read (fast_ids), and
 * the record stored with no Python call in between (append_bytes).  A record thus lands in the file it
 * was stored in under that file's id for its logger. */
static int append_record_fast(Appender *self, PyObject *record, long *written)
{
    int handled = 0;
    PyObject *level_obj = NULL, *logger = NULL, *fields = NULL, *exception = NULL, *stamp_obj = NULL,
             *ident_obj = NULL, *text = NULL, *msg = NULL, *args = NULL;
    const cwrite_state *st = type_state(Py_TYPE(self));
    if (!(level_obj = record_get(st, record, R_LEVEL)) || !(logger = record_get(st, record, R_LOGGER)) ||
        !(fields = record_get(st, record, R_FIELDS)) || !(exception = record_get(st, record, R_EXCEPTION)) ||
        !(stamp_obj = record_get(st, record, R_TIME_NS)) || !(ident_obj = record_get(st, record, R_THREAD)))
        goto python;
    if (fields != Py_None || exception != Py_None || !PyLong_CheckExact(stamp_obj) || !PyLong_CheckExact(ident_obj) ||
        !PyLong_CheckExact(level_obj) || !PyUnicode_CheckExact(logger))
        goto python;
    int overflow;
    long long stamp = PyLong_AsLongLongAndOverflow(stamp_obj, &overflow);
    if (overflow || (stamp == -1 && PyErr_Occurred()))
        goto python;
    unsigned long long ident = PyLong_AsUnsignedLongLong(ident_obj);
    if (ident == (unsigned long long)-1 && PyErr_Occurred())
        goto python;
    if (self->view.obj == NULL)
        goto python;

    const char *data = NULL;
    Py_ssize_t n = FMT_UNHANDLED;
    char buffer[SLOT_PAYLOAD_STACK];
    /* A LogRecord not rendered yet: format msg % args straight into UTF-8, as the level methods do
     * (exact str, int and float arguments only: no Python code runs). */
    text = record_get(st, record, R_MESSAGE);
    if (text == NULL)
        PyErr_Clear();
    if (text == Py_None && (msg = record_get(st, record, R_MSG)) && (args = record_get(st, record, R_ARGS)) &&
        PyUnicode_CheckExact(msg) && PyTuple_CheckExact(args)) {
        Py_ssize_t fmt_len;
        const char *fmt = PyUnicode_AsUTF8AndSize(msg, &fmt_len);
        if (fmt == NULL)
            PyErr_Clear();
        else if (PyTuple_GET_SIZE(args) == 0) {
            data = fmt;
            n = fmt_len <= SLOT_PAYLOAD_STACK ? fmt_len : FMT_UNHANDLED;
        }
        else {
            data = buffer;
            n = format_utf8(fmt, fmt_len, &PyTuple_GET_ITEM(args, 0), PyTuple_GET_SIZE(args), buffer,
                            SLOT_PAYLOAD_STACK);
        }
        if (n == -1)
            goto error;
    }
    PyErr_Clear();
    if (n < 0) { /* anything else: the record's own rendering (may run any Python code) */
        Py_CLEAR(text);
        text = PyObject_GetAttr(record, st->str_message);
        if (text == NULL || !PyUnicode_CheckExact(text) || !(data = PyUnicode_AsUTF8AndSize(text, &n)))
            goto python;
    }
    /* From here on no Python code runs until the record is committed: read the target's state now. */
    long level;
    long lid = fast_ids(self, level_obj, logger, &level);
    if (lid < 0 || n > self->payload) /* a new logger name, a long text, a closed writer: the Python path */
        goto python;
    PyObject *res = append_bytes(self, data, n, level, lid, level_obj, logger, (int64_t)stamp, ident);
    if (res == NULL)
        goto error;
    *written += PyLong_Check(res) && PyObject_IsTrue(res) == 1;
    Py_DECREF(res);
    handled = 1;
    goto done;
python:
    PyErr_Clear();
    handled = 0;
    goto done;
error:
    handled = -1;
done:
    Py_XDECREF(level_obj);
    Py_XDECREF(logger);
    Py_XDECREF(fields);
    Py_XDECREF(exception);
    Py_XDECREF(stamp_obj);
    Py_XDECREF(ident_obj);
    Py_XDECREF(text);
    Py_XDECREF(msg);
    Py_XDECREF(args);
    return handled;
}

PyDoc_STRVAR(appender_append_records_doc,
"append_records(records)\n--\n\n"
"RingWriter.write_batch: append each record in order and return how many were written; never raises.\n"
"Records with fields, a traceback or anything unusual go to slow_record(record) one by one.");

static PyObject *appender_append_records(Appender *self, PyObject *records)
{
    if (!appender_ready(self))
        return NULL;
    PyObject *iterator = PyObject_GetIter(records);
    if (iterator == NULL)
        return lost(self);
    long written = 0;
    PyObject *record;
    while ((record = PyIter_Next(iterator)) != NULL) {
        int handled = self->view.obj != NULL ? append_record_fast(self, record, &written) : 0;
        if (handled == 0 && self->slow_record != Py_None) {
            PyObject *res = PyObject_CallOneArg(self->slow_record, record);
            if (res == NULL)
                handled = -1;
            else {
                written += PyLong_Check(res) && PyObject_IsTrue(res) == 1;
                Py_DECREF(res);
            }
        }
        Py_DECREF(record);
        if (handled < 0) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) { /* KeyboardInterrupt and the like go on up */
                Py_DECREF(iterator);
                return NULL;
            }
            PyObject *res = lost(self);
            Py_XDECREF(res);
        }
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        PyObject *res = lost(self);
        Py_XDECREF(res);
    }
    return PyLong_FromLong(written);
}

/* ------------------------------------------------------------------------------- records with fields */
/* Twin: RingWriter._append_fields (mmaplog/writer.py) is the Python form of Appender.append_fields. */

/* One record of ``n`` message bytes and ``fields`` (bytes) in one slot, FLAG_FIELDS; TAKE_SLOW_PATH() when it
 * does not fit one slot or the logger has no id yet (or the writer is closed: fast_ids says so). */
static PyObject *append_fields_fast(Appender *self, const char *data, Py_ssize_t n, long level, long lid,
                                    PyObject *level_obj, PyObject *logger, PyObject *fields)
{
    if (n > self->payload - PyBytes_GET_SIZE(fields))
        return TAKE_SLOW_PATH();
    return append_with_fields(self, data, n, fields, level, lid, level_obj, logger);
}

/* The record with its fields in Python: RingWriter._append_fields (long records, new names, rotation checks). */
static PyObject *call_slow_fields(Appender *self, PyObject *message, PyObject *level, PyObject *logger,
                                  PyObject *fields)
{
    if (self->slow_fields == NULL || self->slow_fields == Py_None) {
        PyErr_SetString(PyExc_TypeError, "Appender.append_fields needs slow_fields");
        return NULL;
    }
    PyObject *args[4] = {message, level, logger, fields};
    return PyObject_Vectorcall(self->slow_fields, args, 4, NULL);
}

/* append_fields with the message as a str: C when the record fits one slot, else the Python path. */
static PyObject *append_fields_text(Appender *self, PyObject *message, PyObject *level_obj, PyObject *logger,
                                    PyObject *fields)
{
    long level;
    long lid = PyBytes_CheckExact(fields) ? fast_ids(self, level_obj, logger, &level) : -1;
    if (lid >= 0 && PyUnicode_CheckExact(message)) {
        Py_ssize_t n;
        const char *data = PyUnicode_AsUTF8AndSize(message, &n);
        if (data != NULL) {
            PyObject *res = append_fields_fast(self, data, n, level, lid, level_obj, logger, fields);
            if (res != Py_NotImplemented)
                return res;
            Py_DECREF(res);
        }
        else {
            PyErr_Clear(); /* lone surrogates: the slow path renders them */
        }
    }
    return call_slow_fields(self, message, level_obj, logger, fields);
}

PyDoc_STRVAR(appender_append_fields_doc,
"append_fields(message, level, logger, fields_json)\n--\n\n"
"Append one record whose fields are already encoded as the writer encodes them (bytes), as\n"
"RingWriter._append_fields does; returns its seq (0 if it was lost); never raises.");

static PyObject *appender_append_fields(Appender *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "append_fields(message, level, logger, fields_json) takes 4 arguments");
        return NULL;
    }
    if (!appender_ready(self))
        return NULL;
    return append_fields_text(self, args[0], args[1], args[2], args[3]);
}

/* MmaplogLocatedApi.append_fields (_located.h): ``msg % args`` formatted straight into UTF-8 where the level
 * methods' formatter takes it, then append_fields. */
static PyObject *located_append_fields(PyObject *appender, PyObject *msg, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *level_obj, PyObject *logger, PyObject *fields)
{
    Appender *self = (Appender *)appender;
    if (!appender_ready(self))
        return NULL;
    if (nargs == 0)
        return append_fields_text(self, msg, level_obj, logger, fields);
    long level;
    long lid = PyBytes_CheckExact(fields) && PyUnicode_CheckExact(msg) ? fast_ids(self, level_obj, logger, &level)
                                                                       : -1;
    if (lid < 0)
        return TAKE_SLOW_PATH(); /* the caller renders the text; append_fields_text sends it to Python */
    Py_ssize_t fmt_len;
    const char *fmt = PyUnicode_AsUTF8AndSize(msg, &fmt_len);
    if (fmt == NULL) {
        PyErr_Clear();
        return TAKE_SLOW_PATH();
    }
    char text[SLOT_PAYLOAD_STACK];
    Py_ssize_t room = self->payload - PyBytes_GET_SIZE(fields);
    Py_ssize_t n = room < 0 ? FMT_UNHANDLED
                            : format_utf8(fmt, fmt_len, args, nargs, text, room < SLOT_PAYLOAD_STACK ? room
                                                                                                   : SLOT_PAYLOAD_STACK);
    if (n == -1)
        return NULL;
    if (n < 0)
        return TAKE_SLOW_PATH(); /* a conversion it leaves to %, or longer than the room: the caller renders it */
    return append_with_fields(self, text, n, fields, level, lid, level_obj, logger);
}

static PyMethodDef appender_methods[] = {
    {"append", (PyCFunction)(void (*)(void))appender_append, METH_FASTCALL, appender_append_doc},
    {"append_records", (PyCFunction)appender_append_records, METH_O, appender_append_records_doc},
    {"append_fields", (PyCFunction)(void (*)(void))appender_append_fields, METH_FASTCALL, appender_append_fields_doc},
    {"write", (PyCFunction)(void (*)(void))appender_write, METH_FASTCALL | METH_KEYWORDS, appender_write_doc},
    {"target", (PyCFunction)appender_target, METH_VARARGS, appender_target_doc},
    {"release", (PyCFunction)appender_release, METH_NOARGS, appender_release_doc},
    {NULL, NULL, 0, NULL},
};

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif

static PyType_Slot appender_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("Appender(seqs, slow, full, failed): one-slot records straight into a mapped ring.")},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, appender_init},
    {Py_tp_dealloc, appender_dealloc},
    {Py_tp_traverse, appender_traverse},
    {Py_tp_clear, appender_clear},
    {Py_tp_methods, appender_methods},
    {0, NULL},
};

static PyType_Spec appender_spec = {
    .name = "mmaplog._cwrite.Appender",
    .basicsize = sizeof(Appender),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = appender_slots,
};

/* ------------------------------------------------------------------------------------------ Emitters */
/* Twin: emit_ring and emit_one in mmaplog/logger.py (_emitter) are the Python forms of ring_emit and record_emit. */

/* The state behind one level method (_emitter.h); the method itself is a builtin function bound to it. */
typedef struct {
    MMAPLOG_EMITTER_HEAD
    cwrite_state *state; /* its module's (the emitter holds its type, the type its module) */
} Emitter;

static PyType_Slot emitter_slots[] = {
    MMAPLOG_EMITTER_SLOTS("The state behind one accelerated level method."),
};

static PyType_Spec emitter_spec = {
    .name = "mmaplog._cwrite.Emitter",
    .basicsize = sizeof(Emitter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = emitter_slots,
};

/* msg % args for args[1:]; TAKE_SLOW_PATH() when the fallback must render it (the formatting failed), or NULL
 * with an exception set. */
static PyObject *format_message(PyObject *msg, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1) {
        Py_INCREF(msg);
        return msg;
    }
    return mmaplog_format_args(msg, args + 1, nargs - 1);
}

/* The ring handler's current append, when it is an Appender's: writes need no Python call at all. */
static Appender *direct_appender(const cwrite_state *st, PyObject *append)
{
    if (PyCFunction_Check(append)) {
        PyObject *owner = PyCFunction_GET_SELF(append);
        if (owner != NULL && Py_TYPE(owner) == st->appender_type)
            return (Appender *)owner;
    }
    return NULL;
}

static PyObject *ring_emit(Emitter *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1 || !PyUnicode_CheckExact(args[0]))
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    PyObject *append = PyObject_GetAttr(self->target, self->state->str_append);
    if (append == NULL)
        return NULL;
    Appender *appender = direct_appender(self->state, append);
    if (appender != NULL) {
        long level;
        long lid = fast_ids(appender, self->level, self->name, &level);
        Py_ssize_t fmt_len;
        const char *fmt = lid < 0 ? NULL : PyUnicode_AsUTF8AndSize(args[0], &fmt_len);
        if (fmt != NULL) {
            char text[SLOT_PAYLOAD_STACK];
            Py_ssize_t cap = appender->payload < SLOT_PAYLOAD_STACK ? appender->payload : SLOT_PAYLOAD_STACK;
            Py_ssize_t n = FMT_UNHANDLED;
            if (nargs > 1) {
                n = format_utf8(fmt, fmt_len, args + 1, nargs - 1, text, cap);
            }
            else if (fmt_len <= cap) {
                memcpy(text, fmt, (size_t)fmt_len);
                n = fmt_len;
            }
            if (n >= 0) {
                PyObject *res = append_bytes(appender, text, n, level, lid, self->level, self->name, wall_clock_ns(),
                                             (unsigned long long)PyThread_get_thread_ident());
                Py_DECREF(append);
                if (res == NULL)
                    PyErr_Clear(); /* only the seq's int object can fail here; the record is written */
                Py_XDECREF(res);
                Py_RETURN_NONE;
            }
            if (n == -1) {
                Py_DECREF(append);
                return NULL;
            }
        }
        else if (lid >= 0) {
            PyErr_Clear(); /* lone surrogates in the format: the generic path below renders them */
        }
    }
    Py_DECREF(append);
    PyObject *text = format_message(args[0], args, nargs);
    if (text == NULL)
        return NULL;
    if (text == Py_NotImplemented) {
        Py_DECREF(text);
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    append = PyObject_GetAttr(self->target, self->state->str_append);
    if (append == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    PyObject *call[3] = {text, self->level, self->name};
    PyObject *res = PyObject_Vectorcall(append, call, 3, NULL);
    Py_DECREF(append);
    Py_DECREF(text);
    if (res == NULL)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_NONE;
}

static PyObject *record_emit(Emitter *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1)
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    PyObject *rest = PyTuple_New(nargs - 1);
    if (rest == NULL)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(rest, i - 1, args[i]);
    }
    PyObject *stamp = PyLong_FromLongLong(wall_clock_ns());
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    PyObject *record = NULL;
    if (stamp != NULL && ident != NULL) {
        PyObject *fields[RECORD_SLOTS] = {self->name, self->level, args[0], rest, Py_None, stamp, ident, Py_None, Py_None};
        const cwrite_state *st = self->state;
        if (self->record == st->record_type && st->record_type_offsets[0]) {
            /* What LogRecord.__init__ does, without its frame: fill the slots of a fresh instance. */
            PyTypeObject *type = (PyTypeObject *)self->record;
            record = type->tp_alloc(type, 0);
            if (record != NULL) {
                for (int i = 0; i < RECORD_SLOTS; i++) {
                    Py_INCREF(fields[i]);
                    *(PyObject **)((char *)record + st->record_type_offsets[i]) = fields[i];
                }
            }
        }
        else {
            record = PyObject_Vectorcall(self->record, fields, 8, NULL);
        }
    }
    Py_DECREF(rest);
    Py_XDECREF(stamp);
    Py_XDECREF(ident);
    if (record == NULL)
        return NULL;
    PyObject *res = PyObject_Vectorcall(self->target, &record, 1, NULL);
    Py_DECREF(record);
    if (res == NULL)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_NONE;
}

static PyMethodDef ring_emit_def = {
    "emit_ring", (PyCFunction)(void (*)(void))ring_emit, METH_FASTCALL | METH_KEYWORDS,
    "Log one record at this method's level into the logger's ring (msg, *args, exc_info=None, **fields).",
};
static PyMethodDef record_emit_def = {
    "emit_one", (PyCFunction)(void (*)(void))record_emit, METH_FASTCALL | METH_KEYWORDS,
    "Log one record at this method's level through the logger's handler (msg, *args, exc_info=None, **fields).",
};

static PyObject *make_emitter(cwrite_state *st, PyMethodDef *def, PyObject *target, PyObject *level, PyObject *name,
                              PyObject *fallback, PyObject *record)
{
    Emitter *state = (Emitter *)mmaplog_emitter_new(st->emitter_type, target, level, name, fallback, record);
    if (state == NULL)
        return NULL;
    state->state = st;
    return mmaplog_emitter_bind((MmaplogEmitter *)state, def);
}

PyDoc_STRVAR(ring_emitter_doc,
"ring_emitter(handler, level, name, fallback)\n--\n\n"
"A level method that formats ``msg % args`` and calls ``handler._append(text, level, name)``;\n"
"keyword arguments, non-str messages and failed formatting go to ``fallback`` with the same arguments.");

static PyObject *ring_emitter(PyObject *module, PyObject *args)
{
    PyObject *handler, *level, *name, *fallback;
    if (!PyArg_ParseTuple(args, "OO!UO:ring_emitter", &handler, &PyLong_Type, &level, &name, &fallback))
        return NULL;
    return make_emitter(module_state(module), &ring_emit_def, handler, level, name, fallback, NULL);
}

PyDoc_STRVAR(record_emitter_doc,
"record_emitter(handle, level, name, fallback, record_type)\n--\n\n"
"A level method that calls ``handle(record_type(name, level, msg, args, None, time_ns, thread, None))``;\n"
"keyword arguments go to ``fallback`` with the same arguments.");

/* Fill ``offsets`` from the record class's slot descriptors; all zero when the class is not laid out as expected. */
static void record_offsets(PyObject *record, Py_ssize_t *offsets)
{
    memset(offsets, 0, sizeof(Py_ssize_t) * RECORD_SLOTS);
    if (!PyType_Check(record) || ((PyTypeObject *)record)->tp_alloc == NULL)
        return;
    PyObject *declared = PyObject_GetAttrString(record, "__slots__");
    int ok = declared != NULL && PyTuple_Check(declared) && PyTuple_GET_SIZE(declared) == RECORD_SLOTS;
    Py_XDECREF(declared);
    PyErr_Clear();
    Py_ssize_t found[RECORD_SLOTS];
    for (int i = 0; ok && i < RECORD_SLOTS; i++) {
        PyObject *descr = PyObject_GetAttrString(record, RECORD_SLOT_NAMES[i]);
        if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type) {
            PyErr_Clear();
            ok = 0;
        }
        else {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            ok = member->type == T_OBJECT_EX && !(member->flags & READONLY) && member->offset > 0;
            found[i] = member->offset;
        }
        Py_XDECREF(descr);
    }
    if (ok)
        memcpy(offsets, found, sizeof(found));
}

PyDoc_STRVAR(use_record_type_doc,
"use_record_type(cls)\n--\n\n"
"Let write_batch read the slots of ``cls`` (mmaplog.LogRecord) in place instead of by attribute.");

static PyObject *use_record_type(PyObject *module, PyObject *cls)
{
    Py_ssize_t offsets[RECORD_SLOTS];
    record_offsets(cls, offsets);
    cwrite_state *st = module_state(module);
    Py_INCREF(cls);
    Py_XSETREF(st->record_type, cls);
    memcpy(st->record_type_offsets, offsets, sizeof(offsets));
    return PyBool_FromLong(offsets[0] != 0);
}

static PyObject *record_emitter(PyObject *module, PyObject *args)
{
    PyObject *handle, *level, *name, *fallback, *record;
    if (!PyArg_ParseTuple(args, "OO!UOO:record_emitter", &handle, &PyLong_Type, &level, &name, &fallback, &record))
        return NULL;
    return make_emitter(module_state(module), &record_emit_def, handle, level, name, fallback, record);
}

PyDoc_STRVAR(disabled_doc, "disabled(*args, **kwargs)\n--\n\nStands in for a level method while the level is disabled.");

static PyObject *disabled(PyObject *Py_UNUSED(module), PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs), PyObject *Py_UNUSED(kwnames))
{
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"disabled", (PyCFunction)(void (*)(void))disabled, METH_FASTCALL | METH_KEYWORDS, disabled_doc},
    {"ring_emitter", (PyCFunction)ring_emitter, METH_VARARGS, ring_emitter_doc},
    {"record_emitter", (PyCFunction)record_emitter, METH_VARARGS, record_emitter_doc},
    {"use_record_type", (PyCFunction)use_record_type, METH_O, use_record_type_doc},
    {NULL, NULL, 0, NULL},
};

static int cwrite_traverse(PyObject *module, visitproc visit, void *arg)
{
    cwrite_state *st = module_state(module);
    Py_VISIT(st->appender_type);
    Py_VISIT(st->emitter_type);
    Py_VISIT(st->counter_type);
    Py_VISIT(st->record_type);
    return 0;
}

static int cwrite_clear(PyObject *module)
{
    cwrite_state *st = module_state(module);
    Py_CLEAR(st->appender_type);
    Py_CLEAR(st->emitter_type);
    Py_CLEAR(st->counter_type);
    Py_CLEAR(st->record_type);
    for (int i = 0; i < RECORD_SLOTS; i++)
        Py_CLEAR(st->record_names[i]);
    Py_CLEAR(st->str_message);
    Py_CLEAR(st->str_append);
    Py_CLEAR(st->str_kw_level);
    Py_CLEAR(st->str_kw_logger);
    Py_CLEAR(st->str_kw_fields);
    Py_CLEAR(st->str_kw_time_ns);
    Py_CLEAR(st->str_kw_thread);
    Py_CLEAR(st->str_kw_exception);
    Py_CLEAR(st->default_level);
    Py_CLEAR(st->empty_name);
    return 0;
}

static void cwrite_free(void *module) { cwrite_clear((PyObject *)module); }


/* ------------------------------------------------------------------------------------------ Counter */
/* The writer's counters (mmaplog/_counter.py): next() takes a value, peek() reads it without taking it.  The C
 * append and the async producer take a value with one increment (mmaplog_claim in _slot.h), no int made. */

PyDoc_STRVAR(counter_doc,
"Counter(start, stop)\n--\n\n"
"Values start, start + 1, ..., stop - 1: ``next()`` takes one (atomic under the GIL), ``peek()`` reads the\n"
"next one without taking it.  The writer's record seqs and slot positions (mmaplog/_counter.py).");

static PyObject *counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"start", "stop", NULL};
    PyObject *start_obj, *stop_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Counter", kwlist, &start_obj, &stop_obj))
        return NULL;
    unsigned long long start = PyLong_AsUnsignedLongLong(start_obj);
    if (start == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long stop = PyLong_AsUnsignedLongLong(stop_obj);
    if (stop == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    MmaplogCounter *self = (MmaplogCounter *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->next = start < stop ? start : stop;
    self->stop = stop;
    return (PyObject *)self;
}

static void counter_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *counter_iternext(MmaplogCounter *self)
{
    if (self->next >= self->stop)
        return NULL; /* exhausted: StopIteration */
    return PyLong_FromUnsignedLongLong(self->next++);
}

static PyObject *counter_peek(MmaplogCounter *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(self->next);
}

static PyObject *counter_repr(MmaplogCounter *self)
{
    return PyUnicode_FromFormat("Counter(%llu)", self->next);
}

static PyMethodDef counter_methods[] = {
    {"peek", (PyCFunction)counter_peek, METH_NOARGS, "The value next() would take now, without taking it."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot counter_slots[] = {
    {Py_tp_doc, (void *)counter_doc},
    {Py_tp_new, counter_new},
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, counter_iternext},
    {Py_tp_methods, counter_methods},
    {Py_tp_repr, counter_repr},
    {0, NULL},
};

static PyType_Spec counter_spec = {
    .name = "mmaplog._cwrite.Counter",
    .basicsize = sizeof(MmaplogCounter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = counter_slots,
};

static int cwrite_exec(PyObject *module)
{
    cwrite_state *st = module_state(module);
    for (int i = 0; i < RECORD_SLOTS; i++) {
        st->record_names[i] = PyUnicode_InternFromString(RECORD_SLOT_NAMES[i]);
        if (st->record_names[i] == NULL)
            return -1;
    }
    struct { PyObject **slot; const char *text; } names[] = {
        {&st->str_message, "message"}, {&st->str_append, "_append"},
        {&st->str_kw_level, "level"}, {&st->str_kw_logger, "logger"}, {&st->str_kw_fields, "fields"},
        {&st->str_kw_time_ns, "time_ns"}, {&st->str_kw_thread, "thread"}, {&st->str_kw_exception, "exception"},
        {&st->empty_name, ""},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL)
            return -1;
    }
    st->default_level = PyLong_FromLong(20);
    if (st->default_level == NULL)
        return -1;
    mmaplog_crc32_init();
    st->appender_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &appender_spec, NULL);
    if (st->appender_type == NULL)
        return -1;
    st->emitter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &emitter_spec, NULL);
    if (st->emitter_type == NULL)
        return -1;
    st->counter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &counter_spec, NULL);
    if (st->counter_type == NULL || PyModule_AddType(module, st->counter_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "FORMAT_MAJOR", FORMAT_MAJOR) < 0)
        return -1;
    st->located.version = LOCATED_API_VERSION;
    st->located.appender_type = st->appender_type;
    st->located.method = (PyCFunction)(void (*)(void))appender_append_fields;
    st->located.append_fields = located_append_fields;
    PyObject *capsule = PyCapsule_New(&st->located, LOCATED_API_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(module, "_located_api", capsule) < 0) {
        Py_XDECREF(capsule);
        return -1;
    }
    return PyModule_AddType(module, st->appender_type);
}

static PyModuleDef_Slot cwrite_slots[] = {
    {Py_mod_exec, cwrite_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef cwrite_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmaplog._cwrite",
    .m_doc = "Writer-side accelerator (see mmaplog/_native.py).",
    .m_size = sizeof(cwrite_state),
    .m_methods = module_methods,
    .m_slots = cwrite_slots,
    .m_traverse = cwrite_traverse,
    .m_clear = cwrite_clear,
    .m_free = cwrite_free,
};

PyMODINIT_FUNC PyInit__cwrite(void) { return PyModuleDef_Init(&cwrite_module); }
