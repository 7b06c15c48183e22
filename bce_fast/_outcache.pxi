# Output cache: large result arrays are allocated through a NumPy memory
# handler (NEP 49) that keeps freed blocks and hands them to later calls of
# about the same size; included by _core.pyx.
#
# Why: glibc gives every block above 32 MiB back to the kernel on free, so a
# function returning a fresh 40 MB array pays ~10k page faults, each one the
# kernel zeroing a page, on every call.  Measured on the project VM (2-core
# EPYC, float32 sigmoid of 1e7 elements, one thread): 15 ms fresh against
# 9 ms with out= -- the faults cost as much as the kernel.  A loop that calls
# the same function on equal-sized batches, the common case, gets the
# out= speed without managing buffers.
#
# Policy: blocks of at least _MIN_BLOCK bytes only (smaller ones are cheap in
# glibc's own heap); at most _SLOTS blocks and `limit` bytes are held; a
# request takes the smallest held block that fits it with at most 25% spare,
# so a small array never pins a large block; the oldest block is released
# first.  Arrays from the cache own their data like any other (flags.owndata,
# resize and pickling behave as usual); only `get_handler_name(a)` tells.
#
# Blocks handed out are reported to tracemalloc under NumPy's domain, as
# NumPy's own allocator does, so memory profilers see them.
#
# Locking: NumPy calls the handler with the GIL held, but the cache takes its
# own spin lock, so it stays correct should that change.

from libc.stdint cimport uint8_t, uintptr_t
from libc.string cimport memcpy, strncpy
from cpython.pycapsule cimport PyCapsule_New

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t nelem, size_t elsize) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil

    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator

    object PyDataMem_SetHandler(object handler)

cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size) nogil
    int PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr) nogil

cdef extern from *:
    """
    #include <stdlib.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif

    /* Ask for transparent huge pages on a block's whole pages, as NumPy does
       for its own large arrays: 2 MiB faults instead of 512 4 KiB ones. */
    static void bf_cache_advise(char *p, size_t n)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
        if (hi > lo)
            madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    #else
        (void)p; (void)n;
    #endif
    }

    static int bf_cache_lock_word;
    static void bf_cache_lock(void)
    {
        while (__atomic_exchange_n(&bf_cache_lock_word, 1, __ATOMIC_ACQUIRE))
            ;
    }
    static void bf_cache_unlock(void) { __atomic_store_n(&bf_cache_lock_word, 0, __ATOMIC_RELEASE); }
    """
    void bf_cache_advise(char *p, size_t n) nogil
    void bf_cache_lock() nogil
    void bf_cache_unlock() nogil
    void *aligned_alloc(size_t alignment, size_t size) nogil
    void free(void *p) nogil

# A block is [header | data]; the header (one cache line, so data stays
# 64-byte aligned) records the data capacity.
cdef enum:
    _HEADER = 64
    _SLOTS = 8
    _NUMPY_TRACE_DOMAIN = 389047        # NPY_TRACE_DOMAIN in NumPy's alloc.c
cdef size_t _MIN_BLOCK = 1 << 20
cdef size_t _DEFAULT_LIMIT = 512 << 20

cdef size_t _limit = _DEFAULT_LIMIT
cdef size_t _held_bytes = 0
cdef int _held_count = 0
cdef char *_held[_SLOTS]          # data pointers, oldest first


cdef inline size_t _capacity(char *data) noexcept nogil:
    return (<size_t *>(data - _HEADER))[0]


cdef char *_new_block(size_t size) noexcept nogil:
    """A fresh block with room for `size` bytes (rounded up to whole pages,
    so that requests differing by a little share blocks)."""
    cdef size_t cap = (size + 4095) & ~(<size_t>4095)
    if cap < size:
        return NULL
    cdef char *raw = <char *>aligned_alloc(_HEADER, cap + _HEADER)
    if raw == NULL:
        return NULL
    (<size_t *>raw)[0] = cap
    bf_cache_advise(raw + _HEADER, cap)
    return raw + _HEADER


cdef inline void _release(char *data) noexcept nogil:
    free(data - _HEADER)


cdef void _drop_oldest() noexcept nogil:
    """Remove the oldest held block from the list (lock held); the caller
    releases it after unlocking."""
    global _held_count, _held_bytes
    cdef int i
    _held_bytes -= _capacity(_held[0])
    _held_count -= 1
    for i in range(_held_count):
        _held[i] = _held[i + 1]


cdef void *_cache_malloc(void *ctx, size_t size) noexcept nogil:
    global _held_count, _held_bytes
    cdef int best = -1, i
    cdef size_t cap, best_cap = 0
    cdef char *data = NULL
    bf_cache_lock()
    for i in range(_held_count):
        cap = _capacity(_held[i])
        if size <= cap and cap - size <= size // 4 + 4095 and (best < 0 or cap < best_cap):
            best, best_cap = i, cap
    if best >= 0:
        data = _held[best]
        _held_bytes -= best_cap
        _held_count -= 1
        for i in range(best, _held_count):
            _held[i] = _held[i + 1]
    bf_cache_unlock()
    if data == NULL:
        data = _new_block(size)
    if data != NULL:
        PyTraceMalloc_Track(_NUMPY_TRACE_DOMAIN, <uintptr_t>data, size)
    return data


cdef void _cache_free(void *ctx, void *ptr, size_t size) noexcept nogil:
    """Keep the block (NumPy's `size` is not needed: the header knows)."""
    global _held_count, _held_bytes
    cdef char *data = <char *>ptr
    cdef char *evicted[_SLOTS]
    cdef int n_evicted = 0, i
    if data == NULL:
        return
    PyTraceMalloc_Untrack(_NUMPY_TRACE_DOMAIN, <uintptr_t>data)
    cdef size_t cap = _capacity(data)
    bf_cache_lock()
    if cap > _limit:
        bf_cache_unlock()
        _release(data)
        return
    while _held_count == _SLOTS or _held_bytes + cap > _limit:
        evicted[n_evicted] = _held[0]
        n_evicted += 1
        _drop_oldest()
    _held[_held_count] = data
    _held_count += 1
    _held_bytes += cap
    bf_cache_unlock()
    for i in range(n_evicted):
        _release(evicted[i])


cdef void *_cache_calloc(void *ctx, size_t nelem, size_t elsize) noexcept nogil:
    if elsize != 0 and nelem > (<size_t>-1) // elsize:
        return NULL
    cdef void *data = _cache_malloc(ctx, nelem * elsize)
    if data != NULL:
        memset(data, 0, nelem * elsize)
    return data


cdef void *_cache_realloc(void *ctx, void *ptr, size_t new_size) noexcept nogil:
    """ndarray.resize: keep the block while the new size fits it snugly."""
    if ptr == NULL:
        return _cache_malloc(ctx, new_size)
    cdef size_t cap = _capacity(<char *>ptr)
    if new_size <= cap and cap - new_size <= new_size // 4 + 4095:
        PyTraceMalloc_Track(_NUMPY_TRACE_DOMAIN, <uintptr_t>ptr, new_size)
        return ptr
    cdef void *data = _cache_malloc(ctx, new_size)
    if data == NULL:
        return NULL
    memcpy(data, ptr, new_size if new_size < cap else cap)
    _cache_free(ctx, ptr, 0)
    return data


cdef PyDataMem_Handler _handler
strncpy(_handler.name, b"bce_fast_output_cache", sizeof(_handler.name))
_handler.version = 1
_handler.allocator.ctx = NULL
_handler.allocator.malloc = _cache_malloc
_handler.allocator.calloc = _cache_calloc
_handler.allocator.realloc = _cache_realloc
_handler.allocator.free = _cache_free
# Every array allocated here keeps a reference to this capsule, and the
# module, hence _handler, lives until the interpreter exits.
cdef object _handler_capsule = PyCapsule_New(&_handler, b"mem_handler", NULL)


def empty(shape, dtype):
    """np.empty(shape, dtype), through the output cache when the array is
    large and the cache is on."""
    cdef cnp.dtype descr = np.dtype(dtype)
    cdef size_t nbytes = descr.itemsize, extent
    for s in shape:
        extent = s
        nbytes = nbytes * extent if extent == 0 or nbytes <= (<size_t>-1) // extent else <size_t>-1
    if nbytes < _MIN_BLOCK or _limit == 0:
        return np.empty(shape, descr)
    previous = PyDataMem_SetHandler(_handler_capsule)
    try:
        return np.empty(shape, descr)
    finally:
        PyDataMem_SetHandler(previous)


cdef cnp.ndarray _empty_dims(int nd, cnp.npy_intp *dims, int t, size_t nbytes):
    """`empty` for the fast paths, without the Python-level calls: a new
    C-ordered array of `nd` dims, type number `t`, `nbytes` bytes."""
    if nbytes < _MIN_BLOCK or _limit == 0:
        return cnp.PyArray_EMPTY(nd, dims, t, 0)
    previous = PyDataMem_SetHandler(_handler_capsule)
    try:
        return cnp.PyArray_EMPTY(nd, dims, t, 0)
    finally:
        PyDataMem_SetHandler(previous)


cdef cnp.ndarray _empty_like(cnp.ndarray a):
    """A new C-ordered array of `a`'s shape and type."""
    return _empty_dims(cnp.PyArray_NDIM(a), cnp.PyArray_DIMS(a), cnp.PyArray_TYPE(a),
                       <size_t>cnp.PyArray_NBYTES(a))


def set_output_cache(size_t limit):
    """Hold at most `limit` bytes of freed output blocks (0: none); returns
    the previous limit.  Blocks beyond the new limit are released now."""
    global _limit
    cdef char *evicted[_SLOTS]
    cdef int n_evicted = 0, i
    cdef size_t previous
    bf_cache_lock()
    previous, _limit = _limit, limit
    while _held_count > 0 and _held_bytes > _limit:
        evicted[n_evicted] = _held[0]
        n_evicted += 1
        _drop_oldest()
    bf_cache_unlock()
    for i in range(n_evicted):
        _release(evicted[i])
    return previous


def output_cache_info():
    """(limit, bytes held, blocks held)."""
    bf_cache_lock()
    info = (_limit, _held_bytes, _held_count)
    bf_cache_unlock()
    return info
