#include "bf16.h"

#include <cmath>
#include <cstring>

#include "facecluster/error.h"

#ifdef FC_WITH_DNNL
#include <dnnl.hpp>
#endif

namespace facecluster {

bool bf16_products_native() {
#ifdef FC_WITH_DNNL
  static const bool native = __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  return native;
#else
  return false;
#endif
}

void round_to_bf16(const float* in, int64_t count, uint16_t* out) {
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, in + i, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    out[i] = static_cast<uint16_t>(u >> 16);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) float dot_f32(const float* a, const float* b, int64_t d) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < d; ++i) acc[0] += a[i] * b[i];
  float s = 0;
  for (float v : acc) s += v;
  return s;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) int64_t next_candidate(const float* s, const float* bn, float slack,
                                                                                     float threshold, int64_t from, int64_t m) {
  int64_t c = from;
  for (; c + 16 <= m; c += 16) {  // most chunks hold none: test 16 at a time
    bool any = false;
    for (int j = 0; j < 16; ++j) any |= s[c + j] + slack * bn[c + j] > threshold;
    if (any) break;
  }
  for (; c < m; ++c)
    if (s[c] + slack * bn[c] > threshold) return c;
  return m;
}

double bf16_product_error_bound(int64_t d) {
  const double u = std::ldexp(1.0, -8), f32 = std::ldexp(1.0, -24);
  const double rounding = 2 * u + u * u;
  // fp32 accumulation, once in the bf16 product and once in the fp32 product it is compared
  // with (the heap's values), each at most d 2^-24 of the magnitudes (with room for rounding).
  return (rounding + 2.0 * 1.01 * double(d) * f32 * (1 + rounding)) * 1.001;
}

#ifdef FC_WITH_DNNL
namespace {
const dnnl::engine& cpu_engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
}  // namespace

void bf16_product(const uint16_t* a, int64_t nq, const uint16_t* b, int64_t nb, int64_t d, float* out) {
  using dnnl::memory;
  // oneDNN compiles a kernel per shape (milliseconds, as long as a small product): one primitive
  // per thread and shape, kept for the thread's life. Callers pad their shapes to a few.
  struct Shape {
    int64_t nq, nb, d;
    bool operator==(const Shape& o) const { return nq == o.nq && nb == o.nb && d == o.d; }
  };
  struct Kernel {
    Shape shape;
    memory::desc ad, bd, cd;
    dnnl::matmul prim;
  };
  thread_local std::vector<Kernel> kernels;
  thread_local dnnl::stream stream(cpu_engine());
  const Shape shape{nq, nb, d};
  Kernel* k = nullptr;
  for (Kernel& c : kernels)
    if (c.shape == shape) k = &c;
  if (!k) {
    Kernel c;
    c.shape = shape;
    c.ad = memory::desc({nq, d}, memory::data_type::bf16, memory::format_tag::ab);
    c.bd = memory::desc({d, nb}, memory::data_type::bf16, memory::format_tag::ba);  // b's rows are columns
    c.cd = memory::desc({nq, nb}, memory::data_type::f32, memory::format_tag::ab);
    c.prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(c.ad, c.bd, c.cd), cpu_engine()));
    kernels.push_back(std::move(c));
    k = &kernels.back();
  }
  memory am(k->ad, cpu_engine(), const_cast<uint16_t*>(a)), bm(k->bd, cpu_engine(), const_cast<uint16_t*>(b)),
      cm(k->cd, cpu_engine(), out);
  k->prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  stream.wait();
}
#else
void bf16_product(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, float*) {
  FC_FAIL("internal: bf16 products need a build with oneDNN (libdnnl-dev)");
}
#endif

}  // namespace facecluster
