// bf16 matrix products with fp32 results (private to src/knn): the blocked kNN's candidate
// products and its quantizer's, where the CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16;
// oneDNN's matmul: ~420 GFLOP/s against ~110-190 for OpenBLAS's sgemm on 2 AVX-512 cores).
#pragma once

#include <cstdint>

namespace facecluster {

// Whether this build (oneDNN) and this CPU (AVX512-BF16 or AMX-BF16) multiply bf16 natively.
bool bf16_products_native();

// in -> bf16 (round to nearest even; inputs are finite).
void round_to_bf16(const float* in, int64_t count, uint16_t* out);

// out (nq x nb, fp32) = a (nq x d) times b (nb x d) transposed, both bf16 and row-major, fp32
// accumulation. Called inside an OpenMP parallel region it runs on the calling thread alone.
// Each new shape costs a kernel compilation (once per thread): pad nq and nb to a few sizes
// (bf16_padded_rows).
void bf16_product(const uint16_t* a, int64_t nq, const uint16_t* b, int64_t nb, int64_t d, float* out);

// |a.b - bf16_product(a, b)| <= bf16_product_error_bound(d) |a| |b| for rows of dimension d:
// each input rounded to bf16 is off by at most 2^-8 of itself, so a product of two by
// 2^-7 + 2^-16, summed over d terms in fp32 (at most d 2^-24 more, relative).
double bf16_product_error_bound(int64_t d);

// The fp32 inner product of two rows (the re-ranking of bf16 candidates), vectorised for the
// CPU it runs on (AVX-512, AVX2 or baseline, chosen at load time).
float dot_f32(const float* a, const float* b, int64_t d);

// The first c in [from, m) with s[c] + slack bn[c] > threshold (a candidate whose bf16 product,
// widened by its error bound, is above a row's k-th best so far), or m. Vectorised as dot_f32.
int64_t next_candidate(const float* s, const float* bn, float slack, float threshold, int64_t from, int64_t m);

// rows rounded up to a multiple of 32: the shapes bf16_product is called with (zero rows past the
// real ones), at most 31 rows of extra work.
inline int64_t bf16_padded_rows(int64_t rows) { return (rows + 31) / 32 * 32; }

}  // namespace facecluster
