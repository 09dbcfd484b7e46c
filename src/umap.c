#include "config.h"

#include "umap.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

#define UMAP_CAP_INIT 64

uint32_t umap_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

int umap_init(struct umap *m, size_t cap)
{
	if (cap == 0)
		cap = UMAP_CAP_INIT;
	m->count = 0;
	m->cap = 0;
	m->tab = calloc(cap, sizeof(*m->tab));
	if (m->tab == NULL)
		return HERR_NOMEM;
	m->cap = cap;
	return 0;
}

void umap_free(struct umap *m)
{
	free(m->tab);
	m->tab = NULL;
	m->cap = m->count = 0;
}

struct umap_node *umap_find(const struct umap *m, const char *key)
{
	uint32_t h = umap_hash(key);

	for (struct umap_node *n = m->tab[h & (m->cap - 1)]; n != NULL; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

static void grow(struct umap *m)
{
	size_t cap = m->cap * 2;
	struct umap_node **tab = calloc(cap, sizeof(*tab));

	if (tab == NULL)
		return;
	for (size_t i = 0; i < m->cap; i++) {
		struct umap_node *n = m->tab[i], *next;

		for (; n != NULL; n = next) {
			next = n->next;
			n->next = tab[n->hash & (cap - 1)];
			tab[n->hash & (cap - 1)] = n;
		}
	}
	free(m->tab);
	m->tab = tab;
	m->cap = cap;
}

void umap_add(struct umap *m, struct umap_node *n, const char *key)
{
	size_t b;

	if (m->count >= m->cap)
		grow(m);
	n->key = key;
	n->hash = umap_hash(key);
	b = n->hash & (m->cap - 1);
	n->next = m->tab[b];
	m->tab[b] = n;
	m->count++;
}

void umap_remove(struct umap *m, struct umap_node *n)
{
	struct umap_node **pp = &m->tab[n->hash & (m->cap - 1)];

	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	m->count--;
}

static struct umap_node *from_bucket(const struct umap *m, size_t i)
{
	for (; i < m->cap; i++)
		if (m->tab[i] != NULL)
			return m->tab[i];
	return NULL;
}

struct umap_node *umap_first(const struct umap *m)
{
	return m->tab != NULL ? from_bucket(m, 0) : NULL;
}

struct umap_node *umap_next(const struct umap *m, const struct umap_node *n)
{
	if (n->next != NULL)
		return n->next;
	return from_bucket(m, (n->hash & (m->cap - 1)) + 1);
}
