/* conv.c — conv2d, conv_transpose2d, the 1-D convolutions (over a height of 1), constant padding and
 * adaptive average pooling: op level (checks, outputs,
 * autograd nodes), backward rules and the CPU kernels (the conv kernels, written once for float and
 * double, live in conv_cpu_tmpl.c and are included below).
 * Shapes: conv2d x (N,C,H,W) or (C,H,W), w (O,C/groups,kh,kw), b (O) -> (N,O,Ho,Wo), torch's
 * F.conv2d semantics; conv_transpose2d x (N,Cin,H,W), w (Cin,Cout/groups,kh,kw) as F.conv_transpose2d; pad: F.pad constant mode, pads in torch order (last dim first), negative
 * pads crop; adaptive_avg_pool2d: (N,C,H,W) or (C,H,W) -> (..,oh,ow) with torch's bins. */
#include "internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ======================================================================= op level ====== */

static cc_tensor *contiguous_nograd(cc_tensor *t) {
  if (!t) return NULL;
  bool was = cc_set_grad_enabled(false);
  cc_tensor *c = cc_contiguous(t);
  cc_set_grad_enabled(was);
  return c;
}

/* call ints: 0 sh, 1 sw, 2 ph, 3 pw, 4 dh, 5 dw, 6 groups */
static int conv_run(cc_op op, cc_tensor *out, cc_tensor *a, cc_tensor *b, cc_tensor *bias, const int64_t *ints) {
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = op;
  call.n_out = 1;
  call.out[0] = out;
  call.n_in = 3;
  call.in[0] = a;
  call.in[1] = b;
  call.in[2] = bias;
  for (int k = 0; k < 7; k++) call.i[k] = ints[k];
  return cc_dispatch(&call);
}

static int conv2d_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  cc_tensor *x = node->saved[0], *w = node->saved[1];
  int rc = 0;
  if (cc_node_needs(node, 0)) {
    gi[0] = cc_empty(4, node->shape, gc->dtype, gc->storage->device);
    rc = gi[0] ? conv_run(CC_OP_CONV2D_BACKWARD_INPUT, gi[0], gc, w, NULL, node->ints) : -1;
  }
  if (!rc && cc_node_needs(node, 1)) {
    gi[1] = cc_empty(4, w ? w->shape : node->inputs[1]->shape, gc->dtype, gc->storage->device);
    rc = gi[1] ? conv_run(CC_OP_CONV2D_BACKWARD_WEIGHT, gi[1], gc, x, NULL, node->ints) : -1;
  }
  if (!rc && node->n_inputs > 2 && cc_node_needs(node, 2)) {
    int dims[3] = {0, 2, 3};
    gi[2] = cc_sum(gc, 3, dims, false);
    rc = gi[2] ? 0 : -1;
  }
  cc_release(gc);
  return rc;
}

static cc_tensor *conv2d_4d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv2d_opts *opt) {
  char s1[128], s2[128];
  if (w->ndim != 4) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_set_error("conv2d: expected a 4-D weight (out_channels, in_channels/groups, kh, kw), got shape %s", s1);
    return NULL;
  }
  if (cc_check_floating("conv2d", x) || cc_check_same("conv2d", x, w) || (b && cc_check_same("conv2d", x, b)))
    return NULL;
  for (int k = 0; k < 2; k++) {
    if (opt->stride[k] <= 0) {
      cc_set_error("conv2d: stride must be positive, got (%lld, %lld)", (long long)opt->stride[0],
                   (long long)opt->stride[1]);
      return NULL;
    }
    if (opt->dilation[k] <= 0) {
      cc_set_error("conv2d: dilation must be positive, got (%lld, %lld)", (long long)opt->dilation[0],
                   (long long)opt->dilation[1]);
      return NULL;
    }
    if (opt->padding[k] < 0) {
      cc_set_error("conv2d: padding must be non-negative, got (%lld, %lld)", (long long)opt->padding[0],
                   (long long)opt->padding[1]);
      return NULL;
    }
  }
  int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t O = w->shape[0], kh = w->shape[2], kw = w->shape[3], groups = opt->groups;
  if (groups <= 0) {
    cc_set_error("conv2d: groups must be positive, got %lld", (long long)groups);
    return NULL;
  }
  if (C % groups) {
    cc_set_error("conv2d: groups=%lld does not divide in_channels=%lld", (long long)groups, (long long)C);
    return NULL;
  }
  if (O % groups) {
    cc_set_error("conv2d: groups=%lld does not divide out_channels=%lld", (long long)groups, (long long)O);
    return NULL;
  }
  if (w->shape[1] * groups != C) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_shape_str(x->ndim, x->shape, s2, sizeof s2);
    cc_set_error("conv2d: weight of shape %s with groups=%lld expects %lld input channels, but the input %s has %lld",
                 s1, (long long)groups, (long long)(w->shape[1] * groups), s2, (long long)C);
    return NULL;
  }
  if (O <= 0 || kh <= 0 || kw <= 0 || C <= 0) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_set_error("conv2d: the weight %s and the input channels must be non-empty", s1);
    return NULL;
  }
  if (b && (b->ndim != 1 || b->shape[0] != O)) {
    cc_shape_str(b->ndim, b->shape, s1, sizeof s1);
    cc_set_error("conv2d: bias must have shape (%lld) for %lld output channels, got %s", (long long)O, (long long)O, s1);
    return NULL;
  }
  int64_t ekh = opt->dilation[0] * (kh - 1) + 1, ekw = opt->dilation[1] * (kw - 1) + 1;
  int64_t Hp = H + 2 * opt->padding[0], Wp = W + 2 * opt->padding[1];
  if (ekh > Hp || ekw > Wp) {
    cc_set_error("conv2d: kernel size %lldx%lld (dilated) is larger than the padded input %lldx%lld",
                 (long long)ekh, (long long)ekw, (long long)Hp, (long long)Wp);
    return NULL;
  }
  int64_t oshape[4] = {N, O, (Hp - ekh) / opt->stride[0] + 1, (Wp - ekw) / opt->stride[1] + 1};
  int64_t ints[7] = {opt->stride[0], opt->stride[1], opt->padding[0], opt->padding[1],
                     opt->dilation[0], opt->dilation[1], groups};

  cc_tensor *xc = contiguous_nograd(x), *wc = contiguous_nograd(w), *bc = b ? contiguous_nograd(b) : NULL;
  cc_tensor *out = xc && wc && (bc || !b) ? cc_empty(4, oshape, x->dtype, x->storage->device) : NULL;
  if (!out || conv_run(CC_OP_CONV2D, out, xc, wc, bc, ints)) {
    cc_release(out);
    out = NULL;
  } else {
    cc_tensor *ins[3] = {x, w, b};
    cc_node *node = cc_attach_node(out, "Conv2dBackward", conv2d_backward, b ? 3 : 2, ins);
    if (node) {
      memcpy(node->ints, ints, sizeof ints);
      node->ndim = 4;
      memcpy(node->shape, x->shape, 4 * sizeof(int64_t));
      cc_node_save(node, cc_node_needs(node, 1) ? xc : NULL); /* x for dw */
      cc_node_save(node, cc_node_needs(node, 0) ? wc : NULL); /* w for dx */
    }
  }
  cc_release(xc);
  cc_release(wc);
  cc_release(bc);
  return out;
}

/* runs a 4-D convolution on an unbatched (C,H,W) input as a batch of one; any other rank but 4 is an error */
typedef cc_tensor *(*conv4d_fn)(cc_tensor *x, cc_tensor *w, cc_tensor *b, const void *opt);
static cc_tensor *conv_batched(const char *op, conv4d_fn fn, cc_tensor *x, cc_tensor *w, cc_tensor *b, const void *opt) {
  if (x->ndim == 3) { /* unbatched (C,H,W) */
    cc_tensor *x4 = cc_unsqueeze(x, 0);
    cc_tensor *y4 = x4 ? fn(x4, w, b, opt) : NULL;
    cc_tensor *y = y4 ? cc_squeeze(y4, 0) : NULL;
    cc_release(x4);
    cc_release(y4);
    return y;
  }
  if (x->ndim != 4) {
    char s[128];
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("%s: expected a 3-D (C,H,W) or 4-D (N,C,H,W) input, got shape %s", op, s);
    return NULL;
  }
  return fn(x, w, b, opt);
}

static cc_tensor *conv2d_4d_any(cc_tensor *x, cc_tensor *w, cc_tensor *b, const void *opt) {
  return conv2d_4d(x, w, b, opt);
}

cc_tensor *cc_conv2d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv2d_opts *opt) {
  cc_conv2d_opts defaults = {{1, 1}, {0, 0}, {1, 1}, 1};
  return conv_batched("conv2d", conv2d_4d_any, x, w, b, opt ? opt : &defaults);
}

/* ---- conv_transpose2d: the gradient of conv2d with respect to its input, as an op of its own ----
 * x (N,Cin,H,W) or (C,H,W), w (Cin, Cout/groups, kh, kw), b (Cout) -> (N, Cout, H', W'),
 * H' = (H - 1) sh - 2 ph + dh (kh - 1) + oph + 1 (torch's F.conv_transpose2d). Forward is conv2d's
 * backward-input kernel; its backward is conv2d (for x) and conv2d's backward-weight kernel (for w). */
static int conv_transpose2d_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  cc_tensor *x = node->saved[0], *w = node->saved[1];
  int rc = 0;
  if (cc_node_needs(node, 0)) {
    gi[0] = cc_empty(4, node->shape, gc->dtype, gc->storage->device);
    rc = gi[0] ? conv_run(CC_OP_CONV2D, gi[0], gc, w, NULL, node->ints) : -1;
  }
  if (!rc && cc_node_needs(node, 1)) {
    gi[1] = cc_empty(4, node->inputs[1]->shape, gc->dtype, gc->storage->device);
    rc = gi[1] ? conv_run(CC_OP_CONV2D_BACKWARD_WEIGHT, gi[1], x, gc, NULL, node->ints) : -1;
  }
  cc_release(gc);
  return rc;
}

static cc_tensor *conv_transpose2d_4d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv_transpose2d_opts *opt) {
  const char *op = "conv_transpose2d";
  char s1[128], s2[128];
  if (w->ndim != 4) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_set_error("%s: expected a 4-D weight (in_channels, out_channels/groups, kh, kw), got shape %s", op, s1);
    return NULL;
  }
  if (cc_check_floating(op, x) || cc_check_same(op, x, w) || (b && cc_check_same(op, x, b))) return NULL;
  int64_t groups = opt->groups;
  if (groups <= 0) {
    cc_set_error("%s: groups must be positive, got %lld", op, (long long)groups);
    return NULL;
  }
  for (int k = 0; k < 2; k++) {
    if (opt->stride[k] <= 0 || opt->dilation[k] <= 0 || opt->padding[k] < 0 || opt->output_padding[k] < 0) {
      cc_set_error("%s: stride and dilation must be positive, padding and output_padding non-negative, got stride "
                   "(%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld), output_padding (%lld, %lld)", op,
                   (long long)opt->stride[0], (long long)opt->stride[1], (long long)opt->padding[0],
                   (long long)opt->padding[1], (long long)opt->dilation[0], (long long)opt->dilation[1],
                   (long long)opt->output_padding[0], (long long)opt->output_padding[1]);
      return NULL;
    }
    if (opt->output_padding[k] >= opt->stride[k] && opt->output_padding[k] >= opt->dilation[k]) {
      cc_set_error("%s: output_padding (%lld) must be smaller than either stride (%lld) or dilation (%lld)", op,
                   (long long)opt->output_padding[k], (long long)opt->stride[k], (long long)opt->dilation[k]);
      return NULL;
    }
  }
  int64_t N = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t Cout = w->shape[1] * groups, kh = w->shape[2], kw = w->shape[3];
  if (w->shape[0] != Cin || Cin % groups) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_shape_str(x->ndim, x->shape, s2, sizeof s2);
    cc_set_error("%s: weight of shape %s with groups=%lld expects %lld input channels (divisible by groups), but the "
                 "input %s has %lld", op, s1, (long long)groups, (long long)w->shape[0], s2, (long long)Cin);
    return NULL;
  }
  if (Cout <= 0 || kh <= 0 || kw <= 0 || Cin <= 0) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_set_error("%s: the weight %s and the input channels must be non-empty", op, s1);
    return NULL;
  }
  if (b && (b->ndim != 1 || b->shape[0] != Cout)) {
    cc_shape_str(b->ndim, b->shape, s1, sizeof s1);
    cc_set_error("%s: bias must have shape (%lld) for %lld output channels, got %s", op, (long long)Cout,
                 (long long)Cout, s1);
    return NULL;
  }
  int64_t Ho = (H - 1) * opt->stride[0] - 2 * opt->padding[0] + opt->dilation[0] * (kh - 1) + opt->output_padding[0] + 1;
  int64_t Wo = (W - 1) * opt->stride[1] - 2 * opt->padding[1] + opt->dilation[1] * (kw - 1) + opt->output_padding[1] + 1;
  if (Ho <= 0 || Wo <= 0 || H <= 0 || W <= 0) {
    cc_shape_str(x->ndim, x->shape, s2, sizeof s2);
    cc_set_error("%s: the input %s gives an output of %lldx%lld; it must be positive", op, s2, (long long)Ho,
                 (long long)Wo);
    return NULL;
  }
  int64_t oshape[4] = {N, Cout, Ho, Wo};
  int64_t ints[7] = {opt->stride[0], opt->stride[1], opt->padding[0], opt->padding[1],
                     opt->dilation[0], opt->dilation[1], groups};
  cc_tensor *xc = contiguous_nograd(x), *wc = contiguous_nograd(w);
  cc_tensor *out = xc && wc ? cc_empty(4, oshape, x->dtype, x->storage->device) : NULL;
  if (!out || conv_run(CC_OP_CONV2D_BACKWARD_INPUT, out, xc, wc, NULL, ints)) {
    cc_release(out);
    out = NULL;
  } else {
    cc_tensor *ins[2] = {x, w};
    cc_node *node = cc_attach_node(out, "ConvTranspose2dBackward", conv_transpose2d_backward, 2, ins);
    if (node) {
      memcpy(node->ints, ints, sizeof ints);
      node->ndim = 4;
      memcpy(node->shape, x->shape, 4 * sizeof(int64_t));
      cc_node_save(node, cc_node_needs(node, 1) ? xc : NULL); /* x for dw */
      cc_node_save(node, cc_node_needs(node, 0) ? wc : NULL); /* w for dx */
    }
  }
  cc_release(xc);
  cc_release(wc);
  if (out && b) { /* + bias per output channel */
    int64_t bshape[3] = {Cout, 1, 1};
    cc_tensor *bv = cc_reshape(b, 3, bshape);
    cc_tensor *biased = bv ? cc_add(out, bv) : NULL;
    cc_release(bv);
    cc_release(out);
    out = biased;
  }
  return out;
}

static cc_tensor *conv_transpose2d_4d_any(cc_tensor *x, cc_tensor *w, cc_tensor *b, const void *opt) {
  return conv_transpose2d_4d(x, w, b, opt);
}

cc_tensor *cc_conv_transpose2d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv_transpose2d_opts *opt) {
  cc_conv_transpose2d_opts defaults = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
  return conv_batched("conv_transpose2d", conv_transpose2d_4d_any, x, w, b, opt ? opt : &defaults);
}

/* ---- the 1-D convolutions: the 2-D ones over a height of 1 ----
 * conv1d x (N,C,L) or (C,L), w (O,C/groups,k); conv_transpose1d w (C, O/groups, k) */
static cc_tensor *conv1d_any(const char *op, bool transpose, cc_tensor *x, cc_tensor *w, cc_tensor *b,
                             const cc_conv1d_opts *opt) {
  char s1[128], s2[128];
  cc_conv1d_opts defaults = {1, 0, 1, 1, 0};
  if (!opt) opt = &defaults;
  if (x->ndim != 2 && x->ndim != 3) {
    cc_shape_str(x->ndim, x->shape, s1, sizeof s1);
    cc_set_error("%s: expected a 2-D (C,L) or 3-D (N,C,L) input, got shape %s", op, s1);
    return NULL;
  }
  if (w->ndim != 3) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_set_error("%s: expected a 3-D weight (%s), got shape %s", op,
                 transpose ? "in_channels, out_channels/groups, k" : "out_channels, in_channels/groups, k", s1);
    return NULL;
  }
  int64_t C = x->shape[x->ndim - 2], groups = opt->groups > 0 ? opt->groups : 1;
  int64_t expect = transpose ? w->shape[0] : w->shape[1] * groups;
  if (C != expect) {
    cc_shape_str(w->ndim, w->shape, s1, sizeof s1);
    cc_shape_str(x->ndim, x->shape, s2, sizeof s2);
    cc_set_error("%s: weight of shape %s with groups=%lld expects %lld input channels, but the input %s has %lld", op,
                 s1, (long long)opt->groups, (long long)expect, s2, (long long)C);
    return NULL;
  }
  if (!transpose && opt->output_padding != 0) {
    cc_set_error("%s: output_padding applies to conv_transpose1d only", op);
    return NULL;
  }
  cc_tensor *x4 = cc_unsqueeze(x, x->ndim - 1); /* (N,C,1,L) or (C,1,L) */
  cc_tensor *w4 = x4 ? cc_unsqueeze(w, 2) : NULL;
  cc_tensor *y4 = NULL;
  if (w4) {
    if (transpose) {
      cc_conv_transpose2d_opts o = {{1, opt->stride}, {0, opt->padding}, {0, opt->output_padding},
                                    {1, opt->dilation}, opt->groups};
      y4 = cc_conv_transpose2d(x4, w4, b, &o);
    } else {
      cc_conv2d_opts o = {{1, opt->stride}, {0, opt->padding}, {1, opt->dilation}, opt->groups};
      y4 = cc_conv2d(x4, w4, b, &o);
    }
  }
  cc_tensor *y = y4 ? cc_squeeze(y4, y4->ndim - 2) : NULL;
  if (!y4 && w4) { /* the 2-D op named itself and its 4-D shapes: say it in 1-D terms */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cc_last_error());
    const char *rest = strchr(msg, ':');
    cc_set_error("%s%s", op, rest ? rest : msg);
  }
  cc_release(x4);
  cc_release(w4);
  cc_release(y4);
  return y;
}

cc_tensor *cc_conv1d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv1d_opts *opt) {
  return conv1d_any("conv1d", false, x, w, b, opt);
}
cc_tensor *cc_conv_transpose1d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv1d_opts *opt) {
  return conv1d_any("conv_transpose1d", true, x, w, b, opt);
}

/* ---- pad ---- */
static int pad_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  int64_t neg[2 * CC_MAX_DIMS];
  int npairs = (int)node->ints[15];
  for (int k = 0; k < 2 * npairs; k++) neg[k] = -node->ints[k];
  gi[0] = cc_pad(g, npairs, neg, 0.0);
  return gi[0] ? 0 : -1;
}

cc_tensor *cc_pad(cc_tensor *x, int npairs, const int64_t *pads, double value) {
  if (npairs < 0 || npairs > x->ndim) {
    cc_set_error("pad: %d (before, after) pairs given for a tensor with %d dimensions", npairs, x->ndim);
    return NULL;
  }
  int nd = x->ndim;
  int64_t shape[CC_MAX_DIMS], ints[2 * CC_MAX_DIMS] = {0};
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
  for (int k = 0; k < npairs; k++) {
    int d = nd - 1 - k;
    shape[d] = x->shape[d] + pads[2 * k] + pads[2 * k + 1];
    if (shape[d] < 0 || (shape[d] == 0 && x->shape[d] > 0 && (pads[2 * k] < 0 || pads[2 * k + 1] < 0))) {
      cc_set_error("pad: dimension %d of size %lld with padding (%lld, %lld) gives a size of %lld", d + 1,
                   (long long)x->shape[d], (long long)pads[2 * k], (long long)pads[2 * k + 1], (long long)shape[d]);
      return NULL;
    }
    ints[2 * k] = pads[2 * k];
    ints[2 * k + 1] = pads[2 * k + 1];
  }
  cc_tensor *xc = contiguous_nograd(x);
  cc_tensor *out = xc ? cc_empty(nd, shape, x->dtype, x->storage->device) : NULL;
  double val = value;
  if (!out || cc_run(CC_OP_PAD, out, 1, &xc, ints, 2 * nd, &val, 1)) {
    cc_release(out);
    cc_release(xc);
    return NULL;
  }
  cc_release(xc);
  if (cc_is_floating(x->dtype)) {
    cc_node *node = cc_attach_node(out, "PadBackward", pad_backward, 1, &x);
    if (node) {
      for (int k = 0; k < 2 * npairs; k++) node->ints[k] = pads[k];
      node->ints[15] = npairs;
    }
  }
  return out;
}

/* ---- adaptive average pool ---- */
static int avg_pool_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  gi[0] = cc_empty(node->ndim, node->shape, gc->dtype, gc->storage->device);
  int rc = gi[0] ? cc_run(CC_OP_AVG_POOL2D_BACKWARD, gi[0], 1, &gc, NULL, 0, NULL, 0) : -1;
  cc_release(gc);
  return rc;
}

cc_tensor *cc_adaptive_avg_pool2d(cc_tensor *x, int64_t out_h, int64_t out_w) {
  if (x->ndim != 3 && x->ndim != 4) {
    char s[128];
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("adaptive_avg_pool2d: expected a 3-D (C,H,W) or 4-D (N,C,H,W) input, got shape %s", s);
    return NULL;
  }
  if (cc_check_floating("adaptive_avg_pool2d", x)) return NULL;
  if (out_h <= 0 || out_w <= 0) {
    cc_set_error("adaptive_avg_pool2d: output size must be positive, got %lldx%lld", (long long)out_h,
                 (long long)out_w);
    return NULL;
  }
  int nd = x->ndim;
  if (x->shape[nd - 1] <= 0 || x->shape[nd - 2] <= 0) {
    cc_set_error("adaptive_avg_pool2d: the input's spatial size %lldx%lld is empty", (long long)x->shape[nd - 2],
                 (long long)x->shape[nd - 1]);
    return NULL;
  }
  int64_t shape[4];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
  shape[nd - 2] = out_h;
  shape[nd - 1] = out_w;
  cc_tensor *xc = contiguous_nograd(x);
  cc_tensor *out = xc ? cc_empty(nd, shape, x->dtype, x->storage->device) : NULL;
  if (!out || cc_run(CC_OP_AVG_POOL2D, out, 1, &xc, NULL, 0, NULL, 0)) {
    cc_release(out);
    cc_release(xc);
    return NULL;
  }
  cc_release(xc);
  cc_node *node = cc_attach_node(out, "AdaptiveAvgPool2dBackward", avg_pool_backward, 1, &x);
  if (node) {
    node->ndim = nd;
    memcpy(node->shape, x->shape, sizeof(int64_t) * (size_t)nd);
  }
  return out;
}

/* ======================================================================= CPU kernels ===== */

enum { CONV_DIRECT, CONV_GEMM, CONV_BATCH_GEMM };
#define CONV_MAX_TAPS 16
#define CONV_DIRECT_MAX_CG 4
#define CONV_PAR_WORK 32768

typedef struct {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, groups, Cg, Og;
  int64_t Hp, Wq; /* padded height, width of one column phase (direct strategy) */
  int64_t work;   /* multiply-adds */
  int64_t L, Wg;  /* direct backward input: left zero pad and width of the padded grad rows */
  int64_t tap_phase[CONV_MAX_TAPS], tap_shift[CONV_MAX_TAPS], tap_off[CONV_MAX_TAPS]; /* per kernel column j */
  int strategy;
  bool pointwise;
} conv_geom;

/* GEMM threading: 0 auto, 1 threads over the batch with single-threaded BLAS, 2 serial batch with
   threaded BLAS (a knob for tests/bench_conv.c) */
static int conv_gemm_mode = 0;
void cc_conv_set_gemm_mode(int mode);
void cc_conv_set_gemm_mode(int mode) { conv_gemm_mode = mode; }

static int conv_max_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

static int conv_thread_num(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

static bool conv_outer(const conv_geom *g) {
  if (conv_gemm_mode) return conv_gemm_mode == 1;
  return g->N >= 2 && conv_max_threads() > 1;
}

/* OpenBLAS's pthread build would start its own threads inside our parallel regions; its OpenMP
 * build (openblas_get_parallel() == 2) runs on the calling thread there by itself, and its
 * openblas_set_num_threads would set the OpenMP team size of the region that follows (the
 * weak bindings are internal.h's) */

static int blas_single_begin(void) {
  if (openblas_get_parallel && openblas_get_parallel() == 2) return 1;
  int prev = openblas_get_num_threads ? openblas_get_num_threads() : 1;
  if (prev != 1 && openblas_set_num_threads) openblas_set_num_threads(1);
  return prev;
}

static void blas_single_end(int prev) {
  if (prev != 1 && openblas_set_num_threads) openblas_set_num_threads(prev);
}

static int conv_oom(void) {
  cc_set_error("conv2d: out of memory for the kernel's work buffers");
  return -1;
}

/* geometry from the (N,C,H,W) input-side tensor, the (O,Cg,kh,kw) weight-side one and the output side */
static conv_geom conv_geom_make(const cc_call *c, const cc_tensor *xs, const cc_tensor *ws, const cc_tensor *ys) {
  conv_geom g;
  g.N = xs->shape[0], g.C = xs->shape[1], g.H = xs->shape[2], g.W = xs->shape[3];
  g.O = ws->shape[0], g.kh = ws->shape[2], g.kw = ws->shape[3];
  g.Ho = ys->shape[2], g.Wo = ys->shape[3];
  g.sh = c->i[0], g.sw = c->i[1], g.ph = c->i[2], g.pw = c->i[3], g.dh = c->i[4], g.dw = c->i[5], g.groups = c->i[6];
  g.Cg = g.C / g.groups, g.Og = g.O / g.groups;
  g.Hp = g.H + 2 * g.ph;
  g.Wq = (g.W + 2 * g.pw + g.sw - 1) / g.sw;
  g.work = g.N * g.O * g.Ho * g.Wo * g.Cg * g.kh * g.kw;
  g.L = 0;
  for (int64_t j = 0; j < g.kw && j < CONV_MAX_TAPS; j++) {
    g.tap_phase[j] = (j * g.dw) % g.sw;
    g.tap_shift[j] = (j * g.dw) / g.sw;
    g.tap_off[j] = g.tap_phase[j] * g.Hp * g.Wq + g.tap_shift[j];
    if (g.tap_shift[j] > g.L) g.L = g.tap_shift[j];
  }
  g.Wg = g.Wq + g.L;
  g.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  if (g.pointwise && g.groups == 1 && g.H * g.W == 1) g.strategy = CONV_BATCH_GEMM;
  else if (g.pointwise) g.strategy = CONV_GEMM;
  else if (g.Cg <= CONV_DIRECT_MAX_CG && g.kw <= CONV_MAX_TAPS && g.sw <= CONV_MAX_TAPS) g.strategy = CONV_DIRECT;
  else g.strategy = CONV_GEMM;
  return g;
}

#define CC_CONV_CAT2(a, b) a##b
#define CC_CONV_CAT(a, b) CC_CONV_CAT2(a, b)

#define CC_CONV_T float
#define CC_CONV_SFX _f
#define CC_CONV_GEMM cblas_sgemm
#include "conv_cpu_tmpl.c"
#undef CC_CONV_T
#undef CC_CONV_SFX
#undef CC_CONV_GEMM

#define CC_CONV_T double
#define CC_CONV_SFX _d
#define CC_CONV_GEMM cblas_dgemm
#include "conv_cpu_tmpl.c"
#undef CC_CONV_T
#undef CC_CONV_SFX
#undef CC_CONV_GEMM

static bool conv_empty(const conv_geom *g) { return g->N == 0 || g->Ho * g->Wo == 0 || g->H * g->W == 0; }

static cc_conv_problem conv_problem(const conv_geom *g) {
  cc_conv_problem p = {g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, g->Ho, g->Wo,
                       g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->groups};
  return p;
}

/* in0 x, in1 w, in2 bias or NULL -> out */
static int conv2d_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *w = c->in[1], *b = c->in[2], *y = c->out[0];
  conv_geom g = conv_geom_make(c, x, w, y);
  if (conv_empty(&g)) return 0;
  if (x->dtype == CC_FLOAT32) {
    cc_conv_problem p = conv_problem(&g);
    int rc = cc_onednn_conv(CC_CONV_FORWARD, &p, cc_data_ptr(x), cc_data_ptr(w), b ? cc_data_ptr(b) : NULL,
                            cc_data_ptr(y));
    if (rc <= 0) return rc;
    return conv2d_fwd_f(&g, cc_data_ptr(x), cc_data_ptr(w), b ? cc_data_ptr(b) : NULL, cc_data_ptr(y));
  }
  return conv2d_fwd_d(&g, cc_data_ptr(x), cc_data_ptr(w), b ? cc_data_ptr(b) : NULL, cc_data_ptr(y));
}

/* in0 grad_out, in1 w -> out dx */
static int conv2d_bwd_input_cpu(const cc_call *c) {
  cc_tensor *gy = c->in[0], *w = c->in[1], *dx = c->out[0];
  conv_geom g = conv_geom_make(c, dx, w, gy);
  if (g.N == 0 || g.H * g.W == 0) return 0;
  if (g.Ho * g.Wo == 0) {
    memset(cc_data_ptr(dx), 0, (size_t)cc_numel(dx) * cc_dtype_size(dx->dtype));
    return 0;
  }
  if (dx->dtype == CC_FLOAT32) {
    cc_conv_problem p = conv_problem(&g);
    int rc = cc_onednn_conv(CC_CONV_BACKWARD_DATA, &p, cc_data_ptr(gy), cc_data_ptr(w), NULL, cc_data_ptr(dx));
    if (rc <= 0) return rc;
    return conv2d_bwd_input_f(&g, cc_data_ptr(gy), cc_data_ptr(w), cc_data_ptr(dx));
  }
  return conv2d_bwd_input_d(&g, cc_data_ptr(gy), cc_data_ptr(w), cc_data_ptr(dx));
}

/* in0 grad_out, in1 x -> out dw */
static int conv2d_bwd_weight_cpu(const cc_call *c) {
  cc_tensor *gy = c->in[0], *x = c->in[1], *dw = c->out[0];
  conv_geom g = conv_geom_make(c, x, dw, gy);
  if (conv_empty(&g)) {
    memset(cc_data_ptr(dw), 0, (size_t)cc_numel(dw) * cc_dtype_size(dw->dtype));
    return 0;
  }
  if (dw->dtype == CC_FLOAT32) {
    cc_conv_problem p = conv_problem(&g);
    int rc = cc_onednn_conv(CC_CONV_BACKWARD_WEIGHTS, &p, cc_data_ptr(gy), cc_data_ptr(x), NULL, cc_data_ptr(dw));
    if (rc <= 0) return rc;
    return conv2d_bwd_weight_f(&g, cc_data_ptr(gy), cc_data_ptr(x), cc_data_ptr(dw));
  }
  return conv2d_bwd_weight_d(&g, cc_data_ptr(gy), cc_data_ptr(x), cc_data_ptr(dw));
}

/* in0 contiguous x -> out (contiguous); i[2k], i[2k+1]: before/after pads of dim ndim-1-k; f0 value */
static int pad_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0];
  int nd = y->ndim;
  int64_t numel = cc_numel(y);
  if (numel == 0) return 0;
  size_t es = cc_dtype_size(y->dtype);
  int64_t lo[CC_MAX_DIMS], xstride[CC_MAX_DIMS];
  for (int d = 0; d < nd; d++) lo[d] = c->i[2 * (nd - 1 - d)];
  cc_contiguous_strides(x->ndim, x->shape, xstride);
  if (nd == 0) {
    memcpy(cc_data_ptr(y), cc_data_ptr(x), es);
    return 0;
  }
  int64_t Wy = y->shape[nd - 1], Wx = x->shape[nd - 1], rows = numel / Wy;
  int64_t l = lo[nd - 1];
  int64_t c0 = l > 0 ? l : 0;                  /* first output column taken from x */
  int64_t c1 = l + Wx < Wy ? l + Wx : Wy;      /* end of them */
  if (c1 < c0) c1 = c0;
  double v = c->f[0];
  float vf = (float)v;
  int64_t vi = (int64_t)v;
  const void *val = y->dtype == CC_FLOAT32 ? (const void *)&vf : y->dtype == CC_FLOAT64 ? (const void *)&v : (const void *)&vi;
  const char *xb = cc_data_ptr(x);
  char *yb = cc_data_ptr(y);
#pragma omp parallel for schedule(static) if (numel > 65536 && rows > 1)
  for (int64_t r = 0; r < rows; r++) {
    char *dst = yb + (size_t)(r * Wy) * es;
    int64_t rem = r, off = 0;
    bool inside = true;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t i = rem % y->shape[d] - lo[d];
      rem /= y->shape[d];
      if (i < 0 || i >= x->shape[d]) inside = false;
      off += i * xstride[d];
    }
    int64_t a = inside ? c0 : Wy, bnd = inside ? c1 : Wy;
    for (int64_t k = 0; k < a; k++) memcpy(dst + (size_t)k * es, val, es);
    if (bnd > a) memcpy(dst + (size_t)a * es, xb + (size_t)(off + a - l) * es, (size_t)(bnd - a) * es);
    for (int64_t k = bnd > a ? bnd : a; k < Wy; k++) memcpy(dst + (size_t)k * es, val, es);
  }
  return 0;
}

static int avg_pool_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0];
  int nd = x->ndim;
  int64_t H = x->shape[nd - 2], W = x->shape[nd - 1], planes = cc_numel(x) / (H * W);
  int64_t oh = y->shape[nd - 2], ow = y->shape[nd - 1];
  if (planes == 0) return 0;
  if (x->dtype == CC_FLOAT32) avg_pool_fwd_f(cc_data_ptr(x), cc_data_ptr(y), planes, H, W, oh, ow);
  else avg_pool_fwd_d(cc_data_ptr(x), cc_data_ptr(y), planes, H, W, oh, ow);
  return 0;
}

/* in0 grad_out (..,oh,ow) -> out dx (..,H,W) */
static int avg_pool_backward_cpu(const cc_call *c) {
  cc_tensor *gy = c->in[0], *dx = c->out[0];
  int nd = dx->ndim;
  int64_t H = dx->shape[nd - 2], W = dx->shape[nd - 1], planes = cc_numel(dx) / (H * W);
  int64_t oh = gy->shape[nd - 2], ow = gy->shape[nd - 1];
  if (planes == 0) return 0;
  if (dx->dtype == CC_FLOAT32) avg_pool_bwd_f(cc_data_ptr(gy), cc_data_ptr(dx), planes, H, W, oh, ow);
  else avg_pool_bwd_d(cc_data_ptr(gy), cc_data_ptr(dx), planes, H, W, oh, ow);
  return 0;
}

void cc_cpu_register_conv(void) {
  cc_register_kernel(CC_OP_CONV2D, CC_CPU, conv2d_cpu);
  cc_register_kernel(CC_OP_CONV2D_BACKWARD_INPUT, CC_CPU, conv2d_bwd_input_cpu);
  cc_register_kernel(CC_OP_CONV2D_BACKWARD_WEIGHT, CC_CPU, conv2d_bwd_weight_cpu);
  cc_register_kernel(CC_OP_PAD, CC_CPU, pad_cpu);
  cc_register_kernel(CC_OP_AVG_POOL2D, CC_CPU, avg_pool_cpu);
  cc_register_kernel(CC_OP_AVG_POOL2D_BACKWARD, CC_CPU, avg_pool_backward_cpu);
}
