/* conv_onednn.c — float32 CPU convolution through oneDNN (libdnnl, the library PyTorch's CPU convolutions
 * run on): forward, backward data and backward weights of conv2d (and so of conv_transpose2d and the 1-D
 * convolutions, which conv.c expresses through these three). Direct algorithm, layouts chosen by the
 * library ("any") with reorders from and to our contiguous NCHW / OIHW (GOIHW with groups) tensors.
 * Shapes as conv.c: x (N,C,H,W), w (O,C/groups,kh,kw), y (N,O,Ho,Wo). oneDNN keeps the kernels it generates
 * for a shape in its primitive cache (1024 entries), so only a shape's first call pays for the generation.
 * Which convolutions take this path: cc_conv_backend (see cocola.h); without oneDNN at build time
 * (COCOLA_HAVE_ONEDNN undefined) every call answers "not taken" and conv.c's own kernels run. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static cc_conv_backend_kind conv_backend = CC_CONV_BACKEND_AUTO;

/* below this many multiply-adds the reorders cost more than oneDNN's kernels save */
#define ONEDNN_MIN_WORK (1 << 20)

int cc_set_conv_backend(cc_conv_backend_kind kind) {
  if (kind != CC_CONV_BACKEND_AUTO && kind != CC_CONV_BACKEND_NATIVE && kind != CC_CONV_BACKEND_ONEDNN) {
    cc_set_error("conv backend: unknown kind %d", (int)kind);
    return -1;
  }
#ifndef COCOLA_HAVE_ONEDNN
  if (kind == CC_CONV_BACKEND_ONEDNN) {
    cc_set_error("conv backend: this build has no oneDNN (install libdnnl-dev and rebuild)");
    return -1;
  }
#endif
  conv_backend = kind;
  return 0;
}

cc_conv_backend_kind cc_get_conv_backend(void) { return conv_backend; }

bool cc_have_onednn(void) {
#ifdef COCOLA_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

#ifndef COCOLA_HAVE_ONEDNN

int cc_onednn_conv(cc_conv_pass pass, const cc_conv_problem *p, const float *a, const float *b, const float *bias,
                   float *out) {
  (void)pass, (void)p, (void)a, (void)b, (void)bias, (void)out;
  return 1;
}

#else

#include <dnnl.h>
#include <pthread.h>

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static const char *pass_name(cc_conv_pass pass) {
  return pass == CC_CONV_FORWARD ? "forward" : pass == CC_CONV_BACKWARD_DATA ? "backward data" : "backward weights";
}

/* every oneDNN call goes through this: a failure becomes the Lua-visible error, naming the call */
#define DNNL_TRY(call)                                                                             \
  do {                                                                                             \
    dnnl_status_t st_ = (call);                                                                    \
    if (st_ != dnnl_success) {                                                                     \
      cc_set_error("conv2d (oneDNN, %s): %s failed with status %d%s", pass_name(pass), #call,      \
                   (int)st_, st_ == dnnl_out_of_memory ? " (out of memory)" : "");                \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)

/* the user's buffer as a memory object in its plain layout */
static dnnl_status_t user_memory(dnnl_memory_t *m, dnnl_memory_desc_t *md, int nd, const dnnl_dims_t dims,
                                 dnnl_format_tag_t tag, const float *ptr) {
  dnnl_status_t st = dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32, tag);
  if (st != dnnl_success) return st;
  return dnnl_memory_create(m, md, engine, (void *)ptr);
}

static dnnl_status_t reorder(dnnl_stream_t s, dnnl_memory_t from, dnnl_memory_t to) {
  const dnnl_memory_desc_t *from_md, *to_md;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL;
  dnnl_status_t st = dnnl_memory_get_memory_desc(from, &from_md);
  if (st == dnnl_success) st = dnnl_memory_get_memory_desc(to, &to_md);
  if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&pd, from_md, engine, to_md, engine, NULL);
  if (st == dnnl_success) st = dnnl_primitive_create(&prim, pd);
  if (st == dnnl_success) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    st = dnnl_primitive_execute(prim, s, 2, args);
  }
  if (prim) dnnl_primitive_destroy(prim);
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

/* the blocks a call borrows from the CPU device's allocator (its cache of large blocks) for the reordered
   tensors and the scratchpad: memory oneDNN allocated itself would be fresh pages every call, and faulting
   them in cost as much as the convolutions (an MSDM training step: 1.7 M page faults, a fifth of its time) */
typedef struct {
  void *ptr[4];
  size_t size[4];
  int n;
} borrowed_blocks;

static dnnl_status_t borrowed_memory(dnnl_memory_t *m, const dnnl_memory_desc_t *md, borrowed_blocks *blocks) {
  size_t size = dnnl_memory_desc_get_size(md);
  if (size == 0) size = 1;
  if (blocks->n == (int)(sizeof blocks->ptr / sizeof blocks->ptr[0])) return dnnl_runtime_error;
  void *ptr = cc_device_get(CC_CPU)->alloc(size);
  if (!ptr) return dnnl_out_of_memory;
  blocks->ptr[blocks->n] = ptr;
  blocks->size[blocks->n++] = size;
  return dnnl_memory_create(m, md, engine, ptr);
}

static void return_blocks(borrowed_blocks *blocks) {
  for (int k = 0; k < blocks->n; k++) cc_device_get(CC_CPU)->free(blocks->ptr[k], blocks->size[k]);
  blocks->n = 0;
}

/* the memory the primitive wants for `what`: the user's own when the layouts agree, else a new one
   (filled from the user's data when fill) */
static dnnl_status_t wanted_memory(dnnl_stream_t s, dnnl_primitive_desc_t pd, dnnl_query_t what,
                                   dnnl_memory_t user, dnnl_memory_t *own, bool fill, borrowed_blocks *blocks) {
  const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, what, 0);
  const dnnl_memory_desc_t *have;
  dnnl_status_t st = dnnl_memory_get_memory_desc(user, &have);
  if (st != dnnl_success) return st;
  *own = NULL;
  if (!want || dnnl_memory_desc_equal(want, have)) return dnnl_success;
  st = borrowed_memory(own, want, blocks);
  if (st == dnnl_success && fill) st = reorder(s, user, *own);
  return st;
}

/* the primitive's scratchpad (the attributes ask for a user-managed one), or NULL when it needs none */
static dnnl_status_t scratchpad_memory(dnnl_primitive_desc_t pd, dnnl_memory_t *m, borrowed_blocks *blocks) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  *m = NULL;
  if (!md || dnnl_memory_desc_get_size(md) == 0) return dnnl_success;
  return borrowed_memory(m, md, blocks);
}

#define USE(own, user) ((own) ? (own) : (user))

int cc_onednn_conv(cc_conv_pass pass, const cc_conv_problem *p, const float *a, const float *b, const float *bias,
                   float *out) {
  if (conv_backend == CC_CONV_BACKEND_NATIVE) return 1;
  if (conv_backend == CC_CONV_BACKEND_AUTO &&
      p->N * p->O * p->Ho * p->Wo * (p->C / p->groups) * p->kh * p->kw < ONEDNN_MIN_WORK)
    return 1;
  pthread_once(&engine_once, engine_init);
  if (engine_status != dnnl_success) {
    cc_set_error("conv2d (oneDNN): the CPU engine could not be created (status %d)", (int)engine_status);
    return -1;
  }
  int rc = -1;
  dnnl_stream_t s = NULL;
  dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
  dnnl_primitive_t prim = NULL;
  dnnl_memory_t x_user = NULL, w_user = NULL, y_user = NULL, b_user = NULL;
  dnnl_memory_t x_own = NULL, w_own = NULL, y_own = NULL, pad_mem = NULL;
  dnnl_primitive_attr_t attr = NULL;
  borrowed_blocks blocks = {.n = 0};
  dnnl_memory_desc_t x_md, w_md, y_md, b_md, x_any, w_any, y_any;

  int64_t G = p->groups;
  dnnl_dims_t x_dims = {p->N, p->C, p->H, p->W}, y_dims = {p->N, p->O, p->Ho, p->Wo};
  dnnl_dims_t w_dims = {G, p->O / G, p->C / G, p->kh, p->kw}, w_dims_plain = {p->O, p->C / G, p->kh, p->kw};
  dnnl_dims_t b_dims = {p->O};
  dnnl_dims_t strides = {p->sh, p->sw}, dilates = {p->dh - 1, p->dw - 1}, pad = {p->ph, p->pw};
  int w_nd = G > 1 ? 5 : 4;
  const int64_t *wd = G > 1 ? w_dims : w_dims_plain;
  dnnl_format_tag_t w_tag = G > 1 ? dnnl_goihw : dnnl_oihw;

  /* which buffers are read and which written: forward x, w -> y; backward data gy, w -> dx;
     backward weights gy, x -> dw */
  const float *xp = pass == CC_CONV_BACKWARD_WEIGHTS ? b : pass == CC_CONV_FORWARD ? a : out;
  const float *wp = pass == CC_CONV_BACKWARD_WEIGHTS ? out : b;
  const float *yp = pass == CC_CONV_FORWARD ? out : a;

  DNNL_TRY(dnnl_stream_create(&s, engine, dnnl_stream_default_flags));
  DNNL_TRY(user_memory(&x_user, &x_md, 4, x_dims, dnnl_nchw, xp));
  DNNL_TRY(user_memory(&w_user, &w_md, w_nd, wd, w_tag, wp));
  DNNL_TRY(user_memory(&y_user, &y_md, 4, y_dims, dnnl_nchw, yp));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_any, 4, x_dims, dnnl_f32, dnnl_format_tag_any));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_any, w_nd, wd, dnnl_f32, dnnl_format_tag_any));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, y_dims, dnnl_f32, dnnl_format_tag_any));
  bool with_bias = pass == CC_CONV_FORWARD && bias;
  if (with_bias) {
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_x));
    DNNL_TRY(dnnl_memory_create(&b_user, &b_md, engine, (void *)bias));
  }

  /* the forward descriptor: the primitive itself, or the hint the backward ones need. Forward training for
     inference too, as PyTorch asks: for inference oneDNN 2.6 prefers its brgemm kernels, whose generation
     costs up to a second per new shape (the vocoder's first pass: 13 s of 20), for no faster runs here */
  dnnl_convolution_desc_t fwd_desc;
  DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(
      &fwd_desc, dnnl_forward_training, dnnl_convolution_direct,
      &x_any, &w_any, with_bias ? &b_md : NULL, &y_any, strides, dilates, pad, pad));
  DNNL_TRY(dnnl_primitive_attr_create(&attr));
  DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  DNNL_TRY(dnnl_primitive_desc_create(&fwd_pd, &fwd_desc, attr, engine, NULL));

  if (pass == CC_CONV_FORWARD) {
    DNNL_TRY(wanted_memory(s, fwd_pd, dnnl_query_src_md, x_user, &x_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, fwd_pd, dnnl_query_weights_md, w_user, &w_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, fwd_pd, dnnl_query_dst_md, y_user, &y_own, false, &blocks));
    DNNL_TRY(dnnl_primitive_create(&prim, fwd_pd));
    DNNL_TRY(scratchpad_memory(fwd_pd, &pad_mem, &blocks));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, USE(x_own, x_user)},
                               {DNNL_ARG_WEIGHTS, USE(w_own, w_user)},
                               {DNNL_ARG_DST, USE(y_own, y_user)}};
    int nargs = 3;
    if (with_bias) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b_user};
    if (pad_mem) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pad_mem};
    DNNL_TRY(dnnl_primitive_execute(prim, s, nargs, args));
    if (y_own) DNNL_TRY(reorder(s, y_own, y_user));
  } else if (pass == CC_CONV_BACKWARD_DATA) {
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_dilated_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &x_any, &w_any,
                                                              &y_any, strides, dilates, pad, pad));
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, attr, engine, fwd_pd));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_diff_dst_md, y_user, &y_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_weights_md, w_user, &w_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_diff_src_md, x_user, &x_own, false, &blocks));
    DNNL_TRY(dnnl_primitive_create(&prim, pd));
    DNNL_TRY(scratchpad_memory(pd, &pad_mem, &blocks));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, USE(y_own, y_user)},
                               {DNNL_ARG_WEIGHTS, USE(w_own, w_user)},
                               {DNNL_ARG_DIFF_SRC, USE(x_own, x_user)},
                               {DNNL_ARG_SCRATCHPAD, pad_mem}};
    DNNL_TRY(dnnl_primitive_execute(prim, s, pad_mem ? 4 : 3, args));
    if (x_own) DNNL_TRY(reorder(s, x_own, x_user));
  } else {
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_dilated_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &x_any, &w_any,
                                                                 NULL, &y_any, strides, dilates, pad, pad));
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, attr, engine, fwd_pd));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_src_md, x_user, &x_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_diff_dst_md, y_user, &y_own, true, &blocks));
    DNNL_TRY(wanted_memory(s, pd, dnnl_query_diff_weights_md, w_user, &w_own, false, &blocks));
    DNNL_TRY(dnnl_primitive_create(&prim, pd));
    DNNL_TRY(scratchpad_memory(pd, &pad_mem, &blocks));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, USE(x_own, x_user)},
                               {DNNL_ARG_DIFF_DST, USE(y_own, y_user)},
                               {DNNL_ARG_DIFF_WEIGHTS, USE(w_own, w_user)},
                               {DNNL_ARG_SCRATCHPAD, pad_mem}};
    DNNL_TRY(dnnl_primitive_execute(prim, s, pad_mem ? 4 : 3, args));
    if (w_own) DNNL_TRY(reorder(s, w_own, w_user));
  }
  DNNL_TRY(dnnl_stream_wait(s));
  rc = 0;
done:
  if (prim) dnnl_primitive_destroy(prim);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  dnnl_memory_t all[8] = {x_user, w_user, y_user, b_user, x_own, w_own, y_own, pad_mem};
  for (int k = 0; k < 8; k++)
    if (all[k]) dnnl_memory_destroy(all[k]);
  if (s) dnnl_stream_destroy(s);
  return_blocks(&blocks);
  return rc;
}

#endif
