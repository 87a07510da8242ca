// LD_PRELOAD interposer: counts malloc/calloc/realloc calls and prints MALLOC_CALLS n at exit (scripts/check_decode_allocs.sh).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
static atomic_long n_malloc;
extern void *__libc_malloc(size_t);
void *malloc(size_t s){ atomic_fetch_add(&n_malloc,1); return __libc_malloc(s);}
extern void *__libc_calloc(size_t,size_t);
void *calloc(size_t a,size_t b){ atomic_fetch_add(&n_malloc,1); return __libc_calloc(a,b);}
extern void *__libc_realloc(void*,size_t);
void *realloc(void*p,size_t s){ atomic_fetch_add(&n_malloc,1); return __libc_realloc(p,s);}
__attribute__((destructor)) static void fin(void){ fprintf(stderr,"MALLOC_CALLS %ld\n",(long)n_malloc); }
