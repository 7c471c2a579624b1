/*
 * td_rows.h - how a kernel finds the rows of its input and output tensors.
 *
 * A tensor is seen as rows (one image row of an NHWC tensor: width * channels bytes; the rows of
 * batch b follow those of batch b - 1). Usually all its rows are in the arena, one after another.
 * Inside a streamed chain of ops (td_stream.h) a tensor that never leaves the chain is only a
 * ring of a few rows: row y lives in slot y % ring_rows, overwritten once no kernel needs it.
 */
#ifndef TD_ROWS_H
#define TD_ROWS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int8_t *data;
    int32_t row_bytes;
    int32_t ring_rows;   /* 0: the whole tensor; else the number of slots of the ring */
} td_rows_t;

/* Where row y of the tensor is. */
static inline int8_t *td_row(const td_rows_t *t, int32_t y)
{
    const int32_t slot = t->ring_rows ? y % t->ring_rows : y;
    return t->data + (size_t)slot * (size_t)t->row_bytes;
}

#endif /* TD_ROWS_H */
