/* The SIGBUS guard: a ring file truncated under its live writer must not kill the process.
 *
 * A store into a page of a shared file mapping that lies past the end of the file (someone ran
 * logrotate's copytruncate, ": > app.mmlog") or that the file system cannot back (a hole on a full
 * disk) raises SIGBUS, whose default action kills the process.  No check before the store can close
 * that race, so the guard acts in the signal handler, and does as little there as possible (the model
 * is journald's: systemd src/basic/sigbus.c):
 *
 *   - a fault (si_code > 0) whose address lies in a registered region: an anonymous page is mapped
 *     over the faulting page (MAP_FIXED), the region's fault counter is bumped with an atomic add, and
 *     the handler returns; the CPU retries the store, which now lands in that page.  The writer
 *     compares the counter with the value it saw last right after its store (one load), in ordinary
 *     code, and repairs the file, maps it again over the same addresses and writes its record again
 *     (mmaplog/writer.py);
 *   - anything else (a SIGBUS sent with kill/sigqueue/tgkill, a fault outside our regions) goes to the
 *     disposition that was in place before the guard, exactly as if the guard were not installed: the
 *     previous handler is called, an ignored signal is ignored, and under SIG_DFL the default
 *     disposition is put back so that the signal (raised again) or the fault (executed again) takes
 *     the process down as it would have.
 *
 * Only async-signal-safe calls (mmap, fstat, sigaction, raise, getpid) and lock-free atomics run in
 * the handler; no Python code, no allocation, no lock.  Regions are added and removed from ordinary
 * code under a mutex and published with atomic stores; the handler reads them with atomic loads.
 *
 * The region table and the saved previous disposition are process-wide statics, not module state: a
 * signal disposition belongs to the process, the handler cannot find any interpreter's module state,
 * and every interpreter (or re-import) that loads this module must share the one table the one
 * handler reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#define HAVE_INOTIFY 1
#endif

#define MAX_REGIONS 256
#define MAX_FAULT_ADDRESSES 64

typedef struct {
    uintptr_t start;       /* 0: the slot is free; written last on register, first on unregister */
    uintptr_t length;
    int fd;                /* the file behind the region (for a re-raised fault, see on_sigbus) */
    uint64_t faults;       /* bumped by the handler for each page replaced by anonymous memory */
} Region;

static Region regions[MAX_REGIONS];
/* The last faulting addresses, for diagnostics (a lock-free ring: index taken with an atomic add). */
static uintptr_t fault_addresses[MAX_FAULT_ADDRESSES];
static uint64_t fault_total;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
/* Two copies of the previous disposition: install() fills the one the handler is not reading. */
static struct sigaction previous_store[2];
static struct sigaction *previous; /* NULL until installed */
static int installed;              /* under table_lock */
static long page_size;

static void on_sigbus(int sig, siginfo_t *info, void *context);

static int region_index(uintptr_t addr)
{
    for (int i = 0; i < MAX_REGIONS; i++) {
        uintptr_t start = __atomic_load_n(&regions[i].start, __ATOMIC_ACQUIRE);
        if (start == 0)
            continue;
        uintptr_t length = __atomic_load_n(&regions[i].length, __ATOMIC_ACQUIRE);
        if (addr - start < length)
            return i;
    }
    return -1;
}

/* Put anonymous memory over [from, to) of region i and count it; 0 on success. */
static int replace(int i, uintptr_t from, uintptr_t to)
{
    if (to <= from)
        return -1;
    void *p = mmap((void *)from, to - from, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    __atomic_fetch_add(&regions[i].faults, 1, __ATOMIC_RELEASE);
    uint64_t n = __atomic_fetch_add(&fault_total, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&fault_addresses[n % MAX_FAULT_ADDRESSES], from, __ATOMIC_RELAXED);
    return 0;
}

/* Hand the signal to the disposition in place before ours, as if we had never been installed. */
static void pass_on(int sig, siginfo_t *info, void *context)
{
    struct sigaction *prev = __atomic_load_n(&previous, __ATOMIC_ACQUIRE);
    int sent = info == NULL || info->si_code <= 0;
    if (prev != NULL && (prev->sa_flags & SA_SIGINFO)) {
        if (prev->sa_sigaction != NULL && prev->sa_sigaction != on_sigbus) {
            prev->sa_sigaction(sig, info, context);
            return;
        }
    }
    else if (prev != NULL && prev->sa_handler == SIG_IGN) {
        if (sent)
            return; /* an ignored signal that was sent: nothing happens */
        /* A fault under SIG_IGN: the kernel would force the default action; so do we (below). */
    }
    else if (prev != NULL && prev->sa_handler != SIG_DFL) {
        prev->sa_handler(sig);
        return;
    }
    /* The default action: put it back, then let it happen (raised again, or the fault executed again). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (sent)
        raise(sig); /* blocked while we run: delivered, under SIG_DFL, as the handler returns */
}

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    if (info != NULL && info->si_code > 0) {
        int i = region_index((uintptr_t)info->si_addr);
        if (i >= 0) {
            uintptr_t page = (uintptr_t)info->si_addr & ~((uintptr_t)page_size - 1);
            if (replace(i, page, page + (uintptr_t)page_size) == 0) {
                errno = saved_errno;
                return; /* the store is retried into the anonymous page */
            }
        }
    }
    else if (info != NULL && info->si_code == SI_TKILL && info->si_pid == getpid()) {
        /* A fault passed on by a handler installed after ours that re-raises it (faulthandler does):
         * the address is lost.  If one of our files is now shorter than its mapping, that fault was
         * almost certainly ours: cover the cut part so that the store, executed again, survives. */
        int ours = 0;
        for (int j = 0; j < MAX_REGIONS; j++) {
            uintptr_t start = __atomic_load_n(&regions[j].start, __ATOMIC_ACQUIRE);
            if (start == 0)
                continue;
            uintptr_t length = __atomic_load_n(&regions[j].length, __ATOMIC_ACQUIRE);
            int fd = __atomic_load_n(&regions[j].fd, __ATOMIC_ACQUIRE);
            struct stat st;
            if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 0 || (uintptr_t)st.st_size >= length)
                continue;
            uintptr_t cut = ((uintptr_t)st.st_size + (uintptr_t)page_size - 1) & ~((uintptr_t)page_size - 1);
            ours |= replace(j, start + cut, start + length) == 0;
        }
        if (ours) {
            errno = saved_errno;
            return;
        }
    }
    pass_on(sig, info, context);
    errno = saved_errno;
}

/* ------------------------------------------------------------------------------- ordinary code */

static void lock_table(void) { pthread_mutex_lock(&table_lock); }
static void unlock_table(void) { pthread_mutex_unlock(&table_lock); }

/* Make on_sigbus the SIGBUS disposition (again, if someone replaced it), keeping the one before. */
static int install_locked(void)
{
    struct sigaction current;
    if (sigaction(SIGBUS, NULL, &current) != 0)
        return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus) {
        installed = 1;
        return 0;
    }
    /* Fill the copy the handler is not reading, then publish it before our handler can run. */
    struct sigaction *spare = previous == &previous_store[0] ? &previous_store[1] : &previous_store[0];
    *spare = current;
    __atomic_store_n(&previous, spare, __ATOMIC_RELEASE);
    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_sigaction = on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    if (sigaction(SIGBUS, &ours, NULL) != 0)
        return -1;
    installed = 1;
    return 0;
}

PyDoc_STRVAR(install_doc,
"install()\n--\n\n"
"Make the guard the SIGBUS handler (again, if another one replaced it), chaining to the one before;\n"
"raises OSError if sigaction fails.  Never removes itself.");

static PyObject *guard_install(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    lock_table();
    int rc = install_locked();
    unlock_table();
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(address_doc, "address(buffer)\n--\n\nThe address of a buffer's first byte (a mapping's start).");

static PyObject *guard_address(PyObject *Py_UNUSED(module), PyObject *obj)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *res = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return res;
}

PyDoc_STRVAR(register_doc,
"register(address, length, fd)\n--\n\n"
"Watch [address, address + length), the shared mapping of file descriptor fd, and install the guard;\n"
"returns the region's slot.  Raises OSError (ENOSPC) when every slot is taken.");

static PyObject *guard_register(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *addr_obj;
    Py_ssize_t length;
    int fd;
    if (!PyArg_ParseTuple(args, "Oni:register", &addr_obj, &length, &fd))
        return NULL;
    void *addr = PyLong_AsVoidPtr(addr_obj);
    if (addr == NULL && PyErr_Occurred())
        return NULL;
    if (addr == NULL || length <= 0 || (uintptr_t)addr % (uintptr_t)page_size) {
        PyErr_SetString(PyExc_ValueError, "register: a region must start on a page at a non-null address");
        return NULL;
    }
    length = (length + page_size - 1) / page_size * page_size; /* a mapping covers whole pages */
    int slot = -1;
    lock_table();
    for (int i = 0; i < MAX_REGIONS; i++) {
        if (__atomic_load_n(&regions[i].start, __ATOMIC_RELAXED) == 0) {
            slot = i;
            break;
        }
    }
    if (slot >= 0) {
        __atomic_store_n(&regions[slot].length, (uintptr_t)length, __ATOMIC_RELEASE);
        __atomic_store_n(&regions[slot].fd, fd, __ATOMIC_RELEASE);
        __atomic_store_n(&regions[slot].start, (uintptr_t)addr, __ATOMIC_RELEASE);
        if (install_locked() != 0) {
            int err = errno;
            __atomic_store_n(&regions[slot].start, 0, __ATOMIC_RELEASE);
            unlock_table();
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    unlock_table();
    if (slot < 0) {
        errno = ENOSPC;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(slot);
}

static int slot_arg(PyObject *obj, int *slot)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < 0 || value >= MAX_REGIONS) {
        PyErr_Format(PyExc_ValueError, "no region slot %ld", value);
        return -1;
    }
    *slot = (int)value;
    return 0;
}

PyDoc_STRVAR(unregister_doc,
"unregister(slot)\n--\n\nStop watching a region (before it is unmapped); the handler stays installed.");

static PyObject *guard_unregister(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int slot;
    if (slot_arg(arg, &slot) < 0)
        return NULL;
    lock_table();
    __atomic_store_n(&regions[slot].start, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&regions[slot].fd, -1, __ATOMIC_RELEASE);
    unlock_table();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(faults_doc,
"faults(slot)\n--\n\n"
"How many pages of the region in ``slot`` the handler has replaced by anonymous memory so far\n"
"(monotonic; compare with a value read before a store).  A negative slot (no guard) reads 0.");

static PyObject *guard_faults(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long slot = PyLong_AsLong(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= MAX_REGIONS)
        return PyLong_FromLong(0);
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&regions[slot].faults, __ATOMIC_ACQUIRE));
}

PyDoc_STRVAR(counter_doc,
"counter(slot)\n--\n\n"
"A capsule (\"mmaplog._sigbus.counter\") holding the address of the region's fault counter, for C code\n"
"that checks it after each store with one atomic load.  The counter lives as long as the process.");

static PyObject *guard_counter(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int slot;
    if (slot_arg(arg, &slot) < 0)
        return NULL;
    return PyCapsule_New(&regions[slot].faults, "mmaplog._sigbus.counter", NULL);
}

PyDoc_STRVAR(remap_doc,
"remap(slot, fd)\n--\n\n"
"Map the file ``fd`` again, shared and writable, over the whole registered region (MAP_FIXED): every\n"
"anonymous page the handler put there is replaced, and every pointer into the region stays valid.\n"
"Bumps the region's counter too (a store made into a dropped page must be seen) and returns its value.");

static PyObject *guard_remap(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *slot_obj;
    int fd, slot;
    if (!PyArg_ParseTuple(args, "Oi:remap", &slot_obj, &fd) || slot_arg(slot_obj, &slot) < 0)
        return NULL;
    lock_table();
    uintptr_t start = __atomic_load_n(&regions[slot].start, __ATOMIC_ACQUIRE);
    uintptr_t length = __atomic_load_n(&regions[slot].length, __ATOMIC_ACQUIRE);
    void *p = start == 0 ? MAP_FAILED
                         : mmap((void *)start, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    int err = start == 0 ? EINVAL : errno;
    unlock_table();
    if (p == MAP_FAILED) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* A remap drops every anonymous page, and with it any store another thread made there and has not
     * checked yet: bump the counter so that its check (before/after the store) sees a change too. */
    uint64_t now = __atomic_add_fetch(&regions[slot].faults, 1, __ATOMIC_ACQ_REL);
    return PyLong_FromUnsignedLongLong(now);
}

PyDoc_STRVAR(recent_doc,
"recent()\n--\n\nThe total number of pages replaced in the process and the last faulting page addresses.");

static PyObject *guard_recent(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    uint64_t total = __atomic_load_n(&fault_total, __ATOMIC_ACQUIRE);
    uint64_t shown = total < MAX_FAULT_ADDRESSES ? total : MAX_FAULT_ADDRESSES;
    PyObject *addresses = PyList_New(0);
    if (addresses == NULL)
        return NULL;
    for (uint64_t k = total - shown; k < total; k++) {
        PyObject *a = PyLong_FromVoidPtr((void *)__atomic_load_n(&fault_addresses[k % MAX_FAULT_ADDRESSES], __ATOMIC_RELAXED));
        if (a == NULL || PyList_Append(addresses, a) < 0) {
            Py_XDECREF(a);
            Py_DECREF(addresses);
            return NULL;
        }
        Py_DECREF(a);
    }
    return Py_BuildValue("KN", (unsigned long long)total, addresses);
}

PyDoc_STRVAR(bump_doc,
"bump(slot)\n--\n\n"
"Bump the region's fault counter (as a fault would) and return its value: every store in flight\n"
"checks it afterwards and asks the writer, which is about to change the file under the mapping.");

static PyObject *guard_bump(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int slot;
    if (slot_arg(arg, &slot) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_add_fetch(&regions[slot].faults, 1, __ATOMIC_ACQ_REL));
}

PyDoc_STRVAR(watch_open_doc,
"watch_open()\n--\n\n"
"A new inotify descriptor (close-on-exec, blocking reads), for noticing ring files changed by\n"
"other processes; OSError where inotify is missing or its limits are reached.");

static PyObject *guard_watch_open(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
#ifdef HAVE_INOTIFY
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
#else
    errno = ENOSYS;
    return PyErr_SetFromErrno(PyExc_OSError);
#endif
}

PyDoc_STRVAR(watch_add_doc,
"watch_add(ifd, fd)\n--\n\n"
"Watch the file open as ``fd`` (its inode, whatever its name now) for changes of size or content\n"
"made by anyone (IN_MODIFY: truncate, write, fallocate; stores through a mapping raise none);\n"
"returns the watch descriptor.");

static PyObject *guard_watch_add(PyObject *Py_UNUSED(module), PyObject *args)
{
    int ifd, fd;
    if (!PyArg_ParseTuple(args, "ii:watch_add", &ifd, &fd))
        return NULL;
#ifdef HAVE_INOTIFY
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int wd;
    Py_BEGIN_ALLOW_THREADS
    wd = inotify_add_watch(ifd, path, IN_MODIFY);
    Py_END_ALLOW_THREADS
    if (wd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(wd);
#else
    errno = ENOSYS;
    return PyErr_SetFromErrno(PyExc_OSError);
#endif
}

PyDoc_STRVAR(watch_remove_doc,
"watch_remove(ifd, wd)\n--\n\nStop a watch made by watch_add (errors are ignored: the file may be gone).");

static PyObject *guard_watch_remove(PyObject *Py_UNUSED(module), PyObject *args)
{
    int ifd, wd;
    if (!PyArg_ParseTuple(args, "ii:watch_remove", &ifd, &wd))
        return NULL;
#ifdef HAVE_INOTIFY
    (void)inotify_rm_watch(ifd, wd);
#endif
    Py_RETURN_NONE;
}

static PyMethodDef guard_methods[] = {
    {"install", guard_install, METH_NOARGS, install_doc},
    {"address", guard_address, METH_O, address_doc},
    {"register", guard_register, METH_VARARGS, register_doc},
    {"unregister", guard_unregister, METH_O, unregister_doc},
    {"faults", guard_faults, METH_O, faults_doc},
    {"counter", guard_counter, METH_O, counter_doc},
    {"remap", guard_remap, METH_VARARGS, remap_doc},
    {"recent", guard_recent, METH_NOARGS, recent_doc},
    {"bump", guard_bump, METH_O, bump_doc},
    {"watch_open", guard_watch_open, METH_NOARGS, watch_open_doc},
    {"watch_add", guard_watch_add, METH_VARARGS, watch_add_doc},
    {"watch_remove", guard_watch_remove, METH_VARARGS, watch_remove_doc},
    {NULL, NULL, 0, NULL},
};

/* A fork while another thread holds the table lock must not leave it locked in the child. */
static void atfork_prepare(void) { pthread_mutex_lock(&table_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&table_lock); }
static void atfork_child(void) { pthread_mutex_init(&table_lock, NULL); }

static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void process_init(void)
{
    page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0)
        page_size = 4096;
    for (int i = 0; i < MAX_REGIONS; i++)
        regions[i].fd = -1;
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int guard_exec(PyObject *module)
{
    pthread_once(&process_once, process_init);
    if (PyModule_AddIntConstant(module, "MAX_REGIONS", MAX_REGIONS) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "PAGE_SIZE", page_size);
}

static PyModuleDef_Slot guard_slots[] = {
    {Py_mod_exec, guard_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef guard_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmaplog._sigbus",
    .m_doc = "The SIGBUS guard for mapped ring files (see mmaplog/_truncation.py).",
    .m_size = 0,
    .m_methods = guard_methods,
    .m_slots = guard_slots,
};

PyMODINIT_FUNC PyInit__sigbus(void)
{
    return PyModuleDef_Init(&guard_module);
}
