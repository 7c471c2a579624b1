/*
 * td_stream.h - a chain of ops run row by row (see tinydeploy/native/stream.py).
 *
 * When ops follow each other and the tensors between them are needed by nobody else, the whole
 * chain can run one output row at a time: each op computes a row as soon as the rows its window
 * needs exist, and the tensors inside the chain shrink to rings of a few rows (td_rows.h). The
 * order is fixed at build time: schedule[i] names the stage that computes its next row at step i.
 */
#ifndef TD_STREAM_H
#define TD_STREAM_H

#include <stdint.h>

#define TD_STREAM_MAX_STAGES 16

/* Compute output row `row` of the op whose parameters are `params`. */
typedef void (*td_row_fn)(const void *params, int32_t row);

typedef struct {
    td_row_fn row;
    const void *params;
} td_stage_t;

void td_stream_run(const td_stage_t *stages, const uint8_t *schedule, int32_t steps);

#endif /* TD_STREAM_H */
