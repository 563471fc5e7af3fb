/* scalar.h — element math written once, for the CPU loops (C11, type-generic math) and the CUDA
 * kernels (C++ templates; also host C++). Every function works on float and double alike: in C, <tgmath.h>
 * picks expf/exp by argument type; in CUDA the math overloads do.
 * Also the Philox4x32-10 counter-based generator behind every random op.
 */
#ifndef COCOLA_SCALAR_H
#define COCOLA_SCALAR_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define CC_SCALAR_CXX 1
#define CC_HD __host__ __device__ __forceinline__
#include <cmath>
#elif defined(__cplusplus) /* host C++: the CUDA kernels emulated on the host (COCOLA_CUDA=EMULATE) */
#define CC_SCALAR_CXX 1
#define CC_HD inline
#include <math.h>
#else
#define CC_HD static inline __attribute__((always_inline))
#include <tgmath.h>
#endif

/* ---- unary forward: y = f(x) ---- */
/* each comes as a pair of float and double functions generated from one expression */
#ifdef CC_SCALAR_CXX
#define CC_DEF1(name, expr)                                                                        \
  template <typename T> CC_HD T name(T x) { return (expr); }
#define CC_DEF_BW(name, expr)                                                                      \
  template <typename T> CC_HD T name(T g, T x, T y) { (void)x; (void)y; return (expr); }
#define CC_DEF2(name, expr)                                                                        \
  template <typename T> CC_HD T name(T a, T b) { return (expr); }
#define CC_DEF1P(name, expr)                                                                       \
  template <typename T> CC_HD T name(T x, T a) { return (expr); }
#define CC_DEF_BWP(name, expr)                                                                     \
  template <typename T> CC_HD T name(T g, T x, T y, T a) { (void)x; (void)y; return (expr); }
#define CC_FN(name, T) name<T>
#else
#define CC_DEF1(name, expr)                                                                        \
  CC_HD float name##_f(float x) { typedef float T; (void)sizeof(T); return (expr); }              \
  CC_HD double name##_d(double x) { typedef double T; (void)sizeof(T); return (expr); }
#define CC_DEF_BW(name, expr)                                                                      \
  CC_HD float name##_f(float g, float x, float y) {                                                \
    typedef float T; (void)sizeof(T); (void)x; (void)y; return (expr);                             \
  }                                                                                                \
  CC_HD double name##_d(double g, double x, double y) {                                            \
    typedef double T; (void)sizeof(T); (void)x; (void)y; return (expr);                            \
  }
#define CC_DEF2(name, expr)                                                                        \
  CC_HD float name##_f(float a, float b) { return (expr); }                                        \
  CC_HD double name##_d(double a, double b) { return (expr); }
/* with one parameter a (a slope, a scale) */
#define CC_DEF1P(name, expr)                                                                       \
  CC_HD float name##_f(float x, float a) { typedef float T; (void)sizeof(T); return (expr); }     \
  CC_HD double name##_d(double x, double a) { typedef double T; (void)sizeof(T); return (expr); }
#define CC_DEF_BWP(name, expr)                                                                     \
  CC_HD float name##_f(float g, float x, float y, float a) {                                       \
    typedef float T; (void)sizeof(T); (void)x; (void)y; return (expr);                             \
  }                                                                                                \
  CC_HD double name##_d(double g, double x, double y, double a) {                                  \
    typedef double T; (void)sizeof(T); (void)x; (void)y; return (expr);                            \
  }
#endif

/* exp for float that compilers vectorise (Cephes' expf: range reduction by ln 2, degree-6
 * polynomial, exponent by bit assembly): within 2 ulp, NaN propagates, exact 0 below
 * ln(FLT_MIN) = -87.34 (no denormals), inf above 88.37 */
CC_HD float cc_expf_fast(float x0) {
  float x = x0 < -87.3365f ? -87.3365f : x0;
  x = x > 88.3762626647950f ? 88.3762626647950f : x;
  x = x == x ? x : 0.0f; /* NaN: returned as is below, kept out of the integer conversion */
  /* round to nearest by the 1.5 * 2^23 trick: floor() blocks vectorisation without -ffast-math */
  float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  float z = x * x;
  float y = 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * z + x + 1.0f;
  union {
    int32_t i;
    float f;
  } scale;
  scale.i = (int32_t)((uint32_t)((int32_t)fx + 127) << 23);
  return x0 < -87.3365f ? 0.0f : (x0 == x0 ? y * scale.f : x0);
}

/* exp for the activations: the vectorisable float version above on the CPU, libm/CUDA exp otherwise */
#ifdef CC_SCALAR_CXX
template <typename T> CC_HD T cc_exp_act(T x) { return exp(x); }
#define CC_EXP_ACT(x) cc_exp_act(x)
#else
#define CC_EXP_ACT(x) _Generic((x), float: cc_expf_fast, default: exp)(x)
#endif

/* erf for float that compilers vectorise: Abramowitz & Stegun 7.1.26 on |x| (absolute error at most
 * 1.5e-7, about an ulp of values near 1) with the exp above; NaN propagates, +-inf give +-1 */
CC_HD float cc_erff_fast(float x) {
  float a = x < 0 ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  float r = 1.0f - p * cc_expf_fast(-(a * a));
  r = a > 10.0f ? 1.0f : r; /* inf * 0 above */
  return x < 0 ? -r : (x == x ? r : x);
}

/* erf for the activations (GELU): the vectorisable float version on the CPU, libm/CUDA erf otherwise */
#ifdef CC_SCALAR_CXX
template <typename T> CC_HD T cc_erf_act(T x) { return erf(x); }
#define CC_ERF_ACT(x) cc_erf_act(x)
#else
#define CC_ERF_ACT(x) _Generic((x), float: cc_erff_fast, default: erf)(x)
#endif

/* forward y = f(x) */
CC_DEF1(cc_neg, -x)
CC_DEF1(cc_exp, exp(x))
CC_DEF1(cc_log, log(x))
CC_DEF1(cc_sqrt, sqrt(x))
CC_DEF1(cc_abs, fabs(x))
CC_DEF1(cc_relu, (x > 0 || x != x) ? x : (T)0)
CC_DEF1(cc_sigmoid, 1 / (1 + CC_EXP_ACT(-x)))
CC_DEF1(cc_silu, x / (1 + CC_EXP_ACT(-x)))
CC_DEF1(cc_tanh, tanh(x))
/* exact GELU as torch's default: x * Phi(x) */
CC_DEF1(cc_gelu, x * (CC_ERF_ACT(x * (T)0.70710678118654752440) + 1) / 2)
CC_DEF1(cc_sin, sin(x))
CC_DEF1(cc_cos, cos(x))
CC_DEF1(cc_floor, floor(x))
/* halves to the even neighbour, as torch.round (rint in the default rounding mode) */
CC_DEF1(cc_round, rint(x))

/* backward: dL/dx given g = dL/dy, the input x and the output y */
CC_DEF_BW(cc_neg_bw, -g)
CC_DEF_BW(cc_exp_bw, g * y)
CC_DEF_BW(cc_log_bw, g / x)
CC_DEF_BW(cc_sqrt_bw, g / (2 * y))
CC_DEF_BW(cc_abs_bw, x > 0 ? g : (x < 0 ? -g : (T)0))
CC_DEF_BW(cc_relu_bw, x > 0 ? g : (T)0)
CC_DEF_BW(cc_sigmoid_bw, g * y * (1 - y))
CC_DEF_BW(cc_silu_bw, g * (1 / (1 + CC_EXP_ACT(-x))) * (1 + x * (1 - 1 / (1 + CC_EXP_ACT(-x)))))
CC_DEF_BW(cc_tanh_bw, g * (1 - y * y))
/* d/dx x Phi(x) = Phi(x) + x phi(x) */
CC_DEF_BW(cc_gelu_bw, g * ((CC_ERF_ACT(x * (T)0.70710678118654752440) + 1) / 2 +
                           x * CC_EXP_ACT(-x * x / 2) * (T)0.39894228040143267794))
CC_DEF_BW(cc_sin_bw, g * cos(x))
CC_DEF_BW(cc_cos_bw, -g * sin(x))
/* piecewise constant: a zero gradient (even where g is not finite), as torch */
CC_DEF_BW(cc_floor_bw, ((void)g, (T)0))
CC_DEF_BW(cc_round_bw, ((void)g, (T)0))

/* with a parameter a: leaky_relu (negative slope a), elu (alpha a, torch's scale 1 and input scale 1),
 * gelu with the tanh approximation (a unused; "gelu_new" of GPT-2 / T5, torch's approximate='tanh') */
CC_DEF1P(cc_leaky_relu, x > 0 ? x : x * a)
CC_DEF1P(cc_elu, x > 0 ? x : a * expm1(x))
#define CC_GELU_TANH_BETA 0.79788456080286535588 /* sqrt(2 / pi) */
#define CC_GELU_TANH_KAPPA 0.044715
CC_DEF1P(cc_gelu_tanh, ((void)a, (T)0.5 * x * (1 + tanh((T)CC_GELU_TANH_BETA * (x + (T)CC_GELU_TANH_KAPPA * x * x * x)))))
CC_DEF_BWP(cc_leaky_relu_bw, x > 0 ? g : g * a)
/* d/dx a (e^x - 1) = a e^x = y + a where x <= 0 */
CC_DEF_BWP(cc_elu_bw, x > 0 ? g : g * (y + a))
/* as torch: 0.5 (1 + t) + 0.5 x (1 - t^2) beta (1 + 3 kappa x^2), t = tanh(beta (x + kappa x^3)) */
CC_DEF_BWP(cc_gelu_tanh_bw,
           ((void)a, g * ((T)0.5 * (1 + tanh((T)CC_GELU_TANH_BETA * (x + (T)CC_GELU_TANH_KAPPA * x * x * x))) +
                          (T)0.5 * x *
                              (1 - tanh((T)CC_GELU_TANH_BETA * (x + (T)CC_GELU_TANH_KAPPA * x * x * x)) *
                                       tanh((T)CC_GELU_TANH_BETA * (x + (T)CC_GELU_TANH_KAPPA * x * x * x))) *
                              (T)CC_GELU_TANH_BETA * (1 + 3 * (T)CC_GELU_TANH_KAPPA * x * x))))

/* binary forward */
CC_DEF2(cc_add2, a + b)
CC_DEF2(cc_sub2, a - b)
CC_DEF2(cc_mul2, a * b)
CC_DEF2(cc_div2, a / b)
CC_DEF2(cc_pow2, pow(a, b))
CC_DEF2(cc_max2, a > b ? a : (a == a ? b : a)) /* propagates NaN of a */

/* ---- the order of sort and topk: a goes before b. NaN sorts after every number (torch's order),
 * the whole order reverses when descending, and equal keys are not before each other, so a sort
 * that keeps ties in their input order (both sorts here do) is the one torch's stable sort gives. ---- */
#ifdef CC_SCALAR_CXX
template <typename T> CC_HD bool cc_is_nan(T x) { return x != x; }
CC_HD bool cc_is_nan(int64_t x) { return (void)x, false; }
template <typename T> CC_HD bool cc_sort_before(T a, T b, int descending) {
  return descending ? (b < a || (cc_is_nan(a) && !cc_is_nan(b))) : (a < b || (cc_is_nan(b) && !cc_is_nan(a)));
}
#else
#define CC_SORT_BEFORE_DEF(SUF, T, IS_NAN)                                                         \
  CC_HD int cc_sort_before##SUF(T a, T b, int descending) {                                        \
    return descending ? (b < a || (IS_NAN(a) && !IS_NAN(b))) : (a < b || (IS_NAN(b) && !IS_NAN(a))); \
  }
#define CC_FLOAT_IS_NAN(v) ((v) != (v))
#define CC_INT_IS_NAN(v) ((void)(v), 0)
CC_SORT_BEFORE_DEF(_f, float, CC_FLOAT_IS_NAN)
CC_SORT_BEFORE_DEF(_d, double, CC_FLOAT_IS_NAN)
CC_SORT_BEFORE_DEF(_i, int64_t, CC_INT_IS_NAN)
#endif

/* ---- Adam / AdamW, one element, in torch.optim.Adam's single-tensor order (torch 1.13):
 * decoupled ? p *= 1 - lr*wd : g += wd*p;  m = m*b1 + (1-b1)*g;  v = v*b2 + (1-b2)*g*g;
 * denom = sqrt(v) / sqrt(bc2) + eps;  p += -step_size * (m / denom), step_size = lr / bc1.
 * Scalars arrive precomputed in double (as Python computes them) and are rounded to T. ---- */
#define CC_ADAM_DEF(T, SUF)                                                                        \
  CC_HD void cc_adam_update##SUF(T *p, T g, T *m, T *v, T b1, T one_m_b1, T b2, T one_m_b2, T wd,  \
                                 T decay, int decoupled, T bc2_sqrt, T eps, T neg_step_size) {     \
    T pv = *p;                                                                                     \
    if (decoupled) pv = pv * decay;                                                                \
    else if (wd != 0) g = g + wd * pv;                                                             \
    T mv = *m * b1 + one_m_b1 * g;                                                                 \
    T vv = *v * b2 + one_m_b2 * g * g;                                                             \
    T denom = sqrt(vv) / bc2_sqrt + eps;                                                           \
    *m = mv;                                                                                       \
    *v = vv;                                                                                       \
    *p = pv + neg_step_size * (mv / denom);                                                        \
  }
CC_ADAM_DEF(float, _f)
CC_ADAM_DEF(double, _d)

/* ---- Philox4x32-10 (Salmon et al. 2011), as in curand and numpy's Philox ---- */
typedef struct {
  uint32_t v[4];
} cc_philox_out;

CC_HD uint32_t cc_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t product = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(product >> 32);
  return (uint32_t)product;
}

/* counter = 128-bit (ctr_lo, ctr_hi as 2 x 64), key = seed */
CC_HD cc_philox_out cc_philox(uint64_t seed, uint64_t counter_lo, uint64_t counter_hi) {
  uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
  uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = cc_mulhilo32(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = cc_mulhilo32(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  cc_philox_out out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

/* uniform in [0, 1) from 32 bits (24 bits of mantissa for float precision, exact in double) */
CC_HD double cc_u32_to_unit(uint32_t r) { return (double)(r >> 8) * (1.0 / 16777216.0); }
/* uniform in (0, 1] (never 0, for logarithms) */
CC_HD double cc_u32_to_unit_open(uint32_t r) { return ((double)(r >> 8) + 1.0) * (1.0 / 16777216.0); }

/* the random value number k of a stream that starts at counter c0: each counter yields 4 words.
 * kind 0 uniform [0,1), kind 1 standard normal (Box-Muller on the word pair (2j, 2j+1)) */
CC_HD double cc_random_at(uint64_t seed, uint64_t c0, int64_t k, int kind) {
  if (kind == 0) {
    cc_philox_out r = cc_philox(seed, c0 + (uint64_t)(k >> 2), 0);
    return cc_u32_to_unit(r.v[k & 3]);
  }
  cc_philox_out r = cc_philox(seed, c0 + (uint64_t)(k >> 1), 1);
  int pair = (int)(k & 1);
  double u1 = cc_u32_to_unit_open(r.v[2 * pair]);
  double u2 = cc_u32_to_unit(r.v[2 * pair + 1]);
  double radius = sqrt(-2.0 * log(u1));
  return radius * cos(6.283185307179586476925 * u2);
}

/* ---- 16-bit floats as bit patterns: bfloat16 (autocast on CUDA, BF16 files) and IEEE half (F16
 * files, float16 exports); conversions from float round to nearest even ---- */
CC_HD uint32_t cc_float_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}
CC_HD float cc_bits_float(uint32_t u) {
  float v;
  memcpy(&v, &u, 4);
  return v;
}
CC_HD float cc_bf16_to_float(uint16_t h) { return cc_bits_float((uint32_t)h << 16); }
CC_HD uint16_t cc_float_to_bf16(float v) {
  uint32_t u = cc_float_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN stays a (quiet) NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
CC_HD float cc_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  return cc_bits_float(bits);
}
CC_HD uint16_t cc_float_to_half(float v) {
  uint32_t x = cc_float_bits(v);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = (int32_t)((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
  if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
  if (exp <= 0) { /* subnormal or zero */
    if (exp < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
  return (uint16_t)half;
}

#endif
