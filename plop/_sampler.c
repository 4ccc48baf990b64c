/* plop._sampler: the compiled sampler.
 *
 * Same protocol as plop/_pysampler.py (read its module docstring first); this
 * file only explains how the C version keeps a sample cheap.
 *
 * One sample = one C call.  The object is callable through vectorcall, so
 * ``signal.signal(sig, sampler)`` makes CPython's signal dispatch call
 * sampler_vectorcall() directly: no Python frame, no argument tuple.
 *
 * Threads are enumerated with the documented debugger API
 * (PyInterpreterState_ThreadHead / PyThreadState_Next) instead of calling
 * sys._current_frames(), which would build a dict and one int per thread on
 * every sample.  Each thread's stack is walked with the public frame API
 * (PyThreadState_GetFrame, PyFrame_GetCode, PyFrame_GetLasti, PyFrame_GetBack);
 * that API hands out strong references, which we drop at once: the frame
 * still owns its code object, so the raw pointer stays valid for the rest of
 * the sample.  Frame objects are created by CPython the first time a frame is
 * looked at (exactly as sys._current_frames() and f_back do) and then reused.
 *
 * While walking, the (code pointer, lasti) pairs go into a preallocated
 * scratch buffer and a 64-bit hash is folded in.  The key (thread, pairs) is
 * then looked up in an open-addressing hash table written in C; on a hash
 * match the pairs are memcmp()ed against the stored key.  A hit increments two
 * uint64 counters: a sample whose stacks were all seen before allocates
 * nothing.  A new key copies its pairs into an append-only pool and takes a
 * strong reference to every code object in it and to the thread object, so
 * pointers in the table can never be recycled for another object while the
 * key lives.  The references are dropped when the table is reset or freed.
 *
 * Thread objects: ``threading._active[ident]`` would cost an int allocation
 * and a dict lookup per thread per sample, so a small per-thread-state cache
 * (keyed by PyThreadState_GetID(), which is never reused) remembers the Thread
 * object once found.  The cache is rebuilt in thread-list order on every
 * sample, so a steady set of threads hits on the first probe, and entries of
 * thread states that disappeared are dropped.  The same cache holds the CPU
 * clock id and last CPU reading used by ``track_cpu``.  Unlike the pure
 * sampler, which forgets nothing, a new thread that happens to reuse a dead
 * thread's ident starts with a fresh CPU reading.
 *
 * Weights (``interval``/``clock``/``ticks``) and the on-CPU credit of
 * ``track_cpu`` follow the pure sampler's arithmetic, with the clocks read
 * as integer nanoseconds.  ``interval``, ``clock`` and ``track_cpu`` are
 * read-only here.
 *
 * Robustness: nothing may run Python code in the middle of a walk (Python code
 * can release the GIL, and another thread could then free the thread state
 * being iterated).  The only allocations during the walk are frame objects
 * (lazily created by CPython) and our own PyMem buffers; on 3.11 allocating a
 * GC object can run a collection synchronously, so the cyclic GC is paused for
 * the walk there (3.12+ only schedules collections from the eval loop).
 * Object references that might be the last (evicted Thread objects) are
 * released after the sample.  Errors are caught and counted in ``errors``:
 * no exception escapes a call made with the right arguments, including
 * exceptions raised by the ``on_disabled`` and countdown callbacks, which are
 * reported through sys.unraisablehook (this is the one deliberate difference
 * from the pure sampler, where they propagate into the interrupted code).
 *
 * Depth: at most MAX_DEPTH frames per stack are recorded (the innermost ones:
 * they carry the self time).  A deeper stack is cut, still counted under its
 * innermost MAX_DEPTH frames, and ``truncated`` counts such samples.
 *
 * Free-threaded builds (Py_GIL_DISABLED) are not supported: walking another
 * thread's frames is only safe while the GIL stops it.  The module refuses to
 * import there, and plop falls back to the pure sampler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_mix64.h"

#if PY_VERSION_HEX < 0x030B0000
#error "plop._sampler needs Python 3.11 or newer"
#endif

#define MAX_DEPTH 2048
#define MAX_EVICT 16

/* ------------------------------------------------------------------------ */
/* The count table                                                          */

typedef struct {
    PyObject *code;      /* borrowed while walking; a strong ref once in the pool */
    intptr_t lasti;      /* PyFrame_GetLasti(): bytes offset, like frame.f_lasti */
} FrameKey;              /* 16 bytes, no padding: keys are compared with memcmp */

typedef struct {
    uint64_t hash;
    PyObject *thread;    /* strong ref to the Thread object, or NULL when unknown */
    unsigned long ident; /* thread ident (reported instead of thread when NULL) */
    uint32_t depth;
    size_t frames;       /* offset of the key's first (innermost) frame in the pool */
    uint64_t wall;
    uint64_t cpu;
} Entry;

typedef struct {
    uint32_t index1;     /* 1 + index into entries; 0 = empty slot */
    uint32_t tag;        /* high half of the hash, to skip most entry fetches */
} Slot;

typedef struct {
    Entry *entries;
    size_t n_entries, cap_entries;
    FrameKey *pool;
    size_t n_pool, cap_pool;
    Slot *slots;
    size_t mask;         /* number of slots - 1 (a power of two) */
    int users;           /* take() calls reading this table */
    int detached;        /* no longer the sampler's table: free when users == 0 */
} Table;

static Table *
table_new(void)
{
    Table *t = PyMem_Calloc(1, sizeof(Table));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->mask = 255;
    t->slots = PyMem_Calloc(t->mask + 1, sizeof(Slot));
    if (t->slots == NULL) {
        PyMem_Free(t);
        PyErr_NoMemory();
        return NULL;
    }
    return t;
}

/* Drop the table's references and memory.  The caller must already have made
 * the table unreachable: the DECREFs may run arbitrary code. */
static void
table_free(Table *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n_entries; i++) {
        Py_XDECREF(t->entries[i].thread);
    }
    for (size_t i = 0; i < t->n_pool; i++) {
        Py_DECREF(t->pool[i].code);
    }
    PyMem_Free(t->entries);
    PyMem_Free(t->pool);
    PyMem_Free(t->slots);
    PyMem_Free(t);
}

static int
table_rehash(Table *t)
{
    size_t nslots = (t->mask + 1) * 2;
    Slot *slots = PyMem_Calloc(nslots, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = nslots - 1;
    for (size_t k = 0; k < t->n_entries; k++) {
        uint64_t h = t->entries[k].hash;
        size_t i = (size_t)h & mask;
        while (slots[i].index1) {
            i = (i + 1) & mask;
        }
        slots[i].index1 = (uint32_t)(k + 1);
        slots[i].tag = (uint32_t)(h >> 32);
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

/* Count one sample of (thread, frames[0..depth)) whose hash is h: add its
 * weight to the key's wall count and oncpu to its CPU count. */
static int
table_count(Table *t, PyObject *thread, unsigned long ident,
            const FrameKey *frames, uint32_t depth, uint64_t h,
            uint64_t weight, uint64_t oncpu)
{
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & t->mask;
    Slot *s;
    while ((s = &t->slots[i])->index1) {
        if (s->tag == tag) {
            Entry *e = &t->entries[s->index1 - 1];
            if (e->hash == h && e->thread == thread && e->ident == ident
                && e->depth == depth
                && memcmp(t->pool + e->frames, frames,
                          (size_t)depth * sizeof(FrameKey)) == 0) {
                e->wall += weight;
                e->cpu += oncpu;
                return 0;
            }
        }
        i = (i + 1) & t->mask;
    }

    /* A new key: make room first, so a failure leaves the table unchanged. */
    if (t->n_entries >= UINT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many distinct stacks");
        return -1;
    }
    if (t->n_entries == t->cap_entries) {
        size_t cap = t->cap_entries ? t->cap_entries * 2 : 64;
        Entry *p = PyMem_Realloc(t->entries, cap * sizeof(Entry));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->entries = p;
        t->cap_entries = cap;
    }
    if (t->cap_pool - t->n_pool < depth) {
        size_t cap = t->cap_pool ? t->cap_pool : 1024;
        while (cap - t->n_pool < depth) {
            cap *= 2;
        }
        FrameKey *p = PyMem_Realloc(t->pool, cap * sizeof(FrameKey));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->pool = p;
        t->cap_pool = cap;
    }
    if ((t->n_entries + 1) * 2 > t->mask + 1) {
        if (table_rehash(t) < 0) {
            return -1;
        }
        i = (size_t)h & t->mask;
        while (t->slots[i].index1) {
            i = (i + 1) & t->mask;
        }
    }

    FrameKey *dst = t->pool + t->n_pool;
    memcpy(dst, frames, (size_t)depth * sizeof(FrameKey));
    for (uint32_t k = 0; k < depth; k++) {
        Py_INCREF(dst[k].code);
    }
    Entry *e = &t->entries[t->n_entries];
    e->hash = h;
    e->thread = Py_XNewRef(thread);
    e->ident = ident;
    e->depth = depth;
    e->frames = t->n_pool;
    e->wall = weight;
    e->cpu = oncpu;
    t->n_pool += depth;
    t->n_entries++;
    t->slots[i].index1 = (uint32_t)t->n_entries;
    t->slots[i].tag = tag;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Hashing                                                                  */

static inline uint64_t
mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Per-thread-state cache                                                   */

/* Bumped in the child after fork(): thread CPU clock ids name kernel thread
 * ids, which differ in the child, so cached ones must be looked up again. */
static volatile unsigned int fork_generation;

static void
after_fork_child(void)
{
    fork_generation++;
}

typedef struct {
    uint64_t tsid;        /* PyThreadState_GetID(); 0 = consumed/empty */
    unsigned long ident;  /* tstate->thread_id the entry describes */
    PyObject *thread;     /* strong ref: threading._active[ident], or NULL */
    clockid_t clock;
    unsigned int clock_generation;  /* fork_generation when clock was looked up */
    int clock_state;      /* 0 not looked up, 1 valid, -1 unavailable */
    int has_cpu;          /* the readings below are set */
    int64_t last_cpu_ns;  /* thread CPU clock at the previous sample */
    int64_t last_wall_ns; /* monotonic clock at the previous sample */
    double credit;        /* error-diffusion credit, in samples */
} ThreadInfo;

static void
tinfo_init(ThreadInfo *ti, uint64_t tsid, unsigned long ident)
{
    ti->tsid = tsid;
    ti->ident = ident;
    ti->thread = NULL;
    ti->clock_state = 0;
    ti->clock_generation = fork_generation;
    ti->has_cpu = 0;
    ti->last_cpu_ns = 0;
    ti->last_wall_ns = 0;
    ti->credit = 0.0;
}

/* ------------------------------------------------------------------------ */
/* The Sampler object                                                       */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Table *table;
    ThreadInfo *tinfo;        /* cache, in the order of the last walk */
    ThreadInfo *tinfo_spare;  /* the next sample's cache is built here */
    Py_ssize_t n_tinfo, cap_tinfo;
    FrameKey *scratch;        /* MAX_DEPTH frames */
    PyObject *on_disabled;    /* NULL means None */
    PyObject *countdown_cb;   /* NULL means None */
    PyObject *threading;      /* the threading module */
    long long countdown;
    double interval;          /* weight samples by intervals of tick_clock when > 0 */
    int tick_clock;           /* a clock_gettime() clock id */
    int has_last_tick;
    int64_t last_tick_ns;     /* tick_clock at the previous weighted sample */
    double tick_credit;       /* rounding carried to the next weight */
    unsigned long long ticks; /* sum of the weights */
    unsigned long long samples_taken;
    unsigned long long errors;
    unsigned long long truncated;
    int64_t sample_ns;
    char enabled;
    char track_cpu;
    char in_sample;
} Sampler;

static PyTypeObject Sampler_Type;
static PyObject *str_active;  /* interned "_active" */

static inline int64_t
monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Round credit + 0.5 towards zero, as Python's int(), clamped to [0, limit]. */
static inline uint64_t
round_credit(double credit, uint64_t limit)
{
    double r = credit + 0.5;
    if (!(r > 0.0)) {
        return 0;
    }
    if (r >= (double)limit) {
        return limit;
    }
    return (uint64_t)r;
}

/* How much of this sample's weight counts as on CPU for the thread?  Error
 * diffusion, as in the pure sampler: the thread earns the CPU time it used
 * since its previous sample divided by the interval (or, without one, by the
 * wall time elapsed); the on-CPU count is that credit rounded, at most the
 * sample's weight, and the rest is carried over.  A thread's first sample
 * only takes the readings. */
static uint64_t
thread_on_cpu(ThreadInfo *ti, int64_t wall_ns, double interval, uint64_t weight)
{
    if (ti->clock_state == 0 || ti->clock_generation != fork_generation) {
        ti->clock_state =
            pthread_getcpuclockid((pthread_t)ti->ident, &ti->clock) == 0 ? 1 : -1;
        if (ti->clock_generation != fork_generation) {
            ti->clock_generation = fork_generation;
            ti->has_cpu = 0;  /* the child's CPU clock starts afresh */
        }
    }
    if (ti->clock_state < 0) {
        return 0;
    }
    struct timespec ts;
    if (clock_gettime(ti->clock, &ts) != 0) {
        return 0;
    }
    int64_t cpu_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (!ti->has_cpu) {
        ti->has_cpu = 1;
        ti->last_cpu_ns = cpu_ns;
        ti->last_wall_ns = wall_ns;
        ti->credit = 0.0;
        return 0;
    }
    double used = (double)(cpu_ns - ti->last_cpu_ns) / 1e9;
    if (interval > 0) {
        ti->credit += used / interval;
    }
    else if (wall_ns > ti->last_wall_ns) {
        ti->credit += used / ((double)(wall_ns - ti->last_wall_ns) / 1e9);
    }
    uint64_t on = round_credit(ti->credit, weight);
    ti->credit -= (double)on;
    ti->last_cpu_ns = cpu_ns;
    ti->last_wall_ns = wall_ns;
    return on;
}

/* Find the threading.Thread object of ti->ident (borrowed into the cache). */
static int
thread_lookup(Sampler *self, ThreadInfo *ti)
{
    if (self->threading == NULL) {
        return 0;  /* cleared by the GC: report idents */
    }
    PyObject *active = PyObject_GetAttr(self->threading, str_active);
    if (active == NULL) {
        return -1;
    }
    int rc = 0;
    if (PyDict_Check(active)) {
        PyObject *key = PyLong_FromUnsignedLong(ti->ident);
        if (key == NULL) {
            rc = -1;
        }
        else {
            PyObject *thread = PyDict_GetItemWithError(active, key);
            Py_DECREF(key);
            if (thread != NULL) {
                ti->thread = Py_NewRef(thread);
            }
            else if (PyErr_Occurred()) {
                rc = -1;
            }
        }
    }
    Py_DECREF(active);
    return rc;
}

/* Walk one stack (consumes the reference to f) and count it. */
static int
count_stack(Sampler *self, ThreadInfo *ti, PyFrameObject *f, int64_t wall_ns,
            uint64_t weight)
{
    FrameKey *buf = self->scratch;
    uint32_t depth = 0;
    uint64_t h = mix(mix(0x243F6A8885A308D3ULL, (uint64_t)(uintptr_t)ti->thread),
                     (uint64_t)ti->ident);
    while (f != NULL) {
        if (depth == MAX_DEPTH) {
            self->truncated++;
            Py_DECREF(f);
            f = NULL;
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(f);
        int lasti = PyFrame_GetLasti(f);
        buf[depth].code = (PyObject *)code;
        buf[depth].lasti = lasti;
        /* The frame keeps its code alive; we only need the pointer. */
        Py_DECREF(code);
        h = mix(h, (uint64_t)(uintptr_t)code + (uint64_t)(int64_t)lasti * 0xD6E8FEB86659FD93ULL);
        depth++;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    if (PyErr_Occurred()) {
        /* PyFrame_GetBack could not create a frame object. */
        return -1;
    }
    uint64_t oncpu = self->track_cpu ? thread_on_cpu(ti, wall_ns, self->interval, weight) : 0;
    return table_count(self->table, ti->thread, ti->ident, buf, depth, plop_mix64(h), weight, oncpu);
}

static int
ensure_tinfo_capacity(Sampler *self, Py_ssize_t need)
{
    if (need <= self->cap_tinfo) {
        return 0;
    }
    Py_ssize_t cap = self->cap_tinfo ? self->cap_tinfo : 8;
    while (cap < need) {
        cap *= 2;
    }
    ThreadInfo *a = PyMem_Realloc(self->tinfo, (size_t)cap * sizeof(ThreadInfo));
    if (a == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->tinfo = a;
    ThreadInfo *b = PyMem_Realloc(self->tinfo_spare, (size_t)cap * sizeof(ThreadInfo));
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->tinfo_spare = b;
    self->cap_tinfo = cap;
    return 0;
}

/* How many intervals this sample stands for (see the pure sampler): 1 without
 * an interval or on the first sample, else the intervals of the tick clock
 * elapsed since the previous sample, rounded with error diffusion. */
static int
sample_weight(Sampler *self, uint64_t *weight)
{
    if (!(self->interval > 0)) {
        *weight = 1;
        return 0;
    }
    struct timespec ts;
    if (clock_gettime((clockid_t)self->tick_clock, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int had = self->has_last_tick;
    int64_t last = self->last_tick_ns;
    self->has_last_tick = 1;
    self->last_tick_ns = now;
    if (!had) {
        *weight = 1;
        return 0;
    }
    double credit = self->tick_credit + ((double)(now - last) / 1e9) / self->interval;
    uint64_t w = round_credit(credit, (uint64_t)1 << 52);
    self->tick_credit = credit - (double)w;
    *weight = w;
    return 0;
}

/* Take one sample of every thread of this interpreter.  Returns -1 with an
 * exception set if any thread could not be counted; the other threads are
 * still counted.  Thread objects evicted from the cache are handed back in
 * evicted[] for the caller to release once the sample is complete. */
static int
sample(Sampler *self, PyObject *frame_arg, int64_t wall_ns,
       PyObject **evicted, int *n_evicted)
{
    uint64_t weight;
    if (sample_weight(self, &weight) < 0) {
        return -1;
    }
    if (weight == 0) {
        return 0;  /* less than half an interval since the previous sample */
    }
    self->ticks += weight;
    if (frame_arg != Py_None && !PyFrame_Check(frame_arg)) {
        PyErr_Format(PyExc_TypeError, "frame must be a frame or None, not %.200s",
                     Py_TYPE(frame_arg)->tp_name);
        return -1;
    }
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sampler was cleared");
        return -1;
    }
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(me);

    Py_ssize_t n_ts = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        n_ts++;
    }
    /* Room for every live thread state plus stale entries carried over. */
    if (ensure_tinfo_capacity(self, n_ts + self->n_tinfo) < 0) {
        return -1;
    }

    ThreadInfo *old = self->tinfo;
    Py_ssize_t n_old = self->n_tinfo;
    ThreadInfo *cur = self->tinfo_spare;
    Py_ssize_t n_cur = 0;
    Py_ssize_t hint = 0;
    int failed = 0;

    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        /* Carry this thread state's cache entry over, in walk order. */
        uint64_t tsid = PyThreadState_GetID(ts);
        unsigned long ident = ts->thread_id;
        ThreadInfo *ti = &cur[n_cur++];
        ThreadInfo *found = NULL;
        if (hint < n_old && old[hint].tsid == tsid) {
            found = &old[hint++];
        }
        else {
            for (Py_ssize_t k = 0; k < n_old; k++) {
                if (old[k].tsid == tsid) {
                    found = &old[k];
                    hint = k + 1;
                    break;
                }
            }
        }
        if (found != NULL) {
            *ti = *found;
            found->tsid = 0;
            found->thread = NULL;
            if (ti->ident != ident) {
                /* The thread state was bound to its OS thread since. */
                if (ti->thread != NULL && *n_evicted < MAX_EVICT) {
                    evicted[(*n_evicted)++] = ti->thread;
                    ti->thread = NULL;
                }
                Py_CLEAR(ti->thread);  /* not reached unless evicted[] is full */
                tinfo_init(ti, tsid, ident);
            }
        }
        else {
            tinfo_init(ti, tsid, ident);
        }

        if (failed) {
            continue;  /* keep rebuilding the cache, count nothing more */
        }
        PyFrameObject *f;
        if (ts == me) {
            /* Sample the frame the signal interrupted, not the handler's. */
            f = (PyFrameObject *)(frame_arg == Py_None ? NULL : Py_NewRef(frame_arg));
        }
        else {
            f = PyThreadState_GetFrame(ts);
            if (f == NULL) {
                continue;  /* not running Python code: not sampled */
            }
        }
        if (ti->thread == NULL && thread_lookup(self, ti) < 0) {
            Py_XDECREF(f);
            failed = 1;
            continue;
        }
        if (count_stack(self, ti, f, wall_ns, weight) < 0) {
            failed = 1;
        }
    }

    /* Entries of thread states that are gone. */
    for (Py_ssize_t k = 0; k < n_old; k++) {
        if (old[k].tsid == 0) {
            continue;
        }
        if (old[k].thread == NULL) {
            old[k].tsid = 0;
        }
        else if (*n_evicted < MAX_EVICT) {
            evicted[(*n_evicted)++] = old[k].thread;
            old[k].thread = NULL;
            old[k].tsid = 0;
        }
        else {
            cur[n_cur++] = old[k];  /* released by a later sample */
            old[k].tsid = 0;
            old[k].thread = NULL;
        }
    }
    self->tinfo = cur;
    self->tinfo_spare = old;
    self->n_tinfo = n_cur;
    return failed ? -1 : 0;
}

/* Call a callback from the handler: failures are counted and reported
 * through sys.unraisablehook, never raised into the interrupted code. */
static void
call_callback(Sampler *self, PyObject *callback)
{
    PyObject *r = PyObject_CallNoArgs(callback);
    if (r == NULL) {
        self->errors++;
        PyErr_WriteUnraisable(callback);
    }
    else {
        Py_DECREF(r);
    }
}

static PyObject *
sampler_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames)
{
    Sampler *self = (Sampler *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError,
                     "Sampler expects 2 positional arguments (signum, frame), got %zd",
                     nargs);
        return NULL;
    }
    if (!self->enabled) {
        PyObject *callback = self->on_disabled;
        self->on_disabled = NULL;
        if (callback != NULL) {
            call_callback(self, callback);
            Py_DECREF(callback);
        }
        Py_RETURN_NONE;
    }
    if (self->in_sample) {
        /* A nested call while sampling (only possible if the sample ran
         * Python code): the interrupted sample stands for both, as in the
         * pure sampler. */
        Py_RETURN_NONE;
    }

    int64_t t0 = monotonic_ns();
    PyObject *evicted[MAX_EVICT];
    int n_evicted = 0;
    self->in_sample = 1;
#if PY_VERSION_HEX < 0x030C0000
    /* 3.11 runs a collection synchronously when a frame object allocation
     * crosses the threshold; its finalizers must not run mid-walk. */
    int gc_was_enabled = PyGC_Disable();
#endif
    if (sample(self, args[1], t0, evicted, &n_evicted) < 0) {
        PyErr_Clear();
        self->errors++;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (gc_was_enabled) {
        PyGC_Enable();
    }
#endif
    self->in_sample = 0;
    self->samples_taken++;
    self->sample_ns += monotonic_ns() - t0;

    for (int k = 0; k < n_evicted; k++) {
        Py_DECREF(evicted[k]);
    }
    if (self->countdown > 0 && --self->countdown == 0) {
        PyObject *callback = self->countdown_cb;
        self->countdown_cb = NULL;
        if (callback != NULL) {
            call_callback(self, callback);
            Py_DECREF(callback);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Sampler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"track_cpu", "interval", "clock", NULL};
    int track_cpu = 0;
    double interval = 0.0;
    int clock = CLOCK_MONOTONIC;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pdi:Sampler", kwlist,
                                     &track_cpu, &interval, &clock)) {
        return NULL;
    }
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return NULL;
    }
    Sampler *self = (Sampler *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(threading);
        return NULL;
    }
    self->vectorcall = sampler_vectorcall;
    self->threading = threading;
    self->enabled = 1;
    self->track_cpu = (char)track_cpu;
    self->interval = interval;
    self->tick_clock = clock;
    self->table = table_new();
    self->scratch = PyMem_Malloc(MAX_DEPTH * sizeof(FrameKey));
    if (self->table == NULL || self->scratch == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int
Sampler_traverse(Sampler *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_disabled);
    Py_VISIT(self->countdown_cb);
    Py_VISIT(self->threading);
    for (Py_ssize_t k = 0; k < self->n_tinfo; k++) {
        Py_VISIT(self->tinfo[k].thread);
    }
    Table *t = self->table;
    if (t != NULL) {
        /* One visit per held reference; code objects are not GC-tracked. */
        for (size_t k = 0; k < t->n_entries; k++) {
            Py_VISIT(t->entries[k].thread);
        }
    }
    return 0;
}

static int
Sampler_clear(Sampler *self)
{
    Py_CLEAR(self->on_disabled);
    Py_CLEAR(self->countdown_cb);
    Py_CLEAR(self->threading);
    self->countdown = 0;

    /* Detach everything before releasing anything: releasing may run code. */
    ThreadInfo *tinfo = self->tinfo;
    Py_ssize_t n_tinfo = self->n_tinfo;
    self->tinfo = NULL;
    self->n_tinfo = 0;
    PyMem_Free(self->tinfo_spare);
    self->tinfo_spare = NULL;
    self->cap_tinfo = 0;
    for (Py_ssize_t k = 0; k < n_tinfo; k++) {
        Py_XDECREF(tinfo[k].thread);
    }
    PyMem_Free(tinfo);

    Table *t = self->table;
    self->table = NULL;
    if (t != NULL) {
        if (t->users) {
            t->detached = 1;  /* a take() in progress frees it */
        }
        else {
            table_free(t);
        }
    }
    return 0;
}

static void
Sampler_dealloc(Sampler *self)
{
    PyObject_GC_UnTrack(self);
    Sampler_clear(self);
    PyMem_Free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(set_countdown_doc,
"set_countdown(n, callback)\n--\n\n"
"Call callback() from inside the handler after n more samples, once.\n"
"set_countdown(0, None) cancels.");

static PyObject *
Sampler_set_countdown(Sampler *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set_countdown expects 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *n_obj = PyNumber_Index(args[0]);
    if (n_obj == NULL) {
        return NULL;
    }
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(n_obj, &overflow);
    Py_DECREF(n_obj);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow > 0) {
        n = LLONG_MAX;
    }
    else if (overflow < 0) {
        n = 0;
    }
    PyObject *callback = args[1] == Py_None ? NULL : Py_NewRef(args[1]);
    PyObject *old = self->countdown_cb;
    self->countdown_cb = callback;
    /* n <= 0 never fires, as in the pure sampler. */
    self->countdown = (callback != NULL && n > 0) ? n : 0;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_doc,
"take(reset)\n--\n\n"
"Return [(thread, frames, wall, cpu), ...]: frames is a tuple of (code, lasti)\n"
"pairs, outermost first.  With reset, the counts start again from zero.");

static PyObject *
Sampler_take(Sampler *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"reset", NULL};
    int reset;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "p:take", kwlist, &reset)) {
        return NULL;
    }
    Table *t = self->table;
    if (t == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sampler was cleared");
        return NULL;
    }
    if (reset) {
        /* Swap first: samples taken while the result is built (a signal
         * handler can run whenever Python code runs, e.g. a finalizer) go
         * into the new table. */
        Table *fresh = table_new();
        if (fresh == NULL) {
            return NULL;
        }
        self->table = fresh;
        t->detached = 1;
    }
    t->users++;

    /* Entries are only ever appended and never move index, but the arrays
     * may be reallocated by a re-entrant sample: index them afresh after
     * anything that can run code. */
    size_t n = t->n_entries;
    PyObject *result = PyList_New((Py_ssize_t)n);
    if (result == NULL) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *thread = t->entries[i].thread;
        unsigned long ident = t->entries[i].ident;
        uint32_t depth = t->entries[i].depth;
        size_t off = t->entries[i].frames;
        PyObject *thread_obj = thread != NULL ? Py_NewRef(thread)
                                              : PyLong_FromUnsignedLong(ident);
        PyObject *frames = thread_obj ? PyTuple_New(depth) : NULL;
        if (frames == NULL) {
            Py_XDECREF(thread_obj);
            Py_CLEAR(result);
            goto done;
        }
        for (uint32_t j = 0; j < depth; j++) {
            PyObject *lasti = PyLong_FromSsize_t(t->pool[off + depth - 1 - j].lasti);
            PyObject *pair = lasti ? PyTuple_New(2) : NULL;
            if (pair == NULL) {
                Py_XDECREF(lasti);
                Py_DECREF(thread_obj);
                Py_DECREF(frames);
                Py_CLEAR(result);
                goto done;
            }
            PyTuple_SET_ITEM(pair, 0, Py_NewRef(t->pool[off + depth - 1 - j].code));
            PyTuple_SET_ITEM(pair, 1, lasti);
            PyTuple_SET_ITEM(frames, j, pair);
        }
        PyObject *item = Py_BuildValue("(NNKK)", thread_obj, frames,
                                       (unsigned long long)t->entries[i].wall,
                                       (unsigned long long)t->entries[i].cpu);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }

done:
    t->users--;
    if (t->detached && t->users == 0) {
        table_free(t);
    }
    return result;
}

static PyMethodDef Sampler_methods[] = {
    {"set_countdown", (PyCFunction)(void (*)(void))Sampler_set_countdown,
     METH_FASTCALL, set_countdown_doc},
    {"take", (PyCFunction)(void (*)(void))Sampler_take,
     METH_VARARGS | METH_KEYWORDS, take_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
get_samples_taken(Sampler *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->samples_taken);
}

static PyObject *
get_ticks(Sampler *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->ticks);
}

static PyObject *
get_interval(Sampler *self, void *closure)
{
    return PyFloat_FromDouble(self->interval);
}

static PyObject *
get_clock(Sampler *self, void *closure)
{
    return PyLong_FromLong(self->tick_clock);
}

static PyObject *
get_errors(Sampler *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->errors);
}

static PyObject *
get_truncated(Sampler *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->truncated);
}

static PyObject *
get_sample_time(Sampler *self, void *closure)
{
    return PyFloat_FromDouble((double)self->sample_ns / 1e9);
}

static PyObject *
get_track_cpu(Sampler *self, void *closure)
{
    return PyBool_FromLong(self->track_cpu);
}

static PyObject *
get_enabled(Sampler *self, void *closure)
{
    return PyBool_FromLong(self->enabled);
}

static int
set_enabled(Sampler *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete enabled");
        return -1;
    }
    int b = PyObject_IsTrue(value);
    if (b < 0) {
        return -1;
    }
    self->enabled = (char)b;
    self->has_last_tick = 0;  /* a pause is not time to weight the next sample with */
    return 0;
}

static PyObject *
get_on_disabled(Sampler *self, void *closure)
{
    return Py_NewRef(self->on_disabled ? self->on_disabled : Py_None);
}

static int
set_on_disabled(Sampler *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete on_disabled");
        return -1;
    }
    PyObject *old = self->on_disabled;
    self->on_disabled = value == Py_None ? NULL : Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

static PyGetSetDef Sampler_getset[] = {
    {"samples_taken", (getter)get_samples_taken, NULL,
     "Number of samples taken (calls while enabled).", NULL},
    {"ticks", (getter)get_ticks, NULL,
     "Sum of the samples' weights (see interval).", NULL},
    {"interval", (getter)get_interval, NULL,
     "Seconds of clock per unit of weight; 0 counts every sample once.", NULL},
    {"clock", (getter)get_clock, NULL,
     "The clock_gettime() clock id that samples are weighted on.", NULL},
    {"sample_time", (getter)get_sample_time, NULL,
     "Seconds spent sampling, on the monotonic clock.", NULL},
    {"errors", (getter)get_errors, NULL,
     "Exceptions raised and swallowed inside the handler.", NULL},
    {"truncated", (getter)get_truncated, NULL,
     "Samples with a stack deeper than MAX_DEPTH, counted under its innermost frames.",
     NULL},
    {"track_cpu", (getter)get_track_cpu, NULL,
     "Whether on-CPU samples are counted as well.", NULL},
    {"enabled", (getter)get_enabled, (setter)set_enabled,
     "When false, a call counts nothing and calls on_disabled once.", NULL},
    {"on_disabled", (getter)get_on_disabled, (setter)set_on_disabled,
     "Called once, with no arguments, by the first call while disabled.", NULL},
    {NULL},
};

PyDoc_STRVAR(Sampler_doc,
"Sampler(track_cpu=False, interval=0.0, clock=time.CLOCK_MONOTONIC)\n--\n\n"
"Signal handler counting (thread, stack) keys; see plop._pysampler for the\n"
"protocol.  Install it directly: signal.signal(sig, sampler).");

static PyTypeObject Sampler_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plop._sampler.Sampler",
    .tp_basicsize = sizeof(Sampler),
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_vectorcall_offset = offsetof(Sampler, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = Sampler_doc,
    .tp_traverse = (traverseproc)Sampler_traverse,
    .tp_clear = (inquiry)Sampler_clear,
    .tp_methods = Sampler_methods,
    .tp_getset = Sampler_getset,
    .tp_new = Sampler_new,
};

static struct PyModuleDef sampler_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "plop._sampler",
    .m_doc = "Compiled stack sampler; see plop._pysampler for the protocol.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__sampler(void)
{
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_ImportError,
                    "plop._sampler does not support free-threaded Python; "
                    "plop uses its pure-Python sampler instead");
    return NULL;
#else
    if (str_active == NULL) {
        str_active = PyUnicode_InternFromString("_active");
        if (str_active == NULL) {
            return NULL;
        }
        if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "pthread_atfork failed");
            return NULL;
        }
    }
    if (PyType_Ready(&Sampler_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&sampler_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Sampler", (PyObject *)&Sampler_Type) < 0
        || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
#endif
}
