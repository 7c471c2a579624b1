#include "td_stream.h"

void td_stream_run(const td_stage_t *stages, const uint8_t *schedule, int32_t steps)
{
    int32_t next_row[TD_STREAM_MAX_STAGES] = {0};
    int32_t i;
    for (i = 0; i < steps; ++i) {
        const td_stage_t *s = &stages[schedule[i]];
        s->row(s->params, next_row[schedule[i]]++);
    }
}
