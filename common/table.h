/*  table.h - hash tables keyed by a uint64 (job tokens, job ids).

    A zhashx whose keys are pointers to uint64_t values stored inside the
    items themselves: nothing is copied or allocated per key.
*/
#ifndef AMAAS_TABLE_H_INCLUDED
#define AMAAS_TABLE_H_INCLUDED

#include <czmq.h>

//  New table; the caller sets an item destructor if it wants one.  NULL on
//  out-of-memory.
zhashx_t *table_u64_new (void);

#endif
