/* plop._sampler: the compiled sampler.
 *
 * Same protocol as plop/_pysampler.py (read its module docstring first); this
 * file explains how the C version keeps a snapshot cheap and its CPU
 * attribution right.
 *
 * The sampler thread.  run(generation) is called on a thread of plop's own
 * (started with _thread.start_new_thread, so the program's threading.enumerate()
 * does not see it).  It loops in C: with the GIL released it waits for the
 * next tick on the pacing clock (pthread_cond_timedwait on CLOCK_MONOTONIC, so
 * stop() wakes it at once), reads what it needs about every thread *at the
 * tick* (below), then takes the GIL, walks every other thread state and counts
 * the stacks.  No signal is used, so the program keeps every signal and timer,
 * and nothing depends on what the main thread is doing.
 *
 * Taking the GIL promptly.  A thread that computes in Python holds the GIL and
 * would only let a waiter in after sys.getswitchinterval() (5 ms): the tick
 * would be late, and worse, late in a biased way (the holder gives the GIL
 * away early when it starts a blocking call, so late snapshots land on waits).
 * On 3.11 the sampler therefore raises the interpreter's gil_drop_request
 * itself, as take_gil() would after its first timeout: the holder drops the
 * GIL at its next eval-breaker check (microseconds in Python code).  While
 * it waits, the switch interval is 200 us (restored once it holds the GIL):
 * with two threads computing, the holder may hand the GIL to the other one,
 * and the sampler asks again 200 us later instead of 5 ms.  A C call
 * that holds the GIL still delays the snapshot until it returns; the weight
 * covers that.  Other versions wait the switch interval (see docs/format.md).
 *
 * The main thread snapshots itself (3.11).  The GIL going to the sampler
 * thread and back costs about four context switches per snapshot, more than
 * the snapshot.  When the main thread holds the GIL at a tick (the runtime's
 * gil.locked and gil.last_holder, read without the GIL: a wrong answer only
 * costs a fallback), the sampler thread offers it the tick instead: it records
 * the tick's readings under mu, queues a pending call (Py_AddPendingCall,
 * which only the main thread runs, with the GIL, at its next eval-breaker
 * check) and waits on its condition variable.  The call takes the snapshot,
 * the main thread counted at its current frame, and reports back.  If it has
 * not started within INLINE_WAIT_NS, or the main thread stops holding the GIL
 * meanwhile (it blocked, or handed the GIL on), the sampler thread withdraws
 * the offer under mu and takes the GIL as above: a call that comes late finds
 * no open offer and does nothing, so each tick is taken exactly once.
 * When the next tick is due before INLINE_WAIT_NS is out (1000 Hz), the
 * sampler thread does not wait for the answer at all: waking up only to see
 * the snapshot taken would cost about what the handoff saved.  It closes the
 * offer at the next tick instead; one not taken by then is withdrawn and its
 * tick folded into the next snapshot's weight.  At most one call of ours is
 * queued at a time (it serves whatever offer is open when
 * it runs), so a main thread away for long does not fill the queue.  stop()
 * closes the offer with the generation; a fork leaves calls queued by the
 * parent naming a fork generation that is gone, and they only free their
 * token.  ``inline`` counts these snapshots; their CPU, spent by the main
 * thread, is added to thread_cpu_time.
 *
 * On CPU at the tick.  Before taking the GIL, for each thread seen at the
 * previous snapshot, the sampler reads its CPU clock and, if the thread ran
 * since then, its scheduler state from /proc/self/task/TID/stat ('R' = running
 * or runnable).  A thread waiting for the GIL or blocked in a system call is
 * asleep; one computing (with the GIL, or in C without it) is running.  Once
 * the sampler holds the GIL it reads the CPU clocks of the running ones again:
 * 'R' also means runnable, waiting for a core, and a thread whose clock did
 * not move was not spending CPU.  The snapshot that follows within
 * microseconds therefore shows the code that was using the CPU at the tick, and the CPU count goes to that stack, never to a
 * wait entered after the CPU was spent.  Where /proc cannot be read, a thread
 * counts as on CPU when it used more than half the wall time since its
 * previous snapshot.
 *
 * Snapshots.  Threads are enumerated with the documented debugger API
 * (PyInterpreterState_ThreadHead / PyThreadState_Next); each stack is walked
 * with the public frame API (PyThreadState_GetFrame, PyFrame_GetCode,
 * PyFrame_GetLasti, PyFrame_GetBack), dropping the strong references at once
 * (the frame owns its code object).  The (code pointer, lasti) pairs go into a
 * scratch buffer while a 64-bit hash is folded in; the key (thread, pairs) is
 * looked up in an open-addressing table written in C.  A hit increments two
 * counters: a snapshot whose stacks were all seen before allocates nothing.
 * A new key copies its pairs into an append-only pool and takes a strong
 * reference to each code object and to the thread object, dropped when the
 * table is reset or freed.
 *
 * Thread objects: a small per-thread-state cache (keyed by
 * PyThreadState_GetID(), never reused) remembers each thread's Thread object,
 * CPU clock id, native thread id and CPU readings; it is rebuilt in thread
 * list order at every snapshot.  Only the thread taking the snapshot reads or
 * writes it: the sampler thread, or the main thread while the sampler thread
 * waits for its inline snapshot (the handover goes through mu).
 *
 * Robustness: nothing may run Python code in the middle of a walk (another
 * thread could then free the thread state being iterated).  The only
 * allocations during the walk are frame objects (lazily created by CPython)
 * and our own PyMem buffers; on 3.11 allocating a GC object can run a
 * collection synchronously, so the cyclic GC is paused for the walk there.
 * References that might be the last (evicted Thread objects) are released
 * after the walk.  Errors are counted in ``errors``; the countdown callback's
 * exceptions go to sys.unraisablehook.  Without the GIL the sampler touches
 * only its own C state, clock ids and /proc: never a Python object or a
 * pthread_t of a thread that may be gone.
 *
 * Depth: at most MAX_DEPTH frames per stack are recorded (the innermost ones:
 * they carry the self time); ``truncated`` counts deeper samples.
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


#if PY_VERSION_HEX < 0x030C0000
/* The interpreter's GIL drop request (see the top of this file). */
#define Py_BUILD_CORE 1
#undef _PyGC_FINALIZED
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#undef Py_BUILD_CORE
#define HAVE_DROP_REQUEST 1
/* Inline snapshots (see "The main thread snapshots itself" above). */
#define HAVE_INLINE 1
/* While the sampler waits for the GIL, the switch interval is this short:
 * when two threads compute, the holder asked to let go may hand the GIL to
 * the other one, and the sampler would wait a whole interval to ask again. */
#define WAIT_SWITCH_US 200

static unsigned long
request_gil(PyInterpreterState *interp)
{
    unsigned long saved = _PyEval_GetSwitchInterval();
    if (saved > WAIT_SWITCH_US) {
        _PyEval_SetSwitchInterval(WAIT_SWITCH_US);
    }
    _Py_atomic_store_relaxed(&interp->ceval.gil_drop_request, 1);
    _Py_atomic_store_relaxed(&interp->ceval.eval_breaker, 1);
    return saved;
}

/* Holding the GIL again: give the program its switch interval back, unless it
 * set another one meanwhile. */
static void
restore_switch(unsigned long saved)
{
    if (saved > WAIT_SWITCH_US && _PyEval_GetSwitchInterval() == WAIT_SWITCH_US) {
        _PyEval_SetSwitchInterval(saved);
    }
}
/* Whether main_ts holds the GIL now (without the GIL: two atomic loads of the
 * runtime's own bookkeeping; a stale answer only costs a fallback). */
static inline int
main_holds_gil(PyThreadState *main_ts)
{
    struct _gil_runtime_state *gil = &_PyRuntime.ceval.gil;
    return main_ts != NULL && _Py_atomic_load_relaxed(&gil->locked) == 1
           && (PyThreadState *)_Py_atomic_load_relaxed(&gil->last_holder) == main_ts;
}

static inline unsigned long
main_thread_ident(void)
{
    return _PyRuntime.main_thread;
}

/* Make the main thread look at its pending calls at its next eval-breaker
 * check: Py_AddPendingCall() only does so when called on the main thread. */
static inline void
wake_main(PyInterpreterState *interp)
{
    _Py_atomic_store_relaxed(&interp->ceval.eval_breaker, 1);
}
#else
#define HAVE_DROP_REQUEST 0
#define HAVE_INLINE 0
static unsigned long
request_gil(PyInterpreterState *interp)
{
    (void)interp;
    return 0;
}

static void
restore_switch(unsigned long saved)
{
    (void)saved;
}
#endif

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Per-thread-state cache                                                   */

/* Bumped in the child after fork(): thread CPU clock ids name kernel thread
 * ids, which differ in the child, and the sampler thread is gone there. */
static volatile unsigned int fork_generation;

static void
after_fork_child(void)
{
    fork_generation++;
}

typedef struct {
    uint64_t tsid;        /* PyThreadState_GetID(); 0 = consumed/empty */
    unsigned long ident;  /* tstate->thread_id the entry describes */
    unsigned long native; /* tstate->native_thread_id: the kernel's thread id */
    PyObject *thread;     /* strong ref: threading._active[ident], or NULL */
    clockid_t clock;
    unsigned int clock_generation;  /* fork_generation when clock was looked up */
    int clock_state;      /* 0 not looked up, 1 valid, -1 unavailable */
    int has_cpu;          /* last_cpu_ns is set */
    int64_t last_cpu_ns;  /* thread CPU clock at the previous snapshot */
    int64_t last_wall_ns; /* monotonic clock at the previous snapshot */
    int64_t tick_cpu_ns;  /* thread CPU clock read at this tick, before the GIL */
    char tick_valid;      /* tick_cpu_ns and running are from this tick */
    char running;         /* on CPU at this tick */
    double credit;        /* CPU-paced modes: share of the weight carried over */
} ThreadInfo;

static void
tinfo_init(ThreadInfo *ti, uint64_t tsid, unsigned long ident, unsigned long native)
{
    memset(ti, 0, sizeof(*ti));
    ti->tsid = tsid;
    ti->ident = ident;
    ti->native = native;
    ti->clock_generation = fork_generation;
}

static inline int64_t
clock_ns(clockid_t clock, int *ok)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t
monotonic_ns(void)
{
    int ok;
    return clock_ns(CLOCK_MONOTONIC, &ok);
}

static int proc_usable = -1;  /* /proc/self/task readable: -1 unknown */

/* The scheduler state of kernel thread tid: 1 running or runnable, 0 not,
 * -1 unknown.  Async-signal-safe calls only, no Python. */
static int
proc_running(unsigned long tid)
{
    char path[64];
    char buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%lu/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    /* "tid (comm) S ...": comm may hold spaces and parentheses. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0') {
        return -1;
    }
    return p[2] == 'R';
}

/* ------------------------------------------------------------------------ */
/* The Sampler object                                                       */

typedef struct {
    PyObject_HEAD
    Table *table;
    ThreadInfo *tinfo;        /* cache, in the order of the last walk */
    ThreadInfo *tinfo_spare;  /* the next snapshot's cache is built here */
    Py_ssize_t n_tinfo, cap_tinfo;
    FrameKey *scratch;        /* MAX_DEPTH frames */
    PyObject *countdown_cb;   /* NULL means None */
    PyObject *threading;      /* the threading module */
    long long countdown;
    double interval;          /* seconds of tick_clock per unit of weight */
    double pace;              /* seconds of tick_clock between ticks (settable) */
    int tick_clock;           /* a clock_gettime() clock id: paces and weighs */
    int has_last_tick;
    int64_t last_tick_ns;     /* tick_clock at the previous snapshot */
    double tick_credit;       /* rounding carried to the next weight */
    unsigned long long ticks; /* sum of the weights */
    unsigned long long samples_taken;
    unsigned long long errors;
    unsigned long long truncated;
    unsigned long long late;  /* snapshots taken more than an interval late */
    int64_t sample_ns;        /* wall time inside snapshots */
    int64_t thread_cpu_ns;    /* CPU time of the sampler thread, all runs, and of inline snapshots */
    int64_t gil_wait_ns;      /* wall time from tick to holding the GIL */
    char track_cpu;
    char in_sample;
    /* The sampler thread, guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned int mu_generation;  /* fork_generation when mu was initialised */
    unsigned long generation;    /* bumped by arm() and stop(): run(g) ends when it differs */
    int running;                 /* armed and not stopped */
    int looping;                 /* a run() is in its loop */
    unsigned long loop_ident;    /* PyThread_get_thread_ident() of that run() */
    uint64_t own_tsid;           /* the sampler thread's state, never sampled */
    uint64_t rng;                /* xorshift state for the ticks' jitter */
    /* The sampler thread's CPU clock, read with the GIL held by whichever
     * thread takes the snapshot, so thread_cpu_time moves with the counts. */
    clockid_t own_clock;
    int own_clock_ok;
    int64_t own_cpu_mark;        /* own_clock when last added to thread_cpu_ns */
    /* Inline snapshots: the tick offered to the main thread, guarded by mu. */
    int offer_state;             /* OFFER_NONE, _OPEN, _RUNNING or _DONE */
    unsigned long offer_generation;  /* the run that offered it */
    int64_t offer_tick_ns;
    Py_ssize_t offer_n_running;
    int offer_waited;            /* the sampler thread waits on cond for the answer */
    struct InlineToken *queued;  /* our pending call not yet run (guarded by mu) */
    unsigned int queued_fork_generation;  /* fork_generation when it was queued */
    PyThreadState *main_ts;      /* the main thread's state at the last snapshot
                                  * (compared, never dereferenced, without the GIL) */
    unsigned long long inline_count;  /* snapshots the main thread took itself */
    char allow_inline;           /* settable: 0 keeps every snapshot on the sampler thread */
} Sampler;

enum { OFFER_NONE, OFFER_OPEN, OFFER_RUNNING, OFFER_DONE };

/* The argument of one pending call: the sampler it serves, or NULL once that
 * sampler is gone (the call then only frees the token). */
typedef struct InlineToken {
    Sampler *sampler;
    unsigned int fork_generation;
} InlineToken;

static PyTypeObject Sampler_Type;
static PyObject *str_active;  /* interned "_active" */

static int
sampler_init_sync(Sampler *self)
{
    pthread_condattr_t attr;
    if (pthread_mutex_init(&self->mu, NULL) != 0) {
        return -1;
    }
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&self->cond, &attr);
    pthread_condattr_destroy(&attr);
    self->mu_generation = fork_generation;
    return rc == 0 ? 0 : -1;
}

/* Lock the sampler thread's mutex.  In a forked child the sampler thread is
 * gone (it may even have held the mutex at fork time): start afresh. */
static void
sampler_lock(Sampler *self)
{
    if (self->mu_generation != fork_generation) {
        sampler_init_sync(self);
        self->running = 0;
        self->looping = 0;
        self->generation++;
    }
    pthread_mutex_lock(&self->mu);
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

/* Look the thread's CPU clock up (with the GIL held: the thread is alive). */
static void
tinfo_clock(ThreadInfo *ti)
{
    if (ti->clock_state == 0 || ti->clock_generation != fork_generation) {
        ti->clock_state =
            pthread_getcpuclockid((pthread_t)ti->ident, &ti->clock) == 0 ? 1 : -1;
        if (ti->clock_generation != fork_generation) {
            ti->clock_generation = fork_generation;
            ti->has_cpu = 0;  /* the child's CPU clock starts afresh */
        }
    }
}

/* Read, at the tick, each known thread's CPU clock and whether it is on CPU.
 * Runs without the GIL on the sampler thread (or with it, for sample()).
 * Returns how many threads may be on CPU (see confirm_running()). */
static Py_ssize_t
read_tick(Sampler *self, int64_t wall_ns)
{
    Py_ssize_t n_running = 0;
    for (Py_ssize_t k = 0; k < self->n_tinfo; k++) {
        ThreadInfo *ti = &self->tinfo[k];
        ti->tick_valid = 0;
        ti->running = 0;
        if (ti->tsid == 0 || ti->tsid == self->own_tsid || ti->clock_state != 1
            || ti->clock_generation != fork_generation) {
            continue;
        }
        int ok;
        int64_t cpu = clock_ns(ti->clock, &ok);
        if (!ok) {
            continue;  /* the thread is gone */
        }
        ti->tick_cpu_ns = cpu;
        ti->tick_valid = 1;
        if (!ti->has_cpu || cpu <= ti->last_cpu_ns) {
            continue;  /* did not run since the previous snapshot */
        }
        int state = proc_usable ? proc_running(ti->native) : -1;
        if (state < 0) {
            if (proc_usable < 0) {
                proc_usable = access("/proc/self/task", R_OK) == 0;
            }
            int64_t wall = wall_ns - ti->last_wall_ns;
            state = wall > 0 && 2 * (cpu - ti->last_cpu_ns) > wall;
        }
        ti->running = (char)state;
        n_running += state;
    }
    return n_running;
}

/* With the GIL held, right after read_tick(): a thread counts as on CPU only
 * if its CPU clock also moved since the tick.  'R' means running *or
 * runnable*: on a loaded machine a thread that has just returned from a wait
 * queues for a CPU in state R without running, and would charge that wait.
 * Returns how many threads are on CPU. */
static Py_ssize_t
confirm_running(Sampler *self)
{
    Py_ssize_t n_running = 0;
    for (Py_ssize_t k = 0; k < self->n_tinfo; k++) {
        ThreadInfo *ti = &self->tinfo[k];
        if (!ti->running) {
            continue;
        }
        int ok;
        int64_t cpu = clock_ns(ti->clock, &ok);
        ti->running = ok && cpu > ti->tick_cpu_ns;
        n_running += ti->running;
    }
    return n_running;
}

/* The CPU count of one thread's sample of the given weight. */
static uint64_t
cpu_count(Sampler *self, ThreadInfo *ti, uint64_t weight, Py_ssize_t n_running,
          int64_t wall_ns)
{
    uint64_t on = 0;
    if (ti->tick_valid) {
        if (self->tick_clock == CLOCK_MONOTONIC) {
            on = ti->running ? weight : 0;
        }
        else if (ti->running && n_running > 0) {
            /* The weight is CPU time of the whole process: share it among the
             * threads that were spending it. */
            ti->credit += (double)weight / (double)n_running;
            on = round_credit(ti->credit, weight);
            ti->credit -= (double)on;
        }
        ti->last_cpu_ns = ti->tick_cpu_ns;
        ti->last_wall_ns = wall_ns;
        ti->has_cpu = 1;
        return on;
    }
    /* First sight: take the readings the next tick compares against. */
    tinfo_clock(ti);
    if (ti->clock_state == 1) {
        int ok;
        int64_t cpu = clock_ns(ti->clock, &ok);
        if (ok) {
            ti->last_cpu_ns = cpu;
            ti->last_wall_ns = wall_ns;
            ti->has_cpu = 1;
        }
    }
    return 0;
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
count_stack(Sampler *self, ThreadInfo *ti, PyFrameObject *f, uint64_t weight,
            uint64_t oncpu)
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

/* How many intervals this snapshot stands for (see the pure sampler): 1
 * without an interval or on the first snapshot, else the intervals of the tick clock elapsed since the
 * previous one, rounded with error diffusion. */
static int
sample_weight(Sampler *self, uint64_t *weight)
{
    if (!(self->interval > 0)) {
        *weight = 1;
        return 0;
    }
    int ok;
    int64_t now = clock_ns((clockid_t)self->tick_clock, &ok);
    if (!ok) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
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

/* Take one snapshot of every thread of this interpreter but the calling one,
 * which is counted at frame_arg unless that is None.  n_running comes from
 * read_tick().  Returns -1 with an exception set if any thread could not be
 * counted; the other threads are still counted.  Thread objects evicted from
 * the cache are handed back in evicted[] for release after the snapshot. */
static int
snapshot(Sampler *self, PyObject *frame_arg, Py_ssize_t n_running, int64_t wall_ns,
         PyObject **evicted, int *n_evicted)
{
    uint64_t weight;
    if (sample_weight(self, &weight) < 0) {
        return -1;
    }
    if (weight == 0) {
        return 0;  /* less than half an interval since the previous snapshot */
    }
    self->ticks += weight;
    if (self->track_cpu) {
        n_running = confirm_running(self);
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
#if HAVE_INLINE
    unsigned long main_ident = main_thread_ident();
    PyThreadState *main_ts = NULL;
#endif

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
                /* The thread state was bound to another OS thread since. */
                if (ti->thread != NULL && *n_evicted < MAX_EVICT) {
                    evicted[(*n_evicted)++] = ti->thread;
                    ti->thread = NULL;
                }
                Py_CLEAR(ti->thread);  /* not reached unless evicted[] is full */
                tinfo_init(ti, tsid, ident, ts->native_thread_id);
            }
        }
        else {
            tinfo_init(ti, tsid, ident, ts->native_thread_id);
        }

#if HAVE_INLINE
        if (ident == main_ident) {
            main_ts = ts;
        }
#endif
        if (failed || tsid == self->own_tsid) {
            continue;  /* keep rebuilding the cache; the sampler is not sampled */
        }
        PyFrameObject *f;
        if (ts == me) {
            if (frame_arg == Py_None) {
                continue;
            }
            f = (PyFrameObject *)Py_NewRef(frame_arg);
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
        uint64_t oncpu = self->track_cpu ? cpu_count(self, ti, weight, n_running, wall_ns) : 0;
        if (count_stack(self, ti, f, weight, oncpu) < 0) {
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
            cur[n_cur++] = old[k];  /* released by a later snapshot */
            old[k].tsid = 0;
            old[k].thread = NULL;
        }
    }
    self->tinfo = cur;
    self->tinfo_spare = old;
    self->n_tinfo = n_cur;
#if HAVE_INLINE
    /* Only the main interpreter's main thread runs pending calls. */
    __atomic_store_n(&self->main_ts, interp == PyInterpreterState_Main() ? main_ts : NULL,
                     __ATOMIC_RELAXED);
#endif
    return failed ? -1 : 0;
}

/* Call a callback from the sampler: failures are counted and reported
 * through sys.unraisablehook, never raised. */
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

/* One snapshot with its bookkeeping, GIL held.  Returns the countdown
 * callback if it fell due (a strong reference, for run_countdown() once the
 * caller's own bookkeeping is done), else NULL. */
static PyObject *
snapshot_counted(Sampler *self, PyObject *frame_arg, Py_ssize_t n_running, int64_t tick_ns)
{
    int64_t t0 = monotonic_ns();
    PyObject *evicted[MAX_EVICT];
    int n_evicted = 0;
    self->in_sample = 1;
#if PY_VERSION_HEX < 0x030C0000
    /* 3.11 runs a collection synchronously when a frame object allocation
     * crosses the threshold; its finalizers must not run mid-walk. */
    int gc_was_enabled = PyGC_Disable();
#endif
    if (snapshot(self, frame_arg, n_running, tick_ns, evicted, &n_evicted) < 0) {
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
        return callback;
    }
    return NULL;
}

static void
run_countdown(Sampler *self, PyObject *callback)
{
    if (callback != NULL) {
        call_callback(self, callback);
        Py_DECREF(callback);
    }
}

static void
take_snapshot(Sampler *self, PyObject *frame_arg, Py_ssize_t n_running, int64_t tick_ns)
{
    run_countdown(self, snapshot_counted(self, frame_arg, n_running, tick_ns));
}

/* Add the sampler thread's CPU since the last call to thread_cpu_ns (GIL held,
 * on whichever thread took the snapshot). */
static void
account_own_cpu(Sampler *self)
{
    if (!self->own_clock_ok) {
        return;
    }
    int ok;
    int64_t cpu = clock_ns(self->own_clock, &ok);
    if (ok) {
        self->thread_cpu_ns += cpu - self->own_cpu_mark;
        self->own_cpu_mark = cpu;
    }
}

PyDoc_STRVAR(sample_doc,
"sample(frame=None)\n--\n\n"
"Take one snapshot now, from the calling thread: every other thread at its\n"
"current frame, the calling thread at frame (or not at all when None).");

static PyObject *
Sampler_sample(Sampler *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "sample expects at most 1 argument, got %zd", nargs);
        return NULL;
    }
    PyObject *frame = nargs ? args[0] : Py_None;
    if (frame != Py_None && !PyFrame_Check(frame)) {
        PyErr_Format(PyExc_TypeError, "frame must be a frame or None, not %.200s",
                     Py_TYPE(frame)->tp_name);
        return NULL;
    }
    if (self->in_sample) {
        Py_RETURN_NONE;  /* re-entered from a callback: the outer snapshot stands */
    }
    int64_t now = monotonic_ns();
    Py_ssize_t n_running = self->track_cpu ? read_tick(self, now) : 0;
    take_snapshot(self, frame, n_running, now);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(arm_doc,
"arm()\n--\n\n"
"Prepare a run: returns the generation to pass to run() on the new thread.");

static PyObject *
Sampler_arm(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    sampler_lock(self);
    int busy = self->running;
    unsigned long generation = 0;
    if (!busy) {
        generation = ++self->generation;
        self->running = 1;  /* claimed until run() starts, or stop() */
    }
    pthread_mutex_unlock(&self->mu);
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler is already running");
        return NULL;
    }
    self->has_last_tick = 0;  /* a pause is not time to weight the next snapshot with */
    return PyLong_FromUnsignedLong(generation);
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\n"
"End the run: no snapshot starts after this returns; the thread exits soon.");

static PyObject *
Sampler_stop(Sampler *self, PyObject *Py_UNUSED(ignored))
{
    sampler_lock(self);
    self->generation++;
    self->running = 0;
    pthread_cond_broadcast(&self->cond);
    int wait = self->looping && self->loop_ident != PyThread_get_thread_ident();
    pthread_mutex_unlock(&self->mu);
    if (wait) {
        /* Let the loop finish (it needs the GIL to), so the figures are final. */
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&self->mu);
        while (self->looping) {
            pthread_cond_wait(&self->cond, &self->mu);
        }
        pthread_mutex_unlock(&self->mu);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* Wait (GIL released) until the next tick of run generation g; returns 0 at
 * the tick, 1 when the run was stopped.  deadline_ns is on the tick clock;
 * ncpu (>= 1) spreads a CPU-clock wait over the cores. */
static int
wait_tick(Sampler *self, unsigned long g, int64_t *deadline_ns, long ncpu)
{
    int64_t interval_ns = (int64_t)(self->pace * 1e9);
    if (interval_ns < 1000) {
        interval_ns = 1000;
    }
    int wall = self->tick_clock == CLOCK_MONOTONIC;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        if (self->generation != g || self->mu_generation != fork_generation) {
            pthread_mutex_unlock(&self->mu);
            return 1;
        }
        int ok;
        int64_t now = clock_ns((clockid_t)self->tick_clock, &ok);
        if (!ok || now >= *deadline_ns) {
            break;
        }
        /* On a CPU clock the wall time to wait is unknown: at most the
         * remaining CPU time spread over every core, then look again. */
        int64_t wait = *deadline_ns - now;
        if (!wall) {
            wait /= ncpu;
            if (wait < 200000) {
                wait = 200000;
            }
            if (wait > interval_ns) {
                wait = interval_ns;
            }
        }
        int64_t until = monotonic_ns() + wait;
        struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
        pthread_cond_timedwait(&self->cond, &self->mu, &ts);
    }
    pthread_mutex_unlock(&self->mu);
    /* The next tick is 0.75 to 1.25 intervals on, at random: a program that
     * runs in step with the interval (a 10 ms loop sampled every 10 ms) would
     * otherwise always be seen at the same phase.  The weights keep the sum
     * exact, and the mean rate is the one asked. */
    uint64_t x = self->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->rng = x;
    double u = (double)(x >> 11) / 9007199254740992.0;
    int ok;
    int64_t now = clock_ns((clockid_t)self->tick_clock, &ok);
    *deadline_ns += (int64_t)((double)interval_ns * (0.75 + 0.5 * u));
    if (*deadline_ns <= now) {
        /* More than an interval late: the next snapshot's weight says so. */
        self->late++;
        *deadline_ns = now + interval_ns;
    }
    return 0;
}

#if HAVE_INLINE
/* The longest the sampler thread waits for the main thread to take an
 * offered snapshot, and how often it looks whether the main thread still
 * holds the GIL meanwhile. */
#define INLINE_WAIT_NS 1000000
#define INLINE_POLL_NS 200000

/* The pending call: on the main thread, GIL held, at its eval-breaker check.
 * It takes the offered snapshot if the offer still stands (the sampler thread
 * did not give up on it, the run was not stopped, no fork since), else does
 * nothing: each tick is taken exactly once, by one thread or the other. */
static int
inline_call(void *arg)
{
    InlineToken *tok = (InlineToken *)arg;
    Sampler *self = tok->sampler;
    if (self == NULL || tok->fork_generation != fork_generation) {
        /* The sampler is gone, or this call was queued before a fork: its
         * sampler's bookkeeping no longer names it. */
        PyMem_RawFree(tok);
        return 0;
    }
    sampler_lock(self);
    if (self->queued == tok) {
        self->queued = NULL;
    }
    int go = self->offer_state == OFFER_OPEN && self->offer_generation == self->generation
             && !self->in_sample && !_Py_IsFinalizing();
    if (go) {
        self->offer_state = OFFER_RUNNING;
    }
    int64_t tick_ns = self->offer_tick_ns;
    Py_ssize_t n_running = self->offer_n_running;
    pthread_mutex_unlock(&self->mu);
    PyMem_RawFree(tok);
    if (!go) {
        return 0;
    }
    self->gil_wait_ns += monotonic_ns() - tick_ns;
    int ok0, ok1;
    int64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID, &ok0);
    PyObject *frame = (PyObject *)PyEval_GetFrame();  /* borrowed */
    PyObject *callback = snapshot_counted(self, frame != NULL ? frame : Py_None,
                                          n_running, tick_ns);
    int64_t cpu1 = clock_ns(CLOCK_THREAD_CPUTIME_ID, &ok1);
    self->inline_count++;
    /* The snapshot's CPU is sampling cost, though the main thread spent it:
     * thread_cpu_time (what the live budget reads) keeps counting it. */
    if (ok0 && ok1) {
        self->thread_cpu_ns += cpu1 - cpu0;
    }
    sampler_lock(self);
    if (self->offer_generation == self->generation) {
        account_own_cpu(self);
    }
    self->offer_state = OFFER_DONE;
    if (self->offer_waited) {
        pthread_cond_broadcast(&self->cond);  /* else it looks at the next tick */
    }
    pthread_mutex_unlock(&self->mu);
    run_countdown(self, callback);
    return 0;
}

/* Before the next tick's readings (sampler thread, GIL released): close an
 * offer left open by try_inline() returning 2.  Taken or not, it is over: one
 * not taken yet is withdrawn, its tick folded into the next snapshot's weight
 * (the weights follow the clock); one being taken is waited for, since the
 * next readings overwrite the cache it reads. */
static void
close_offer(Sampler *self, unsigned long g)
{
    pthread_mutex_lock(&self->mu);
    while (self->offer_state == OFFER_RUNNING && self->generation == g) {
        self->offer_waited = 1;
        int64_t until = monotonic_ns() + INLINE_WAIT_NS;
        struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
        pthread_cond_timedwait(&self->cond, &self->mu, &ts);
    }
    self->offer_waited = 0;
    self->offer_state = OFFER_NONE;
    pthread_mutex_unlock(&self->mu);
}

/* On the sampler thread, GIL released, right after read_tick(): if the main
 * thread holds the GIL, offer it the tick and wait (bounded) for it to take
 * the snapshot.  Returns 1 when it did, 0 when the sampler thread must take
 * the GIL and the snapshot itself (the offer is then withdrawn), -1 when the
 * run was stopped, 2 when the offer stays open until the next tick
 * (next_ns, on the monotonic clock, or 0 if unknown), which comes before the
 * wait would end: waking in between only to see it taken would cost about as
 * much as the handoff saved. */
static int
try_inline(Sampler *self, PyInterpreterState *interp, unsigned long g, int64_t tick_ns,
           Py_ssize_t n_running, int64_t next_ns)
{
    PyThreadState *main_ts = __atomic_load_n(&self->main_ts, __ATOMIC_RELAXED);
    if (!main_holds_gil(main_ts) || _Py_IsFinalizing()) {
        /* Finalizing: pending calls are no longer run, and the interpreter
         * (its pending-call lock, its eval breaker) is about to be freed;
         * taking the GIL ends this thread there, as it always did. */
        return 0;
    }
    InlineToken *tok = NULL;
    pthread_mutex_lock(&self->mu);
    if (self->generation != g || self->mu_generation != fork_generation) {
        pthread_mutex_unlock(&self->mu);
        return -1;
    }
    if (self->queued == NULL || self->queued_fork_generation != fork_generation) {
        /* No call of ours is queued (one still queued will serve this tick:
         * at most one in the queue, however long the main thread is away). */
        tok = PyMem_RawMalloc(sizeof(InlineToken));
        if (tok == NULL) {
            pthread_mutex_unlock(&self->mu);
            return 0;
        }
        tok->sampler = self;
        tok->fork_generation = fork_generation;
        self->queued = tok;
        self->queued_fork_generation = fork_generation;
    }
    self->offer_state = OFFER_OPEN;
    self->offer_generation = g;
    self->offer_tick_ns = tick_ns;
    self->offer_n_running = n_running;
    pthread_mutex_unlock(&self->mu);
    if (tok != NULL && Py_AddPendingCall(inline_call, tok) != 0) {
        /* The queue is full.  No call of ours is queued: nobody else can
         * take the offer. */
        pthread_mutex_lock(&self->mu);
        self->queued = NULL;
        self->offer_state = OFFER_NONE;
        pthread_mutex_unlock(&self->mu);
        PyMem_RawFree(tok);
        return 0;
    }
    wake_main(interp);

    int64_t limit = tick_ns + INLINE_WAIT_NS;
    if (next_ns != 0 && next_ns <= limit) {
        return 2;
    }
    int r;
    pthread_mutex_lock(&self->mu);
    self->offer_waited = 1;
    for (;;) {
        if (self->generation != g) {
            r = -1;
            break;
        }
        if (self->offer_state == OFFER_DONE) {
            r = 1;
            break;
        }
        int64_t now = monotonic_ns();
        int64_t until;
        if (self->offer_state == OFFER_OPEN) {
            if (now >= limit || !main_holds_gil(main_ts)) {
                /* Blocked in C, waiting, or handed the GIL on: withdraw the
                 * offer (under mu, so the late call sees it) and fall back. */
                r = 0;
                break;
            }
            until = now + INLINE_POLL_NS < limit ? now + INLINE_POLL_NS : limit;
        }
        else {
            until = now + INLINE_WAIT_NS;  /* being taken: it ends with a broadcast */
        }
        struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
        pthread_cond_timedwait(&self->cond, &self->mu, &ts);
    }
    self->offer_state = OFFER_NONE;
    self->offer_waited = 0;
    pthread_mutex_unlock(&self->mu);
    return r;
}
#endif

PyDoc_STRVAR(run_doc,
"run(generation)\n--\n\n"
"The sampler thread's loop (call it on a new thread with arm()'s result):\n"
"one snapshot every interval of the tick clock until stop().");

static PyObject *
Sampler_run(Sampler *self, PyObject *arg)
{
    unsigned long g = PyLong_AsUnsignedLong(arg);
    if (g == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyThreadState *me = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(me);
    sampler_lock(self);
    if (self->generation != g || self->looping) {
        pthread_mutex_unlock(&self->mu);
        Py_RETURN_NONE;  /* stopped before it began, or another run is looping */
    }
    self->looping = 1;
    self->loop_ident = PyThread_get_thread_ident();
    pthread_mutex_unlock(&self->mu);
    self->own_tsid = PyThreadState_GetID(me);
    Py_INCREF(self);  /* the loop's own reference */
    int ok;
    self->own_clock_ok = pthread_getcpuclockid(pthread_self(), &self->own_clock) == 0;
    if (self->own_clock_ok) {
        self->own_cpu_mark = clock_ns(self->own_clock, &self->own_clock_ok);
    }
    int64_t deadline = clock_ns((clockid_t)self->tick_clock, &ok) + (int64_t)(self->pace * 1e9);
    /* Once per run: glibc answers it by reading a sysfs file, several
     * microseconds that every tick would pay. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) {
        ncpu = 1;
    }
#if HAVE_INLINE
    /* Pending calls run on the main thread: not if this is it. */
    int can_inline = self->loop_ident != main_thread_ident();
    int offer_open = 0;  /* try_inline() left its offer open until this tick */
#endif
    PyThreadState *saved = PyEval_SaveThread();
    for (;;) {
        if (wait_tick(self, g, &deadline, ncpu)) {
            break;
        }
#if HAVE_INLINE
        if (offer_open) {
            close_offer(self, g);
            offer_open = 0;
        }
#endif
        int64_t tick_ns = monotonic_ns();
        Py_ssize_t n_running = self->track_cpu ? read_tick(self, tick_ns) : 0;
#if HAVE_INLINE
        if (can_inline && self->allow_inline) {
            /* On the wall clock the next tick's time is known (deadline). */
            int64_t next_ns = self->tick_clock == CLOCK_MONOTONIC ? deadline : 0;
            int r = try_inline(self, interp, g, tick_ns, n_running, next_ns);
            if (r > 0) {
                /* taken by the main thread (or being: 2): no GIL handoff */
                offer_open = r == 2;
                continue;
            }
            if (r < 0) {
                break;
            }
        }
#endif
        unsigned long saved_switch = request_gil(interp);
        PyEval_RestoreThread(saved);
        restore_switch(saved_switch);
        sampler_lock(self);
        int stopped = self->generation != g;
        pthread_mutex_unlock(&self->mu);
        if (!stopped) {  /* else stop() ran while we waited for the GIL */
            self->gil_wait_ns += monotonic_ns() - tick_ns;
            take_snapshot(self, Py_None, n_running, tick_ns);
            account_own_cpu(self);
        }
        saved = PyEval_SaveThread();
        if (stopped) {
            break;
        }
    }
    PyEval_RestoreThread(saved);
    account_own_cpu(self);
    self->own_clock_ok = 0;
    sampler_lock(self);
    self->looping = 0;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    Py_DECREF(self);
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
    if (!(interval >= 0) || interval > 1e6) {
        PyObject *v = PyFloat_FromDouble(interval);
        PyErr_Format(PyExc_ValueError, "interval must be a number of seconds >= 0, not %R", v);
        Py_XDECREF(v);
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
    self->threading = threading;
    self->track_cpu = (char)track_cpu;
    self->interval = interval;
    self->pace = interval > 0 ? interval : 0.01;
    self->tick_clock = clock;
    self->allow_inline = 1;
    self->rng = ((uint64_t)monotonic_ns() ^ (uint64_t)(uintptr_t)self) | 1;
    self->table = table_new();
    self->scratch = PyMem_Malloc(MAX_DEPTH * sizeof(FrameKey));
    if (self->table == NULL || self->scratch == NULL || sampler_init_sync(self) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int
Sampler_traverse(Sampler *self, visitproc visit, void *arg)
{
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
    if (self->queued != NULL && self->queued_fork_generation == fork_generation) {
        self->queued->sampler = NULL;  /* the pending call will only free it */
        self->queued = NULL;
    }
    Sampler_clear(self);
    PyMem_Free(self->scratch);
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->mu);
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
"Return (figures, [(thread, frames, wall, cpu), ...]): frames is a tuple of\n"
"(code, lasti) pairs, outermost first; figures is a dict of the counters\n"
"(samples_taken, ticks, sample_time, gil_wait, thread_cpu_time, late, errors,\n"
"truncated, inline) read at the same instant as the counts, so a window's figures\n"
"always agree with its stacks.  With reset, the counts start again from zero.");

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
    /* Read the counters before anything that can run Python code (an
     * allocation can run a finalizer, which can let the sampler thread in):
     * a snapshot lands either in both the figures and the table, or in
     * neither. */
    unsigned long long samples_taken = self->samples_taken, ticks = self->ticks;
    unsigned long long late = self->late, errors = self->errors, truncated = self->truncated;
    int64_t sample_ns = self->sample_ns, gil_wait_ns = self->gil_wait_ns;
    int64_t thread_cpu_ns = self->thread_cpu_ns;
    unsigned long long inline_count = self->inline_count;
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
    PyObject *figures = Py_BuildValue(
        "{sKsKsdsdsdsKsKsKsK}", "samples_taken", samples_taken, "ticks", ticks,
        "sample_time", (double)sample_ns / 1e9, "gil_wait", (double)gil_wait_ns / 1e9,
        "thread_cpu_time", (double)thread_cpu_ns / 1e9, "late", late, "errors", errors,
        "truncated", truncated, "inline", inline_count);
    if (figures == NULL) {
        Py_CLEAR(result);
    }
    else {
        result = Py_BuildValue("(NN)", figures, result);  /* steals both, even on failure */
    }

done:
    t->users--;
    if (t->detached && t->users == 0) {
        table_free(t);
    }
    return result;
}

static PyMethodDef Sampler_methods[] = {
    {"sample", (PyCFunction)(void (*)(void))Sampler_sample, METH_FASTCALL, sample_doc},
    {"arm", (PyCFunction)Sampler_arm, METH_NOARGS, arm_doc},
    {"run", (PyCFunction)Sampler_run, METH_O, run_doc},
    {"stop", (PyCFunction)Sampler_stop, METH_NOARGS, stop_doc},
    {"set_countdown", (PyCFunction)(void (*)(void))Sampler_set_countdown,
     METH_FASTCALL, set_countdown_doc},
    {"take", (PyCFunction)(void (*)(void))Sampler_take,
     METH_VARARGS | METH_KEYWORDS, take_doc},
    {NULL, NULL, 0, NULL},
};

#define ULL_GETTER(name, expr)                                  \
    static PyObject *get_##name(Sampler *self, void *closure)   \
    {                                                           \
        return PyLong_FromUnsignedLongLong(expr);               \
    }
#define SECONDS_GETTER(name, expr)                              \
    static PyObject *get_##name(Sampler *self, void *closure)   \
    {                                                           \
        return PyFloat_FromDouble((double)(expr) / 1e9);        \
    }

ULL_GETTER(samples_taken, self->samples_taken)
ULL_GETTER(ticks, self->ticks)
ULL_GETTER(errors, self->errors)
ULL_GETTER(truncated, self->truncated)
ULL_GETTER(late, self->late)
ULL_GETTER(inline, self->inline_count)
SECONDS_GETTER(sample_time, self->sample_ns)
SECONDS_GETTER(gil_wait, self->gil_wait_ns)
SECONDS_GETTER(thread_cpu_time, self->thread_cpu_ns)

static PyObject *
get_interval(Sampler *self, void *closure)
{
    return PyFloat_FromDouble(self->interval);
}

static PyObject *
get_pace(Sampler *self, void *closure)
{
    return PyFloat_FromDouble(self->pace);
}

static int
set_pace(Sampler *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete pace");
        return -1;
    }
    double pace = PyFloat_AsDouble(value);
    if (pace == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(pace > 0) || pace > 1e6) {
        PyErr_SetString(PyExc_ValueError, "pace must be a positive number of seconds");
        return -1;
    }
    self->pace = pace;  /* read by the sampler thread at its next tick */
    return 0;
}

static PyObject *
get_allow_inline(Sampler *self, void *closure)
{
    return PyBool_FromLong(self->allow_inline);
}

static int
set_allow_inline(Sampler *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete allow_inline");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    self->allow_inline = (char)v;  /* read by the sampler thread at its next tick */
    return 0;
}

static PyObject *
get_clock(Sampler *self, void *closure)
{
    return PyLong_FromLong(self->tick_clock);
}

static PyObject *
get_track_cpu(Sampler *self, void *closure)
{
    return PyBool_FromLong(self->track_cpu);
}

static PyObject *
get_running(Sampler *self, void *closure)
{
    sampler_lock(self);
    int running = self->running;
    pthread_mutex_unlock(&self->mu);
    return PyBool_FromLong(running);
}

static PyObject *
get_looping(Sampler *self, void *closure)
{
    sampler_lock(self);
    int looping = self->looping;
    pthread_mutex_unlock(&self->mu);
    return PyBool_FromLong(looping);
}

static PyObject *
get_prompt_gil(Sampler *self, void *closure)
{
    return PyBool_FromLong(HAVE_DROP_REQUEST);
}

static PyGetSetDef Sampler_getset[] = {
    {"samples_taken", (getter)get_samples_taken, NULL, "Snapshots taken.", NULL},
    {"ticks", (getter)get_ticks, NULL, "Sum of the snapshots' weights (see interval).", NULL},
    {"interval", (getter)get_interval, NULL, "Seconds of clock per unit of weight; 0 counts every snapshot once.", NULL},
    {"pace", (getter)get_pace, (setter)set_pace, "Seconds of clock between ticks.", NULL},
    {"clock", (getter)get_clock, NULL,
     "The clock_gettime() clock id that paces and weighs snapshots.", NULL},
    {"sample_time", (getter)get_sample_time, NULL,
     "Seconds spent inside snapshots, on the monotonic clock.", NULL},
    {"gil_wait", (getter)get_gil_wait, NULL,
     "Seconds from the ticks to holding the GIL, summed (wall clock).", NULL},
    {"thread_cpu_time", (getter)get_thread_cpu_time, NULL,
     "CPU seconds the sampler used: its thread's, plus what the main thread spent taking "
     "snapshots itself (see inline); updated after each snapshot.", NULL},
    {"late", (getter)get_late, NULL,
     "Snapshots taken more than an interval after their tick.", NULL},
    {"allow_inline", (getter)get_allow_inline, (setter)set_allow_inline,
     "Whether a main thread holding the GIL may take the snapshot itself (3.11; "
     "False: the sampler thread always takes the GIL).", NULL},
    {"inline", (getter)get_inline, NULL,
     "Snapshots the main thread took itself, from a pending call (no GIL handoff).", NULL},
    {"errors", (getter)get_errors, NULL, "Exceptions raised and swallowed while sampling.", NULL},
    {"truncated", (getter)get_truncated, NULL,
     "Samples with a stack deeper than MAX_DEPTH, counted under its innermost frames.", NULL},
    {"track_cpu", (getter)get_track_cpu, NULL, "Whether on-CPU samples are counted as well.", NULL},
    {"running", (getter)get_running, NULL, "Whether a run is armed and not stopped.", NULL},
    {"looping", (getter)get_looping, NULL, "Whether a run() is in its loop.", NULL},
    {"prompt_gil", (getter)get_prompt_gil, NULL,
     "Whether the sampler asks for the GIL at once (else it waits the switch interval).", NULL},
    {NULL},
};

PyDoc_STRVAR(Sampler_doc,
"Sampler(track_cpu=False, interval=0.0, clock=time.CLOCK_MONOTONIC)\n--\n\n"
"Counts (thread, stack) keys from a sampler thread of its own; see\n"
"plop._pysampler for the protocol.");

static PyTypeObject Sampler_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plop._sampler.Sampler",
    .tp_basicsize = sizeof(Sampler),
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
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
