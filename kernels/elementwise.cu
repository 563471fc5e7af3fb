/* elementwise.cu — fill, copy (any dtype pair), unary and its backward, binary, tensor-scalar and
 * where over same-shaped strided operands (broadcast inputs have stride 0). The element math is
 * kernels/scalar.h, the functions the CPU loops of csrc/ops/elementwise.c call. */
#include "cuda_common.cuh"
#include "cocola.h" /* cc_unary_kind */

/* ---- fill ---- */
template <typename T> struct FillF {
  cck_iter it;
  T value;
  __device__ void operator()(int64_t i) const {
    int64_t off[1];
    cck_offsets<1>(it, i, off);
    ((T *)it.ptr[0])[off[0]] = value;
  }
};

extern "C" cudaError_t cck_fill(const cck_iter *it, double value, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[0], T, return cck_launch(it->numel, FillF<T>{*it, (T)value}, s));
}

/* ---- copy with conversion ---- */
template <typename TO, typename TI> struct CopyF {
  cck_iter it;
  __device__ void operator()(int64_t i) const {
    int64_t off[2];
    cck_offsets<2>(it, i, off);
    ((TO *)it.ptr[0])[off[0]] = (TO)((const TI *)it.ptr[1])[off[1]];
  }
};

template <typename TO> static cudaError_t copy_to(const cck_iter *it, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[1], TI, return cck_launch(it->numel, (CopyF<TO, TI>{*it}), s));
}

extern "C" cudaError_t cck_copy(const cck_iter *it, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[0], TO, return copy_to<TO>(it, s));
}

/* ---- unary ---- */
template <typename T> __device__ __forceinline__ T unary_fn(int kind, T x, T param) {
  switch (kind) {
  case CC_UNARY_LEAKY_RELU: return cc_leaky_relu(x, param);
  case CC_UNARY_ELU: return cc_elu(x, param);
  case CC_UNARY_GELU_TANH: return cc_gelu_tanh(x, param);
  case CC_UNARY_NEG: return cc_neg(x);
  case CC_UNARY_EXP: return cc_exp(x);
  case CC_UNARY_LOG: return cc_log(x);
  case CC_UNARY_SQRT: return cc_sqrt(x);
  case CC_UNARY_ABS: return cc_abs(x);
  case CC_UNARY_RELU: return cc_relu(x);
  case CC_UNARY_SIGMOID: return cc_sigmoid(x);
  case CC_UNARY_SILU: return cc_silu(x);
  case CC_UNARY_TANH: return cc_tanh(x);
  case CC_UNARY_SIN: return cc_sin(x);
  case CC_UNARY_COS: return cc_cos(x);
  case CC_UNARY_FLOOR: return cc_floor(x);
  case CC_UNARY_ROUND: return cc_round(x);
  default: return cc_gelu(x); /* CC_UNARY_GELU */
  }
}

template <typename T> struct UnaryF {
  cck_iter it;
  int kind;
  T param;
  __device__ void operator()(int64_t i) const {
    int64_t off[2];
    cck_offsets<2>(it, i, off);
    ((T *)it.ptr[0])[off[0]] = unary_fn<T>(kind, ((const T *)it.ptr[1])[off[1]], param);
  }
};

/* integers: neg, abs, and floor and round (the integer itself); the op level refuses the others */
struct UnaryI64F {
  cck_iter it;
  int kind;
  __device__ void operator()(int64_t i) const {
    int64_t off[2];
    cck_offsets<2>(it, i, off);
    int64_t v = ((const int64_t *)it.ptr[1])[off[1]];
    ((int64_t *)it.ptr[0])[off[0]] = kind == CC_UNARY_NEG ? -v : (kind == CC_UNARY_ABS ? (v < 0 ? -v : v) : v);
  }
};

extern "C" cudaError_t cck_unary(const cck_iter *it, int kind, double param, cudaStream_t s) {
  if (it->dtype[0] == CCK_I64) return cck_launch(it->numel, UnaryI64F{*it, kind}, s);
  CCK_DISPATCH_FLOAT(it->dtype[0], T, return cck_launch(it->numel, UnaryF<T>{*it, kind, (T)param}, s));
}

template <typename T> __device__ __forceinline__ T unary_bw_fn(int kind, T g, T x, T y, T param) {
  switch (kind) {
  case CC_UNARY_LEAKY_RELU: return cc_leaky_relu_bw(g, x, y, param);
  case CC_UNARY_ELU: return cc_elu_bw(g, x, y, param);
  case CC_UNARY_GELU_TANH: return cc_gelu_tanh_bw(g, x, y, param);
  case CC_UNARY_NEG: return cc_neg_bw(g, x, y);
  case CC_UNARY_EXP: return cc_exp_bw(g, x, y);
  case CC_UNARY_LOG: return cc_log_bw(g, x, y);
  case CC_UNARY_SQRT: return cc_sqrt_bw(g, x, y);
  case CC_UNARY_ABS: return cc_abs_bw(g, x, y);
  case CC_UNARY_RELU: return cc_relu_bw(g, x, y);
  case CC_UNARY_SIGMOID: return cc_sigmoid_bw(g, x, y);
  case CC_UNARY_SILU: return cc_silu_bw(g, x, y);
  case CC_UNARY_TANH: return cc_tanh_bw(g, x, y);
  case CC_UNARY_SIN: return cc_sin_bw(g, x, y);
  case CC_UNARY_COS: return cc_cos_bw(g, x, y);
  case CC_UNARY_FLOOR: return cc_floor_bw(g, x, y);
  case CC_UNARY_ROUND: return cc_round_bw(g, x, y);
  default: return cc_gelu_bw(g, x, y); /* CC_UNARY_GELU */
  }
}

/* operands: dx, g, x, y */
template <typename T> struct UnaryBwF {
  cck_iter it;
  int kind;
  T param;
  __device__ void operator()(int64_t i) const {
    int64_t off[4];
    cck_offsets<4>(it, i, off);
    const T g = ((const T *)it.ptr[1])[off[1]], x = ((const T *)it.ptr[2])[off[2]];
    const T y = ((const T *)it.ptr[3])[off[3]];
    ((T *)it.ptr[0])[off[0]] = unary_bw_fn<T>(kind, g, x, y, param);
  }
};

extern "C" cudaError_t cck_unary_backward(const cck_iter *it, int kind, double param, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(it->dtype[0], T, return cck_launch(it->numel, UnaryBwF<T>{*it, kind, (T)param}, s));
}

/* ---- binary ---- */
__device__ __forceinline__ float cck_pow(float a, float b) { return cc_pow2(a, b); }
__device__ __forceinline__ double cck_pow(double a, double b) { return cc_pow2(a, b); }
__device__ __forceinline__ int64_t cck_pow(int64_t x, int64_t y) {
  int64_t r = 1;
  while (y-- > 0) r *= x;
  return r;
}

/* false: the kind has no binary kernel (the CPU kernel leaves the output as it is) */
template <typename T> __device__ __forceinline__ bool binary_fn(int kind, T x, T y, T *out) {
  switch (kind) {
  case CCK_BIN_ADD: *out = x + y; return true;
  case CCK_BIN_SUB: *out = x - y; return true;
  case CCK_BIN_MUL: *out = x * y; return true;
  case CCK_BIN_DIV: *out = x / y; return true;
  case CCK_BIN_POW: *out = cck_pow(x, y); return true;
  case CCK_BIN_EQ: *out = (T)(x == y); return true;
  case CCK_BIN_NE: *out = (T)(x != y); return true;
  case CCK_BIN_LT: *out = (T)(x < y); return true;
  case CCK_BIN_LE: *out = (T)(x <= y); return true;
  case CCK_BIN_GT: *out = (T)(x > y); return true;
  case CCK_BIN_GE: *out = (T)(x >= y); return true;
  case CCK_BIN_MAXIMUM: *out = x > y ? x : y; return true;
  default: return false;
  }
}

template <typename T> struct BinaryF {
  cck_iter it;
  int kind;
  __device__ void operator()(int64_t i) const {
    int64_t off[3];
    cck_offsets<3>(it, i, off);
    T r;
    if (binary_fn<T>(kind, ((const T *)it.ptr[1])[off[1]], ((const T *)it.ptr[2])[off[2]], &r))
      ((T *)it.ptr[0])[off[0]] = r;
  }
};

extern "C" cudaError_t cck_binary(const cck_iter *it, int kind, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[0], T, return cck_launch(it->numel, BinaryF<T>{*it, kind}, s));
}

/* ---- tensor (op) scalar ---- */
template <typename T> __device__ __forceinline__ bool scalar_fn(int kind, T x, T s, T s2, T *out) {
  switch (kind) {
  case CCK_BIN_ADD: *out = x + s; return true;
  case CCK_BIN_MUL: *out = x * s; return true;
  case CCK_BIN_RSUB: *out = s - x; return true;
  case CCK_BIN_RDIV: *out = s / x; return true;
  case CCK_BIN_POW: *out = cck_pow(x, s); return true;
  case CCK_BIN_CLAMP: *out = x < s ? s : (x > s2 ? s2 : x); return true;
  case CCK_SCALAR_IN_RANGE: *out = (T)(x >= s && x <= s2); return true;
  default: return false;
  }
}

template <typename T> struct ScalarF {
  cck_iter it;
  int kind;
  T s, s2;
  __device__ void operator()(int64_t i) const {
    int64_t off[2];
    cck_offsets<2>(it, i, off);
    T r;
    if (scalar_fn<T>(kind, ((const T *)it.ptr[1])[off[1]], s, s2, &r)) ((T *)it.ptr[0])[off[0]] = r;
  }
};

extern "C" cudaError_t cck_scalar(const cck_iter *it, int kind, double a, double b, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[0], T, return cck_launch(it->numel, (ScalarF<T>{*it, kind, (T)a, (T)b}), s));
}

/* ---- where: operands out, cond, a, b (one dtype) ---- */
template <typename T> struct WhereF {
  cck_iter it;
  __device__ void operator()(int64_t i) const {
    int64_t off[4];
    cck_offsets<4>(it, i, off);
    const T c = ((const T *)it.ptr[1])[off[1]];
    ((T *)it.ptr[0])[off[0]] = c != 0 ? ((const T *)it.ptr[2])[off[2]] : ((const T *)it.ptr[3])[off[3]];
  }
};

extern "C" cudaError_t cck_where(const cck_iter *it, cudaStream_t s) {
  CCK_DISPATCH_ALL(it->dtype[0], T, return cck_launch(it->numel, WhereF<T>{*it}, s));
}
