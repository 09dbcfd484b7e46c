/*
 * umap.h - the per-user hash table of the hub (users and their connections)
 * and of the subscriber (users and their Redis channels): an intrusive,
 * chained table keyed by a NUL-terminated string.
 *
 * The entry (struct umap_node) is embedded in the caller's struct and found
 * back with container_of, so adding allocates only when the table doubles,
 * and removing is a walk of one short chain.  The table never owns the
 * entries: umap_free frees the buckets only.  Not thread-safe: the hub calls
 * it under its mutex, the subscriber on its loop thread.
 */
#ifndef HERALD_UMAP_H
#define HERALD_UMAP_H

#include <stddef.h>
#include <stdint.h>

#ifndef container_of
#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))
#endif

struct umap_node {
	struct umap_node *next; /* chain */
	const char *key;        /* borrowed: lives in the containing struct */
	uint32_t hash;
};

struct umap {
	struct umap_node **tab;
	size_t cap;   /* buckets, a power of two */
	size_t count; /* entries */
};

/* An empty table of cap buckets (a power of two; 0 = 64).  Returns 0 or
 * HERR_NOMEM. */
int umap_init(struct umap *m, size_t cap);

/* Free the buckets (not the entries: remove or free those first).  A zeroed
 * or freed map is fine. */
void umap_free(struct umap *m);

/* The entry for key, or NULL. */
struct umap_node *umap_find(const struct umap *m, const char *key);

/*
 * Add n under key (borrowed: it must live as long as n is in the map, and
 * not be in the map already).  The table doubles when it holds as many
 * entries as buckets; a doubling that fails only makes the chains longer.
 */
void umap_add(struct umap *m, struct umap_node *n, const char *key);

/* Take n (in the map) out.  The map does not touch n afterwards. */
void umap_remove(struct umap *m, struct umap_node *n);

/*
 * Iteration in no particular order: umap_first, then umap_next until NULL.
 * Taking the next entry before removing the current one is safe; adding
 * during an iteration is not.
 */
struct umap_node *umap_first(const struct umap *m);
struct umap_node *umap_next(const struct umap *m, const struct umap_node *n);

/* The hash umap uses (FNV-1a, 32 bits). */
uint32_t umap_hash(const char *key);

#endif
