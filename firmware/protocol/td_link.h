/*
 * td_link.h - device side of the tinydeploy serial protocol (spec: firmware/PROTOCOL.md).
 *
 * Layered so the risky part can be tested on a desktop:
 *   td_link_feed()     pure byte-at-a-time frame parser (no I/O, bounded buffer) - fuzzed on the host
 *   td_link_handle()   turns one parsed request into one response frame (calls td_runtime.h only)
 *   td_link_serve_forever()  the loop a board runs: read bytes via td_hal.h, answer every frame
 */
#ifndef TD_LINK_H
#define TD_LINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_LINK_PROTOCOL_VERSION 1

/* Largest payload in either direction. Boards with little RAM may build with a smaller value;
 * the device reports it in HELLO and the host sizes its chunks from it. */
#ifndef TD_LINK_MAX_PAYLOAD
#define TD_LINK_MAX_PAYLOAD 1024
#endif

/* A frame that stops arriving for this long is dropped and answered with TD_ERR_TIMEOUT (measured
 * from the last byte with the board's td_hal_micros()). */
#ifndef TD_LINK_BYTE_TIMEOUT_MS
#define TD_LINK_BYTE_TIMEOUT_MS 100
#endif

#define TD_LINK_SYNC0 0xA5u
#define TD_LINK_SYNC1 0x5Au
/* sync(2) len(2) type(1) seq(1) */
#define TD_LINK_HEADER_BYTES 6u
#define TD_LINK_CRC_BYTES 4u
#define TD_LINK_FRAME_MAX (TD_LINK_HEADER_BYTES + TD_LINK_MAX_PAYLOAD + TD_LINK_CRC_BYTES)

/* Request types (host -> device). */
enum td_link_request {
    TD_REQ_HELLO = 0x01,
    TD_REQ_SET_INPUT = 0x02,
    TD_REQ_INVOKE = 0x03,
    TD_REQ_GET_OUTPUT = 0x04,
    TD_REQ_RUN = 0x05,
    TD_REQ_OP_TIMINGS = 0x06, /* per-step timings; TD_ERR_UNSUPPORTED unless built with TD_PROFILE */
    TD_REQ_PING = 0x07
};

/* Response types (device -> host). */
enum td_link_response { TD_RSP_OK = 0x80, TD_RSP_ERROR = 0x81 };

/* Error codes, first byte of a TD_RSP_ERROR payload. 1-3 are transport faults (host resends). */
enum td_link_error {
    TD_ERR_CRC = 1,         /* frame arrived whole but its CRC is wrong */
    TD_ERR_TIMEOUT = 2,     /* frame started but stopped arriving */
    TD_ERR_TOO_LONG = 3,    /* length field above TD_LINK_MAX_PAYLOAD */
    TD_ERR_UNKNOWN_TYPE = 4,
    TD_ERR_BAD_PAYLOAD = 5, /* payload too short/long for its request type */
    TD_ERR_BAD_TENSOR = 6,  /* tensor index out of range */
    TD_ERR_BAD_RANGE = 7,   /* offset/length outside the tensor */
    TD_ERR_RUNTIME = 8,     /* td_model_init/td_model_invoke failed; detail = its return value */
    TD_ERR_UNSUPPORTED = 9  /* request this firmware does not serve (OP_TIMINGS without TD_PROFILE) */
};

/* Result of feeding one byte to the parser. */
typedef enum {
    TD_FEED_MORE = 0,    /* nothing complete yet */
    TD_FEED_FRAME,       /* a frame with a good CRC is in parser->frame */
    TD_FEED_BAD_CRC,     /* a whole frame arrived with a bad CRC (seq is parser->seq) */
    TD_FEED_TOO_LONG     /* header announced a payload above TD_LINK_MAX_PAYLOAD */
} td_feed_result_t;

typedef struct {
    uint8_t state;
    uint8_t type;
    uint8_t seq;
    uint16_t len; /* payload length of the frame being parsed */
    uint16_t got; /* payload + CRC bytes received so far */
    uint8_t body[TD_LINK_MAX_PAYLOAD + TD_LINK_CRC_BYTES];
} td_link_parser_t;

/* CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320, init/xorout 0xFFFFFFFF) - same as zlib.crc32.
 * Pass crc = 0 to start; feed chunks by passing the previous result. */
uint32_t td_crc32(uint32_t crc, const uint8_t *data, size_t n);

void td_link_parser_reset(td_link_parser_t *p);
/* True while the parser is inside a frame (so the caller knows a timeout means a broken frame). */
int td_link_parser_busy(const td_link_parser_t *p);
td_feed_result_t td_link_feed(td_link_parser_t *p, uint8_t byte);
/* Payload of the frame reported by the last TD_FEED_FRAME (length p->len). */
static inline const uint8_t *td_link_payload(const td_link_parser_t *p) { return p->body; }

/* Encode an error response into out (capacity TD_LINK_FRAME_MAX); returns the frame length. */
size_t td_link_encode_error(uint8_t *out, uint8_t seq, uint8_t code, uint8_t req_type, int16_t detail);

/* Call once at start-up: resets the parser, runs td_model_init() and remembers its result for
 * HELLO/INVOKE. */
void td_link_init(void);
/* Build the response frame for the request in p into out (capacity TD_LINK_FRAME_MAX). */
size_t td_link_handle(const td_link_parser_t *p, uint8_t *out);

/* One step of the main loop: read one byte (waiting up to TD_LINK_BYTE_TIMEOUT_MS) and answer the
 * frame it completes, or answer TD_ERR_TIMEOUT for a frame that stopped arriving. */
void td_link_poll(void);

/* The board's main loop: td_link_init(), then td_link_poll() forever. */
void td_link_serve_forever(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_LINK_H */
