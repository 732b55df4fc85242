/* mmaplog._cstdlib: the accelerated level methods of standard-library loggers (see mmaplog/stdlib.py).
 *
 * A FastMethod stands in for one level method (``info``, ``debug``, ...) of one ``logging.Logger``
 * instance.  It keeps a plan computed by a Python planner: "disabled" (the level is off: return at
 * once), "standard" (call the logger class's own method, unchanged) or "ring" (call a
 * ``_cwrite.ring_emitter`` that formats ``msg % args`` and appends to the one ring the record goes
 * to) or "source" (the same, with the caller's file, line and function as fields, for a
 * ``LoggingHandler(capture_source=True)``: the caller's frame is read directly, no ``findCaller``).  The plan is valid for one configuration generation: anything that may change the outcome
 * (levels, handlers, filters, propagation, ``logging.disable``, new loggers) bumps the module's
 * generation, and the next call plans again.  The record factory and ``logging.logThreads`` are
 * module globals that nothing can watch: they are checked on every "ring" call.
 *
 * No Python frame is added on any path, so the standard path's ``findCaller`` sees the same stack.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include "structmember.h"
#if PY_VERSION_HEX < 0x030B0000
#include "frameobject.h" /* f_lasti */
#endif
#include "_located.h"

enum { PLAN_STALE = 0, PLAN_DISABLED = 1, PLAN_STANDARD = 2, PLAN_RING = 3, PLAN_SOURCE = 4 };

/* The location of a call site: a code object and the offset of its call instruction determine the line, and
 * with the code's file and function names the location's JSON (a code object's names do not change).  Kept in
 * a small direct-mapped table, so a call site that logs again costs a lookup instead of a walk of the code's
 * line table and an encoding. */
enum { LOCATION_SLOTS = 256 };

typedef struct {
    PyObject *code; /* a strong reference (NULL: the entry is empty) */
    int lasti;      /* the instruction offset in ``code`` */
    int line;
    PyObject *json; /* the location's JSON (bytes), or NULL where the writer's own encoding must decide */
    PyObject *srcfile; /* the logging._srcfile ``internal`` was decided for (a strong reference), or NULL */
    int internal;      /* whether the standard library's findCaller would skip this frame (see source_call) */
} Location;

typedef struct {
    unsigned long long generation; /* bumped by every configuration change that may matter */
    PyObject *planner;             /* planner(logger, level, standard) -> None | False | emitter | (ring, name) */
    PyObject *logging_dict;        /* logging.__dict__ */
    PyObject *record_class;        /* logging.LogRecord: the default record factory */
    PyObject *str_factory;         /* "_logRecordFactory" */
    PyObject *str_threads;         /* "logThreads" */
    PyObject *str_srcfile;         /* "_srcfile" */
    PyObject *str_write;           /* "_write" */
    PyObject *str_append_fields;   /* "_append_fields": a handler's entry for pre-encoded fields, where it has one */
    PyObject *str_importlib;       /* "importlib" */
    PyObject *str_pathname, *str_lineno, *str_funcname; /* the source location's field names */
    PyObject *write_kwnames;       /* ("level", "logger", "fields") */
    PyObject *mapping;             /* collections.abc.Mapping */
    PyTypeObject *method_type;
    PyTypeObject *source_type;
    PyObject *cwrite;                  /* mmaplog._cwrite, once its writer was met: holds the API below alive */
    const MmaplogLocatedApi *located;  /* its entry for records with pre-encoded fields (_located.h), or NULL */
    int located_tried;                 /* 1 once the import of that entry was tried */
    Location locations[LOCATION_SLOTS];
} ModuleState;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *logger;
    PyObject *level;    /* int; None for ``log``, whose level is its first argument */
    PyObject *plans;    /* ``log`` only: level -> the planner's answer, for the current generation */
    PyObject *standard; /* the logger class's own method, bound to the logger */
    PyObject *target;   /* the ring emitter ("ring") or the RingHandler ("source"), else NULL */
    PyObject *name;     /* the logger's name while the plan is "source" */
    unsigned long long generation;
    int plan;
} FastMethod;

static ModuleState *state_of_type(PyTypeObject *type)
{
    return (ModuleState *)PyType_GetModuleState(type);
}

/* Ask the planner again; on failure report it as unraisable and take the standard path. */
static void replan(FastMethod *self, ModuleState *st)
{
    unsigned long long generation = st->generation;
    PyObject *planner = st->planner;
    int plan = PLAN_STANDARD;
    PyObject *target = NULL, *name = NULL;
    if (planner != NULL) {
        Py_INCREF(planner);
        PyObject *call[3] = {self->logger, self->level, self->standard};
        PyObject *result = PyObject_Vectorcall(planner, call, 3, NULL);
        Py_DECREF(planner);
        if (result == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        else if (result == Py_None) {
            plan = PLAN_DISABLED;
            Py_DECREF(result);
        }
        else if (result == Py_False) {
            Py_DECREF(result);
        }
        else if (PyTuple_Check(result) && PyTuple_GET_SIZE(result) == 2) {
            plan = PLAN_SOURCE;
            target = Py_NewRef(PyTuple_GET_ITEM(result, 0));
            name = Py_NewRef(PyTuple_GET_ITEM(result, 1));
            Py_DECREF(result);
        }
        else {
            plan = PLAN_RING;
            target = result;
        }
    }
    PyObject *old = self->target, *old_name = self->name;
    self->target = target;
    self->name = name;
    self->plan = plan;
    self->generation = generation;
    Py_XDECREF(old);
    Py_XDECREF(old_name);
}

/* The record factory is the default one and records carry the thread: what a "ring" plan assumes. */
static int globals_as_planned(ModuleState *st)
{
    PyObject *factory = PyDict_GetItemWithError(st->logging_dict, st->str_factory);
    if (factory != st->record_class)
        return 0;
    PyObject *threads = PyDict_GetItemWithError(st->logging_dict, st->str_threads);
    if (threads == Py_True)
        return 1;
    if (threads == NULL)
        return 0;
    int truth = PyObject_IsTrue(threads);
    if (truth < 0) {
        PyErr_Clear();
        return 0;
    }
    return truth;
}

#if PY_VERSION_HEX >= 0x030D0000
#define lookup_attr PyObject_GetOptionalAttr
#else
#define lookup_attr _PyObject_LookupAttr
#endif

/* The JSON of the location fields, byte for byte what the writer's field encoding gives for the dict
 * {"pathname": ..., "lineno": ..., "funcName": ...} (json.dumps, ensure_ascii=False, compact separators). */
enum { SOURCE_JSON_MAX = 2048 };

/* Append `s` as a JSON string at out[*n]; 0, or -1 when it does not fit or is not plain UTF-8 (a lone
 * surrogate: the writer's own encoding decides). No exception is left set. */
static int json_string_into(char *out, Py_ssize_t *n, PyObject *s)
{
    Py_ssize_t size;
    const char *utf8 = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &size) : NULL;
    if (utf8 == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t at = *n;
    if (at + 2 + size > SOURCE_JSON_MAX)
        return -1;
    out[at++] = '"';
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)utf8[i];
        if (at + 7 > SOURCE_JSON_MAX)
            return -1;
        if (c == '"' || c == '\\') {
            out[at++] = '\\';
            out[at++] = (char)c;
        }
        else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            out[at++] = '\\';
            switch (c) {
            case '\b': out[at++] = 'b'; break;
            case '\f': out[at++] = 'f'; break;
            case '\n': out[at++] = 'n'; break;
            case '\r': out[at++] = 'r'; break;
            case '\t': out[at++] = 't'; break;
            default:
                out[at++] = 'u';
                out[at++] = '0';
                out[at++] = '0';
                out[at++] = hex[c >> 4];
                out[at++] = hex[c & 15];
            }
        }
        else {
            out[at++] = (char)c;
        }
    }
    if (at + 1 > SOURCE_JSON_MAX)
        return -1;
    out[at++] = '"';
    *n = at;
    return 0;
}

/* The location's JSON as bytes, or NULL with no exception set when the writer's own encoding must decide. */
static PyObject *source_json(PyObject *filename, int line, PyObject *function)
{
    char out[SOURCE_JSON_MAX];
    Py_ssize_t n = 0;
    static const char k1[] = "{\"pathname\":", k3[] = ",\"funcName\":";
    memcpy(out, k1, sizeof k1 - 1);
    n = sizeof k1 - 1;
    if (json_string_into(out, &n, filename) < 0)
        return NULL;
    int w = snprintf(out + n, (size_t)(SOURCE_JSON_MAX - n), ",\"lineno\":%d", line);
    if (w < 0 || n + w >= SOURCE_JSON_MAX)
        return NULL;
    n += w;
    if (n + (Py_ssize_t)sizeof k3 - 1 > SOURCE_JSON_MAX)
        return NULL;
    memcpy(out + n, k3, sizeof k3 - 1);
    n += sizeof k3 - 1;
    if (json_string_into(out, &n, function) < 0 || n + 1 > SOURCE_JSON_MAX)
        return NULL;
    out[n++] = '}';
    PyObject *bytes = PyBytes_FromStringAndSize(out, n);
    if (bytes == NULL)
        PyErr_Clear();
    return bytes;
}

static inline int frame_lasti(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti;
#endif
}

/* Whether a frame of ``code`` is one the standard path must decide about: a caller inside logging itself
 * (logging.info(), ...: ``srcfile``, logging's own file) or importlib's bootstrap, which findCaller may skip.
 * Runs no Python code; -1 (no exception left set) when the comparison failed. */
static int internal_caller(ModuleState *st, PyCodeObject *code, PyObject *srcfile)
{
    PyObject *filename = code->co_filename;
    if (!PyUnicode_Check(filename))
        return 1;
    int internal = PyUnicode_Check(srcfile) && PyUnicode_Compare(filename, srcfile) == 0;
    if (!internal)
        internal = PyUnicode_Find(filename, st->str_importlib, 0, PY_SSIZE_T_MAX, 1) != -1;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return internal;
}

/* The line of ``frame`` (running ``code``), its location's JSON (a new reference, or NULL with no exception
 * set where the writer's encoding must decide) and, for the standard library's loggers (``srcfile`` not NULL),
 * whether the caller is one findCaller may skip (``*internal``), from the table when the call site was seen
 * before.  Nothing here runs Python code until the entry is filled. */
static int locate(ModuleState *st, PyFrameObject *frame, PyCodeObject *code, PyObject *srcfile, int *internal,
                  PyObject **json)
{
    int lasti = frame_lasti(frame);
    uintptr_t key = ((uintptr_t)code >> 4) ^ ((uintptr_t)(unsigned)lasti * 2654435761u);
    Location *loc = &st->locations[(key ^ (key >> 8)) % LOCATION_SLOTS];
    *internal = !PyUnicode_Check(code->co_filename);
    if (loc->code == (PyObject *)code && loc->lasti == lasti && lasti >= 0) {
        int line = loc->line;
        *json = Py_XNewRef(loc->json); /* taken before a release below may run code that reuses the entry */
        if (srcfile != NULL && !*internal) {
            if (loc->srcfile != srcfile) {
                int verdict = internal_caller(st, code, srcfile);
                PyObject *old = loc->srcfile;
                loc->srcfile = verdict < 0 ? NULL : Py_NewRef(srcfile);
                loc->internal = verdict;
                Py_XDECREF(old);
                *internal = verdict != 0;
            }
            else {
                *internal = loc->internal;
            }
        }
        return line;
    }
    int verdict = srcfile != NULL && !*internal ? internal_caller(st, code, srcfile) : 0;
    if (srcfile != NULL && !*internal)
        *internal = verdict != 0;
    int line = PyFrame_GetLineNumber(frame);
    *json = source_json(code->co_filename, line, code->co_name);
    if (lasti < 0)
        return line;
    /* Fill the entry first, release what it held after: a release may run Python code that logs again. */
    PyObject *old_code = loc->code, *old_json = loc->json, *old_srcfile = loc->srcfile;
    loc->code = Py_NewRef((PyObject *)code);
    loc->lasti = lasti;
    loc->line = line;
    loc->json = Py_XNewRef(*json);
    loc->srcfile = srcfile != NULL && verdict >= 0 ? Py_NewRef(srcfile) : NULL;
    loc->internal = verdict;
    Py_XDECREF(old_code);
    Py_XDECREF(old_json);
    Py_XDECREF(old_srcfile);
    return line;
}

/* mmaplog._cwrite's entry for records with pre-encoded fields, imported the first time a C writer is met. */
static const MmaplogLocatedApi *located_api(ModuleState *st)
{
    if (!st->located_tried) {
        st->located_tried = 1;
        PyObject *module = PyImport_ImportModule("mmaplog._cwrite");
        PyObject *capsule = module ? PyObject_GetAttrString(module, "_located_api") : NULL;
        const MmaplogLocatedApi *api = capsule ? PyCapsule_GetPointer(capsule, LOCATED_API_CAPSULE) : NULL;
        Py_XDECREF(capsule);
        if (api != NULL && api->version == LOCATED_API_VERSION) {
            st->cwrite = module;
            st->located = api;
        }
        else {
            Py_XDECREF(module);
        }
        PyErr_Clear();
    }
    return st->located;
}

/* The C writer behind a handler's ``_append_fields`` when it is ``Appender.append_fields`` of mmaplog._cwrite's
 * own Appender type; NULL otherwise (a Python method, another writer). */
static PyObject *fields_appender(ModuleState *st, PyObject *append, const MmaplogLocatedApi **api)
{
    if (!PyCFunction_Check(append))
        return NULL;
    PyObject *owner = PyCFunction_GET_SELF(append);
    *api = located_api(st);
    if (*api == NULL || owner == NULL || Py_TYPE(owner) != (*api)->appender_type ||
        PyCFunction_GET_FUNCTION(append) != (*api)->method)
        return NULL;
    return owner;
}

/* ``msg % args`` as the standard library renders it (args[1:] of a level method's arguments); NULL with no
 * exception set when that raised: the standard path must show the failure. */
static PyObject *render(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1)
        return Py_NewRef(args[0]);
    PyObject *tuple = PyTuple_New(nargs - 1);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(tuple, i - 1, Py_NewRef(args[i]));
    PyObject *text = PyUnicode_Format(args[0], tuple);
    Py_DECREF(tuple);
    return text;
}

/* Write the record with the location's JSON through the handler's pre-encoded entry ``_append_fields(message,
 * level, logger, fields_json)`` when it has one: straight into the C writer when the entry is its own (no
 * Python call), else by calling the entry.  1 written, 0 no entry (the caller writes the fields through
 * ``_write``), -1 failed or the text could not be rendered (the standard path takes the call). */
static int append_located(ModuleState *st, PyObject *ring, PyObject *const *args, Py_ssize_t nargs, PyObject *level,
                          PyObject *name, PyObject *json)
{
    PyObject *append = NULL;
    if (lookup_attr(ring, st->str_append_fields, &append) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (append == NULL)
        return 0;
    const MmaplogLocatedApi *api = NULL;
    PyObject *appender = fields_appender(st, append, &api);
    PyObject *res = NULL;
    if (appender != NULL) {
        Py_INCREF(appender);
        res = api->append_fields(appender, args[0], args + 1, nargs - 1, level, name, json);
        if (res == Py_NotImplemented) { /* a conversion the C formatter leaves to % */
            Py_DECREF(res);
            PyObject *text = render(args, nargs);
            res = text ? api->append_fields(appender, text, NULL, 0, level, name, json) : NULL;
            Py_XDECREF(text);
        }
        Py_DECREF(appender);
    }
    else {
        PyObject *text = render(args, nargs);
        if (text != NULL) {
            PyObject *call[4] = {text, level, name, json};
            res = PyObject_Vectorcall(append, call, 4, NULL);
            Py_DECREF(text);
        }
    }
    Py_DECREF(append);
    if (res == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_DECREF(res);
    return 1;
}

/* The "source" plan: msg % args and the caller's location as fields, through the handler's ``_append_fields``
 * (or ``ring._write`` with a dict).  Returns NULL with no exception set when the standard path must take the call. */
static PyObject *source_call(ModuleState *st, PyObject *level, PyObject *ring, PyObject *name, PyObject *const *args,
                             Py_ssize_t nargs, int stdlib)
{
    if (nargs < 1 || !PyUnicode_CheckExact(args[0]))
        return NULL;
    PyObject *srcfile = NULL;
    if (stdlib) {
        srcfile = PyDict_GetItemWithError(st->logging_dict, st->str_srcfile);
        if (srcfile == NULL || srcfile == Py_None) /* findCaller switched off: "(unknown file)" */
            return NULL;
    }
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        return NULL;
    PyCodeObject *code = PyFrame_GetCode(frame);
    PyObject *filename = code->co_filename;
    /* A caller the standard library's findCaller may skip (internal_caller): the standard path decides.
     * mmaplog's own loggers take the caller as it is. */
    PyObject *json;
    int internal;
    int lineno = locate(st, frame, code, srcfile, &internal, &json);
    if (internal) {
        Py_XDECREF(json);
        Py_DECREF(code);
        return NULL;
    }
    /* A lone str, int or float is formatted as it is (what the plain path's C formatter assumes too): only
     * other types are asked whether they are mappings, an ABC check that costs more than the whole record. */
    if (nargs == 2 && !PyUnicode_CheckExact(args[1]) && !PyLong_CheckExact(args[1]) && !PyFloat_CheckExact(args[1])) {
        int mapping = PyDict_Check(args[1]) ? 1 : PyObject_IsInstance(args[1], st->mapping);
        if (mapping != 0) { /* the standard library formats with the mapping itself */
            Py_XDECREF(json);
            Py_DECREF(code);
            PyErr_Clear();
            return NULL;
        }
    }
    if (json != NULL) {
        int done = append_located(st, ring, args, nargs, level, name, json);
        Py_DECREF(json);
        if (done != 0) {
            Py_DECREF(code);
            if (done < 0)
                return NULL;
            Py_RETURN_NONE;
        }
    }
    PyObject *text = render(args, nargs);
    if (text == NULL) {
        Py_DECREF(code);
        PyErr_Clear();
        return NULL;
    }
    PyObject *line = PyLong_FromLong(lineno);
    PyObject *fields = PyDict_New();
    int ok = line != NULL && fields != NULL && PyDict_SetItem(fields, st->str_pathname, filename) == 0 &&
             PyDict_SetItem(fields, st->str_lineno, line) == 0 &&
             PyDict_SetItem(fields, st->str_funcname, code->co_name) == 0;
    Py_DECREF(code);
    Py_XDECREF(line);
    PyObject *write = ok ? PyObject_GetAttr(ring, st->str_write) : NULL;
    PyObject *res = NULL;
    if (write != NULL) {
        PyObject *call[4] = {text, level, name, fields};
        res = PyObject_Vectorcall(write, call, 1, st->write_kwnames);
        Py_DECREF(write);
    }
    Py_DECREF(text);
    Py_XDECREF(fields);
    if (res == NULL) {
        PyErr_Clear(); /* the writer never raises; should it, the standard path reports it */
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* ``log(level, msg, *args)``: the plan of each level is asked for once per generation and kept in a dict. */
static PyObject *log_call(FastMethod *self, ModuleState *st, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2 || !PyLong_CheckExact(args[0]) || self->plans == NULL)
        goto standard;
    int overflow;
    long level = PyLong_AsLongAndOverflow(args[0], &overflow);
    if (overflow || level < 0 || level > 255) /* LoggingHandler clamps such levels: the standard path decides */
        goto standard;
    if (self->generation != st->generation) {
        PyDict_Clear(self->plans);
        self->generation = st->generation;
    }
    PyObject *plan = PyDict_GetItemWithError(self->plans, args[0]);
    if (plan != NULL) {
        Py_INCREF(plan);
    }
    else {
        if (PyErr_Occurred() || st->planner == NULL)
            goto standard;
        unsigned long long generation = st->generation;
        PyObject *planner = Py_NewRef(st->planner);
        PyObject *call[3] = {self->logger, args[0], self->standard};
        plan = PyObject_Vectorcall(planner, call, 3, NULL);
        Py_DECREF(planner);
        if (plan == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
            goto standard;
        }
        if (generation == st->generation && self->generation == generation &&
            PyDict_SetItem(self->plans, args[0], plan) < 0)
            PyErr_Clear();
    }
    PyObject *res = NULL;
    if (plan == Py_None) {
        res = Py_NewRef(Py_None);
    }
    else if (plan != Py_False && globals_as_planned(st)) {
        if (PyTuple_Check(plan) && PyTuple_GET_SIZE(plan) == 2) {
            if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)
                res = source_call(st, args[0], PyTuple_GET_ITEM(plan, 0), PyTuple_GET_ITEM(plan, 1), args + 1,
                                  nargs - 1, 1);
        }
        else {
            /* The emitter hands what it does not write to log's standard method with this level. */
            res = PyObject_Vectorcall(plan, args + 1, (size_t)(nargs - 1), kwnames);
            Py_DECREF(plan);
            return res;
        }
    }
    Py_DECREF(plan);
    if (res != NULL)
        return res;
standard:
    if (PyErr_Occurred())
        PyErr_Clear();
    return PyObject_Vectorcall(self->standard, args, nargsf, kwnames);
}

static PyObject *fast_call(FastMethod *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ModuleState *st = state_of_type(Py_TYPE(self));
    if (st == NULL)
        return NULL;
    if (self->level == Py_None)
        return log_call(self, st, args, nargsf, kwnames);
    if (self->generation != st->generation || self->plan == PLAN_STALE)
        replan(self, st);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    switch (self->plan) {
    case PLAN_DISABLED:
        if (nargs >= 1)
            Py_RETURN_NONE;
        break; /* a missing message: the standard method raises the TypeError */
    case PLAN_RING:
        if (self->target != NULL && globals_as_planned(st)) {
            PyObject *target = self->target;
            Py_INCREF(target);
            PyObject *res = PyObject_Vectorcall(target, args, nargsf, kwnames);
            Py_DECREF(target);
            return res;
        }
        if (PyErr_Occurred())
            PyErr_Clear();
        break;
    case PLAN_SOURCE:
        if ((kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) && self->target != NULL && globals_as_planned(st)) {
            PyObject *target = Py_NewRef(self->target), *name = Py_NewRef(self->name);
            /* Own references: the format or the isinstance check may run Python code that replans. */
            PyObject *res = source_call(st, self->level, target, name, args, nargs, 1);
            Py_DECREF(target);
            Py_DECREF(name);
            if (res != NULL)
                return res;
        }
        if (PyErr_Occurred())
            PyErr_Clear();
        break;
    default:
        break;
    }
    return PyObject_Vectorcall(self->standard, args, nargsf, kwnames);
}

static PyObject *method_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *logger, *level, *standard;
    static char *kwlist[] = {"logger", "level", "standard", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:FastMethod", kwlist, &logger, &level, &standard))
        return NULL;
    if (level != Py_None && !PyLong_Check(level)) {
        PyErr_SetString(PyExc_TypeError, "level must be an int, or None for log()");
        return NULL;
    }
    if (!PyCallable_Check(standard)) {
        PyErr_SetString(PyExc_TypeError, "standard must be callable");
        return NULL;
    }
    FastMethod *self = (FastMethod *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = (vectorcallfunc)fast_call;
    self->logger = Py_NewRef(logger);
    self->level = Py_NewRef(level);
    self->standard = Py_NewRef(standard);
    self->target = NULL;
    self->name = NULL;
    self->plans = NULL;
    if (level == Py_None && (self->plans = PyDict_New()) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->generation = 0;
    self->plan = PLAN_STALE;
    return (PyObject *)self;
}

static int method_traverse(FastMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->logger);
    Py_VISIT(self->level);
    Py_VISIT(self->standard);
    Py_VISIT(self->target);
    Py_VISIT(self->name);
    Py_VISIT(self->plans);
    return 0;
}

static int method_clear(FastMethod *self)
{
    Py_CLEAR(self->logger);
    Py_CLEAR(self->level);
    Py_CLEAR(self->standard);
    Py_CLEAR(self->target);
    Py_CLEAR(self->name);
    Py_CLEAR(self->plans);
    return 0;
}

static void method_dealloc(FastMethod *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    method_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *method_plan(FastMethod *self, void *closure)
{
    static const char *names[] = {"stale", "disabled", "standard", "ring", "source"};
    ModuleState *st = state_of_type(Py_TYPE(self));
    if (st == NULL)
        return NULL;
    if (self->level == Py_None)
        return PyUnicode_FromString("per level");
    int plan = self->generation == st->generation ? self->plan : PLAN_STALE;
    return PyUnicode_FromString(names[plan]);
}

static PyObject *method_get_standard(FastMethod *self, void *closure)
{
    return Py_NewRef(self->standard);
}

static PyObject *method_get_level(FastMethod *self, void *closure)
{
    return Py_NewRef(self->level);
}

static PyObject *method_repr(FastMethod *self)
{
    return PyUnicode_FromFormat("<accelerated %R>", self->standard);
}

static PyGetSetDef method_getset[] = {
    {"plan", (getter)method_plan, NULL, "The current plan: stale, disabled, standard or ring.", NULL},
    {"standard", (getter)method_get_standard, NULL, "The logger class's own method, bound to the logger.", NULL},
    {"level", (getter)method_get_level, NULL, "The level this method logs at (None: log(), the first argument's).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef method_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FastMethod, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot method_slots[] = {
    {Py_tp_doc, "FastMethod(logger, level, standard)\n--\n\n"
                "An accelerated level method of a standard-library logger (see mmaplog.stdlib.accelerate)."},
    {Py_tp_new, method_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, method_traverse},
    {Py_tp_clear, method_clear},
    {Py_tp_dealloc, method_dealloc},
    {Py_tp_getset, method_getset},
    {Py_tp_members, method_members},
    {Py_tp_repr, method_repr},
    {0, NULL},
};

static PyType_Spec method_spec = {
    .name = "mmaplog._cstdlib.FastMethod",
    .basicsize = sizeof(FastMethod),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = method_slots,
};

/* ---- SourceEmitter: a level method of mmaplog's own Logger with capture_source on */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *ring;     /* the RingHandler: ``ring._write`` is looked up per call (it changes on fork and close) */
    PyObject *level;    /* int */
    PyObject *name;     /* the logger's name */
    PyObject *fallback; /* the Python level method, for whatever this one does not write itself */
} SourceEmitter;

static PyObject *source_emit(SourceEmitter *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ModuleState *st = state_of_type(Py_TYPE(self));
    if (st == NULL)
        return NULL;
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
        PyObject *ring = Py_NewRef(self->ring), *level = Py_NewRef(self->level), *name = Py_NewRef(self->name);
        PyObject *res = source_call(st, level, ring, name, args, PyVectorcall_NARGS(nargsf), 0);
        Py_DECREF(ring);
        Py_DECREF(level);
        Py_DECREF(name);
        if (res != NULL)
            return res;
        if (PyErr_Occurred())
            PyErr_Clear();
    }
    /* No frame was added: the fallback's caller is the logging call's. */
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *source_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *ring, *level, *name, *fallback;
    static char *kwlist[] = {"ring", "level", "name", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!UO:SourceEmitter", kwlist, &ring, &PyLong_Type, &level, &name,
                                     &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    SourceEmitter *self = (SourceEmitter *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = (vectorcallfunc)source_emit;
    self->ring = Py_NewRef(ring);
    self->level = Py_NewRef(level);
    self->name = Py_NewRef(name);
    self->fallback = Py_NewRef(fallback);
    return (PyObject *)self;
}

static int source_traverse(SourceEmitter *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->ring);
    Py_VISIT(self->level);
    Py_VISIT(self->name);
    Py_VISIT(self->fallback);
    return 0;
}

static int source_clear(SourceEmitter *self)
{
    Py_CLEAR(self->ring);
    Py_CLEAR(self->level);
    Py_CLEAR(self->name);
    Py_CLEAR(self->fallback);
    return 0;
}

static void source_dealloc(SourceEmitter *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    source_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *source_repr(SourceEmitter *self)
{
    return PyUnicode_FromFormat("<level method of %R with the caller's location>", self->name);
}

static PyMemberDef source_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SourceEmitter, vectorcall), READONLY, NULL},
    {"fallback", T_OBJECT_EX, offsetof(SourceEmitter, fallback), READONLY, "The Python level method it defers to."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot source_slots[] = {
    {Py_tp_doc, "SourceEmitter(ring, level, name, fallback)\n--\n\n"
                "A level method of a mmaplog Logger with capture_source: msg % args and the caller's file, line and\n"
                "function (fields pathname, lineno, funcName) into one RingHandler; anything else goes to fallback."},
    {Py_tp_new, source_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, source_traverse},
    {Py_tp_clear, source_clear},
    {Py_tp_dealloc, source_dealloc},
    {Py_tp_members, source_members},
    {Py_tp_repr, source_repr},
    {0, NULL},
};

static PyType_Spec source_spec = {
    .name = "mmaplog._cstdlib.SourceEmitter",
    .basicsize = sizeof(SourceEmitter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = source_slots,
};

/* ---- module functions */

PyDoc_STRVAR(configure_doc,
"configure(logging_module, planner, mapping)\n--\n\n"
"Use ``planner(logger, level, standard)`` (None: disabled, False: standard path, (ring handler, logger name):\n"
"the ring with the caller's location as fields, else the ring emitter to call)\n"
"and watch ``logging_module``'s record factory and ``logThreads``; planner None stops planning.\n"
"``mapping`` is collections.abc.Mapping (a lone mapping argument is the format's mapping).");

static PyObject *configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "configure(logging_module, planner, mapping)");
        return NULL;
    }
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    PyObject *dict = PyObject_GetAttrString(args[0], "__dict__");
    if (dict == NULL)
        return NULL;
    if (!PyDict_Check(dict)) {
        Py_DECREF(dict);
        PyErr_SetString(PyExc_TypeError, "logging_module has no __dict__");
        return NULL;
    }
    PyObject *record = PyObject_GetAttrString(args[0], "LogRecord");
    if (record == NULL) {
        Py_DECREF(dict);
        return NULL;
    }
    Py_XSETREF(st->logging_dict, dict);
    Py_XSETREF(st->record_class, record);
    Py_XSETREF(st->planner, args[1] == Py_None ? NULL : Py_NewRef(args[1]));
    Py_XSETREF(st->mapping, Py_NewRef(args[2]));
    st->generation++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(bump_doc, "bump()\n--\n\nInvalidate every plan: the configuration changed.");

static PyObject *bump(PyObject *module, PyObject *unused)
{
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    st->generation++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(generation_doc, "generation()\n--\n\nThe current configuration generation.");

static PyObject *generation(PyObject *module, PyObject *unused)
{
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    return PyLong_FromUnsignedLongLong(st->generation);
}

PyDoc_STRVAR(location_json_doc,
"location_json(pathname, lineno, funcName)\n--\n\n"
"The JSON bytes the source path hands to a handler's ``_append_fields``: what the writer's field encoding gives\n"
"for {\"pathname\": ..., \"lineno\": ..., \"funcName\": ...}; None where that encoding must decide.");

static PyObject *location_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "location_json(pathname, lineno, funcName)");
        return NULL;
    }
    int overflow;
    long line = PyLong_AsLongAndOverflow(args[1], &overflow);
    if (line == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || line < INT_MIN || line > INT_MAX)
        Py_RETURN_NONE;
    PyObject *json = source_json(args[0], (int)line, args[2]);
    return json != NULL ? json : Py_NewRef(Py_None);
}

static PyMethodDef module_methods[] = {
    {"location_json", (PyCFunction)(void (*)(void))location_json, METH_FASTCALL, location_json_doc},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL, configure_doc},
    {"bump", bump, METH_NOARGS, bump_doc},
    {"generation", generation, METH_NOARGS, generation_doc},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    st->generation = 1;
    st->str_factory = PyUnicode_InternFromString("_logRecordFactory");
    st->str_threads = PyUnicode_InternFromString("logThreads");
    st->str_srcfile = PyUnicode_InternFromString("_srcfile");
    st->str_write = PyUnicode_InternFromString("_write");
    st->str_append_fields = PyUnicode_InternFromString("_append_fields");
    if (st->str_append_fields == NULL)
        return -1;
    st->str_importlib = PyUnicode_InternFromString("importlib");
    st->str_pathname = PyUnicode_InternFromString("pathname");
    st->str_lineno = PyUnicode_InternFromString("lineno");
    st->str_funcname = PyUnicode_InternFromString("funcName");
    if (st->str_factory == NULL || st->str_threads == NULL || st->str_srcfile == NULL || st->str_write == NULL ||
        st->str_importlib == NULL || st->str_pathname == NULL || st->str_lineno == NULL || st->str_funcname == NULL)
        return -1;
    st->write_kwnames = Py_BuildValue("(sss)", "level", "logger", "fields");
    if (st->write_kwnames == NULL)
        return -1;
    /* configure() may give another; mmaplog's own loggers (SourceEmitter) use this one. */
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL)
        return -1;
    st->mapping = PyObject_GetAttrString(abc, "Mapping");
    Py_DECREF(abc);
    if (st->mapping == NULL)
        return -1;
    st->method_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &method_spec, NULL);
    if (st->method_type == NULL)
        return -1;
    if (PyModule_AddType(module, st->method_type) < 0)
        return -1;
    st->source_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &source_spec, NULL);
    if (st->source_type == NULL)
        return -1;
    return PyModule_AddType(module, st->source_type);
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    Py_VISIT(st->planner);
    Py_VISIT(st->logging_dict);
    Py_VISIT(st->record_class);
    Py_VISIT(st->method_type);
    Py_VISIT(st->source_type);
    Py_VISIT(st->mapping);
    Py_VISIT(st->cwrite);
    return 0;
}

static int module_clear(PyObject *module)
{
    ModuleState *st = (ModuleState *)PyModule_GetState(module);
    Py_CLEAR(st->planner);
    Py_CLEAR(st->logging_dict);
    Py_CLEAR(st->record_class);
    Py_CLEAR(st->str_factory);
    Py_CLEAR(st->str_threads);
    Py_CLEAR(st->str_srcfile);
    Py_CLEAR(st->str_write);
    Py_CLEAR(st->str_append_fields);
    Py_CLEAR(st->str_importlib);
    Py_CLEAR(st->str_pathname);
    Py_CLEAR(st->str_lineno);
    Py_CLEAR(st->str_funcname);
    Py_CLEAR(st->write_kwnames);
    Py_CLEAR(st->mapping);
    Py_CLEAR(st->method_type);
    Py_CLEAR(st->source_type);
    st->located = NULL;
    st->located_tried = 0;
    Py_CLEAR(st->cwrite);
    for (int i = 0; i < LOCATION_SLOTS; i++) {
        Py_CLEAR(st->locations[i].code);
        Py_CLEAR(st->locations[i].json);
        Py_CLEAR(st->locations[i].srcfile);
    }
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef cstdlib_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmaplog._cstdlib",
    .m_doc = "Accelerated level methods for standard-library loggers (see mmaplog/stdlib.py).",
    .m_size = sizeof(ModuleState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__cstdlib(void)
{
    return PyModuleDef_Init(&cstdlib_module);
}
