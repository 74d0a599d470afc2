/* Kernels for one floating type, included by tssl_cpu.c with REAL, SUF defined.
 * Inner loops run over the neurons of one block with straight-line code, so
 * the compiler vectorizes them (reset is loop-invariant: selects, no branches). */
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUF)
#define PAR(i, j) pb[(i) * pld + (j)]

/* exp(a) for a in [-8, 8] (the warm-up clamps its argument), branch-free so it
 * vectorizes: a = k ln2 + r, |r| <= ln2/2, k rounded with the 1.5*2^m shifter
 * (whose low mantissa bits then hold k), exp(r) by its Taylor polynomial (to
 * about 1 ulp: degree 12 for double, 8 for float), times 2^k from the exponent bits. */
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
    float p = 1.0f / 40320.0f;
    p = p * r + 1.0f / 5040.0f; p = p * r + 1.0f / 720.0f; p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f; p = p * r + 1.0f / 6.0f; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits << 23) + ((uint32_t)127 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
#endif
    return p * scale;
}

/* Forward of one block of nb neurons starting at n0. Writes o, s ([T, N]) when
 * o != NULL, and the block trace (u, du, o, s)[t * BLOCK + j] when u_sc != NULL. */
static inline __attribute__((always_inline)) void FN(fwd_block)(
    int64_t T, int64_t N, int64_t n0, int64_t nb, const REAL *restrict x, uint8_t *restrict o,
    REAL *restrict s_out, REAL *restrict u_sc, REAL *restrict du_sc, uint8_t *restrict o_sc,
    REAL *restrict s_sc, const REAL *restrict pb, int64_t pld, const int reset)
{
    REAL v[BLOCK], s[BLOCK], op[BLOCK];
    const REAL kz = reset == R_ZERO, ks = reset == R_SUB, kl = reset == R_SAL;
    for (int64_t j = 0; j < nb; ++j) { v[j] = 0; s[j] = 0; op[j] = 0; }
    for (int64_t t = 0; t < T; ++t) {
        const REAL *restrict xt = x + t * N + n0;
        #pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
            const REAL th = PAR(P_TH, j);
            /* The reset enters through 0/1 factors (kz, ks, kl), which keeps the
             * loop branch-free (vectorizable) and the roundings of reference.py:
             * a * 1 == a and a - 0 == a exactly, and u - 1 * u == 0. */
            const REAL du = xt[j] - v[j] * PAR(P_ITM, j);
            const REAL u = (v[j] + du) - op[j] * th * kl;
            const REAL of = u > th ? (REAL)1 : (REAL)0;
            const REAL vn = u - of * (th * ks + u * kz);
            const REAL sn = s[j] + (of - s[j]) * PAR(P_ITS, j);
            v[j] = vn; s[j] = sn; op[j] = of;
            if (o) { o[t * N + n0 + j] = (uint8_t)of; s_out[t * N + n0 + j] = sn; }
            if (u_sc) {
                u_sc[t * BLOCK + j] = u; du_sc[t * BLOCK + j] = du;
                o_sc[t * BLOCK + j] = (uint8_t)of; s_sc[t * BLOCK + j] = sn;
            }
        }
    }
}

/* Backward of one block from its trace (u, du, o, s)[t * BLOCK + j]. */
static inline __attribute__((always_inline)) void FN(bwd_block)(
    int64_t T, int64_t N, int64_t n0, int64_t nb, const REAL *restrict g, REAL *restrict gx,
    const REAL *restrict u_sc, const REAL *restrict du_sc, const uint8_t *restrict o_sc,
    const REAL *restrict s_sc, const REAL *restrict pb, int64_t pld, const int reset,
    const int warmup, const int psc)
{
    REAL h[BLOCK], acc[BLOCK], G[BLOCK];
    const REAL kz = reset == R_ZERO, ks = reset == R_SUB, kl = reset == R_SAL;
    for (int64_t j = 0; j < nb; ++j) { h[j] = 0; acc[j] = 0; }
    for (int64_t t = T - 1; t >= 0; --t) {
        const REAL *restrict gt = g + t * N + n0;
        REAL *restrict gxt = gx + t * N + n0;
        const REAL *restrict ut = u_sc + t * BLOCK, *restrict dut = du_sc + t * BLOCK, *restrict st = s_sc + t * BLOCK;
        const uint8_t *restrict ot = o_sc + t * BLOCK;
        if (psc)
            #pragma omp simd
            for (int64_t j = 0; j < nb; ++j) { acc[j] = gt[j] * PAR(P_ITS, j) + PAR(P_DECS, j) * acc[j]; G[j] = acc[j]; }
        else
            #pragma omp simd
            for (int64_t j = 0; j < nb; ++j) G[j] = gt[j];
        #pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
            const REAL u = ut[j], of = (REAL)ot[j], hh = h[j], Gj = G[j];
            /* c = -clamp(-1/du, -8, 0) * o; h = 0 at t = T-1 gives delta = c G there */
            REAL r = (REAL)-1 / dut[j];
            r = r < (REAL)-CAP ? (REAL)-CAP : r;
            r = r > (REAL)0 ? (REAL)0 : r;
            const REAL c = -r * of;
            /* zero: c (G + h u itm) + (1 - o) beta h; subtract and subtract_after_leak:
             * c (G + h th itm) + beta h; none: c G + beta h.
             * One expression, the same roundings: a - b == a + (-b), a + 0 == a. */
            /* one term of J is nonzero (0/1 factors as in the forward) */
            const REAL J = hh * u * PAR(P_ITM, j) * kz + PAR(P_THI, j) * hh * (ks + kl);
            const REAL leak = ((REAL)1 - of * kz) * PAR(P_BETA, j);
            const REAL delta = c * (Gj + J) + leak * hh;
            h[j] = delta;
            gxt[j] = delta;
        }
        if (warmup)
            #pragma omp simd
            for (int64_t j = 0; j < nb; ++j) {
                REAL a = (PAR(P_TH, j) - ut[j]) / (REAL)WIDTH;
                a = a < (REAL)-8 ? (REAL)-8 : (a > (REAL)8 ? (REAL)8 : a);
                const REAL z = FN(exp_clamped)(a);
                const REAL sur = G[j] * z / (((REAL)1 + z) * ((REAL)1 + z) * (REAL)WIDTH);
                gxt[j] = st[j] < PAR(P_WL, j) ? sur : gxt[j];
            }
    }
}

/* Parameters of block [n0, n0 + BLOCK): per-neuron rows of the [NPAR, N] table
 * (ps = 1), or the NPAR scalars replicated into rep[NPAR * BLOCK] (ps = 0). */
static inline const REAL *FN(block_params)(const REAL *par, int ps, int64_t n0, REAL *rep, int64_t *pld, int64_t N)
{
    if (ps) { *pld = N; return par + n0; }
    for (int i = 0; i < NPAR; ++i)
        for (int j = 0; j < BLOCK; ++j) rep[i * BLOCK + j] = par[i];
    *pld = BLOCK;
    return rep;
}

static void FN(fwd_range)(int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *x, uint8_t *o, REAL *s,
                          const REAL *par, int ps, int reset)
{
    REAL rep[NPAR * BLOCK];
    int64_t pld;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BLOCK, nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
        const REAL *pb = FN(block_params)(par, ps, n0, rep, &pld, N);
        FN(fwd_block)(T, N, n0, nb, x, o, s, 0, 0, 0, 0, pb, pld, reset);
    }
}

/* Backward over blocks [b0, b1). x != NULL: recompute the forward from x;
 * otherwise read u, du, o (full [T, N]) and recompute only the trace s. */
static int FN(bwd_range)(int64_t T, int64_t N, int64_t b0, int64_t b1, const REAL *g, const REAL *x,
                         const REAL *u, const REAL *du, const uint8_t *o, REAL *gx,
                         const REAL *par, int ps, int reset, int warmup, int psc)
{
    REAL rep[NPAR * BLOCK];
    int64_t pld;
    REAL *sc = (REAL *)malloc((size_t)T * BLOCK * 3 * sizeof(REAL));
    uint8_t *osc = (uint8_t *)malloc((size_t)T * BLOCK);
    if (!sc || !osc) { free(sc); free(osc); return 1; }
    REAL *u_sc = sc, *du_sc = sc + T * BLOCK, *s_sc = sc + 2 * T * BLOCK;
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BLOCK, nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
        const REAL *pb = FN(block_params)(par, ps, n0, rep, &pld, N);
        if (x) {
            FN(fwd_block)(T, N, n0, nb, x, 0, 0, u_sc, du_sc, osc, s_sc, pb, pld, reset);
        } else {
            REAL sv[BLOCK];
            for (int64_t j = 0; j < nb; ++j) sv[j] = 0;
            for (int64_t t = 0; t < T; ++t)
                #pragma omp simd
                for (int64_t j = 0; j < nb; ++j) {
                    const REAL of = o[t * N + n0 + j] ? (REAL)1 : (REAL)0;
                    sv[j] = sv[j] + (of - sv[j]) * PAR(P_ITS, j);
                    s_sc[t * BLOCK + j] = sv[j];
                    u_sc[t * BLOCK + j] = u[t * N + n0 + j];
                    du_sc[t * BLOCK + j] = du[t * N + n0 + j];
                    osc[t * BLOCK + j] = (uint8_t)of;
                }
        }
        FN(bwd_block)(T, N, n0, nb, g, gx, u_sc, du_sc, osc, s_sc, pb, pld, reset, warmup, psc);
    }
    free(sc);
    free(osc);
    return 0;
}

/* Entry points: split the blocks over nthreads (OpenMP when compiled with it). */
int FN(tssl_fwd)(int64_t T, int64_t N, const REAL *x, uint8_t *o, REAL *s, const REAL *par, int ps,
                 int reset, int nthreads)
{
    const int64_t nblk = (N + BLOCK - 1) / BLOCK;
    if (nthreads > nblk) nthreads = (int)nblk;
    if (nthreads < 1) nthreads = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
        FN(fwd_range)(T, N, nblk * tid / nt, nblk * (tid + 1) / nt, x, o, s, par, ps, reset);
    }
#else
    FN(fwd_range)(T, N, 0, nblk, x, o, s, par, ps, reset);
#endif
    return 0;
}

int FN(tssl_bwd)(int64_t T, int64_t N, const REAL *g, const REAL *x, const REAL *u, const REAL *du,
                 const uint8_t *o, REAL *gx, const REAL *par, int ps, int reset, int warmup, int psc,
                 int nthreads)
{
    const int64_t nblk = (N + BLOCK - 1) / BLOCK;
    int err = 0;
    if (nthreads > nblk) nthreads = (int)nblk;
    if (nthreads < 1) nthreads = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1) reduction(| : err)
    {
        const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
        err |= FN(bwd_range)(T, N, nblk * tid / nt, nblk * (tid + 1) / nt, g, x, u, du, o, gx, par, ps, reset,
                             warmup, psc);
    }
#else
    err = FN(bwd_range)(T, N, 0, nblk, g, x, u, du, o, gx, par, ps, reset, warmup, psc);
#endif
    return err;
}

#undef CAT2
#undef CAT
#undef FN
#undef PAR
