/*
 * slab.c - fixed-size objects in mapped chunks (see slab.h).
 *
 * A chunk is SLAB_CHUNK bytes aligned to SLAB_CHUNK, so an object finds its
 * chunk by masking its address.  The chunk's header leads; the objects
 * follow.  Free objects of a chunk form a list through their first word;
 * objects never handed out yet are taken from the chunk's high-water mark,
 * so a new chunk touches its pages only as it fills.
 */
#include "config.h"

#include "slab.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "err.h"

struct slab_chunk {
	struct slab_chunk *prev, *next; /* on s->avail or s->full */
	void *free;                     /* freed objects, linked */
	unsigned used;                  /* objects handed out */
	unsigned fresh;                 /* objects never handed out start here */
	int on_full;
};

#define HDR ((sizeof(struct slab_chunk) + 15) & ~(size_t)15)

int slab_init(struct slab *s, size_t size)
{
	memset(s, 0, sizeof *s);
	if (size == 0 || size > SLAB_OBJ_MAX)
		return HERR_INVAL;
	s->size = (size + 15) & ~(size_t)15;
	s->per_chunk = (unsigned)((SLAB_CHUNK - HDR) / s->size);
	return 0;
}

static void list_del(struct slab_chunk **head, struct slab_chunk *k)
{
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		*head = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	k->prev = k->next = NULL;
}

static void list_add(struct slab_chunk **head, struct slab_chunk *k)
{
	k->prev = NULL;
	k->next = *head;
	if (*head != NULL)
		(*head)->prev = k;
	*head = k;
}

/* SLAB_CHUNK bytes aligned to SLAB_CHUNK: map twice that, unmap the rest. */
static struct slab_chunk *chunk_map(void)
{
	size_t len = 2 * (size_t)SLAB_CHUNK;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;
	size_t head, tail;

	if (p == MAP_FAILED)
		return NULL;
	head = (SLAB_CHUNK - (uintptr_t)p % SLAB_CHUNK) % SLAB_CHUNK;
	a = p + head;
	tail = len - head - SLAB_CHUNK;
	if (head > 0)
		munmap(p, head);
	if (tail > 0)
		munmap(a + SLAB_CHUNK, tail);
	return (struct slab_chunk *)(void *)a; /* zero-filled by the kernel */
}

void *slab_alloc(struct slab *s)
{
	struct slab_chunk *k = s->avail;
	void *p;

	if (s->size == 0)
		return NULL;
	if (k == NULL) {
		k = chunk_map();
		if (k == NULL)
			return NULL;
		list_add(&s->avail, k);
		s->chunks++;
	}
	if (k->free != NULL) {
		p = k->free;
		memcpy(&k->free, p, sizeof(void *));
		memset(p, 0, s->size);
	} else {
		p = (char *)k + HDR + (size_t)k->fresh * s->size;
		k->fresh++;
	}
	k->used++;
	s->objects++;
	if (k->used == s->per_chunk) {
		list_del(&s->avail, k);
		list_add(&s->full, k);
		k->on_full = 1;
	}
	return p;
}

void slab_free(struct slab *s, void *p)
{
	struct slab_chunk *k;

	if (p == NULL)
		return;
	k = (struct slab_chunk *)(void *)((char *)p - (uintptr_t)p % SLAB_CHUNK);
	memcpy(p, &k->free, sizeof(void *));
	k->free = p;
	k->used--;
	s->objects--;
	if (k->on_full) {
		list_del(&s->full, k);
		list_add(&s->avail, k);
		k->on_full = 0;
	}
	/* Empty: back to the kernel, unless it is the last one with room. */
	if (k->used == 0 && (k->prev != NULL || k->next != NULL)) {
		list_del(&s->avail, k);
		munmap(k, SLAB_CHUNK);
		s->chunks--;
	}
}

void slab_destroy(struct slab *s)
{
	struct slab_chunk **lists[2] = {&s->avail, &s->full};

	for (int i = 0; i < 2; i++)
		while (*lists[i] != NULL) {
			struct slab_chunk *k = *lists[i];

			list_del(lists[i], k);
			munmap(k, SLAB_CHUNK);
		}
	s->chunks = s->objects = 0;
}
