/* The async handler's native queue: producers copy records into C memory, a native thread writes them
 * into the ring file's map without the GIL.
 *
 * Producer (any Python thread, holding the GIL): formats ``msg % args`` straight into UTF-8 in a queue
 * entry (the common conversions, in C; anything else through PyUnicode_Format first), claims the record's
 * seq and slot position from the writer's own counters (as the writer's C append does: both claims and the
 * copy are one step under the GIL, so records keep the order of their calls), builds the 48-byte slot header
 * and publishes the entry.  The GIL serialises producers: the queue is single-producer, single-consumer, except
 * that a "drop_oldest" producer may take the oldest waiting entry away from the worker (a compare-and-swap on
 * the index the worker takes batches by) to drop it.
 *
 * Worker (a pthread, not a Python thread): takes entries in order and stores each one into its slot with
 * the writer's commit protocol (mmaplog_store_slot in _slot.h: invalid trailer, body, trailer) and CRC-32,
 * never touching a Python object.  Rare events take the GIL (PyGILState_Ensure) and call Python: a fault of
 * the SIGBUS guard (the file was cut: the writer repairs it, the record is stored again), the drop report,
 * the periodic flush.
 *
 * The map's lifetime: each entry names the Target (one mapping of one ring file) its slot belongs to.  A
 * Target holds a buffer export of the writer's mmap object (taken under the GIL), so the writer's close()
 * or rotation cannot unmap it (mmap.close() refuses while an export exists, and the writer then leaves the
 * map to the object's lifetime); the export is released, under the GIL, once the worker has written every
 * entry queued for it and the writer moved on.
 *
 * Rotation (a claimed position past the file's end) and records the queue does not take (fields, a
 * traceback, a logger name not yet in the file, a text longer than a slot) are written by the producer
 * through the writer's Python path, synchronously: they claim their seq after every queued record, so the
 * order in the file is the order of the calls.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include <Python.h>
#include <pythread.h>
#include <structmember.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mmaplog._casync writes the little-endian slot layout with native stores"
#endif

#include "_layout.h"
#define FLAG_WHOLE (FLAG_FIRST | FLAG_LAST)

#include "_checksum.h"
/* %f and %.Nf in integer arithmetic where that is exact (see _slot.h): the async producer only. */
#define MMAPLOG_FAST_FIXED
#include "_slot.h"
#include "_emitter.h"

enum { POLICY_BLOCK = 0, POLICY_DROP_NEWEST = 1, POLICY_DROP_OLDEST = 2 };
enum { STATE_RUNNING = 0, STATE_STOPPED = 1, STATE_ABANDONED = 2 };

/* Producers waiting for room are woken once this share of the queue is free (1/ROOM_WAKE_SHARE; at least one
 * entry), not after every batch: each wake-up costs a context switch and a GIL hand-off, and a producer woken for
 * 64 entries fills them in microseconds and waits again (a futex storm at the worker's pace). */
#define ROOM_WAKE_SHARE 4
/* A producer waiting for room re-checks signals (and the queue) at least this often. */
#define ROOM_RECHECK_NS 100000000LL
/* The worker thread's nice value (relative weight against the process's Python threads). */
#define WORKER_NICE 10
/* The worker takes at most this many entries at a time. */
#define WORKER_BATCH 64
/* Producers prefetch the entry this many ahead of the one they fill. */
#define PREFETCH_AHEAD 4
/* An idle worker naps this often (each IDLE_NAP_NS) before it sleeps until a producer wakes it. */
#define IDLE_NAPS 10
#define IDLE_NAP_NS 200000L
/* A sleeping worker looks at the queue at least this often (a bound, never the normal wake-up). */
#define IDLE_RECHECK_NS 100000000LL
/* Under sustained pressure the drop count is still written at least this often. */
#define DROP_REPORT_NS 1000000000LL

static inline int64_t wall_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void deadline_in(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t total = (int64_t)ts->tv_nsec + ns;
    ts->tv_sec += (time_t)(total / 1000000000);
    ts->tv_nsec = (long)(total % 1000000000);
}

/* This thread is the worker, or a producer waiting for room: a record it logs into a full queue is dropped. */
static _Thread_local int cannot_wait;

/* ------------------------------------------------------------------------------------------ module state */

typedef struct {
    PyTypeObject *queue_type;
    PyTypeObject *emitter_type;
} ModState;

static ModState *mod_state(PyObject *module)
{
    return (ModState *)PyModule_GetState(module);
}

/* ------------------------------------------------------------------------------------------ targets */

typedef struct Target {
    struct Target *next;
    PyObject *map;               /* the writer's _Map object this mapping belongs to */
    Py_buffer view;              /* the export that keeps the mapping alive */
    unsigned char *slots;        /* view.buf + data_offset */
    unsigned long long count, limit;
    Py_ssize_t size, payload;
    const uint64_t *faults;      /* the SIGBUS guard's counter of this mapping, or NULL */
    uint64_t seen;               /* its value once the last fault was dealt with (worker only after creation) */
    unsigned long long queued;   /* entries queued for it (producers, under the GIL) */
    char apart[64];              /* producer's and worker's counters on different cache lines */
    unsigned long long written;  /* entries the worker finished (atomic) */
} Target;

typedef struct {
    Target *target;
    uint32_t n;
    uint32_t pad;
    unsigned char header[SLOT_HEADER_SIZE];
    char data[];
} Entry;

/* ------------------------------------------------------------------------------------------ queue */

typedef struct {
    PyObject_HEAD
    PyObject *writer;       /* the RingWriter */
    PyObject *wdict;        /* its instance __dict__ (read per record: _map, _closed) */
    PyObject *describe;     /* describe(map) -> (mm, positions, slot_count, data_offset, slot_size, limit, counter, seen) */
    PyObject *fallback;     /* fallback(record): a record the queue does not take (written synchronously) */
    PyObject *full;         /* writer._append_full(seq, data, level, logger, stamp, ident): rotate and write */
    PyObject *fault;        /* writer._fault(state, map) -> seen */
    PyObject *report;       /* report(count): write the "dropped N records" warning (worker, with the GIL) */
    PyObject *flusher;      /* flusher(): flush the inner handler (worker, with the GIL, every flush_interval) */
    PyObject *cur_map;      /* the _Map the current target maps */
    PyObject *positions;    /* its itertools.count of positions */
    PyObject *seqs;         /* the writer's itertools.count of seqs */
    PyObject *names;        /* the writer's name table dict */
    Target *targets;        /* current first; older ones until their entries are written */
    unsigned char *ring;
    size_t stride;
    unsigned long long capacity;
    unsigned long long mask;       /* entries allocated - 1 (a power of two >= capacity) */
    Py_ssize_t payload;
    /* Each side's index on a cache line of its own: the other side reads it only when it must. */
    char apart1[64];
    unsigned long long head;       /* next entry to fill (producers; atomic) */
    unsigned long long tail_seen;  /* the worker's tail as producers last read it (producers only) */
    unsigned long long freed_seen; /* ``freed`` as producers last read it ("drop_oldest" only) */
    char apart2[64];
    /* Entries [freed, tail) are being written by the worker (one batch) or were dropped by "drop_oldest"
     * producers; [tail, head) wait.  The worker takes a batch by moving ``tail`` (compare-and-swap: a
     * "drop_oldest" producer takes the oldest waiting entry the same way, to drop it), then moves ``freed``
     * past it once written: producers reuse an entry's memory only below ``freed``, and a drain waits for it. */
    unsigned long long tail;       /* next entry to take (worker, "drop_oldest" producers; atomic) */
    unsigned long long freed;      /* entries below are written or dropped (atomic, only moves forward) */
    char apart3[64];
    int idle;                      /* the worker sleeps (atomic) */
    int stop;                      /* the worker ends once the queue is empty (atomic) */
    int finished;                  /* the worker has ended (atomic) */
    int paused;                    /* tests: the worker writes nothing while set (atomic) */
    unsigned long long gil_takes;  /* times the worker took the GIL (atomic; tests and docs) */
    int waiters;                   /* threads waiting for room or for a drain (under mu) */
    int drainers;                  /* of which waiting for a drain (under mu) */
    unsigned long long room_waits; /* times a producer waited for room (atomic; benchmarks and docs) */
    int state;
    int policy;
    int level;
    int started;
    int dirty;
    unsigned long long dropped;    /* atomic */
    unsigned long long reported;   /* atomic: drops already written as a warning */
    int64_t flush_interval_ns;     /* 0: no periodic flush */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, room;
    PyObject *key_map, *key_closed, *key_level, *key_logger, *key_msg, *key_args, *key_fields, *key_exception,
        *key_time_ns, *key_thread;
    PyObject *counter_type;        /* mmaplog._cwrite.Counter (claimed with one increment), or NULL */
} Queue;

#define QUEUE_KEYS(X) X(key_map, "_map") X(key_closed, "_closed") X(key_level, "level") X(key_logger, "logger") \
    X(key_msg, "msg") X(key_args, "args") X(key_fields, "fields") X(key_exception, "exception") \
    X(key_time_ns, "time_ns") X(key_thread, "thread")

static inline unsigned long long load_acq(unsigned long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static void target_free(Target *t)
{
    if (t->view.obj != NULL)
        PyBuffer_Release(&t->view);
    Py_XDECREF(t->map);
    PyMem_RawFree(t);
}

/* Release every target, the current one too (under the GIL, once nothing queued is left to write): the writer can
 * then unmap its file and close it, which a buffer export held here would prevent (mmap's own duplicate of the
 * descriptor, and with it the ring's lock, would stay open after RingWriter.close()). */
static void release_targets(Queue *self)
{
    while (self->targets != NULL) {
        Target *t = self->targets;
        self->targets = t->next;
        target_free(t);
    }
}

/* Release the targets (other than the current one) whose entries are all written (under the GIL). */
static void prune_targets(Queue *self)
{
    if (self->targets == NULL)
        return;
    Target **link = &self->targets->next;
    while (*link != NULL) {
        Target *t = *link;
        if (__atomic_load_n(&t->written, __ATOMIC_ACQUIRE) == t->queued) {
            *link = t->next;
            target_free(t);
        }
        else
            link = &t->next;
    }
}

/* Point the queue at the writer's map ``map`` (under the GIL; runs Python code).  0 ok, -1 with an exception. */
static int retarget(Queue *self, PyObject *map)
{
    if (self->describe == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._casync.Queue was cleared");
        return -1;
    }
    PyObject *desc = PyObject_CallOneArg(self->describe, map);
    if (desc == NULL)
        return -1;
    PyObject *mm, *positions, *counter;
    unsigned long long count, limit, seen;
    Py_ssize_t base, size;
    if (!PyArg_ParseTuple(desc, "OOKnnKOK:describe", &mm, &positions, &count, &base, &size, &limit, &counter, &seen)) {
        Py_DECREF(desc);
        return -1;
    }
    Target *t = PyMem_RawCalloc(1, sizeof(Target));
    if (t == NULL) {
        Py_DECREF(desc);
        PyErr_NoMemory();
        return -1;
    }
    if (counter != Py_None) {
        t->faults = PyCapsule_GetPointer(counter, "mmaplog._sigbus.counter");
        if (t->faults == NULL)
            goto fail;
    }
    if (PyObject_GetBuffer(mm, &t->view, PyBUF_WRITABLE) < 0) {
        t->view.obj = NULL;
        goto fail;
    }
    if (count == 0 || base < 0 || t->view.len < base || size <= SLOT_HEADER_SIZE + SLOT_TRAILER_SIZE || size % 8 ||
        (unsigned long long)(t->view.len - base) / (unsigned long long)size < count ||
        ((uintptr_t)t->view.buf + (uintptr_t)base) % 8 || size - SLOT_HEADER_SIZE - SLOT_TRAILER_SIZE != self->payload) {
        PyErr_SetString(PyExc_ValueError, "mmaplog._casync: the ring's slots do not fit this queue");
        goto fail;
    }
    t->slots = (unsigned char *)t->view.buf + base;
    t->count = count;
    t->limit = limit;
    t->size = size;
    t->payload = size - SLOT_HEADER_SIZE - SLOT_TRAILER_SIZE;
    t->seen = seen;
    Py_INCREF(map);
    t->map = map;
    Py_INCREF(positions);
    Py_XSETREF(self->positions, positions);
    Py_INCREF(map);
    Py_XSETREF(self->cur_map, map);
    t->next = self->targets;
    self->targets = t;
    prune_targets(self);
    Py_DECREF(desc);
    return 0;
fail:
    Py_DECREF(desc);
    target_free(t);
    return -1;
}

static inline Entry *entry_at(Queue *self, unsigned long long i)
{
    return (Entry *)(self->ring + (size_t)(i & self->mask) * self->stride);
}

/* Move ``freed`` forward to ``to`` (never back: the worker and a dropping producer both move it). */
static inline void advance_freed(Queue *self, unsigned long long to)
{
    unsigned long long old = __atomic_load_n(&self->freed, __ATOMIC_RELAXED);
    while ((long long)(to - old) > 0 &&
           !__atomic_compare_exchange_n(&self->freed, &old, to, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

/* ---- the worker */

static void wake_waiters(Queue *self)
{
    pthread_mutex_lock(&self->mu);
    if (__atomic_load_n(&self->waiters, __ATOMIC_RELAXED))
        pthread_cond_broadcast(&self->room);
    pthread_mutex_unlock(&self->mu);
}

/* The guard's counter moved across a store: with the GIL, let the writer repair the file, store again. */
static void worker_fault(Queue *self, Target *t, Entry *e, unsigned long long pos)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    __atomic_fetch_add(&self->gil_takes, 1, __ATOMIC_RELAXED);
    for (int attempt = 0; attempt < 3; attempt++) {
        PyObject *res = PyObject_CallFunction(self->fault, "iO", 0, t->map);
        long long seen = res ? PyLong_AsLongLong(res) : -1;
        Py_XDECREF(res);
        if (PyErr_Occurred())
            PyErr_Clear();
        if (seen < 0)
            goto done; /* counted as lost by the writer */
        if (t->map != self->cur_map) { /* rotated while the repair ran: the page is not the file's any more */
            res = PyObject_CallFunction(self->fault, "iO", 2, t->map);
            Py_XDECREF(res);
            PyErr_Clear();
            goto done;
        }
        t->seen = (uint64_t)seen;
        mmaplog_store_slot(t->slots + (size_t)((pos - 1) % t->count) * (size_t)t->size, t->size, t->payload, t->count,
                           e->header, e->data, e->n, pos);
        if (__atomic_load_n(t->faults, __ATOMIC_ACQUIRE) == t->seen)
            goto done;
    }
    PyObject *res = PyObject_CallFunction(self->fault, "iO", 1, t->map);
    long long seen = res ? PyLong_AsLongLong(res) : -1;
    Py_XDECREF(res);
    PyErr_Clear();
    if (seen >= 0)
        t->seen = (uint64_t)seen;
done:
    PyGILState_Release(gil);
}

/* Store entry ``e`` into its slot; the caller counts it in its target's ``written``. */
static inline void store_entry(Queue *self, Entry *e)
{
    Target *t = e->target;
    unsigned long long pos;
    memcpy(&pos, e->header, 8);
    mmaplog_store_slot(t->slots + (size_t)((pos - 1) % t->count) * (size_t)t->size, t->size, t->payload, t->count,
                       e->header, e->data, e->n, pos);
    if (t->faults != NULL && __atomic_load_n(t->faults, __ATOMIC_ACQUIRE) != t->seen)
        worker_fault(self, t, e, pos);
}

static void write_entry(Queue *self, Entry *e)
{
    store_entry(self, e);
    __atomic_fetch_add(&e->target->written, 1, __ATOMIC_RELEASE);
}

/* Entries [from, to) in order, counted in ``written`` once per run of one target (not one atomic add per entry:
 * a target is released only once all its entries are counted, so it outlives the run). */
static void write_entries(Queue *self, unsigned long long from, unsigned long long to)
{
    Target *run = NULL;
    unsigned long long done = 0;
    for (unsigned long long i = from; i != to; i++) {
        Entry *e = entry_at(self, i);
        if (e->target != run) {
            if (done)
                __atomic_fetch_add(&run->written, done, __ATOMIC_RELEASE);
            run = e->target;
            done = 0;
        }
        store_entry(self, e);
        done++;
    }
    if (done)
        __atomic_fetch_add(&run->written, done, __ATOMIC_RELEASE);
}

/* With the GIL: flush the inner handler, ignoring (and clearing) any error: it reports its own. */
static void worker_flush(Queue *self)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    __atomic_fetch_add(&self->gil_takes, 1, __ATOMIC_RELAXED);
    PyObject *res = self->flusher ? PyObject_CallNoArgs(self->flusher) : NULL;
    Py_XDECREF(res);
    if (PyErr_Occurred())
        PyErr_Clear();
    PyGILState_Release(gil);
}

/* Drops not yet written as a warning, taken (each drop is reported exactly once, by whoever takes it). */
static unsigned long long take_unreported(Queue *self)
{
    unsigned long long reported = __atomic_load_n(&self->reported, __ATOMIC_ACQUIRE);
    for (;;) {
        unsigned long long dropped = __atomic_load_n(&self->dropped, __ATOMIC_ACQUIRE);
        if (dropped == reported)
            return 0;
        if (__atomic_compare_exchange_n(&self->reported, &reported, dropped, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return dropped - reported;
    }
}

static void worker_report(Queue *self)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    __atomic_fetch_add(&self->gil_takes, 1, __ATOMIC_RELAXED);
    unsigned long long n = take_unreported(self);
    if (n) {
        PyObject *arg = PyLong_FromUnsignedLongLong(n);
        PyObject *res = arg && self->report ? PyObject_CallOneArg(self->report, arg) : NULL;
        Py_XDECREF(arg);
        Py_XDECREF(res);
        if (PyErr_Occurred())
            PyErr_Clear();
    }
    PyGILState_Release(gil);
}

static void *worker_main(void *arg)
{
    Queue *self = arg;
    cannot_wait = 1;
    pthread_setname_np(pthread_self(), "mmaplog-async");
#ifdef SCHED_BATCH
    /* A batch thread never preempts on wake-up: the worker's naps must not push a producer off its core. */
    struct sched_param batch = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
#endif
    {
        /* A lower weight than the Python threads of its process: where CPUs are short, they go first. */
        const char *nice_env = getenv("MMAPLOG_ASYNC_NICE");
        int nice_value = nice_env != NULL ? atoi(nice_env) : WORKER_NICE;
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice_value);
    }
    int64_t next_flush = 0, pressure_since = 0;
    int naps = 0;
    for (;;) {
        unsigned long long tail = load_acq(&self->tail), head = load_acq(&self->head);
        if (__atomic_load_n(&self->paused, __ATOMIC_ACQUIRE) && !__atomic_load_n(&self->stop, __ATOMIC_ACQUIRE)) {
            struct timespec nap = {0, IDLE_NAP_NS};
            nanosleep(&nap, NULL);
            continue;
        }
        if (tail != head) {
            naps = 0;
            unsigned long long end = head - tail > WORKER_BATCH ? tail + WORKER_BATCH : head;
            if (!__atomic_compare_exchange_n(&self->tail, &tail, end, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                continue; /* a "drop_oldest" producer took the oldest entry meanwhile: look again */
            write_entries(self, tail, end);
            advance_freed(self, load_acq(&self->tail)); /* this batch, and entries dropped since it was taken */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (__atomic_load_n(&self->waiters, __ATOMIC_RELAXED) &&
                (__atomic_load_n(&self->drainers, __ATOMIC_RELAXED) ||
                 head - end <= self->capacity - (self->capacity / ROOM_WAKE_SHARE > 0 ? self->capacity / ROOM_WAKE_SHARE : 1)))
                wake_waiters(self);
            if (!self->dirty && self->flush_interval_ns) {
                self->dirty = 1;
                next_flush = monotonic_ns() + self->flush_interval_ns;
            }
            if (__atomic_load_n(&self->dropped, __ATOMIC_RELAXED) != __atomic_load_n(&self->reported, __ATOMIC_RELAXED)) {
                int64_t now = monotonic_ns();
                if (pressure_since == 0)
                    pressure_since = now;
                if ((head - end) * 2 <= self->capacity || now - pressure_since >= DROP_REPORT_NS) {
                    worker_report(self);
                    pressure_since = 0;
                }
            }
            continue;
        }
        /* Nothing queued. */
        if (__atomic_load_n(&self->freed, __ATOMIC_ACQUIRE) != tail) { /* entries dropped by producers since */
            advance_freed(self, tail);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (__atomic_load_n(&self->waiters, __ATOMIC_RELAXED))
                wake_waiters(self);
            continue;
        }
        if (__atomic_load_n(&self->dropped, __ATOMIC_ACQUIRE) != __atomic_load_n(&self->reported, __ATOMIC_ACQUIRE)) {
            worker_report(self);
            pressure_since = 0;
            continue;
        }
        if (self->dirty && monotonic_ns() >= next_flush) {
            self->dirty = 0;
            worker_flush(self);
            continue;
        }
        if (naps < IDLE_NAPS && !__atomic_load_n(&self->stop, __ATOMIC_ACQUIRE)) {
            /* A burst usually goes on: nap a little before announcing sleep, so producers need not wake us. */
            struct timespec nap = {0, IDLE_NAP_NS};
            naps++;
            nanosleep(&nap, NULL);
            continue;
        }
        naps = 0;
        __atomic_store_n(&self->idle, 1, __ATOMIC_SEQ_CST);
        if (load_acq(&self->head) == load_acq(&self->tail)) { /* the second look, once a producer's store is visible */
            struct timespec nap = {0, IDLE_NAP_NS};
            nanosleep(&nap, NULL);
        }
        pthread_mutex_lock(&self->mu);
        if (load_acq(&self->head) != load_acq(&self->tail) || load_acq(&self->freed) != load_acq(&self->tail)) {
            __atomic_store_n(&self->idle, 0, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&self->mu);
            continue;
        }
        if (__atomic_load_n(&self->stop, __ATOMIC_ACQUIRE)) {
            pthread_mutex_unlock(&self->mu);
            break;
        }
        if (__atomic_load_n(&self->waiters, __ATOMIC_RELAXED))
            pthread_cond_broadcast(&self->room); /* a drain waiting for an empty queue */
        {
            int64_t wait = IDLE_RECHECK_NS;
            if (self->dirty && next_flush - monotonic_ns() < wait)
                wait = next_flush - monotonic_ns();
            struct timespec ts;
            deadline_in(&ts, wait > 0 ? wait : 0);
            pthread_cond_timedwait(&self->work, &self->mu, &ts);
        }
        __atomic_store_n(&self->idle, 0, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&self->mu);
    }
    pthread_mutex_lock(&self->mu);
    __atomic_store_n(&self->finished, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&self->room);
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

/* ---- the producer */

/* No fence on the producer's side (a full fence per record would wait for the entry's stores): a producer
 * that read ``idle`` just before the worker announced sleep leaves its entry for the worker's second look
 * (after a nap, by when the store is visible) or, at worst, for the worker's next timed wake-up. */
static inline void wake_worker(Queue *self)
{
    if (__atomic_load_n(&self->idle, __ATOMIC_RELAXED) && __atomic_exchange_n(&self->idle, 0, __ATOMIC_ACQ_REL)) {
        pthread_mutex_lock(&self->mu);
        pthread_cond_signal(&self->work);
        pthread_mutex_unlock(&self->mu);
    }
}

static inline void count_drop(Queue *self)
{
    __atomic_fetch_add(&self->dropped, 1, __ATOMIC_RELEASE);
}

/* The queue is full ("block"): wait with the GIL released until there is room.  1: room, 0: dropped
 * (counted: this thread cannot wait, or the queue stopped), -1: an exception (a signal handler raised). */
static int wait_for_room(Queue *self)
{
    if (cannot_wait)
        return 0;
    self->room_waits++;
    for (;;) {
        int full = 1;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&self->mu);
        __atomic_fetch_add(&self->waiters, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* stop() sets the state under the GIL, then wakes this wait: the state is looked at with the GIL. */
        full = load_acq(&self->head) - load_acq(&self->freed) >= self->capacity &&
               !__atomic_load_n(&self->finished, __ATOMIC_ACQUIRE);
        if (full) {
            struct timespec ts;
            deadline_in(&ts, ROOM_RECHECK_NS);
            pthread_cond_timedwait(&self->room, &self->mu, &ts);
            full = load_acq(&self->head) - load_acq(&self->freed) >= self->capacity;
        }
        __atomic_fetch_sub(&self->waiters, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&self->mu);
        Py_END_ALLOW_THREADS
        if (self->state != STATE_RUNNING)
            return 0;
        if (!full)
            return 1;
        if (!self->started || __atomic_load_n(&self->finished, __ATOMIC_ACQUIRE))
            return 0; /* the worker has ended: nobody will make room */
        wake_worker(self);
        /* Signal handlers of this thread run here; one that logs into this full queue drops its record. */
        cannot_wait = 1;
        int failed = PyErr_CheckSignals();
        cannot_wait = 0;
        if (failed < 0)
            return -1;
        if (self->head - load_acq(&self->freed) < self->capacity)
            return 1;
    }
}

/* The writer's counter type, mmaplog._cwrite.Counter (a new reference), whose values mmaplog_claim takes with one
 * increment; None where _cwrite is not there (the counters are then taken with next()); NULL with an exception. */
static PyObject *cwrite_counter_type(void)
{
    PyObject *module = PyImport_ImportModule("mmaplog._cwrite");
    if (module == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *type = PyObject_GetAttrString(module, "Counter");
    Py_DECREF(module);
    if (type != NULL && !PyType_Check(type)) {
        Py_DECREF(type);
        PyErr_SetString(PyExc_TypeError, "mmaplog._cwrite.Counter is not a type");
        return NULL;
    }
    return type;
}

/* Drop entry ``e`` (taken by this producer): its slot gets the invalid trailer of its position (the commit
 * protocol's first step, which a reader counts as a slot in flight, never a record), so the slot shows neither
 * the record nor what it held a lap before. */
static void drop_entry(Entry *e)
{
    Target *t = e->target;
    unsigned long long pos;
    memcpy(&pos, e->header, 8);
    unsigned char *slot = t->slots + (size_t)((pos - 1) % t->count) * (size_t)t->size;
    __atomic_store_n((uint64_t *)(slot + t->size - SLOT_TRAILER_SIZE),
                     (uint64_t)mmaplog_invalid_echo(pos, t->count) << 32, __ATOMIC_RELEASE);
    __atomic_fetch_add(&t->written, 1, __ATOMIC_RELEASE);
}

/* "drop_oldest" (under the GIL): 1 when entry ``head``'s memory is free, 0 when the worker stalled inside a batch
 * while producers went on dropping (the memory a lap back is still its; the caller drops the new record). */
static inline int entry_memory_free(Queue *self, unsigned long long head)
{
    return head - self->freed_seen <= self->mask || head - (self->freed_seen = load_acq(&self->freed)) <= self->mask;
}

/* "drop_oldest" (under the GIL, just before entry ``head`` is published): when ``capacity`` entries wait, take
 * the oldest one from the worker and drop it.  A lost race means the worker took a batch: there is room now. */
static void drop_oldest_if_full(Queue *self, unsigned long long head)
{
    while (head - self->tail_seen >= self->capacity &&
           head - (self->tail_seen = load_acq(&self->tail)) >= self->capacity) {
        unsigned long long t = self->tail_seen;
        if (!__atomic_compare_exchange_n(&self->tail, &t, t + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        drop_entry(entry_at(self, t));
        count_drop(self);
        self->tail_seen = t + 1;
        /* No batch of the worker in flight below it: the entry is free now (else the worker frees it). */
        unsigned long long f = t;
        __atomic_compare_exchange_n(&self->freed, &f, t + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
        return;
    }
}

enum { Q_TAKEN = 1, Q_NOT_TAKEN = 0, Q_ERROR = -1, Q_UNFORMATTED = 2 };

/* Queue one record whose text is ``text[0..len)`` or, when ``nargs`` >= 0, ``text % args`` formatted here.
 * Returns Q_TAKEN (queued, or dropped and counted by the policy), Q_NOT_TAKEN (the caller writes it another
 * way), Q_UNFORMATTED (a conversion this code does not do: render it and call again) or Q_ERROR. */
static int enqueue(Queue *self, long level, PyObject *level_obj, PyObject *logger, const char *text, Py_ssize_t len,
                   PyObject *const *args, Py_ssize_t nargs, int64_t stamp, unsigned long long ident, long *lid_cache)
{
    for (;;) {
        if (self->state != STATE_RUNNING || level < 0 || level > 255)
            return Q_NOT_TAKEN;
        PyObject *map = PyDict_GetItemWithError(self->wdict, self->key_map);         /* borrowed */
        PyObject *closed = map ? PyDict_GetItemWithError(self->wdict, self->key_closed) : NULL;
        if (map == NULL || closed != Py_False) {
            PyErr_Clear();
            return Q_NOT_TAKEN;
        }
        if (map != self->cur_map) {
            if (retarget(self, map) < 0) {
                PyErr_Clear(); /* the writer's own path reports what is wrong with its map */
                return Q_NOT_TAKEN;
            }
            continue; /* Python code ran: look again */
        }
        /* A name keeps its id for the writer's life (the table only grows): a level method caches it. */
        long lid = lid_cache != NULL ? *lid_cache : -1;
        if (lid < 0) {
            PyObject *lid_obj = PyDict_GetItemWithError(self->names, logger);
            if (lid_obj == NULL) { /* a name the file does not have yet: the writer's path registers it */
                PyErr_Clear();
                return Q_NOT_TAKEN;
            }
            lid = PyLong_AsLong(lid_obj);
            if (lid < 0 || lid > 0xFFFF) {
                PyErr_Clear();
                return Q_NOT_TAKEN;
            }
            if (lid_cache != NULL)
                *lid_cache = lid;
        }
        unsigned long long head = self->head;
        if (self->policy == POLICY_DROP_OLDEST) {
            if (!entry_memory_free(self, head)) {
                count_drop(self);
                return Q_TAKEN;
            }
        }
        else if (head - self->tail_seen >= self->capacity &&
                 head - (self->tail_seen = load_acq(&self->freed)) >= self->capacity) {
            if (self->policy == POLICY_DROP_NEWEST) {
                count_drop(self);
                return Q_TAKEN;
            }
            int room = wait_for_room(self);
            if (room <= 0) {
                count_drop(self);
                return room < 0 ? Q_ERROR : Q_TAKEN;
            }
            continue; /* the GIL was released: look again */
        }
        Entry *e = entry_at(self, head);
        /* The entries a lap ago are out of this core's cache (the worker read them): fetch ahead for writing. */
        Entry *ahead = entry_at(self, head + PREFETCH_AHEAD);
        __builtin_prefetch(ahead, 1, 3);
        __builtin_prefetch((char *)ahead + 64, 1, 3);
        Py_ssize_t n;
        if (nargs < 0) {
            if (len > self->payload)
                return Q_NOT_TAKEN;
            memcpy(e->data, text, (size_t)len);
            n = len;
        }
        else {
            n = format_utf8(text, len, args, nargs, e->data, self->payload);
            if (n == -1)
                return Q_ERROR;
            if (n < 0)
                return Q_UNFORMATTED;
        }
        /* The claim: no Python code runs from here to the publication of the entry. */
        unsigned long long seq, pos;
        if (mmaplog_claim(self->seqs, (PyTypeObject *)self->counter_type, &seq) < 0 ||
            mmaplog_claim(self->positions, (PyTypeObject *)self->counter_type, &pos) < 0) {
            PyErr_Clear();
            count_drop(self);
            return Q_TAKEN;
        }
        Target *t = self->targets;
        if (pos > t->limit || pos == 0) { /* the file is full: the writer rotates and writes this record there */
            PyObject *bytes = PyBytes_FromStringAndSize(e->data, n);
            PyObject *res = bytes ? PyObject_CallFunction(self->full, "KOOOLK", seq, bytes, level_obj, logger,
                                                          (long long)stamp, ident) : NULL;
            Py_XDECREF(bytes);
            Py_XDECREF(res);
            if (res == NULL)
                PyErr_Clear(); /* the writer counts what it could not write */
            return Q_TAKEN;
        }
        if (self->policy == POLICY_DROP_OLDEST) /* only a record that takes an entry makes room */
            drop_oldest_if_full(self, head);
        unsigned char *h = e->header;
        uint32_t rec_len = (uint32_t)n;
        uint16_t length = (uint16_t)n, part = 0, lid16 = (uint16_t)lid;
        memcpy(h + 0, &pos, 8);
        memcpy(h + 8, &seq, 8);
        memcpy(h + 16, &stamp, 8);
        memcpy(h + 24, &ident, 8);
        memcpy(h + 32, &rec_len, 4);
        memcpy(h + 36, &rec_len, 4);
        memcpy(h + 40, &length, 2);
        memcpy(h + 42, &part, 2);
        memcpy(h + 44, &lid16, 2);
        h[46] = (unsigned char)level;
        h[47] = FLAG_WHOLE;
        e->n = (uint32_t)n;
        e->target = t;
        t->queued++;
        __atomic_store_n(&self->head, head + 1, __ATOMIC_RELEASE);
        wake_worker(self);
        return Q_TAKEN;
    }
}

/* ---- Python methods of Queue */

static int parse_level(PyObject *level_obj, long *level)
{
    if (!PyLong_CheckExact(level_obj))
        return 0;
    *level = PyLong_AsLong(level_obj);
    if (*level == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(queue_put_doc,
"put(record)\n--\n\n"
"Queue a LogRecord (the handler's ``handle``): a plain record is copied into the native queue; anything\n"
"else (fields, a traceback, arguments this code does not format, a stopped queue) goes to ``fallback``.");

static PyObject *queue_put(Queue *self, PyObject *record)
{
    PyObject *level_obj = NULL, *logger = NULL, *msg = NULL, *args = NULL, *fields = NULL, *exception = NULL,
             *stamp_obj = NULL, *ident_obj = NULL;
    PyObject *result = NULL;
    long level;
    int taken = Q_NOT_TAKEN;
    if (!(level_obj = PyObject_GetAttr(record, self->key_level)))
        goto fallback;
    if (!parse_level(level_obj, &level))
        goto fallback;
    if (level < self->level) {
        Py_DECREF(level_obj);
        Py_RETURN_NONE;
    }
    if (self->state != STATE_RUNNING)
        goto fallback;
    if (!(logger = PyObject_GetAttr(record, self->key_logger)) || !(msg = PyObject_GetAttr(record, self->key_msg)) ||
        !(args = PyObject_GetAttr(record, self->key_args)) || !(fields = PyObject_GetAttr(record, self->key_fields)) ||
        !(exception = PyObject_GetAttr(record, self->key_exception)) ||
        !(stamp_obj = PyObject_GetAttr(record, self->key_time_ns)) ||
        !(ident_obj = PyObject_GetAttr(record, self->key_thread)))
        goto fallback;
    if (fields != Py_None || exception != Py_None || !PyUnicode_CheckExact(logger) || !PyUnicode_CheckExact(msg) ||
        !PyTuple_CheckExact(args) || !PyLong_CheckExact(stamp_obj) || !PyLong_CheckExact(ident_obj))
        goto fallback;
    int overflow;
    long long stamp = PyLong_AsLongLongAndOverflow(stamp_obj, &overflow);
    if (overflow || (stamp == -1 && PyErr_Occurred()))
        goto fallback;
    unsigned long long ident = PyLong_AsUnsignedLongLong(ident_obj);
    if (ident == (unsigned long long)-1 && PyErr_Occurred())
        goto fallback;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(msg, &len);
    if (text == NULL)
        goto fallback;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    taken = enqueue(self, level, level_obj, logger, text, len, nargs ? &PyTuple_GET_ITEM(args, 0) : NULL,
                    nargs ? nargs : -1, (int64_t)stamp, ident, NULL);
    if (taken == Q_TAKEN) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    if (taken == Q_ERROR)
        goto done;
fallback:
    PyErr_Clear();
    if (self->fallback == NULL)
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._casync.Queue was cleared");
    else
        result = PyObject_CallOneArg(self->fallback, record);
done:
    Py_XDECREF(level_obj);
    Py_XDECREF(logger);
    Py_XDECREF(msg);
    Py_XDECREF(args);
    Py_XDECREF(fields);
    Py_XDECREF(exception);
    Py_XDECREF(stamp_obj);
    Py_XDECREF(ident_obj);
    return result;
}

static int start_worker(Queue *self)
{
    if (self->started)
        return 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int err = pthread_create(&self->thread, &attr, worker_main, self);
    pthread_attr_destroy(&attr);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->started = 1;
    return 0;
}

/* Wait (GIL released) until ``done(self)`` holds or ``timeout_ns`` passed (< 0: forever); signals are
 * checked every ROOM_RECHECK_NS.  1: it holds, 0: timed out, -1: an exception from a signal handler. */
static int wait_until(Queue *self, int (*done)(Queue *, unsigned long long), unsigned long long arg,
                      int64_t timeout_ns)
{
    int64_t end = timeout_ns < 0 ? INT64_MAX : monotonic_ns() + timeout_ns;
    for (;;) {
        int ok;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&self->mu);
        __atomic_fetch_add(&self->drainers, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&self->waiters, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        ok = done(self, arg);
        if (!ok) {
            int64_t left = end - monotonic_ns();
            struct timespec ts;
            deadline_in(&ts, left < ROOM_RECHECK_NS ? (left > 0 ? left : 0) : ROOM_RECHECK_NS);
            pthread_cond_timedwait(&self->room, &self->mu, &ts);
            ok = done(self, arg);
        }
        __atomic_fetch_sub(&self->waiters, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_sub(&self->drainers, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&self->mu);
        Py_END_ALLOW_THREADS
        if (ok)
            return 1;
        if (monotonic_ns() >= end)
            return 0;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

static int written_up_to(Queue *self, unsigned long long target)
{
    return load_acq(&self->freed) >= target;
}

static int worker_ended(Queue *self, unsigned long long unused)
{
    return __atomic_load_n(&self->finished, __ATOMIC_ACQUIRE);
}

static int64_t timeout_ns_of(PyObject *timeout)
{
    if (timeout == Py_None)
        return -1;
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred())
        return -2;
    return seconds <= 0 ? 0 : (int64_t)(seconds * 1e9);
}

PyDoc_STRVAR(queue_drain_doc,
"drain(timeout=None)\n--\n\n"
"Wait until every record queued before the call is written into the ring; False on timeout, or when\n"
"called from the worker itself, or when there is no worker.");

static PyObject *queue_drain(Queue *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t timeout = nargs > 0 ? timeout_ns_of(args[0]) : -1;
    if (timeout == -2)
        return NULL;
    if (self->state == STATE_ABANDONED || cannot_wait || !self->started)
        Py_RETURN_FALSE;
    unsigned long long target = self->head;
    pthread_mutex_lock(&self->mu);
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->mu);
    int res = wait_until(self, written_up_to, target, timeout);
    if (res < 0)
        return NULL;
    prune_targets(self);
    return PyBool_FromLong(res);
}

PyDoc_STRVAR(queue_stop_doc,
"stop(timeout=None)\n--\n\n"
"Write everything queued, end the worker and stop taking records (put() hands them to the fallback from\n"
"now on).  False if the worker did not finish within ``timeout`` seconds.");

static PyObject *queue_stop(Queue *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t timeout = nargs > 0 ? timeout_ns_of(args[0]) : -1;
    if (timeout == -2)
        return NULL;
    if (self->state == STATE_ABANDONED)
        Py_RETURN_TRUE;
    if (!self->started) {
        self->state = STATE_STOPPED;
        if (load_acq(&self->tail) == self->head)
            release_targets(self);
        Py_RETURN_TRUE;
    }
    if (cannot_wait) /* the worker itself (a callback) cannot wait for itself */
        Py_RETURN_FALSE;
    pthread_mutex_lock(&self->mu);
    __atomic_store_n(&self->stop, 1, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->mu);
    int res = wait_until(self, worker_ended, 0, timeout);
    if (res < 0)
        return NULL;
    self->state = STATE_STOPPED;
    pthread_mutex_lock(&self->mu);
    pthread_cond_broadcast(&self->room); /* producers waiting for room give up */
    pthread_mutex_unlock(&self->mu);
    if (res == 1) {
        int joined;
        Py_BEGIN_ALLOW_THREADS
        joined = pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        if (joined == 0) {
            self->started = 0;
            /* Producers ran while this thread waited without the GIL: one may have queued an entry after the
             * worker's last look.  The worker is gone and no producer runs now (the GIL is held, the state is
             * STOPPED): write what is left here, in order. */
            for (unsigned long long i = load_acq(&self->tail); i != self->head; i++)
                write_entry(self, entry_at(self, i));
            __atomic_store_n(&self->tail, self->head, __ATOMIC_RELEASE);
            __atomic_store_n(&self->freed, self->head, __ATOMIC_RELEASE);
            release_targets(self);
        }
    }
    return PyBool_FromLong(res);
}

PyDoc_STRVAR(queue_start_doc, "start()\n--\n\nStart the worker thread (once).");

static PyObject *queue_start(Queue *self, PyObject *Py_UNUSED(ignored))
{
    if (self->state != STATE_RUNNING) {
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._casync.Queue: stopped queues do not start again");
        return NULL;
    }
    if (start_worker(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(queue_abandon_doc,
"abandon()\n--\n\n"
"In a forked child: the worker thread and the queued records are the parent's; never use them (put()\n"
"hands every record to the fallback from now on).");

static PyObject *queue_abandon(Queue *self, PyObject *Py_UNUSED(ignored))
{
    self->state = STATE_ABANDONED;
    self->started = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(queue_pause_doc,
"pause(on)\n--\n\nTests: while on, the worker writes nothing (a slowed drain); stop() ends a pause.");

static PyObject *queue_pause(Queue *self, PyObject *on)
{
    int value = PyObject_IsTrue(on);
    if (value < 0)
        return NULL;
    __atomic_store_n(&self->paused, value, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(queue_take_unreported_doc,
"take_unreported()\n--\n\nDrops not yet written as a warning; each drop is returned once.");

static PyObject *queue_take_unreported(Queue *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(take_unreported(self));
}

PyDoc_STRVAR(queue_count_drop_doc, "count_drop()\n--\n\nCount one more dropped record.");

static PyObject *queue_count_drop(Queue *self, PyObject *Py_UNUSED(ignored))
{
    count_drop(self);
    Py_RETURN_NONE;
}

static PyObject *queue_get_dropped(Queue *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&self->dropped, __ATOMIC_ACQUIRE));
}

static PyObject *queue_get_pending(Queue *self, void *closure)
{
    if (self->state == STATE_ABANDONED)
        return PyLong_FromLong(0);
    return PyLong_FromUnsignedLongLong(self->head - load_acq(&self->freed));
}

static PyObject *queue_get_running(Queue *self, void *closure)
{
    return PyBool_FromLong(self->state == STATE_RUNNING);
}

static PyObject *queue_get_gil_takes(Queue *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&self->gil_takes, __ATOMIC_RELAXED));
}

static PyObject *queue_get_room_waits(Queue *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->room_waits);
}

static PyObject *queue_get_waiters(Queue *self, void *closure)
{
    return PyLong_FromLong(__atomic_load_n(&self->waiters, __ATOMIC_RELAXED));
}

static PyGetSetDef queue_getset[] = {
    {"gil_takes", (getter)queue_get_gil_takes, NULL, "Times the worker took the GIL (a fault, a drop report, a flush).",
     NULL},
    {"room_waits", (getter)queue_get_room_waits, NULL, "Times a producer waited for room in a full queue (\"block\").",
     NULL},
    {"waiters", (getter)queue_get_waiters, NULL, "Threads waiting for room or for a drain right now.", NULL},
    {"dropped", (getter)queue_get_dropped, NULL, "Records dropped by the overflow policy (exact).", NULL},
    {"pending", (getter)queue_get_pending, NULL, "Records queued and not yet written.", NULL},
    {"running", (getter)queue_get_running, NULL, "True while the queue takes records.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef queue_members[] = {
    {"level", T_INT, offsetof(Queue, level), 0, "The lowest level queued."},
    {"capacity", T_ULONGLONG, offsetof(Queue, capacity), READONLY, "Records the queue holds."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *make_emitter(Queue *self, PyObject *args);

PyDoc_STRVAR(queue_emitter_doc,
"emitter(level, name, fallback)\n--\n\n"
"A level method ``(msg, *args, exc_info=None, **fields)`` that queues ``msg % args`` for logger ``name``;\n"
"keyword arguments and anything the queue does not take go to ``fallback`` with the same arguments.");

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)queue_put, METH_O, queue_put_doc},
    {"emitter", (PyCFunction)make_emitter, METH_VARARGS, queue_emitter_doc},
    {"drain", (PyCFunction)(void (*)(void))queue_drain, METH_FASTCALL, queue_drain_doc},
    {"stop", (PyCFunction)(void (*)(void))queue_stop, METH_FASTCALL, queue_stop_doc},
    {"start", (PyCFunction)queue_start, METH_NOARGS, queue_start_doc},
    {"abandon", (PyCFunction)queue_abandon, METH_NOARGS, queue_abandon_doc},
    {"pause", (PyCFunction)queue_pause, METH_O, queue_pause_doc},
    {"take_unreported", (PyCFunction)queue_take_unreported, METH_NOARGS, queue_take_unreported_doc},
    {"count_drop", (PyCFunction)queue_count_drop, METH_NOARGS, queue_count_drop_doc},
    {NULL, NULL, 0, NULL},
};

static int queue_init(Queue *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"writer", "describe", "fallback", "report", "flusher", "capacity", "policy",
                             "flush_interval", "payload", NULL};
    PyObject *writer, *describe, *fallback, *report, *flusher;
    unsigned long long capacity;
    const char *policy;
    double interval;
    Py_ssize_t payload;
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._casync.Queue is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOKsdn:Queue", kwlist, &writer, &describe, &fallback, &report,
                                     &flusher, &capacity, &policy, &interval, &payload))
        return -1;
    if (!PyCallable_Check(describe) || !PyCallable_Check(fallback) || !PyCallable_Check(report) ||
        !PyCallable_Check(flusher)) {
        PyErr_SetString(PyExc_TypeError, "Queue: describe, fallback, report and flusher must be callables");
        return -1;
    }
    if (capacity == 0 || capacity > (1ULL << 24) || payload <= 0 || payload > 65535) {
        PyErr_SetString(PyExc_ValueError, "Queue: capacity must be 1..2**24 and payload 1..65535");
        return -1;
    }
    if (strcmp(policy, "block") == 0)
        self->policy = POLICY_BLOCK;
    else if (strcmp(policy, "drop_newest") == 0)
        self->policy = POLICY_DROP_NEWEST;
    else if (strcmp(policy, "drop_oldest") == 0)
        self->policy = POLICY_DROP_OLDEST;
    else {
        PyErr_Format(PyExc_ValueError, "Queue: policy must be 'block', 'drop_newest' or 'drop_oldest', not %s", policy);
        return -1;
    }
    PyObject *wdict = PyObject_GenericGetDict(writer, NULL);
    if (wdict == NULL)
        return -1;
    PyObject *seqs = PyDict_GetItemString(wdict, "_seqs"), *names = PyDict_GetItemString(wdict, "_names");
    PyObject *full = PyObject_GetAttrString(writer, "_append_full");
    PyObject *fault = full ? PyObject_GetAttrString(writer, "_fault") : NULL;
    if (seqs == NULL || names == NULL || !PyDict_CheckExact(names) || fault == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Queue: the writer has no _seqs/_names");
        Py_DECREF(wdict);
        Py_XDECREF(full);
        Py_XDECREF(fault);
        return -1;
    }
    PyObject *counter_type = cwrite_counter_type();
    if (counter_type == NULL) {
        Py_DECREF(wdict);
        Py_DECREF(full);
        Py_DECREF(fault);
        return -1;
    }
    if (counter_type == Py_None)
        Py_CLEAR(counter_type);
    self->stride = ((sizeof(Entry) + (size_t)payload + 63) / 64) * 64;
    unsigned long long slots = 1;
    /* "drop_oldest": room for a batch in flight beyond ``capacity`` waiting entries, so a producer drops the
     * oldest entry and reuses memory without waiting for the worker's batch to end. */
    while (slots < capacity + (self->policy == POLICY_DROP_OLDEST ? WORKER_BATCH + 1 : 0))
        slots <<= 1;
    self->mask = slots - 1;
    self->ring = PyMem_RawCalloc((size_t)slots, self->stride);
    if (self->ring != NULL) {
        /* Fault every page in now: a producer that touches a fresh page waits for the kernel (the tail latency). */
        volatile unsigned char *page = self->ring;
        for (size_t at = 0; at < (size_t)slots * self->stride; at += 4096)
            page[at] = 0;
    }
    if (self->ring == NULL) {
        Py_DECREF(wdict);
        Py_DECREF(full);
        Py_DECREF(fault);
        Py_XDECREF(counter_type);
        PyErr_NoMemory();
        return -1;
    }
    self->capacity = capacity;
    self->payload = payload;
    self->flush_interval_ns = interval > 0 ? (int64_t)(interval * 1e9) : 0;
    Py_INCREF(writer);
    self->writer = writer;
    self->wdict = wdict;
    Py_INCREF(seqs);
    self->seqs = seqs;
    Py_INCREF(names);
    self->names = names;
    self->full = full;
    self->fault = fault;
    self->counter_type = counter_type;
    Py_INCREF(describe);
    self->describe = describe;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(report);
    self->report = report;
    Py_INCREF(flusher);
    self->flusher = flusher;
    self->state = STATE_RUNNING;
    return 0;
}

static PyObject *queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Queue *self = (Queue *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->state = STATE_STOPPED; /* until __init__ */
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->work, &attr);
    pthread_cond_init(&self->room, &attr);
    pthread_condattr_destroy(&attr);
#define INTERN(field, text) \
    if ((self->field = PyUnicode_InternFromString(text)) == NULL) { \
        Py_DECREF(self); \
        return NULL; \
    }
    QUEUE_KEYS(INTERN)
#undef INTERN
    return (PyObject *)self;
}

static int queue_traverse(Queue *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->writer);
    Py_VISIT(self->wdict);
    Py_VISIT(self->describe);
    Py_VISIT(self->fallback);
    Py_VISIT(self->full);
    Py_VISIT(self->fault);
    Py_VISIT(self->report);
    Py_VISIT(self->flusher);
    Py_VISIT(self->cur_map);
    Py_VISIT(self->positions);
    Py_VISIT(self->seqs);
    Py_VISIT(self->names);
    Py_VISIT(self->counter_type);
    return 0;
}

static int queue_clear(Queue *self)
{
    Py_CLEAR(self->describe);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->report);
    Py_CLEAR(self->flusher);
    return 0;
}

static void queue_dealloc(Queue *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->started && self->state != STATE_ABANDONED) {
        /* Never closed: let the worker write what is queued and end (it may need the GIL meanwhile). */
        pthread_mutex_lock(&self->mu);
        __atomic_store_n(&self->stop, 1, __ATOMIC_SEQ_CST);
        pthread_cond_signal(&self->work);
        pthread_mutex_unlock(&self->mu);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        self->started = 0;
        for (unsigned long long i = load_acq(&self->tail); i != self->head; i++) /* queued after the worker's last look */
            write_entry(self, entry_at(self, i));
        self->tail = self->freed = self->head;
    }
    int own_sync = self->state != STATE_ABANDONED;
    release_targets(self);
    PyMem_RawFree(self->ring);
    self->ring = NULL;
    if (own_sync) { /* a forked child's copies may be locked by the parent's worker: left alone */
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->work);
        pthread_cond_destroy(&self->room);
    }
    Py_CLEAR(self->writer);
    Py_CLEAR(self->wdict);
    Py_CLEAR(self->describe);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->full);
    Py_CLEAR(self->fault);
    Py_CLEAR(self->report);
    Py_CLEAR(self->flusher);
    Py_CLEAR(self->cur_map);
    Py_CLEAR(self->positions);
    Py_CLEAR(self->seqs);
    Py_CLEAR(self->names);
    Py_CLEAR(self->counter_type);
#define DROP(field, text) Py_CLEAR(self->field);
    QUEUE_KEYS(DROP)
#undef DROP
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* ------------------------------------------------------------------------------------------ emitters */

/* The state behind one level method (_emitter.h: its target is the Queue); the method itself is a builtin
 * function bound to it. */
typedef struct {
    MMAPLOG_EMITTER_HEAD
    long level_value;
    long lid;           /* the logger's id in the writer's name table, once known (-1 before) */
} Emitter;

static PyObject *emit(Emitter *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Queue *queue = (Queue *)self->target;
    if (queue == NULL || self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mmaplog._casync: the level method was cleared");
        return NULL;
    }
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || nargs < 1 || !PyUnicode_CheckExact(args[0]) ||
        queue->state != STATE_RUNNING)
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    if (self->level_value < queue->level)
        Py_RETURN_NONE;
    Py_ssize_t len;
    const char *fmt = PyUnicode_AsUTF8AndSize(args[0], &len);
    if (fmt == NULL) { /* lone surrogates: the Python path renders them */
        PyErr_Clear();
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    int64_t stamp = wall_clock_ns();
    unsigned long long ident = (unsigned long long)PyThread_get_thread_ident();
    int taken = enqueue(queue, self->level_value, self->level, self->name, fmt, len, args + 1,
                        nargs > 1 ? nargs - 1 : -1, stamp, ident, &self->lid);
    if (taken == Q_TAKEN)
        Py_RETURN_NONE;
    if (taken == Q_ERROR)
        return NULL;
    if (taken == Q_UNFORMATTED) {
        /* Conversions the C formatter does not do (%r, widths, other types): the interpreter's own %. */
        PyObject *text = mmaplog_format_args(args[0], args + 1, nargs - 1);
        if (text == NULL)
            return NULL;
        if (text == Py_NotImplemented) {
            Py_DECREF(text);
            return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        }
        const char *data = PyUnicode_AsUTF8AndSize(text, &len);
        taken = data ? enqueue(queue, self->level_value, self->level, self->name, data, len, NULL, -1, stamp, ident, &self->lid)
                     : Q_NOT_TAKEN;
        PyErr_Clear();
        Py_DECREF(text);
        if (taken == Q_TAKEN)
            Py_RETURN_NONE;
        if (taken == Q_ERROR)
            return NULL;
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyMethodDef emit_def = {
    "emit_async", (PyCFunction)(void (*)(void))emit, METH_FASTCALL | METH_KEYWORDS,
    "Log one record at this method's level through the async queue (msg, *args, exc_info=None, **fields).",
};

static PyObject *make_emitter(Queue *self, PyObject *args)
{
    PyObject *level, *name, *fallback;
    if (!PyArg_ParseTuple(args, "O!UO:emitter", &PyLong_Type, &level, &name, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "emitter: fallback must be callable");
        return NULL;
    }
    long value = PyLong_AsLong(level);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    PyObject *module = PyType_GetModule(Py_TYPE(self));
    if (module == NULL)
        return NULL;
    Emitter *state = (Emitter *)mmaplog_emitter_new(mod_state(module)->emitter_type, (PyObject *)self, level, name,
                                                    fallback, NULL);
    if (state == NULL)
        return NULL;
    state->level_value = value;
    state->lid = -1;
    return mmaplog_emitter_bind((MmaplogEmitter *)state, &emit_def);
}

/* ------------------------------------------------------------------------------------------ module */

static PyType_Slot queue_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR(
        "Queue(writer, describe, fallback, report, flusher, capacity, policy, flush_interval, payload)\n\n"
        "The async handler's native queue in front of one RingWriter, and its worker thread.")},
    {Py_tp_new, queue_new},
    {Py_tp_init, queue_init},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_traverse, queue_traverse},
    {Py_tp_clear, queue_clear},
    {Py_tp_methods, queue_methods},
    {Py_tp_members, queue_members},
    {Py_tp_getset, queue_getset},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "mmaplog._casync.Queue",
    .basicsize = sizeof(Queue),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = queue_slots,
};

static PyType_Slot emitter_slots[] = {
    MMAPLOG_EMITTER_SLOTS("The state behind one async level method."),
};

static PyType_Spec emitter_spec = {
    .name = "mmaplog._casync.Emitter",
    .basicsize = sizeof(Emitter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = emitter_slots,
};

static int casync_exec(PyObject *module)
{
    ModState *state = mod_state(module);
    mmaplog_crc32_init();
    state->queue_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
    if (state->queue_type == NULL)
        return -1;
    state->emitter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &emitter_spec, NULL);
    if (state->emitter_type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "Queue", (PyObject *)state->queue_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "FORMAT_MAJOR", FORMAT_MAJOR) < 0)
        return -1;
    return 0;
}

static int casync_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModState *state = mod_state(module);
    Py_VISIT(state->queue_type);
    Py_VISIT(state->emitter_type);
    return 0;
}

static int casync_clear(PyObject *module)
{
    ModState *state = mod_state(module);
    Py_CLEAR(state->queue_type);
    Py_CLEAR(state->emitter_type);
    return 0;
}

static void casync_free(void *module)
{
    casync_clear((PyObject *)module);
}

static PyModuleDef_Slot casync_slots[] = {
    {Py_mod_exec, casync_exec},
    {0, NULL},
};

static struct PyModuleDef casync_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmaplog._casync",
    .m_doc = "The async handler's native queue and GIL-free worker (see mmaplog/handlers/async_.py).",
    .m_size = sizeof(ModState),
    .m_slots = casync_slots,
    .m_traverse = casync_traverse,
    .m_clear = casync_clear,
    .m_free = casync_free,
};

PyMODINIT_FUNC PyInit__casync(void)
{
    return PyModuleDef_Init(&casync_module);
}
