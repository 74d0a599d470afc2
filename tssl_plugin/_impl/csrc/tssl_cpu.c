/* Fused TSSL-BP recursions for the CPU, plain C (no torch headers).
 *
 * Compiled at first use by tssl_plugin._impl.cpu and called through ctypes on
 * contiguous [T, N] buffers (N = number of neurons). Each neuron is
 * independent: neurons are processed in blocks of BLOCK, one pass over T per
 * block with the state in a small block-local array (vectorizable over the
 * neurons of a block); blocks run in parallel with OpenMP when available.
 *
 * The arithmetic repeats tssl_plugin/_impl/reference.py operation by operation
 * (build with -ffp-contract=off, no fast-math), so float64 results agree with
 * the reference up to the rounding of the warm-up exp() (a polynomial here).
 *
 * Parameters: a table table[ROW_<NAME> * N + n] (per_neuron = 1, one value per
 * neuron) or table[ROW_<NAME>] (per_neuron = 0, one value for all neurons).
 * The warm-up width is a row of the table too (read at run time). The row
 * numbers, the reset codes and the rule's constants are not written here:
 * tssl_plugin._impl.cpu passes them as -D flags built from
 * tssl_plugin/_impl/_params.py (the table's one definition) and
 * tssl_plugin/rule.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if !defined(N_ROWS) || !defined(RESET_SUBTRACT_AFTER_LEAK) || !defined(ROW_SENSITIVITY_CAP) || !defined(ROW_WARMUP_WIDTH) \
    || !defined(ROW_WARMUP_BOUND) || !defined(ROW_CROSSING_GAIN) || !defined(DELAYED_SUBTRACT) || !defined(TSSL_ABI_VERSION)
#error "build through tssl_plugin._impl.cpu, which passes the table layout, the ABI version and constants as -D flags"
#endif

/* neurons per block: the unit of the block-local state arrays and of the threads' work */
#define BLOCK 512

/* acc_ |= CALL for the units [0, n) split over nthreads (at most n) threads, OpenMP when compiled with it;
 * CALL reads its range as b0_, b1_. The caller declares `int acc_ = 0;` (a _Pragma cannot take the name). */
#ifdef _OPENMP
#define PARALLEL_RANGES(n, nthreads, CALL)                                                                     \
    do {                                                                                                        \
        int nt_ = (int64_t)(nthreads) > (int64_t)(n) ? (int)(n) : (nthreads);                                  \
        if (nt_ < 1) nt_ = 1;                                                                                   \
        _Pragma("omp parallel num_threads(nt_) if (nt_ > 1) reduction(| : acc_)")                               \
        {                                                                                                       \
            const int64_t tid_ = omp_get_thread_num(), nth_ = omp_get_num_threads();                            \
            const int64_t b0_ = (int64_t)(n) * tid_ / nth_, b1_ = (int64_t)(n) * (tid_ + 1) / nth_;             \
            acc_ |= (CALL);                                                                                     \
        }                                                                                                       \
    } while (0)
#else
#define PARALLEL_RANGES(n, nthreads, CALL)                                                                     \
    do {                                                                                                        \
        const int64_t b0_ = 0, b1_ = (int64_t)(n);                                                              \
        (void)(nthreads);                                                                                       \
        acc_ |= (CALL);                                                                                         \
    } while (0)
#endif

/* the entry points' argument lists are those of tssl_plugin._impl.cpu.ABI_VERSION (passed as -DTSSL_ABI_VERSION) */
int tssl_abi_version(void) { return TSSL_ABI_VERSION; }

#define REAL float
#define SUF f32
#define TSSL_IS_DOUBLE 0
#include "tssl_cpu_body.h"
#undef REAL
#undef SUF
#undef TSSL_IS_DOUBLE

#define REAL double
#define SUF f64
#define TSSL_IS_DOUBLE 1
#include "tssl_cpu_body.h"
