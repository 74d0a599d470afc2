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
 * Parameters: a table par[P_* * N + n] (ps = 1, one value per neuron) or
 * par[P_*] (ps = 0, one value for all neurons); row order in _params.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { P_ITM, P_BETA, P_ITS, P_DECS, P_TH, P_THI, P_WL, NPAR };
enum { R_ZERO = 0, R_SUB = 1, R_SAL = 2, R_NONE = 3 };

#define BLOCK 512
#define CAP 8.0
#define WIDTH 0.2

int tssl_abi_version(void) { return 1; }

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
