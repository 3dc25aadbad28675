/* The evaluation's forward engine (evalfwd.c): CLBlast on an OpenCL
 * backend, a reference GEMM on the host, and the seeded inputs. */
#ifndef MQ_EVALFWD_H
#define MQ_EVALFWD_H

#include "backend.h"
#include "monoquant.h"

typedef struct mq_fwd mq_fwd;

/* `be` is borrowed and must outlive the engine. `note` (may be NULL) hears
 * one-line notes about slow steps. */
mq_status mq_fwd_new(mq_backend *be, void (*note)(const char *note, void *user), void *user,
                     mq_fwd **out);
void mq_fwd_free(mq_fwd *f);
/* X [tokens, in] for the calls that follow; `x` must stay valid until the
 * next mq_fwd_set_input or mq_fwd_free. */
mq_status mq_fwd_set_input(mq_fwd *f, const float *x, size_t tokens, size_t in);
/* y [tokens, out] = X * w^T for float rows w [out, in]. */
mq_status mq_fwd_linear(mq_fwd *f, const float *w, size_t out, float *y);
/* The same with w[o][i] = (q[o][i] - zp[o]) * scale[o] in fp32; zp may be NULL. */
mq_status mq_fwd_linear_q8(mq_fwd *f, const int8_t *q, const float *scale, const int8_t *zp,
                           size_t out, float *y);

/* The host GEMM: y[t][o] = x[t][0]*w[o][0] + x[t][1]*w[o][1] + ... in float,
 * each product rounded, added left to right from 0 (the build disables FMA
 * contraction), so the result does not depend on blocking or threads. */
void mq_ref_gemm_nt(const float *x, size_t tokens, size_t in, const float *w, size_t out, float *y);

/* n standard-normal values (xorshift64* and Box-Muller in double, rounded to
 * float) from the stream of `seed` and `name`. */
void mq_eval_normal(uint64_t seed, const char *name, float *dst, size_t n);

#endif
