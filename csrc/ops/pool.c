/* pool.c — max pooling over the last two dims: forward, backward and the CPU kernels.
 * Shapes: x (N,C,H,W) or (C,H,W) -> values and int64 indices (..,oh,ow), oh = (H + 2 ph - dh (kh - 1) - 1) / sh + 1
 * (floor; ceil_mode is not supported), as torch's F.max_pool2d. Padding counts as -inf and may be at most half
 * the kernel; a NaN in a window is its maximum (the last NaN, as torch's CPU kernel); the indices are flat
 * positions in the plane's H*W. The backward gives each input element the sum of the gradients of the windows
 * whose index points at it, one item per input element (no atomics on the GPU, deterministic). */
#include "internal.h"

#include <stdio.h>

/* ======================================================================= op level ====== */

/* node ints: 0 kh, 1 kw, 2 sh, 3 sw, 4 ph, 5 pw, 6 dh, 7 dw; saved 0: the indices */
static int max_pool2d_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  cc_tensor *dx = cc_empty(node->ndim, node->shape, gc->dtype, gc->storage->device);
  cc_tensor *in[2] = {gc, node->saved[0]};
  int rc = dx ? cc_run(CC_OP_MAX_POOL2D_BACKWARD, dx, 2, in, node->ints, 8, NULL, 0) : -1;
  cc_release(gc);
  if (rc) {
    cc_release(dx);
    return -1;
  }
  gi[0] = dx;
  return 0;
}

int cc_max_pool2d(cc_tensor *x, const cc_max_pool2d_opts *o, cc_tensor **values, cc_tensor **indices) {
  *values = NULL;
  if (indices) *indices = NULL;
  if (x->ndim != 3 && x->ndim != 4) {
    char s[128];
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("max_pool2d: expected a 3-D (C,H,W) or 4-D (N,C,H,W) input, got shape %s", s);
    return -1;
  }
  if (cc_check_floating("max_pool2d", x)) return -1;
  if (o->ceil_mode) {
    cc_set_error("max_pool2d: ceil_mode = true is not supported (only floor)");
    return -1;
  }
  for (int k = 0; k < 2; k++) {
    if (o->kernel[k] <= 0 || o->stride[k] <= 0 || o->dilation[k] <= 0 || o->padding[k] < 0) {
      cc_set_error("max_pool2d: kernel size, stride and dilation must be positive and padding non-negative, got "
                   "kernel (%lld, %lld), stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld)",
                   (long long)o->kernel[0], (long long)o->kernel[1], (long long)o->stride[0], (long long)o->stride[1],
                   (long long)o->padding[0], (long long)o->padding[1], (long long)o->dilation[0],
                   (long long)o->dilation[1]);
      return -1;
    }
    if (o->padding[k] > o->kernel[k] / 2) {
      cc_set_error("max_pool2d: padding (%lld, %lld) must be at most half the kernel size (%lld, %lld)",
                   (long long)o->padding[0], (long long)o->padding[1], (long long)o->kernel[0], (long long)o->kernel[1]);
      return -1;
    }
  }
  int nd = x->ndim;
  int64_t H = x->shape[nd - 2], W = x->shape[nd - 1], out[2];
  for (int k = 0; k < 2; k++) {
    int64_t span = (k ? W : H) + 2 * o->padding[k] - o->dilation[k] * (o->kernel[k] - 1) - 1;
    out[k] = span < 0 ? 0 : span / o->stride[k] + 1;
  }
  if (out[0] < 1 || out[1] < 1) {
    cc_set_error("max_pool2d: the input's %lldx%lld plane is too small for the window: the output would be %lldx%lld",
                 (long long)H, (long long)W, (long long)out[0], (long long)out[1]);
    return -1;
  }
  int64_t shape[4];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
  shape[nd - 2] = out[0];
  shape[nd - 1] = out[1];
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_MAX_POOL2D;
  call.n_in = 1;
  call.n_out = 2;
  bool was = cc_set_grad_enabled(false);
  call.in[0] = cc_contiguous(x);
  cc_set_grad_enabled(was);
  call.out[0] = call.in[0] ? cc_empty(nd, shape, x->dtype, x->storage->device) : NULL;
  call.out[1] = call.in[0] ? cc_empty(nd, shape, CC_INT64, x->storage->device) : NULL;
  int64_t ints[8] = {o->kernel[0], o->kernel[1], o->stride[0], o->stride[1],
                     o->padding[0], o->padding[1], o->dilation[0], o->dilation[1]};
  memcpy(call.i, ints, sizeof ints);
  int rc = !call.out[0] || !call.out[1] || cc_dispatch(&call);
  cc_release(call.in[0]);
  if (rc) {
    cc_release(call.out[0]);
    cc_release(call.out[1]);
    return -1;
  }
  cc_node *node = cc_attach_node(call.out[0], "MaxPool2dBackward", max_pool2d_backward, 1, &x);
  if (node) {
    memcpy(node->ints, ints, sizeof ints);
    node->ndim = nd;
    memcpy(node->shape, x->shape, sizeof(int64_t) * (size_t)nd);
    cc_node_save(node, call.out[1]);
  }
  *values = call.out[0];
  if (indices) *indices = call.out[1];
  else cc_release(call.out[1]);
  return 0;
}

/* ======================================================================= CPU kernels ===== */

typedef struct {
  int64_t planes, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} pool_dims;

static pool_dims dims_of(const cc_call *c, const cc_tensor *big, const cc_tensor *small) {
  int nd = big->ndim;
  pool_dims p;
  p.H = big->shape[nd - 2];
  p.W = big->shape[nd - 1];
  p.oh = small->shape[nd - 2];
  p.ow = small->shape[nd - 1];
  p.planes = p.H > 0 && p.W > 0 ? cc_numel(big) / (p.H * p.W) : 0;
  p.kh = c->i[0], p.kw = c->i[1], p.sh = c->i[2], p.sw = c->i[3];
  p.ph = c->i[4], p.pw = c->i[5], p.dh = c->i[6], p.dw = c->i[7];
  return p;
}

/* one output cell: the window's maximum (NaN wins, the last one) and its flat index; -1 for no element */
#define MAX_POOL_FWD(T)                                                                            \
  _Pragma("omp parallel for schedule(static) if (n > 16384)")                                      \
  for (int64_t t = 0; t < n; t++) {                                                                \
    int64_t pl = t / (p.oh * p.ow), r = t - pl * (p.oh * p.ow), oy = r / p.ow, ox = r - oy * p.ow; \
    const T *xp = (const T *)cc_data_ptr(x) + pl * p.H * p.W;                                      \
    T m = (T)-INFINITY;                                                                            \
    int64_t mi = -1;                                                                               \
    for (int64_t ky = 0; ky < p.kh; ky++) {                                                        \
      int64_t iy = oy * p.sh - p.ph + ky * p.dh;                                                   \
      if (iy < 0 || iy >= p.H) continue;                                                           \
      for (int64_t kx = 0; kx < p.kw; kx++) {                                                      \
        int64_t ix = ox * p.sw - p.pw + kx * p.dw;                                                 \
        if (ix < 0 || ix >= p.W) continue;                                                         \
        T v = xp[iy * p.W + ix];                                                                   \
        if (mi < 0 || v > m || v != v) {                                                           \
          m = v;                                                                                   \
          mi = iy * p.W + ix;                                                                      \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
    ((T *)cc_data_ptr(y))[t] = m;                                                                  \
    ((int64_t *)cc_data_ptr(idx))[t] = mi;                                                         \
  }

/* the common 2x2 window with stride 2 (no padding, no dilation): one output row per iteration, the same
   order of comparisons as MAX_POOL_FWD (row-major in the window, NaN wins, the last one) */
#define MAX_POOL_FWD_2X2(T)                                                                        \
  _Pragma("omp parallel for schedule(static) if (n > 16384)")                                      \
  for (int64_t row = 0; row < p.planes * p.oh; row++) {                                            \
    int64_t pl = row / p.oh, oy = row - pl * p.oh;                                                 \
    const T *r0 = (const T *)cc_data_ptr(x) + pl * p.H * p.W + 2 * oy * p.W, *r1 = r0 + p.W;       \
    T *yo = (T *)cc_data_ptr(y) + row * p.ow;                                                      \
    int64_t *io = (int64_t *)cc_data_ptr(idx) + row * p.ow, base = 2 * oy * p.W;                   \
    for (int64_t ox = 0; ox < p.ow; ox++) {                                                        \
      T v0 = r0[2 * ox], v1 = r0[2 * ox + 1], v2 = r1[2 * ox], v3 = r1[2 * ox + 1];                \
      T m = v0;                                                                                    \
      int64_t mi = base + 2 * ox;                                                                  \
      if (v1 > m || v1 != v1) m = v1, mi = base + 2 * ox + 1;                                      \
      if (v2 > m || v2 != v2) m = v2, mi = base + p.W + 2 * ox;                                    \
      if (v3 > m || v3 != v3) m = v3, mi = base + p.W + 2 * ox + 1;                                \
      yo[ox] = m;                                                                                  \
      io[ox] = mi;                                                                                 \
    }                                                                                              \
  }

/* in0 contiguous x (..,H,W) -> out0 values, out1 int64 indices (..,oh,ow); ints as MAX_POOL2D */
static int max_pool2d_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0], *idx = c->out[1];
  if (!cc_max_pool2d_operands_ok(c, x, y, idx)) return -1;
  pool_dims p = dims_of(c, x, y);
  int64_t n = p.planes * p.oh * p.ow;
  bool two_by_two = p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2 && p.ph == 0 && p.pw == 0 && p.dh == 1 &&
                    p.dw == 1;
  if (two_by_two && x->dtype == CC_FLOAT32) {
    MAX_POOL_FWD_2X2(float)
  } else if (two_by_two) {
    MAX_POOL_FWD_2X2(double)
  } else if (x->dtype == CC_FLOAT32) {
    MAX_POOL_FWD(float)
  } else {
    MAX_POOL_FWD(double)
  }
  return 0;
}

/* one input element: the gradients of the windows covering it whose index is its own, kernel rows and
   columns in increasing order */
#define MAX_POOL_BWD(T)                                                                            \
  _Pragma("omp parallel for schedule(static) if (n > 16384)")                                      \
  for (int64_t t = 0; t < n; t++) {                                                                \
    int64_t pl = t / (p.H * p.W), self = t - pl * (p.H * p.W), iy = self / p.W, ix = self - iy * p.W; \
    const T *gp = (const T *)cc_data_ptr(g) + pl * p.oh * p.ow;                                    \
    const int64_t *ip = (const int64_t *)cc_data_ptr(idx) + pl * p.oh * p.ow;                      \
    T acc = 0;                                                                                     \
    for (int64_t ky = 0; ky < p.kh; ky++) {                                                        \
      int64_t ty = iy + p.ph - ky * p.dh;                                                          \
      if (ty < 0 || ty % p.sh || ty / p.sh >= p.oh) continue;                                      \
      for (int64_t kx = 0; kx < p.kw; kx++) {                                                      \
        int64_t tx = ix + p.pw - kx * p.dw;                                                        \
        if (tx < 0 || tx % p.sw || tx / p.sw >= p.ow) continue;                                    \
        int64_t o = (ty / p.sh) * p.ow + tx / p.sw;                                                \
        if (ip[o] == self) acc += gp[o];                                                           \
      }                                                                                            \
    }                                                                                              \
    ((T *)cc_data_ptr(dx))[t] = acc;                                                               \
  }

/* in0 contiguous grad, in1 int64 indices (..,oh,ow) -> out dx (..,H,W); ints as MAX_POOL2D */
static int max_pool2d_backward_cpu(const cc_call *c) {
  cc_tensor *g = c->in[0], *idx = c->in[1], *dx = c->out[0];
  if (!cc_max_pool2d_operands_ok(c, dx, g, idx)) return -1;
  pool_dims p = dims_of(c, dx, g);
  int64_t n = p.planes * p.H * p.W;
  if (dx->dtype == CC_FLOAT32) {
    MAX_POOL_BWD(float)
  } else {
    MAX_POOL_BWD(double)
  }
  return 0;
}

void cc_cpu_register_pool(void) {
  cc_register_kernel(CC_OP_MAX_POOL2D, CC_CPU, max_pool2d_cpu);
  cc_register_kernel(CC_OP_MAX_POOL2D_BACKWARD, CC_CPU, max_pool2d_backward_cpu);
}
