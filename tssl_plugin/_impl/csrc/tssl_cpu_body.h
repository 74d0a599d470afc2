/* Kernels for one floating type, included by tssl_cpu.c with REAL, SUF defined.
 * Inner loops run over the neurons of one block with straight-line code, so the
 * compiler vectorizes them. The reset rule, the warm-up and the output mode are
 * compile-time constants in each copy of a loop (switches outside the loops pick
 * the copy), so the loops hold only the arithmetic of their mode. */
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUF)
/* parameter `row` (ROW_<NAME>) of neuron j of the block */
#define TB(row, j) table[(row) * row_stride + (j)]

/* exp(a) for a in [-40, 40] (the warm-up clamps its argument to [-b, b], b = 8 or 40), branch-free so it
 * vectorizes: a = k ln2 + r, |r| <= ln2/2, k rounded with the 1.5*2^m shifter
 * (whose low mantissa bits then hold k), exp(r) by its Taylor polynomial (degree 12 for double,
 * 7 for float: truncation below 0.1 ulp for |r| <= ln2/2), times 2^k from the exponent bits. */
static inline REAL FN(exp_clamped)(REAL a)
{
#if TSSL_IS_DOUBLE
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    const double t = a * 1.4426950408889634 + shifter;
    const double kf = t - shifter;
    const double r = (a - kf * 0.693145751953125) - kf * 1.428606820309417232e-06;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0; p = p * r + 1.0 / 3628800.0; p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0; p = p * r + 1.0 / 5040.0; p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0; p = p * r + 1.0 / 24.0; p = p * r + 1.0 / 6.0; p = p * r + 0.5;
    p = p * r + 1.0; p = p * r + 1.0;
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits << 52) + ((uint64_t)1023 << 52);
    double scale;
    memcpy(&scale, &bits, sizeof scale);
#else
    const float shifter = 12582912.0f; /* 1.5 * 2^23 */
    const float t = a * 1.44269504f + shifter;
    const float kf = t - shifter;
    const float r = (a - kf * 0.693145751953125f) - kf * 1.428606820309417232e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f; p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f; p = p * r + 1.0f / 6.0f; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits << 23) + ((uint32_t)127 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
#endif
    return p * scale;
}

/* The spike-time sensitivity c = -clamp(-1/du, -cap, 0) * o at a threshold crossing (reference.crossed,
 * reference.spike_sensitivity), times the crossing fraction max(0, 1 - crg (u - th)/du) there
 * (reference.crossing_fraction; crg, row crossing_gain, is 1 for crossing="interpolated", 0 for "step", where
 * the factor is exactly 1). `reset` and `interp` are compile-time constants at every call; interp = 0 skips the
 * factor (and its division: the whole-sequence backward picks that copy when the row is 0, FN(interpolated),
 * as the reference skips it for "step"; the step-wise backward always passes 1), interp = 1 reads crg. */
static inline __attribute__((always_inline)) REAL FN(sensitivity)(REAL u, REAL du, REAL of, REAL th, REAL cap,
                                                                  REAL gain, REAL crg, const int reset,
                                                                  const int interp)
{
    const REAL crossed = (reset == RESET_ZERO || u - du <= th) ? of : (REAL)0;
    REAL r = (REAL)-1 / du;
    r = r < -cap ? -cap : r;
    r = r > (REAL)0 ? (REAL)0 : r;
    /* the ablation gain a_c (rule.ablation_gains, row spike_timing_gain) is 1 or 0; a factor 1 changes no bit */
    if (!interp) return -r * crossed * gain;
    REAL phi = (REAL)1 - crg * ((u - th) / du);
    phi = phi < (REAL)0 ? (REAL)0 : phi;
    phi = crossed != (REAL)0 ? phi : (REAL)1;
    return -r * crossed * gain * phi;
}

/* delta[t] from the sensitivity c, G[t] and the carry hh = delta[t+1]: reference.carry_step, operation by
 * operation (itm = 1/tau_m, beta = 1 - itm, thb = beta theta). */
static inline __attribute__((always_inline)) REAL FN(carry)(REAL c, REAL G, REAL hh, REAL u, REAL of, REAL itm,
                                                            REAL beta, REAL th, REAL thb, REAL a_j,
                                                            const int reset)
{
    /* a_j: the ablation gain on the intra-neuron term (row intra_gain), 1 or 0 */
    if (reset == RESET_ZERO)
        return c * (G + hh * u * itm * a_j) + ((REAL)1 - of) * beta * hh;
    if (reset == RESET_SUBTRACT) /* the spike's subtraction, beta theta, reaches the next step */
        return c * (G - thb * hh * a_j) + beta * hh;
    if (reset == RESET_SUBTRACT_AFTER_LEAK) /* theta, subtracted after the leak */
        return c * (G - th * hh * a_j) + beta * hh;
    return c * G + beta * hh;
}

/* reference.warmup_surrogate: G sigma'((u - th)/w)/w, the argument clamped to [-b, b] (row warmup_bound). */
static inline __attribute__((always_inline)) REAL FN(surrogate)(REAL G, REAL u, REAL th, REAL w, REAL b)
{
    REAL a = (th - u) / w;
    a = a < -b ? -b : (a > b ? b : a);
    const REAL z = FN(exp_clamped)(a);
    return G * z / (((REAL)1 + z) * ((REAL)1 + z) * w);
}

/* Forward of one block of nb neurons starting at n0, over all T steps, for one reset rule
 * (a compile-time constant at every call, so the rule's branches vanish from the vectorized loop).
 * Forward outputs ([T, N], each optional): spikes as bytes and/or as REAL 0/1, the trace s.
 * Backward scratch (block-local [T, BLOCK], optional): u, du, the spike as 0/1, and the warm-up
 * flag (no spike and s < warmup_level) as 0/1. `check`: returns a sum that is NaN if an input was NaN or inf. */
static inline __attribute__((always_inline)) REAL FN(fwd_block)(
    int64_t T, int64_t N, int64_t n0, int64_t nb, const REAL *restrict x,
    uint8_t *restrict spikes, REAL *restrict spikes_real, REAL *restrict trace, const int check,
    REAL *restrict u_sc, REAL *restrict du_sc, REAL *restrict fired_sc, REAL *restrict warm_sc,
    const REAL *restrict table, int64_t row_stride, const int reset)
{
    REAL v[BLOCK], s[BLOCK], op[BLOCK];
    REAL nonfinite = 0;
    for (int64_t j = 0; j < nb; ++j) { v[j] = 0; s[j] = 0; op[j] = 0; }
    for (int64_t t = 0; t < T; ++t) {
        const REAL *restrict xt = x + t * N + n0;
        const int64_t at = t * N + n0, as = t * BLOCK;
        #pragma omp simd reduction(+ : nonfinite)
        for (int64_t j = 0; j < nb; ++j) {
            /* reference.forward_step, operation by operation */
            const REAL th = TB(ROW_THRESHOLD, j);
            const REAL du = xt[j] - v[j] * TB(ROW_INV_TAU_M, j);
            REAL u = v[j] + du;
            if (reset == RESET_SUBTRACT_AFTER_LEAK) u = u - op[j] * th;
            const REAL of = u > th ? (REAL)1 : (REAL)0;
            REAL vn = u;
            if (reset == RESET_ZERO) vn = u > th ? (REAL)0 : u;
            if (reset == RESET_SUBTRACT) vn = u - of * th;
            const REAL sn = s[j] + (of - s[j]) * TB(ROW_INV_TAU_S, j);
            v[j] = vn; s[j] = sn; op[j] = of;
            if (check) nonfinite += xt[j] - xt[j]; /* 0 for finite x, NaN for NaN or inf */
            if (spikes) spikes[at + j] = (uint8_t)of;
            if (spikes_real) spikes_real[at + j] = of;
            if (trace) trace[at + j] = sn;
            if (u_sc) {
                u_sc[as + j] = u; du_sc[as + j] = du; fired_sc[as + j] = of;
                warm_sc[as + j] = (sn < TB(ROW_WARMUP_LEVEL, j) && of == (REAL)0) ? (REAL)1 : (REAL)0;
            }
        }
    }
    return nonfinite;
}

/* Backward of one block from its trace (u, du, fired, warm)[t * BLOCK + j], walking back in time:
 * G (PSC-filtered error, or dL/do), the carry recursion and the warm-up, in one loop per step.
 * `reset`, `warmup`, `psc` and `scaled` are compile-time constants at every call site; `scaled`: the
 * gradient is written times `scale` and checked (returns a sum that is NaN if a written value is not finite). */
static inline __attribute__((always_inline)) REAL FN(bwd_block)(
    int64_t T, int64_t N, int64_t n0, int64_t nb, const REAL *restrict g, REAL *restrict gx,
    const REAL *restrict u_sc, const REAL *restrict du_sc, const REAL *restrict fired_sc,
    const REAL *restrict warm_sc, const REAL *restrict table, int64_t row_stride, const int reset,
    const int warmup, const int psc, const REAL scale, const int scaled, const int interp)
{
    REAL h[BLOCK], acc[BLOCK];
    REAL nonfinite = 0;
    for (int64_t j = 0; j < nb; ++j) { h[j] = 0; acc[j] = 0; }
    for (int64_t t = T - 1; t >= 0; --t) {
        const REAL *restrict gt = g + t * N + n0;
        REAL *restrict gxt = gx + t * N + n0;
        const int64_t as = t * BLOCK;
        #pragma omp simd reduction(+ : nonfinite)
        for (int64_t j = 0; j < nb; ++j) {
            REAL G;
            if (psc) {
                acc[j] = gt[j] * TB(ROW_INV_TAU_S, j) + TB(ROW_TRACE_DECAY, j) * acc[j];
                G = acc[j];
            } else {
                G = gt[j];
            }
            const REAL u = u_sc[as + j], du = du_sc[as + j], of = fired_sc[as + j], hh = h[j];
            const REAL c = FN(sensitivity)(u, du, of, TB(ROW_THRESHOLD, j), TB(ROW_SENSITIVITY_CAP, j),
                                           TB(ROW_SPIKE_TIMING_GAIN, j), TB(ROW_CROSSING_GAIN, j), reset,
                                           interp);
            const REAL delta = FN(carry)(c, G, hh, u, of, TB(ROW_INV_TAU_M, j), TB(ROW_MEMBRANE_DECAY, j),
                                         TB(ROW_THRESHOLD, j), TB(ROW_THRESHOLD_X_MEMBRANE_DECAY, j),
                                         TB(ROW_INTRA_GAIN, j), reset);
            h[j] = delta;
            REAL out = delta;
            if (warmup) {
                const REAL sur = FN(surrogate)(G, u, TB(ROW_THRESHOLD, j), TB(ROW_WARMUP_WIDTH, j),
                                                    TB(ROW_WARMUP_BOUND, j));
                out = warm_sc[as + j] != (REAL)0 ? sur : delta + TB(ROW_SILENT_GAIN, j) * ((REAL)1 - of) * sur;
            }
            if (scaled) {
                out = out * scale;
                nonfinite += out - out; /* 0 for finite, NaN for NaN or inf */
            }
            gxt[j] = out;
        }
    }
    return nonfinite;
}

/* The parameters of block b: per-neuron columns of the [N_ROWS, N] table (per_neuron = 1), or the
 * N_ROWS scalars replicated once per thread into rep[N_ROWS * BLOCK] (per_neuron = 0). */
static inline const REAL *FN(block_table)(const REAL *table, int per_neuron, int64_t n0, const REAL *rep,
                                          int64_t *row_stride, int64_t N)
{
    if (per_neuron) { *row_stride = N; return table + n0; }
    *row_stride = BLOCK;
    return rep;
}

static void FN(replicate)(const REAL *table, int per_neuron, REAL *rep)
{
    if (per_neuron) return;
    for (int i = 0; i < N_ROWS; ++i)
        for (int j = 0; j < BLOCK; ++j) rep[i * BLOCK + j] = table[i];
}

/* Whether the table's crossing_gain row is nonzero anywhere (crossing="interpolated"): the whole-sequence backward
 * then runs the copies of its loop with the crossing fraction, else those without it (interp = 0 in
 * FN(sensitivity)). The step-wise backward has no such copies (they would double its compile time for a few
 * per cent of one step). */
static int FN(interpolated)(const REAL *table, int per_neuron, int64_t N)
{
    const int64_t stride = per_neuron ? N : 1;
    int interp = 0;
    for (int64_t n = 0; n < stride; ++n) interp |= table[ROW_CROSSING_GAIN * stride + n] != 0;
    return interp;
}

/* Forward over blocks [b0, b1) for one reset rule; each combination of outputs calls fwd_block with
 * constant NULLs, so every copy of its loop is branch-free. Returns NaN if an input was NaN or inf. */
static inline __attribute__((always_inline)) REAL FN(fwd_blocks)(
    int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *x, uint8_t *spikes, REAL *spikes_real,
    REAL *trace, const REAL *table, int per_neuron, const REAL *rep, const int reset)
{
    REAL nonfinite = 0;
    int64_t row_stride;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BLOCK, nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
        const REAL *tb = FN(block_table)(table, per_neuron, n0, rep, &row_stride, N);
        if (spikes && trace)
            nonfinite += FN(fwd_block)(T, N, n0, nb, x, spikes, 0, trace, 1, 0, 0, 0, 0, tb, row_stride, reset);
        else if (trace)
            nonfinite += FN(fwd_block)(T, N, n0, nb, x, 0, 0, trace, 1, 0, 0, 0, 0, tb, row_stride, reset);
        else if (spikes_real)
            nonfinite += FN(fwd_block)(T, N, n0, nb, x, 0, spikes_real, 0, 1, 0, 0, 0, 0, tb, row_stride, reset);
        else
            nonfinite += FN(fwd_block)(T, N, n0, nb, x, spikes, 0, 0, 1, 0, 0, 0, 0, tb, row_stride, reset);
    }
    return nonfinite;
}

/* Forward over blocks [b0, b1); returns 1 if an input was NaN or inf. */
static int FN(fwd_range)(int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *x, uint8_t *spikes,
                         REAL *spikes_real, REAL *trace, const REAL *table, int per_neuron, int reset)
{
    REAL rep[N_ROWS * BLOCK];
    REAL nonfinite = 0;
    FN(replicate)(table, per_neuron, rep);
    switch (reset) {
    case RESET_ZERO:
        nonfinite = FN(fwd_blocks)(T, N, b0, b1, x, spikes, spikes_real, trace, table, per_neuron, rep, RESET_ZERO);
        break;
    case RESET_SUBTRACT:
        nonfinite = FN(fwd_blocks)(T, N, b0, b1, x, spikes, spikes_real, trace, table, per_neuron, rep,
                                   RESET_SUBTRACT);
        break;
    case RESET_SUBTRACT_AFTER_LEAK:
        nonfinite = FN(fwd_blocks)(T, N, b0, b1, x, spikes, spikes_real, trace, table, per_neuron, rep,
                                   RESET_SUBTRACT_AFTER_LEAK);
        break;
    default:
        nonfinite = FN(fwd_blocks)(T, N, b0, b1, x, spikes, spikes_real, trace, table, per_neuron, rep, RESET_NONE);
    }
    return nonfinite != 0; /* NaN != 0 is true */
}

/* A host's forward (reference.HostTrace), read by the backward instead of (u, du, o): the charged membrane
 * h [T, N], the membrane entering step 0 v0 [N], the membranes after each step's reset v_seq [T, N], the
 * spikes as REAL (nonzero: fired), the reset value `shift` and the factor `scale` on the input gradient. */
typedef struct {
    const REAL *h, *v0, *v_seq, *spikes;
    REAL shift, scale;
} FN(host_trace);

/* Backward over blocks [b0, b1) for one reset rule. x != NULL: recompute the forward from x;
 * host != NULL: u, du, o of reference.host_trace from the host's forward; otherwise read u, du, o
 * (full [T, N]). The trace s is recomputed from the spikes. Returns a sum that is NaN if a scaled
 * gradient (host != NULL) is not finite. */
static inline __attribute__((always_inline)) REAL FN(bwd_blocks)(
    int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *g, const REAL *x, const REAL *u, const REAL *du,
    const uint8_t *o, const FN(host_trace) *host, REAL *gx, const REAL *table, int per_neuron, const REAL *rep,
    REAL *sc, const int reset, int warmup, int psc, int interp)
{
    int64_t row_stride;
    REAL nonfinite = 0;
    REAL *u_sc = sc, *du_sc = sc + T * BLOCK, *fired_sc = sc + 2 * T * BLOCK, *warm_sc = sc + 3 * T * BLOCK;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BLOCK, nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
        const REAL *tb = FN(block_table)(table, per_neuron, n0, rep, &row_stride, N);
        if (x) {
            (void)FN(fwd_block)(T, N, n0, nb, x, 0, 0, 0, 0, u_sc, du_sc, fired_sc, warm_sc, tb, row_stride, reset);
        } else if (host) {
            REAL sv[BLOCK];
            const REAL *table = tb; /* for TB() */
            const REAL shift = host->shift;
            for (int64_t j = 0; j < nb; ++j) sv[j] = 0;
            for (int64_t t = 0; t < T; ++t) {
                const REAL *restrict ht = host->h + t * N + n0, *restrict st = host->spikes + t * N + n0;
                const REAL *restrict vp = t ? host->v_seq + (t - 1) * N + n0 : host->v0 + n0;
                #pragma omp simd
                for (int64_t j = 0; j < nb; ++j) {
                    const REAL of = st[j] != (REAL)0 ? (REAL)1 : (REAL)0;
                    sv[j] = sv[j] + (of - sv[j]) * TB(ROW_INV_TAU_S, j);
                    warm_sc[t * BLOCK + j] = (sv[j] < TB(ROW_WARMUP_LEVEL, j) && of == (REAL)0) ? (REAL)1 : (REAL)0;
                    u_sc[t * BLOCK + j] = ht[j] - shift;
                    du_sc[t * BLOCK + j] = ht[j] - vp[j];
                    fired_sc[t * BLOCK + j] = of;
                }
            }
        } else {
            REAL sv[BLOCK];
            const REAL *table = tb; /* for TB() */
            for (int64_t j = 0; j < nb; ++j) sv[j] = 0;
            for (int64_t t = 0; t < T; ++t)
                #pragma omp simd
                for (int64_t j = 0; j < nb; ++j) {
                    const REAL of = o[t * N + n0 + j] ? (REAL)1 : (REAL)0;
                    sv[j] = sv[j] + (of - sv[j]) * TB(ROW_INV_TAU_S, j);
                    warm_sc[t * BLOCK + j] = (sv[j] < TB(ROW_WARMUP_LEVEL, j) && of == (REAL)0) ? (REAL)1 : (REAL)0;
                    u_sc[t * BLOCK + j] = u[t * N + n0 + j];
                    du_sc[t * BLOCK + j] = du[t * N + n0 + j];
                    fired_sc[t * BLOCK + j] = of;
                }
        }
        /* constant flags at each call: one specialised, vectorized copy of the loop per mode */
#define BWD_BLOCK(WARMUP, PSC, SCALE, SCALED)                                                                  \
    (interp ? FN(bwd_block)(T, N, n0, nb, g, gx, u_sc, du_sc, fired_sc, warm_sc, tb, row_stride, reset, WARMUP, \
                            PSC, SCALE, SCALED, 1)                                                             \
            : FN(bwd_block)(T, N, n0, nb, g, gx, u_sc, du_sc, fired_sc, warm_sc, tb, row_stride, reset, WARMUP, \
                            PSC, SCALE, SCALED, 0))
        if (host && warmup)
            nonfinite += BWD_BLOCK(1, 0, host->scale, 1);
        else if (host)
            nonfinite += BWD_BLOCK(0, 0, host->scale, 1);
        else if (warmup && psc)
            BWD_BLOCK(1, 1, 1, 0);
        else if (warmup)
            BWD_BLOCK(1, 0, 1, 0);
        else if (psc)
            BWD_BLOCK(0, 1, 1, 0);
        else
            BWD_BLOCK(0, 0, 1, 0);
#undef BWD_BLOCK
    }
    return nonfinite;
}

/* Returns 1 if the scratch buffer could not be allocated, 2 if a scaled gradient (host) is not finite, else 0. */
static int FN(bwd_range)(int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *g, const REAL *x,
                         const REAL *u, const REAL *du, const uint8_t *o, const FN(host_trace) *host, REAL *gx,
                         const REAL *table, int per_neuron, int reset, int warmup, int psc)
{
    REAL rep[N_ROWS * BLOCK];
    REAL nonfinite = 0;
    REAL *sc = (REAL *)malloc((size_t)T * BLOCK * 4 * sizeof(REAL));
    if (!sc) return 1;
    FN(replicate)(table, per_neuron, rep);
    const int interp = FN(interpolated)(table, per_neuron, N);
    switch (reset) {
    case RESET_ZERO:
        nonfinite = FN(bwd_blocks)(T, N, b0, b1, g, x, u, du, o, host, gx, table, per_neuron, rep, sc, RESET_ZERO,
                                   warmup, psc, interp);
        break;
    case RESET_SUBTRACT:
        nonfinite = FN(bwd_blocks)(T, N, b0, b1, g, x, u, du, o, host, gx, table, per_neuron, rep, sc,
                                   RESET_SUBTRACT, warmup, psc, interp);
        break;
    case RESET_SUBTRACT_AFTER_LEAK:
        nonfinite = FN(bwd_blocks)(T, N, b0, b1, g, x, u, du, o, host, gx, table, per_neuron, rep, sc,
                                   RESET_SUBTRACT_AFTER_LEAK, warmup, psc, interp);
        break;
    default:
        nonfinite = FN(bwd_blocks)(T, N, b0, b1, g, x, u, du, o, host, gx, table, per_neuron, rep, sc, RESET_NONE,
                                   warmup, psc, interp);
    }
    free(sc);
    return nonfinite != 0 ? 2 : 0; /* NaN != 0 is true */
}

/* Entry points: split the blocks over nthreads (OpenMP when compiled with it).
 * Forward: returns 1 if x holds a NaN or inf, else 0; spikes, spikes_real, trace may each be NULL. */
int FN(tssl_fwd)(int64_t T, int64_t N, const REAL *x, uint8_t *spikes, REAL *spikes_real, REAL *trace,
                 const REAL *table, int per_neuron, int reset, int nthreads)
{
    int acc_ = 0;
    PARALLEL_RANGES((N + BLOCK - 1) / BLOCK, nthreads,
                    FN(fwd_range)(T, N, b0_, b1_, x, spikes, spikes_real, trace, table, per_neuron, reset));
    return acc_;
}

/* Backward: returns 1 if a scratch buffer could not be allocated, else 0. */
int FN(tssl_bwd)(int64_t T, int64_t N, const REAL *g, const REAL *x, const REAL *u, const REAL *du,
                 const uint8_t *o, REAL *gx, const REAL *table, int per_neuron, int reset, int warmup, int psc,
                 int nthreads)
{
    int acc_ = 0;
    PARALLEL_RANGES((N + BLOCK - 1) / BLOCK, nthreads,
                    FN(bwd_range)(T, N, b0_, b1_, g, x, u, du, o, 0, gx, table, per_neuron, reset, warmup, psc));
    return acc_;
}

/* Backward from a host's forward (reference.host_trace computed per block, never stored), dL/do given,
 * the result times `scale`. Returns 1 if a scratch buffer could not be allocated, 2 (possibly with 1) if
 * a written gradient is NaN or inf, else 0. */
int FN(tssl_bwd_host)(int64_t T, int64_t N, const REAL *g, const REAL *h, const REAL *v0, const REAL *v_seq,
                      const REAL *spikes, double shift, REAL *gx, const REAL *table, int per_neuron, int reset,
                      int warmup, double scale, int nthreads)
{
    const FN(host_trace) host = {h, v0, v_seq, spikes, (REAL)shift, (REAL)scale};
    int acc_ = 0;
    PARALLEL_RANGES((N + BLOCK - 1) / BLOCK, nthreads,
                    FN(bwd_range)(T, N, b0_, b1_, g, 0, 0, 0, 0, &host, gx, table, per_neuron, reset, warmup, 0));
    return acc_;
}

#include "tssl_cpu_step.h"

#undef CAT2
#undef CAT
#undef FN
#undef TB
