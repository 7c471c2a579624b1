/* model_settings.h of eembc_stub.c (what td_eembc.c takes from a generated project). */
#ifndef TD_MODEL_SETTINGS_H
#define TD_MODEL_SETTINGS_H
#define TD_NUM_INPUTS 1
#define TD_NUM_OUTPUTS 1
#define TD_INPUT0_ELEMENTS 8
#define TD_INPUT0_BYTES 8
#endif
