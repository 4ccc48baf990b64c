/* plop._speedups: the per-frame counting passes of plop/callgraph.py in C.
 *
 * A large profile has millions of frames (100,000 stacks of ~20 frames), and
 * every pure-Python way of touching each frame once costs a dict lookup that
 * hashes a four-field Frame tuple, several hundred nanoseconds on a busy
 * machine.  These three functions do the passes that must look at every frame;
 * callgraph.py does everything that is per function or per line in Python and
 * keeps an equivalent pure-Python path (used when this module is missing or
 * PLOP_PURE_PYTHON is set).  Only the public C API is used.
 *
 * index_stacks(samples) numbers the distinct frames of a ``{(thread, stack):
 * count}`` dict and their functions in first-seen order, and flattens the
 * stacks into arrays:
 *
 *   (frames, node_of_line, nodes, lids, lengths, counts, total, empty)
 *
 * ``frames`` is the list of distinct frames (index = line id, "lid");
 * ``node_of_line`` the list of their function ids ("nodes": a function is a
 * frame's first three items, Frame.function) and ``nodes`` the first frame
 * of each function, by node id; ``lids``
 * (C ints), ``lengths`` (C ints) and ``counts`` (long long) are bytes holding
 * every stack with a positive count and at least one frame, in dict order, as
 * the lids of its frames (outermost first), its number of frames and its
 * count; ``total`` is the sum of those counts and ``empty`` the sum of the
 * positive counts of empty stacks.  Frames are recognised by identity first
 * (loaders intern them, so a pointer hash table answers almost every lookup
 * without touching the frame object) and by equality otherwise, through a
 * dict, so equal frames that are distinct objects still get one lid.  Every
 * key of ``samples`` is referenced (in a C array, not a list of item tuples:
 * allocating 100,000 tuples would set off the cyclic GC over the whole
 * profile) until the pass ends: that keeps every stack and frame alive, so a
 * pointer in the table can never be reused by another object while the
 * table exists, even if comparing frames ran Python code that changed the
 * dict.  Keys that are not
 * ``(thread, tuple)`` pairs raise TypeError, counts that are not ints
 * TypeError, counts or sums beyond 64 bits OverflowError: the caller then
 * falls back to the pure path, which copes with anything Python arithmetic
 * does.
 *
 * count_stacks(lids, lengths, counts, node_of_line, nfuncs) maps each lid to
 * its function with ``node_of_line`` (C ints) and returns
 *
 *   (line_total, line_self, func_total, edges)
 *
 * lists indexed by lid or function id, and ``{caller * nfuncs + callee:
 * weight}`` (ints rather than pairs: tens of thousands of tuples would set
 * off the cyclic GC over the whole profile).
 * "Once per sample" (recursion, repeated lines, repeated calls) is kept with a
 * "last stack seen" stamp per line, per function and per edge instead of a set
 * per stack; edges live in an open-addressing table keyed by the pair.
 *
 * call_weights(lids, lengths, counts, node_of_line, keep) is the edge pass of
 * a trimmed graph: in each stack only the functions whose byte in ``keep`` is
 * non-zero are looked at, and consecutive kept functions make a call (keyed
 * as above, with nfuncs = len(keep)).
 *
 * The array arguments are checked (sizes and every index), so wrong input
 * raises ValueError instead of reading out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_mix64.h"

/* ---------------------------------------------------------------- helpers */

/* A growable array of fixed-size items, in PyMem memory. */
typedef struct {
    char *data;
    Py_ssize_t len;   /* items */
    Py_ssize_t cap;   /* items */
    Py_ssize_t size;  /* bytes per item */
} Vec;

static int
vec_grow(Vec *v, Py_ssize_t need)
{
    Py_ssize_t cap = v->cap ? v->cap : 1024;
    while (cap < need) {
        if (cap > PY_SSIZE_T_MAX / 2 / v->size) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(v->data, (size_t)cap * (size_t)v->size);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    v->data = data;
    v->cap = cap;
    return 0;
}

static inline int
vec_reserve(Vec *v, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - v->len) {
        PyErr_NoMemory();
        return -1;
    }
    return v->len + extra <= v->cap ? 0 : vec_grow(v, v->len + extra);
}

static PyObject *
vec_to_bytes(Vec *v)
{
    return PyBytes_FromStringAndSize(v->data ? v->data : "", v->len * v->size);
}

/* ------------------------------------------------- frame identity table */

/* Open addressing, linear probing: frame pointer -> lid.  NULL = free slot. */
typedef struct {
    PyObject **keys;
    int *values;
    size_t mask;
    size_t used;
} PtrTable;

static int
ptr_table_init(PtrTable *t, size_t slots)
{
    t->keys = PyMem_Calloc(slots, sizeof(PyObject *));
    t->values = PyMem_Malloc(slots * sizeof(int));
    t->mask = slots - 1;
    t->used = 0;
    if (t->keys == NULL || t->values == NULL) {
        PyMem_Free(t->keys);
        PyMem_Free(t->values);
        t->keys = NULL;
        t->values = NULL;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
ptr_table_free(PtrTable *t)
{
    PyMem_Free(t->keys);
    PyMem_Free(t->values);
    t->keys = NULL;
    t->values = NULL;
}

static inline size_t
ptr_slot(PyObject *key, size_t mask)
{
    return (size_t)plop_mix64((uint64_t)(uintptr_t)key) & mask;
}

/* The lid of ``key``, or -1. */
static inline int
ptr_table_get(const PtrTable *t, PyObject *key)
{
    size_t i = ptr_slot(key, t->mask);
    for (;;) {
        PyObject *k = t->keys[i];
        if (k == key) {
            return t->values[i];
        }
        if (k == NULL) {
            return -1;
        }
        i = (i + 1) & t->mask;
    }
}

static int
ptr_table_put(PtrTable *t, PyObject *key, int value)
{
    if ((t->used + 1) * 2 > t->mask + 1) {
        PtrTable bigger;
        if (ptr_table_init(&bigger, (t->mask + 1) * 2) < 0) {
            return -1;
        }
        for (size_t j = 0; j <= t->mask; j++) {
            if (t->keys[j] != NULL) {
                size_t i = ptr_slot(t->keys[j], bigger.mask);
                while (bigger.keys[i] != NULL) {
                    i = (i + 1) & bigger.mask;
                }
                bigger.keys[i] = t->keys[j];
                bigger.values[i] = t->values[j];
            }
        }
        bigger.used = t->used;
        ptr_table_free(t);
        *t = bigger;
    }
    size_t i = ptr_slot(key, t->mask);
    while (t->keys[i] != NULL) {
        i = (i + 1) & t->mask;
    }
    t->keys[i] = key;
    t->values[i] = value;
    t->used++;
    return 0;
}

/* ------------------------------------------------------- function table */

/* Open addressing: a function (items 0-2 of a frame tuple) -> node id, compared
 * by value like the tuple ``frame[:3]`` would be, without creating that tuple
 * (thousands of new tuples at once would set off the cyclic GC over the whole
 * loaded profile: see the top of this file).  ``nodes`` holds, per node id,
 * the first frame of that function (a list we own).  Id -1 = free slot. */
typedef struct {
    Py_hash_t *hashes;
    int *ids;
    size_t mask;
    size_t used;
} FuncTable;

static int
func_table_init(FuncTable *t, size_t slots)
{
    t->hashes = PyMem_Malloc(slots * sizeof(Py_hash_t));
    t->ids = PyMem_Malloc(slots * sizeof(int));
    t->mask = slots - 1;
    t->used = 0;
    if (t->hashes == NULL || t->ids == NULL) {
        PyMem_Free(t->hashes);
        PyMem_Free(t->ids);
        t->hashes = NULL;
        t->ids = NULL;
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < slots; i++) {
        t->ids[i] = -1;
    }
    return 0;
}

static void
func_table_free(FuncTable *t)
{
    PyMem_Free(t->hashes);
    PyMem_Free(t->ids);
    t->hashes = NULL;
    t->ids = NULL;
}

static int
func_table_grow(FuncTable *t)
{
    FuncTable bigger;
    if (func_table_init(&bigger, (t->mask + 1) * 2) < 0) {
        return -1;
    }
    for (size_t j = 0; j <= t->mask; j++) {
        if (t->ids[j] >= 0) {
            size_t i = (size_t)plop_mix64((uint64_t)t->hashes[j]) & bigger.mask;
            while (bigger.ids[i] >= 0) {
                i = (i + 1) & bigger.mask;
            }
            bigger.hashes[i] = t->hashes[j];
            bigger.ids[i] = t->ids[j];
        }
    }
    bigger.used = t->used;
    func_table_free(t);
    *t = bigger;
    return 0;
}

/* The node id of ``frame``'s function, appending ``frame`` to ``nodes`` when
 * the function is new; -1 with an exception set on error. */
static int
func_table_node(FuncTable *t, PyObject *nodes, PyObject *frame)
{
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) < 4) {
        PyErr_SetString(PyExc_TypeError, "frames must be (filename, funcname, firstlineno, lineno) tuples");
        return -1;
    }
    uint64_t h = 0;
    for (int k = 0; k < 3; k++) {
        Py_hash_t item = PyObject_Hash(PyTuple_GET_ITEM(frame, k));
        if (item == -1) {
            return -1;
        }
        h = plop_mix64(h ^ (uint64_t)item);
    }
    Py_hash_t hash = (Py_hash_t)h;
    size_t i = (size_t)plop_mix64(h) & t->mask;
    for (;;) {
        int id = t->ids[i];
        if (id < 0) {
            break;
        }
        if (t->hashes[i] == hash) {
            PyObject *known = PyList_GET_ITEM(nodes, id);
            int same = 1;
            for (int k = 0; k < 3 && same; k++) {
                PyObject *a = PyTuple_GET_ITEM(frame, k), *b = PyTuple_GET_ITEM(known, k);
                if (a != b) {
                    same = PyObject_RichCompareBool(a, b, Py_EQ);
                    if (same < 0) {
                        return -1;
                    }
                }
            }
            if (same) {
                return id;
            }
        }
        i = (i + 1) & t->mask;
    }
    Py_ssize_t count = PyList_GET_SIZE(nodes);
    if (count >= INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many functions");
        return -1;
    }
    if (PyList_Append(nodes, frame) < 0) {
        return -1;
    }
    if ((t->used + 1) * 2 > t->mask + 1) {
        if (func_table_grow(t) < 0) {
            return -1;
        }
        i = (size_t)plop_mix64(h) & t->mask;
        while (t->ids[i] >= 0) {
            i = (i + 1) & t->mask;
        }
    }
    t->hashes[i] = hash;
    t->ids[i] = (int)count;
    t->used++;
    return (int)count;
}

/* ------------------------------------------------------------ edge table */

#define EDGE_FREE UINT64_MAX

typedef struct {
    uint64_t key;        /* caller << 32 | callee, EDGE_FREE when unused */
    long long weight;
    Py_ssize_t stamp;    /* the last stack that counted this call */
} EdgeSlot;

typedef struct {
    EdgeSlot *slots;
    size_t mask;
    size_t used;
} EdgeTable;

static int
edge_table_init(EdgeTable *t, size_t slots)
{
    t->slots = PyMem_Malloc(slots * sizeof(EdgeSlot));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < slots; i++) {
        t->slots[i].key = EDGE_FREE;
    }
    t->mask = slots - 1;
    t->used = 0;
    return 0;
}

static int
edge_table_grow(EdgeTable *t)
{
    EdgeTable bigger;
    if (edge_table_init(&bigger, (t->mask + 1) * 2) < 0) {
        return -1;
    }
    for (size_t j = 0; j <= t->mask; j++) {
        if (t->slots[j].key != EDGE_FREE) {
            size_t i = (size_t)plop_mix64(t->slots[j].key) & bigger.mask;
            while (bigger.slots[i].key != EDGE_FREE) {
                i = (i + 1) & bigger.mask;
            }
            bigger.slots[i] = t->slots[j];
        }
    }
    bigger.used = t->used;
    PyMem_Free(t->slots);
    *t = bigger;
    return 0;
}

/* The slot of a call, created (weight 0, stamp -1) when new; NULL on error. */
static inline EdgeSlot *
edge_table_slot(EdgeTable *t, int caller, int callee)
{
    uint64_t key = ((uint64_t)(uint32_t)caller << 32) | (uint32_t)callee;
    size_t i = (size_t)plop_mix64(key) & t->mask;
    for (;;) {
        EdgeSlot *slot = &t->slots[i];
        if (slot->key == key) {
            return slot;
        }
        if (slot->key == EDGE_FREE) {
            break;
        }
        i = (i + 1) & t->mask;
    }
    if ((t->used + 1) * 2 > t->mask + 1) {
        if (edge_table_grow(t) < 0) {
            return NULL;
        }
        i = (size_t)plop_mix64(key) & t->mask;
        while (t->slots[i].key != EDGE_FREE) {
            i = (i + 1) & t->mask;
        }
    }
    EdgeSlot *slot = &t->slots[i];
    slot->key = key;
    slot->weight = 0;
    slot->stamp = -1;
    t->used++;
    return slot;
}

/* Count the call caller -> callee for the sample(s) of stack number `stack`,
   once per stack however often the call repeats in it (recursion).
   Returns -1 on error. */
static inline int
edge_table_count(EdgeTable *t, int caller, int callee, Py_ssize_t stack, long long n)
{
    EdgeSlot *slot = edge_table_slot(t, caller, callee);
    if (slot == NULL) {
        return -1;
    }
    if (slot->stamp != stack) {
        slot->stamp = stack;
        slot->weight += n;
    }
    return 0;
}

/* {caller * nfuncs + callee: weight} */
static PyObject *
edge_table_dict(const EdgeTable *t, long long nfuncs)
{
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    for (size_t j = 0; j <= t->mask; j++) {
        const EdgeSlot *slot = &t->slots[j];
        if (slot->key == EDGE_FREE) {
            continue;
        }
        long long caller = (long long)(slot->key >> 32), callee = (long long)(slot->key & 0xffffffffu);
        PyObject *key = PyLong_FromLongLong(caller * nfuncs + callee);
        PyObject *weight = key ? PyLong_FromLongLong(slot->weight) : NULL;
        if (weight == NULL || PyDict_SetItem(result, key, weight) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(weight);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(weight);
    }
    return result;
}

/* ------------------------------------------------------------ index_stacks */

static PyObject *
index_stacks(PyObject *module, PyObject *samples)
{
    PyObject *frames = NULL, *by_value = NULL, *nodes = NULL, *node_of_line = NULL, *result = NULL;
    PtrTable table = {NULL, NULL, 0, 0};
    FuncTable functions = {NULL, NULL, 0, 0};
    Vec held = {NULL, 0, 0, sizeof(PyObject *)};
    Vec lids = {NULL, 0, 0, sizeof(int)};
    Vec lengths = {NULL, 0, 0, sizeof(int)};
    Vec counts = {NULL, 0, 0, sizeof(long long)};
    long long total = 0, empty = 0;

    if (!PyDict_Check(samples)) {
        PyErr_SetString(PyExc_TypeError, "index_stacks() expects a dict");
        return NULL;
    }
    frames = PyList_New(0);
    by_value = PyDict_New();
    nodes = PyList_New(0);
    node_of_line = PyList_New(0);
    if (frames == NULL || by_value == NULL || nodes == NULL || node_of_line == NULL
        || ptr_table_init(&table, 1 << 12) < 0 || func_table_init(&functions, 1 << 10) < 0
        || vec_reserve(&held, PyDict_GET_SIZE(samples) + 1) < 0) {
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;  /* borrowed from the dict */
    while (PyDict_Next(samples, &pos, &key, &value)) {
        /* Hold the key (and so its stack and frames) until the end: see the top of this file. */
        if (vec_reserve(&held, 1) < 0) {
            goto done;
        }
        Py_INCREF(key);
        ((PyObject **)held.data)[held.len++] = key;
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(key, 1))) {
            PyErr_SetString(PyExc_TypeError, "samples keys must be (thread, tuple of frames) pairs");
            goto done;
        }
        if (!PyLong_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "sample counts must be ints");
            goto done;
        }
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "sample count out of range");
            goto done;
        }
        PyObject *stack = PyTuple_GET_ITEM(key, 1);
        Py_ssize_t depth = PyTuple_GET_SIZE(stack);
        if (depth == 0) {
            if (n > 0) {
                if (empty > LLONG_MAX - n) {
                    PyErr_SetString(PyExc_OverflowError, "sample counts add up beyond 64 bits");
                    goto done;
                }
                empty += n;
            }
            continue;
        }
        if (n <= 0) {
            continue;
        }
        if (total > LLONG_MAX - n) {
            PyErr_SetString(PyExc_OverflowError, "sample counts add up beyond 64 bits");
            goto done;
        }
        if (depth > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "stack too deep");
            goto done;
        }
        total += n;
        if (vec_reserve(&lids, depth) < 0 || vec_reserve(&lengths, 1) < 0 || vec_reserve(&counts, 1) < 0) {
            goto done;
        }
        int *out = (int *)lids.data + lids.len;
        for (Py_ssize_t j = 0; j < depth; j++) {
            PyObject *frame = PyTuple_GET_ITEM(stack, j);
            int lid = ptr_table_get(&table, frame);
            if (lid < 0) {
                /* A frame object not seen yet: an equal one may have been. */
                PyObject *known = PyDict_GetItemWithError(by_value, frame);  /* borrowed */
                if (known != NULL) {
                    lid = (int)PyLong_AsLong(known);
                }
                else if (PyErr_Occurred()) {
                    goto done;
                }
                else {
                    Py_ssize_t count = PyList_GET_SIZE(frames);
                    if (count >= INT_MAX) {
                        PyErr_SetString(PyExc_OverflowError, "too many distinct frames");
                        goto done;
                    }
                    lid = (int)count;
                    int node = func_table_node(&functions, nodes, frame);
                    if (node < 0) {
                        goto done;
                    }
                    PyObject *number = PyLong_FromLong(lid);
                    PyObject *node_number = number ? PyLong_FromLong(node) : NULL;
                    int failed = node_number == NULL || PyDict_SetItem(by_value, frame, number) < 0
                        || PyList_Append(frames, frame) < 0 || PyList_Append(node_of_line, node_number) < 0;
                    Py_XDECREF(number);
                    Py_XDECREF(node_number);
                    if (failed) {
                        goto done;
                    }
                }
                /* Remember this object, unless the profile does not share frame
                 * objects at all: then every frame is another object, and a table
                 * of millions of pointers would cost more than it saves. */
                if (table.used < (size_t)PyList_GET_SIZE(frames) * 4 + 65536
                    && ptr_table_put(&table, frame, lid) < 0) {
                    goto done;
                }
            }
            out[j] = lid;
        }
        lids.len += depth;
        ((int *)lengths.data)[lengths.len++] = (int)depth;
        ((long long *)counts.data)[counts.len++] = n;
    }
    PyObject *lid_bytes = vec_to_bytes(&lids);
    PyObject *length_bytes = vec_to_bytes(&lengths);
    PyObject *count_bytes = vec_to_bytes(&counts);
    if (lid_bytes != NULL && length_bytes != NULL && count_bytes != NULL) {
        result = Py_BuildValue("(OOOOOOLL)", frames, node_of_line, nodes, lid_bytes, length_bytes, count_bytes,
                               total, empty);
    }
    Py_XDECREF(lid_bytes);
    Py_XDECREF(length_bytes);
    Py_XDECREF(count_bytes);
done:
    for (Py_ssize_t i = 0; i < held.len; i++) {
        Py_DECREF(((PyObject **)held.data)[i]);
    }
    PyMem_Free(held.data);
    ptr_table_free(&table);
    func_table_free(&functions);
    PyMem_Free(lids.data);
    PyMem_Free(lengths.data);
    PyMem_Free(counts.data);
    Py_XDECREF(frames);
    Py_XDECREF(by_value);
    Py_XDECREF(nodes);
    Py_XDECREF(node_of_line);
    return result;
}

/* ------------------------------------------------ flattened stack arguments */

typedef struct {
    Py_buffer lids, lengths, counts, node_of_line;
    const int *lid;
    const int *length;
    const long long *count;
    const int *node;
    Py_ssize_t nlids, nstacks, nlines;
} Stacks;

static void
stacks_release(Stacks *st)
{
    if (st->lids.obj) PyBuffer_Release(&st->lids);
    if (st->lengths.obj) PyBuffer_Release(&st->lengths);
    if (st->counts.obj) PyBuffer_Release(&st->counts);
    if (st->node_of_line.obj) PyBuffer_Release(&st->node_of_line);
}

/* Checks the arrays of ``st`` against each other and ``nfuncs``; -1 with ValueError. */
static int
stacks_check(Stacks *st, Py_ssize_t nfuncs)
{
    if (st->lids.len % (Py_ssize_t)sizeof(int) || st->lengths.len % (Py_ssize_t)sizeof(int)
        || st->counts.len % (Py_ssize_t)sizeof(long long) || st->node_of_line.len % (Py_ssize_t)sizeof(int)) {
        PyErr_SetString(PyExc_ValueError, "array sizes are not multiples of their item size");
        return -1;
    }
    st->lid = st->lids.buf;
    st->length = st->lengths.buf;
    st->count = st->counts.buf;
    st->node = st->node_of_line.buf;
    st->nlids = st->lids.len / (Py_ssize_t)sizeof(int);
    st->nstacks = st->lengths.len / (Py_ssize_t)sizeof(int);
    st->nlines = st->node_of_line.len / (Py_ssize_t)sizeof(int);
    if (st->counts.len / (Py_ssize_t)sizeof(long long) != st->nstacks) {
        PyErr_SetString(PyExc_ValueError, "lengths and counts differ in size");
        return -1;
    }
    if (nfuncs < 0 || nfuncs > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "bad number of functions");
        return -1;
    }
    Py_ssize_t sum = 0;
    for (Py_ssize_t s = 0; s < st->nstacks; s++) {
        if (st->length[s] <= 0 || st->length[s] > st->nlids - sum) {
            PyErr_SetString(PyExc_ValueError, "stack lengths do not match the frames");
            return -1;
        }
        sum += st->length[s];
    }
    if (sum != st->nlids) {
        PyErr_SetString(PyExc_ValueError, "stack lengths do not match the frames");
        return -1;
    }
    for (Py_ssize_t i = 0; i < st->nlids; i++) {
        if (st->lid[i] < 0 || st->lid[i] >= st->nlines) {
            PyErr_SetString(PyExc_ValueError, "line id out of range");
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < st->nlines; i++) {
        if (st->node[i] < 0 || st->node[i] >= nfuncs) {
            PyErr_SetString(PyExc_ValueError, "function id out of range");
            return -1;
        }
    }
    return 0;
}

static PyObject *
list_of_counts(const long long *values, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLongLong(values[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* ------------------------------------------------------------ count_stacks */

static PyObject *
count_stacks(PyObject *module, PyObject *args)
{
    Stacks st;
    Py_ssize_t nfuncs;
    PyObject *result = NULL;
    long long *line_total = NULL, *line_self = NULL, *func_total = NULL;
    Py_ssize_t *line_stamp = NULL, *func_stamp = NULL;
    EdgeTable edges = {NULL, 0, 0};

    memset(&st, 0, sizeof(st));
    if (!PyArg_ParseTuple(args, "y*y*y*y*n:count_stacks", &st.lids, &st.lengths, &st.counts,
                          &st.node_of_line, &nfuncs)) {
        return NULL;
    }
    if (stacks_check(&st, nfuncs) < 0) {
        goto done;
    }
    size_t nlines = (size_t)st.nlines, nf = (size_t)nfuncs;
    line_total = PyMem_Calloc(nlines + 1, sizeof(long long));
    line_self = PyMem_Calloc(nlines + 1, sizeof(long long));
    func_total = PyMem_Calloc(nf + 1, sizeof(long long));
    line_stamp = PyMem_Malloc((nlines + 1) * sizeof(Py_ssize_t));
    func_stamp = PyMem_Malloc((nf + 1) * sizeof(Py_ssize_t));
    if (!line_total || !line_self || !func_total || !line_stamp || !func_stamp) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < nlines; i++) line_stamp[i] = -1;
    for (size_t i = 0; i < nf; i++) func_stamp[i] = -1;
    if (edge_table_init(&edges, 1 << 12) < 0) {
        goto done;
    }
    const int *lid = st.lid;
    for (Py_ssize_t s = 0; s < st.nstacks; s++) {
        long long n = st.count[s];
        int depth = st.length[s];
        int caller = -1;
        for (int j = 0; j < depth; j++) {
            int line = lid[j];
            int func = st.node[line];
            if (line_stamp[line] != s) {
                line_stamp[line] = s;
                line_total[line] += n;
            }
            if (func_stamp[func] != s) {
                func_stamp[func] = s;
                func_total[func] += n;
            }
            if (caller >= 0 && edge_table_count(&edges, caller, func, s, n) < 0) {
                goto done;
            }
            caller = func;
        }
        line_self[lid[depth - 1]] += n;
        lid += depth;
    }
    PyObject *lt = list_of_counts(line_total, st.nlines);
    PyObject *ls = lt ? list_of_counts(line_self, st.nlines) : NULL;
    PyObject *ft = ls ? list_of_counts(func_total, nfuncs) : NULL;
    PyObject *ed = ft ? edge_table_dict(&edges, nfuncs) : NULL;
    if (ed != NULL) {
        result = PyTuple_Pack(4, lt, ls, ft, ed);
    }
    Py_XDECREF(lt);
    Py_XDECREF(ls);
    Py_XDECREF(ft);
    Py_XDECREF(ed);
done:
    PyMem_Free(line_total);
    PyMem_Free(line_self);
    PyMem_Free(func_total);
    PyMem_Free(line_stamp);
    PyMem_Free(func_stamp);
    PyMem_Free(edges.slots);
    stacks_release(&st);
    return result;
}

/* ------------------------------------------------------------ call_weights */

static PyObject *
call_weights(PyObject *module, PyObject *args)
{
    Stacks st;
    Py_buffer keep;
    PyObject *result = NULL;
    EdgeTable edges = {NULL, 0, 0};

    memset(&st, 0, sizeof(st));
    memset(&keep, 0, sizeof(keep));
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*:call_weights", &st.lids, &st.lengths, &st.counts,
                          &st.node_of_line, &keep)) {
        return NULL;
    }
    if (stacks_check(&st, keep.len) < 0 || edge_table_init(&edges, 1 << 10) < 0) {
        goto done;
    }
    const unsigned char *kept = keep.buf;
    const int *lid = st.lid;
    for (Py_ssize_t s = 0; s < st.nstacks; s++) {
        long long n = st.count[s];
        int depth = st.length[s];
        int caller = -1;
        for (int j = 0; j < depth; j++) {
            int func = st.node[lid[j]];
            if (!kept[func]) {
                continue;
            }
            if (caller >= 0 && edge_table_count(&edges, caller, func, s, n) < 0) {
                goto done;
            }
            caller = func;
        }
        lid += depth;
    }
    result = edge_table_dict(&edges, keep.len);
done:
    PyMem_Free(edges.slots);
    if (keep.obj) PyBuffer_Release(&keep);
    stacks_release(&st);
    return result;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"index_stacks", index_stacks, METH_O,
     "index_stacks(samples) -> (frames, node_of_line, nodes, lids, lengths, counts, total, empty)\n\n"
     "Number the distinct frames of a {(thread, stack): count} dict and flatten its stacks."},
    {"count_stacks", count_stacks, METH_VARARGS,
     "count_stacks(lids, lengths, counts, node_of_line, nfuncs) -> (line_total, line_self, func_total, calls)\n\n"
     "Per-line and per-function counts and call weights, once per sample."},
    {"call_weights", call_weights, METH_VARARGS,
     "call_weights(lids, lengths, counts, node_of_line, keep) -> {caller * len(keep) + callee: weight}\n\n"
     "Calls between consecutive kept functions of each stack, once per sample."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "plop._speedups",
    "Compiled counting passes for plop.callgraph (see plop/_speedups.c).",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}
