/*  list.h - the one intrusive doubly-linked list, for queues and pools.

    An item embeds a list_node_t and is linked into at most one list through
    it at a time; the list allocates nothing, so linking, unlinking and
    moving an item between lists cannot fail and costs a few stores.  The
    list is circular around a sentinel node inside list_t, so no operation
    has a special case for the first or the last item.  LIST_ITEM turns a
    node back into the item that embeds it.

        typedef struct { uint64_t id; list_node_t node; } job_t;
        list_t queue;
        list_init (&queue);
        list_append (&queue, &job->node);
        job_t *first = LIST_ITEM (list_first (&queue), job_t, node);

    A node that is in no list has null links (list_node_init, or zeroed
    memory); the functions assert that an item is linked where it must be
    and unlinked where it must not, and that sizes never go below zero.
*/
#ifndef AMAAS_LIST_H_INCLUDED
#define AMAAS_LIST_H_INCLUDED

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct list_node_t {
    struct list_node_t *prev, *next; //  neighbours, or NULL when in no list
} list_node_t;

typedef struct {
    list_node_t head; //  sentinel: head.next is the first item, head.prev the last
    size_t size;      //  items linked
} list_t;

//  The item of type `type` whose member `member` is the node `node`, or
//  NULL if node is NULL.  node is evaluated once.
#define LIST_ITEM(node, type, member)                                                              \
    __extension__({                                                                                \
        char *list_item_node_ = (char *)(node);                                                    \
        list_item_node_ ? (type *)(void *)(list_item_node_ - offsetof (type, member))              \
                        : (type *)NULL;                                                            \
    })

//  Empty the list (it forgets any items it had).  Cannot fail.
static inline void list_init (list_t *self)
{
    self->head.prev = self->head.next = &self->head;
    self->size = 0;
}

//  Mark a node as in no list.  Cannot fail.
static inline void list_node_init (list_node_t *node)
{
    node->prev = node->next = NULL;
}

//  Whether the node is in a list.  Cannot fail.
static inline bool list_node_linked (const list_node_t *node)
{
    return node->next != NULL;
}

static inline size_t list_size (const list_t *self)
{
    return self->size;
}

static inline bool list_empty (const list_t *self)
{
    return self->size == 0;
}

//  Links node, which is in no list, after `at` (the sentinel or an item of
//  this list).  Cannot fail.
static inline void list_insert_after (list_t *self, list_node_t *at, list_node_t *node)
{
    assert (!list_node_linked (node));
    assert (list_node_linked (at));
    node->prev = at;
    node->next = at->next;
    at->next->prev = node;
    at->next = node;
    self->size++;
}

//  Links node, which is in no list, last.  Cannot fail.
static inline void list_append (list_t *self, list_node_t *node)
{
    list_insert_after (self, self->head.prev, node);
}

//  Links node, which is in no list, first.  Cannot fail.
static inline void list_prepend (list_t *self, list_node_t *node)
{
    list_insert_after (self, &self->head, node);
}

//  Links node, which is in no list, before `at` (an item of this list, or
//  the sentinel &self->head to append).  Cannot fail.
static inline void list_insert_before (list_t *self, list_node_t *at, list_node_t *node)
{
    list_insert_after (self, at->prev, node);
}

//  Unlinks node, which is in this list.  Cannot fail.
static inline void list_remove (list_t *self, list_node_t *node)
{
    assert (list_node_linked (node));
    assert (self->size > 0);
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
    self->size--;
}

//  The first node, or NULL if the list is empty.  Cannot fail.
static inline list_node_t *list_first (const list_t *self)
{
    return self->size ? self->head.next : NULL;
}

//  The last node, or NULL if the list is empty.  Cannot fail.
static inline list_node_t *list_last (const list_t *self)
{
    return self->size ? self->head.prev : NULL;
}

//  The node after node (an item of this list), or NULL at the end.
static inline list_node_t *list_next (const list_t *self, const list_node_t *node)
{
    return node->next == &self->head ? NULL : node->next;
}

//  The node before node (an item of this list), or NULL at the start.
static inline list_node_t *list_prev (const list_t *self, const list_node_t *node)
{
    return node->prev == &self->head ? NULL : node->prev;
}

//  Unlinks and returns the first node, or NULL if the list is empty.
static inline list_node_t *list_pop_first (list_t *self)
{
    list_node_t *node = list_first (self);
    if (node)
        list_remove (self, node);
    return node;
}

//  Moves every node of `from` to the end of self, in order; from is left
//  empty.  Cannot fail.
static inline void list_splice (list_t *self, list_t *from)
{
    if (!from->size)
        return;
    list_node_t *first = from->head.next, *last = from->head.prev;
    first->prev = self->head.prev;
    last->next = &self->head;
    self->head.prev->next = first;
    self->head.prev = last;
    self->size += from->size;
    list_init (from);
}

//  Iterate over the items of a list, with `var` (a pointer to `type`) set
//  to each in turn; the loop body may unlink or free the current item.
#define LIST_FOREACH(var, list, type, member)                                                      \
    for (list_node_t *var##_node_ = list_first (list),                                             \
                     *var##_next_ = var##_node_ ? list_next (list, var##_node_) : NULL;            \
         var##_node_ && ((var) = LIST_ITEM (var##_node_, type, member), 1);                        \
         var##_node_ = var##_next_,                                                                \
                     var##_next_ = var##_node_ ? list_next (list, var##_node_) : NULL)

#endif
