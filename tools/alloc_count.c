/*  alloc_count.c - counts a process's heap allocations by the library
    that asked for them.

    An LD_PRELOAD library: malloc, calloc, realloc and aligned allocations
    are counted, then done by glibc.  Each call is charged to the shared
    object (or program) its return address lies in: "amaas-broker",
    "libczmq.so.4", "libmsgpackc.so.2", ... ; libzmq is C++, so its
    allocations show up as "libstdc++.so.6" (operator new) or "libzmq.so.5".

        AMAAS_ALLOC_COUNT=FILE LD_PRELOAD=.../liballoc_count.so amaas-broker ...

    FILE ("%p" in it becomes the process id) is created and mapped: ALLOC_SLOTS records of a
   NUL-padded name (56 bytes) and a little-endian uint64 count, updated as the process runs, so that
   a reader can take the counts at two moments and divide the difference by the jobs done in between
   (tests/integration/ test_allocations.py, scripts/bench).  Without AMAAS_ALLOC_COUNT the library
   counts nothing.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALLOC_SLOTS 64
#define NAME_SIZE 56
#define CACHE_SIZE 1024 //  per thread: return address -> slot

typedef struct {
    char name[NAME_SIZE];
    uint64_t count;
} slot_t;

extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *ptr, size_t size);
extern void *__libc_memalign (size_t alignment, size_t size);

static slot_t *slots; //  the mapped file, or NULL: count nothing
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread struct {
    uintptr_t address;
    int slot;
} cache[CACHE_SIZE];
static __thread int busy; //  inside our own bookkeeping

__attribute__ ((constructor)) static void alloc_count_init (void)
{
    const char *given = getenv ("AMAAS_ALLOC_COUNT");
    if (!given || !*given)
        return;
    //  "%p" in the name becomes the process id
    char path[4096];
    const char *pid = strstr (given, "%p");
    if (pid)
        snprintf (path, sizeof path, "%.*s%d%s", (int)(pid - given), given, (int)getpid (),
                  pid + 2);
    else
        snprintf (path, sizeof path, "%s", given);
    int fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    size_t size = ALLOC_SLOTS * sizeof (slot_t);
    if (ftruncate (fd, (off_t)size) == 0) {
        void *map = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            slots = map;
            strcpy (slots[0].name, "(unknown)");
        }
    }
    close (fd);
}

//  The slot of the object holding `address`, made if new
static int slot_of (uintptr_t address)
{
    size_t h = (address >> 4) % CACHE_SIZE;
    if (cache[h].address == address)
        return cache[h].slot;
    Dl_info info;
    const char *name = "(unknown)";
    if (dladdr ((void *)address, &info) && info.dli_fname && *info.dli_fname) {
        name = strrchr (info.dli_fname, '/');
        name = name ? name + 1 : info.dli_fname;
    }
    int slot = 0;
    pthread_mutex_lock (&slots_lock);
    for (int i = 0; i < ALLOC_SLOTS; i++) {
        if (slots[i].name[0] == 0) {
            strncpy (slots[i].name, name, NAME_SIZE - 1);
            slot = i;
            break;
        }
        if (strncmp (slots[i].name, name, NAME_SIZE - 1) == 0) {
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock (&slots_lock);
    cache[h].address = address;
    cache[h].slot = slot;
    return slot;
}

static void count (void *return_address)
{
    if (!slots || busy)
        return;
    busy = 1;
    int slot = slot_of ((uintptr_t)return_address);
    __atomic_fetch_add (&slots[slot].count, 1, __ATOMIC_RELAXED);
    busy = 0;
}

void *malloc (size_t size)
{
    count (__builtin_return_address (0));
    return __libc_malloc (size);
}

void *calloc (size_t n, size_t size)
{
    count (__builtin_return_address (0));
    return __libc_calloc (n, size);
}

void *realloc (void *ptr, size_t size)
{
    count (__builtin_return_address (0));
    return __libc_realloc (ptr, size);
}

int posix_memalign (void **ptr, size_t alignment, size_t size)
{
    count (__builtin_return_address (0));
    if (alignment % sizeof (void *) || (alignment & (alignment - 1)))
        return EINVAL;
    void *p = __libc_memalign (alignment, size);
    if (!p)
        return ENOMEM;
    *ptr = p;
    return 0;
}

void *aligned_alloc (size_t alignment, size_t size)
{
    count (__builtin_return_address (0));
    return __libc_memalign (alignment, size);
}
