/*
 * slab.h - fixed-size objects (herald-ws's connections) in chunks mapped
 * from the kernel, not from malloc's heap.
 *
 * Why: 10,000 connections that come and go leave their structs spread
 * over the heap between allocations that stay (libevent's per-descriptor
 * entries, made as the descriptors are first seen and kept), and glibc
 * can give back only whole free pages: 10 MiB stayed resident after a
 * flood of half-open sockets was closed.  Here a chunk of 64 KiB holds
 * nothing else, and goes back to the kernel (munmap) as soon as its last
 * object is freed, but one, kept so steady churn does not map and unmap.
 *
 * Not thread-safe: one slab per event loop.  Objects are zeroed, aligned
 * to 16 bytes, and at most SLAB_OBJ_MAX bytes.
 */
#ifndef HERALD_SLAB_H
#define HERALD_SLAB_H

#include <stddef.h>

#define SLAB_CHUNK (64 * 1024)
#define SLAB_OBJ_MAX (SLAB_CHUNK / 8)

struct slab_chunk;

struct slab {
	size_t size;               /* object size, rounded up to 16 */
	unsigned per_chunk;        /* objects in a chunk */
	struct slab_chunk *avail;  /* chunks with a free object */
	struct slab_chunk *full;   /* chunks without */
	size_t chunks;             /* mapped now */
	size_t objects;            /* allocated now */
};

/* An empty slab of objects of size bytes (1..SLAB_OBJ_MAX).  Maps nothing
 * yet.  Returns 0 or HERR_INVAL. */
int slab_init(struct slab *s, size_t size);

/* A zeroed object, or NULL (out of memory). */
void *slab_alloc(struct slab *s);

/* Give p (from slab_alloc on s) back.  NULL is fine. */
void slab_free(struct slab *s, void *p);

/* Unmap every chunk; objects still allocated are gone with them. */
void slab_destroy(struct slab *s);

#endif
