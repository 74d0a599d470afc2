/* One time step of the step-wise node (tssl_plugin.stepwise), for one floating type: included by
 * tssl_cpu_body.h with REAL, FN and TB defined, after the helpers it shares with the whole-sequence
 * kernels (sensitivity, carry, surrogate), so a step and a sequence run the same arithmetic.
 *
 * Buffers are contiguous and hold the N elements of one step ([batch, *neuron_shape] flattened); the
 * backward's parameter table is [N_ROWS, N] (per_neuron = 1) or [N_ROWS] (per_neuron = 0), as for the
 * sequence kernels. Each entry point is one pass over the N elements, split over nthreads. */

/* Forward bookkeeping of elements [i0, i1): s_out = s + (o - s) inv_tau_s (reference.trace_step), with
 * inv_tau_s and warmup_level one value each (per_neuron = 0) or one per element; the spikes as REAL 0/1 when
 * `spike` is not NULL; the step's flags (reference.step_flags: bit 0 the spike, bit 1 no spike and
 * s_out < warmup_level) when `flags` is not NULL. The spikes are bytes `o`, or 0/1 in REAL `o_real` when that
 * is not NULL. `per_neuron`, the spikes' type and which outputs are NULL are compile-time constants at each call. */
static inline __attribute__((always_inline)) void FN(step_fwd_span)(
    int64_t i0, int64_t i1, const uint8_t *restrict o, const REAL *restrict o_real, const REAL *restrict s,
    REAL *restrict s_out, REAL *restrict spike, uint8_t *restrict flags, const REAL *restrict its,
    const REAL *restrict lvl, const int per_neuron)
{
    const REAL its0 = its[0], lvl0 = flags ? lvl[0] : (REAL)0;
    #pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
        const REAL of = (o_real ? o_real[i] != (REAL)0 : o[i] != 0) ? (REAL)1 : (REAL)0;
        const REAL sn = s[i] + (of - s[i]) * (per_neuron ? its[i] : its0);
        s_out[i] = sn;
        if (spike) spike[i] = of;
        if (flags) { /* in REAL arithmetic, branch-free, so the loop vectorizes (`&&` would branch) */
            const REAL below = sn < (per_neuron ? lvl[i] : lvl0) ? (REAL)1 : (REAL)0;
            flags[i] = (uint8_t)(of + (REAL)2 * below * ((REAL)1 - of));
        }
    }
}

/* one copy of the span per spike type (o_real: 0/1 in REAL, else bytes) and per NULL output and parameter kind */
#define STEP_FWD_CASES(O, O_REAL) \
    switch ((spike ? 4 : 0) + (flags ? 2 : 0) + (per_neuron ? 1 : 0)) { \
    case 7: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, spike, flags, its, lvl, 1); break; \
    case 6: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, spike, flags, its, lvl, 0); break; \
    case 5: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, spike, 0, its, lvl, 1); break; \
    case 4: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, spike, 0, its, lvl, 0); break; \
    case 3: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, 0, flags, its, lvl, 1); break; \
    case 2: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, 0, flags, its, lvl, 0); break; \
    case 1: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, 0, 0, its, lvl, 1); break; \
    default: FN(step_fwd_span)(i0, i1, O, O_REAL, s, s_out, 0, 0, its, lvl, 0); \
    }

static void FN(step_fwd_range)(int64_t i0, int64_t i1, const uint8_t *o, const REAL *o_real, const REAL *s,
                               REAL *s_out, REAL *spike, uint8_t *flags, const REAL *its, const REAL *lvl,
                               int per_neuron)
{
    if (o_real) {
        STEP_FWD_CASES(0, o_real)
    } else {
        STEP_FWD_CASES(o, 0)
    }
}
#undef STEP_FWD_CASES

/* The block's increments from the membrane each element's step started from (reference.increment):
 * r = [prev - th > 0], base = prev - r th (DELAYED_SUBTRACT), (1 - r) prev (DELAYED_ZERO), prev (DELAYED_NONE),
 * du_b[j] = u - base, operation by operation; one small vectorized loop per kind. */
static inline __attribute__((always_inline)) void FN(step_increment)(
    int64_t n0, int64_t nb, const REAL *restrict u, const REAL *restrict prev, const REAL *restrict table,
    int64_t row_stride, int delayed, REAL *restrict du_b)
{
    if (delayed == DELAYED_SUBTRACT) {
        #pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
            const REAL m = prev[n0 + j], th = TB(ROW_THRESHOLD, j);
            const REAL r = m - th > (REAL)0 ? (REAL)1 : (REAL)0;
            du_b[j] = u[n0 + j] - (m - r * th);
        }
    } else if (delayed == DELAYED_ZERO) {
        #pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
            const REAL m = prev[n0 + j];
            const REAL r = m - TB(ROW_THRESHOLD, j) > (REAL)0 ? (REAL)1 : (REAL)0;
            du_b[j] = u[n0 + j] - ((REAL)1 - r) * m;
        }
    } else {
        #pragma omp simd
        for (int64_t j = 0; j < nb; ++j) du_b[j] = u[n0 + j] - prev[n0 + j];
    }
}

/* Backward of block [n0, n0 + nb), reference.carry_step: delta = c (G + J(h, u)) + leak(o) h (+ extra), and
 * grad_x = delta, or the warm-up surrogate (+ extra) where the step's flags say no spike and s < warmup_level
 * (bit 1; the spike is bit 0) (delta + the surrogate at the other
 * steps without a spike for the gate "silent"), times `scale` (a product by 1
 * is exact); du_b holds the block's increments (du_b[j] for element n0 + j). `reset`, `warmup`, `has_h` (h is the carry
 * delta[t+1]; without one delta = c G) and `has_extra` (a loss on the membrane) are compile-time constants
 * at every call. Returns a sum that is NaN if a grad_x written is NaN or inf. */
static inline __attribute__((always_inline)) REAL FN(step_bwd_block)(
    int64_t n0, int64_t nb, const REAL *restrict Gp, const REAL *restrict h, const REAL *restrict extra,
    const REAL *restrict u, const REAL *restrict du_b, const uint8_t *restrict flags, REAL *restrict gx,
    REAL *restrict delta_out, const REAL *restrict table, int64_t row_stride, const REAL scale, const int reset,
    const int warmup, const int has_h, const int has_extra)
{
    REAL nonfinite = 0;
    #pragma omp simd reduction(+ : nonfinite)
    for (int64_t j = 0; j < nb; ++j) {
        const int64_t i = n0 + j;
        const REAL G = Gp[i];
        const REAL uu = u[i], of = (flags[i] & 1) ? (REAL)1 : (REAL)0;
        const REAL c = FN(sensitivity)(uu, du_b[j], of, TB(ROW_THRESHOLD, j), TB(ROW_SENSITIVITY_CAP, j),
                                       TB(ROW_SPIKE_TIMING_GAIN, j), TB(ROW_CROSSING_GAIN, j), reset, 1);
        REAL delta;
        if (has_h)
            delta = FN(carry)(c, G, h[i], uu, of, TB(ROW_INV_TAU_M, j), TB(ROW_MEMBRANE_DECAY, j),
                              TB(ROW_THRESHOLD, j), TB(ROW_THRESHOLD_X_MEMBRANE_DECAY, j), TB(ROW_INTRA_GAIN, j),
                              reset);
        else
            delta = c * G;
        if (has_extra) delta = delta + extra[i];
        delta_out[i] = delta;
        REAL out = delta;
        if (warmup) {
            const REAL pure = FN(surrogate)(G, uu, TB(ROW_THRESHOLD, j), TB(ROW_WARMUP_WIDTH, j),
                                             TB(ROW_WARMUP_BOUND, j));
            const REAL sur = has_extra ? pure + extra[i] : pure;
            /* the gate "silent" (silent_gain 1) adds the surrogate at the other steps without a spike */
            out = (flags[i] & 2) ? sur : delta + TB(ROW_SILENT_GAIN, j) * ((REAL)1 - of) * pure;
        }
        out = out * scale;
        gx[i] = out;
        nonfinite += out - out; /* 0 for finite, NaN for NaN or inf */
    }
    return nonfinite;
}

/* Blocks [b0, b1) with the loop specialised for this (reset, warmup, has_h, has_extra). */
static inline __attribute__((always_inline)) REAL FN(step_bwd_blocks)(
    int64_t N, int64_t b0, int64_t b1, const REAL *G, const REAL *h, const REAL *extra, const REAL *u,
    const REAL *du, const uint8_t *flags, REAL *gx, REAL *delta, const REAL *table, int per_neuron,
    const REAL *rep, REAL scale, const int reset, const int warmup, const int has_h,
    const int has_extra, const REAL *prev, int delayed)
{
    REAL nonfinite = 0;
    int64_t row_stride;
    REAL du_blk[BLOCK];
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BLOCK, nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
        const REAL *tb = FN(block_table)(table, per_neuron, n0, rep, &row_stride, N);
        const REAL *du_b = du + n0;
        if (prev) {
            FN(step_increment)(n0, nb, u, prev, tb, row_stride, delayed, du_blk);
            du_b = du_blk;
        }
        nonfinite += FN(step_bwd_block)(n0, nb, G, h, extra, u, du_b, flags, gx, delta, tb, row_stride, scale,
                                        reset, warmup, has_h, has_extra);
    }
    return nonfinite;
}

/* the (warmup, has_h, has_extra) copies for one reset rule */
#define STEP_BWD_COPY(RESET, W, H, E)                                                                          \
    FN(step_bwd_blocks)(N, b0, b1, G, h, extra, u, du, flags, gx, delta, table, per_neuron, rep, scale, RESET,  \
                        W, H, E, prev, delayed)
#define STEP_BWD_COPIES(RESET)                                                                                  \
    switch ((warmup ? 4 : 0) + (h ? 2 : 0) + (extra ? 1 : 0)) {                                                 \
    case 0: nonfinite = STEP_BWD_COPY(RESET, 0, 0, 0); break;                                                  \
    case 1: nonfinite = STEP_BWD_COPY(RESET, 0, 0, 1); break;                                                  \
    case 2: nonfinite = STEP_BWD_COPY(RESET, 0, 1, 0); break;                                                  \
    case 3: nonfinite = STEP_BWD_COPY(RESET, 0, 1, 1); break;                                                  \
    case 4: nonfinite = STEP_BWD_COPY(RESET, 1, 0, 0); break;                                                  \
    case 5: nonfinite = STEP_BWD_COPY(RESET, 1, 0, 1); break;                                                  \
    case 6: nonfinite = STEP_BWD_COPY(RESET, 1, 1, 0); break;                                                  \
    default: nonfinite = STEP_BWD_COPY(RESET, 1, 1, 1);                                                        \
    }

static int FN(step_bwd_range)(int64_t N, int64_t b0, int64_t b1, const REAL *G, const REAL *h, const REAL *extra,
                              const REAL *u, const REAL *du, const REAL *prev, int delayed, const uint8_t *flags,
                              REAL *gx, REAL *delta, const REAL *table, int per_neuron, int reset, int warmup,
                              REAL scale)
{
    REAL rep[N_ROWS * BLOCK];
    REAL nonfinite = 0;
    FN(replicate)(table, per_neuron, rep);
    switch (reset) {
    case RESET_ZERO: STEP_BWD_COPIES(RESET_ZERO) break;
    case RESET_SUBTRACT: STEP_BWD_COPIES(RESET_SUBTRACT) break;
    case RESET_SUBTRACT_AFTER_LEAK: STEP_BWD_COPIES(RESET_SUBTRACT_AFTER_LEAK) break;
    default: STEP_BWD_COPIES(RESET_NONE)
    }
    return nonfinite != 0; /* NaN != 0 is true */
}
#undef STEP_BWD_COPY
#undef STEP_BWD_COPIES

/* Entry points. Forward: s_out and (unless NULL) spike and flags from the spikes and s, the spikes as bytes `o`
 * or, when `o` is NULL, as 0/1 in REAL `o_real` (a compiled graph's spikes); its: inv_tau_s, lvl: warmup_level
 * (read only for flags), one value each or N each. */
void FN(tssl_step_fwd)(int64_t N, const uint8_t *o, const REAL *o_real, const REAL *s, REAL *s_out, REAL *spike,
                       uint8_t *flags, const REAL *its, const REAL *lvl, int per_neuron, int nthreads)
{
    int acc_ = 0;
    const REAL *spikes_real = o ? 0 : o_real;
    PARALLEL_RANGES(N, nthreads, (FN(step_fwd_range)(b0_, b1_, o, spikes_real, s, s_out, spike, flags, its, lvl,
                                                     per_neuron), 0));
}

/* Backward: gx and delta from G, h, extra (h and extra may be NULL) and the step's u, du, flags; with prev not
 * NULL, du is not read but computed from prev and the delayed reset `delayed` (FN(step_increment)). Returns 1 if
 * a gx written is NaN or inf (the caller then looks for the cause), else 0. */
int FN(tssl_step_bwd)(int64_t N, const REAL *G, const REAL *h, const REAL *extra, const REAL *u, const REAL *du,
                      const REAL *prev, int delayed, const uint8_t *flags, REAL *gx, REAL *delta,
                      const REAL *table, int per_neuron, int reset, int warmup, double scale, int nthreads)
{
    const REAL sc = (REAL)scale; /* rounded to REAL, as a Python number multiplying a tensor is */
    int acc_ = 0;
    PARALLEL_RANGES((N + BLOCK - 1) / BLOCK, nthreads,
                    FN(step_bwd_range)(N, b0_, b1_, G, h, extra, u, du, prev, delayed, flags, gx, delta, table,
                                       per_neuron, reset, warmup, sc));
    return acc_;
}
