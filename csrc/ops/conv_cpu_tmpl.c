/* conv_cpu_tmpl.c — the CPU conv2d kernels written once for one element type: conv.c includes this
 * file twice, with CC_CONV_T float / double, CC_CONV_SFX the name suffix and CC_CONV_GEMM the cblas
 * gemm. Compiled on its own (the source glob) it is empty.
 *
 * Layout: x (N,C,H,W), w (O,Cg,kh,kw), out (N,O,Ho,Wo), all contiguous; Cg = C/groups, Og = O/groups.
 * Three strategies:
 *   direct    — few input channels per group (depthwise, the stem): the padded input plane is split
 *               into sw column phases so that every kernel tap reads a contiguous row; loops over
 *               output rows vectorise. Threads over (sample, group) units.
 *   pointwise — 1x1, stride 1, no padding: a GEMM per (sample, group) on (Cg, H*W) directly;
 *               with H*W == 1 and groups == 1, one GEMM over the whole batch.
 *   im2col    — everything else: im2col / col2im + GEMM per (sample, group).
 */
#ifdef CC_CONV_T

#define T CC_CONV_T
#define FN(name) CC_CONV_CAT(name, CC_CONV_SFX)

/* ---- direct kernels (phase planes) ---- */

/* one input plane (H,W) -> sw phase planes (Hp, Wq) of the zero-padded plane:
   phase[q][r][c2] = padded[r][c2*sw + q] */
static void FN(to_phases)(const T *x, T *ph, const conv_geom *g) {
  int64_t H = g->H, W = g->W, sw = g->sw, Hp = g->Hp, Wq = g->Wq, PQ = Hp * Wq;
  for (int64_t q = 0; q < sw; q++) {
    T *plane = ph + q * PQ;
    /* c2 with 0 <= c2*sw + q - pw < W */
    int64_t lo = g->pw - q > 0 ? (g->pw - q + sw - 1) / sw : 0;
    int64_t hi = W - 1 + g->pw - q >= 0 ? (W - 1 + g->pw - q) / sw + 1 : 0;
    if (hi > Wq) hi = Wq;
    if (lo > hi) lo = hi;
    memset(plane, 0, sizeof(T) * (size_t)(g->ph * Wq));
    for (int64_t h = 0; h < H; h++) {
      T *dst = plane + (h + g->ph) * Wq;
      const T *src = x + h * W + q - g->pw;
      for (int64_t c2 = 0; c2 < lo; c2++) dst[c2] = 0;
      if (sw == 1)
        memcpy(dst + lo, src + lo, sizeof(T) * (size_t)(hi - lo));
      else if (sw == 2)
        for (int64_t c2 = lo; c2 < hi; c2++) dst[c2] = src[2 * c2];
      else
        for (int64_t c2 = lo; c2 < hi; c2++) dst[c2] = src[c2 * sw];
      for (int64_t c2 = hi; c2 < Wq; c2++) dst[c2] = 0;
    }
    memset(plane + (H + g->ph) * Wq, 0, sizeof(T) * (size_t)((Hp - H - g->ph) * Wq));
  }
}

/* dst[0..len) += sum_k wv[k] * p[k][0..len), taps fused in groups of up to 5 (one store per group) */
static inline void FN(acc_taps)(T *restrict dst, const T *const *p, const T *wv, int64_t nt, int64_t len) {
  for (int64_t k = 0; k < nt;) {
    int64_t m = nt - k >= 5 ? 5 : nt - k;
    const T *restrict p0 = p[k];
    T w0 = wv[k];
    if (m == 1) {
      for (int64_t t = 0; t < len; t++) dst[t] += w0 * p0[t];
    } else if (m == 2) {
      const T *restrict p1 = p[k + 1];
      T w1 = wv[k + 1];
      for (int64_t t = 0; t < len; t++) dst[t] += w0 * p0[t] + w1 * p1[t];
    } else if (m == 3) {
      const T *restrict p1 = p[k + 1], *restrict p2 = p[k + 2];
      T w1 = wv[k + 1], w2 = wv[k + 2];
      for (int64_t t = 0; t < len; t++) dst[t] += w0 * p0[t] + w1 * p1[t] + w2 * p2[t];
    } else if (m == 4) {
      const T *restrict p1 = p[k + 1], *restrict p2 = p[k + 2], *restrict p3 = p[k + 3];
      T w1 = wv[k + 1], w2 = wv[k + 2], w3 = wv[k + 3];
      for (int64_t t = 0; t < len; t++) dst[t] += w0 * p0[t] + w1 * p1[t] + w2 * p2[t] + w3 * p3[t];
    } else {
      const T *restrict p1 = p[k + 1], *restrict p2 = p[k + 2], *restrict p3 = p[k + 3], *restrict p4 = p[k + 4];
      T w1 = wv[k + 1], w2 = wv[k + 2], w3 = wv[k + 3], w4 = wv[k + 4];
      for (int64_t t = 0; t < len; t++) dst[t] += w0 * p0[t] + w1 * p1[t] + w2 * p2[t] + w3 * p3[t] + w4 * p4[t];
    }
    k += m;
  }
}

/* forward of the unit (sample n, group gi); phases: room for Cg phase sets */
static void FN(direct_fwd_unit)(const conv_geom *g, int64_t n, int64_t gi, const T *x, const T *w, const T *b,
                                T *out, T *phases) {
  int64_t Cg = g->Cg, Og = g->Og, PS = g->sw * g->Hp * g->Wq, HWo = g->Ho * g->Wo, KK = g->kh * g->kw;
  for (int64_t cc = 0; cc < Cg; cc++) FN(to_phases)(x + (n * g->C + gi * Cg + cc) * g->H * g->W, phases + cc * PS, g);
  const T *p[CONV_MAX_TAPS];
  for (int64_t og = 0; og < Og; og++) {
    int64_t o = gi * Og + og;
    T *op = out + (n * g->O + o) * HWo;
    const T *wo = w + o * Cg * KK;
    T bias = b ? b[o] : 0;
    for (int64_t oh = 0; oh < g->Ho; oh++) {
      T *orow = op + oh * g->Wo;
      for (int64_t ow = 0; ow < g->Wo; ow++) orow[ow] = bias;
      for (int64_t cc = 0; cc < Cg; cc++)
        for (int64_t i = 0; i < g->kh; i++) {
          int64_t r = oh * g->sh + i * g->dh;
          if (r < g->ph || r >= g->ph + g->H) continue; /* a padding row */
          const T *base = phases + cc * PS + r * g->Wq;
          for (int64_t j = 0; j < g->kw; j++) p[j] = base + g->tap_off[j];
          FN(acc_taps)(orow, p, wo + (cc * g->kh + i) * g->kw, g->kw, g->Wo);
        }
    }
  }
}

/* backward input of the unit (n, gi) as a gather: every dx row is summed from the grad rows that
   touch it, per column phase, taps fused. buf: Og padded grad planes (Ho, Wg), then sw rows of Wq */
static void FN(direct_bwd_input_unit)(const conv_geom *g, int64_t n, int64_t gi, const T *gy, const T *w, T *dx,
                                      T *buf) {
  int64_t Cg = g->Cg, Og = g->Og, HWo = g->Ho * g->Wo, KK = g->kh * g->kw, Wo = g->Wo, Wq = g->Wq;
  int64_t Wg = g->Wg, L = g->L, sw = g->sw, W = g->W;
  T *G = buf, *rows = buf + Og * g->Ho * Wg;
  for (int64_t og = 0; og < Og; og++)
    for (int64_t oh = 0; oh < g->Ho; oh++) {
      T *dst = G + (og * g->Ho + oh) * Wg;
      memset(dst, 0, sizeof(T) * (size_t)L);
      memcpy(dst + L, gy + (n * g->O + gi * Og + og) * HWo + oh * Wo, sizeof(T) * (size_t)Wo);
      memset(dst + L + Wo, 0, sizeof(T) * (size_t)(Wg - L - Wo));
    }
  const T *p[CONV_MAX_TAPS];
  T wv[CONV_MAX_TAPS];
  for (int64_t cc = 0; cc < Cg; cc++) {
    T *dxp = dx + (n * g->C + gi * Cg + cc) * g->H * W;
    for (int64_t h = 0; h < g->H; h++) {
      int64_t r = h + g->ph;
      memset(rows, 0, sizeof(T) * (size_t)(sw * Wq));
      for (int64_t og = 0; og < Og; og++) {
        const T *wo = w + ((gi * Og + og) * Cg + cc) * KK;
        for (int64_t i = 0; i < g->kh; i++) {
          int64_t num = r - i * g->dh;
          if (num < 0) break;
          if (num % g->sh) continue;
          int64_t oh = num / g->sh;
          if (oh >= g->Ho) continue;
          const T *grow = G + (og * g->Ho + oh) * Wg + L;
          for (int64_t q = 0; q < sw; q++) {
            int64_t nt = 0;
            for (int64_t j = 0; j < g->kw; j++)
              if (g->tap_phase[j] == q) {
                p[nt] = grow - g->tap_shift[j];
                wv[nt++] = wo[i * g->kw + j];
              }
            if (nt) FN(acc_taps)(rows + q * Wq, p, wv, nt, Wq);
          }
        }
      }
      T *drow = dxp + h * W;
      if (sw == 1) {
        memcpy(drow, rows + g->pw, sizeof(T) * (size_t)W);
      } else if (sw == 2) {
        for (int64_t c2 = 0; c2 < W; c2++) {
          int64_t col = c2 + g->pw;
          drow[c2] = rows[(col & 1) * Wq + (col >> 1)];
        }
      } else {
        for (int64_t c2 = 0; c2 < W; c2++) {
          int64_t col = c2 + g->pw;
          drow[c2] = rows[(col % sw) * Wq + col / sw];
        }
      }
    }
  }
}

/* backward weight of the unit (n, gi): acc (the whole dw shape, double) += its share;
   buf: Cg phase sets, then kw rows of Wo partial products */
static void FN(direct_bwd_weight_unit)(const conv_geom *g, int64_t n, int64_t gi, const T *gy, const T *x,
                                       double *acc, T *buf) {
  int64_t Cg = g->Cg, Og = g->Og, PS = g->sw * g->Hp * g->Wq, HWo = g->Ho * g->Wo, KK = g->kh * g->kw;
  int64_t Wo = g->Wo, kw = g->kw;
  T *phases = buf, *part = buf + Cg * PS;
  for (int64_t cc = 0; cc < Cg; cc++) FN(to_phases)(x + (n * g->C + gi * Cg + cc) * g->H * g->W, phases + cc * PS, g);
  for (int64_t og = 0; og < Og; og++) {
    int64_t o = gi * Og + og;
    const T *gp = gy + (n * g->O + o) * HWo;
    double *ao = acc + o * Cg * KK;
    for (int64_t cc = 0; cc < Cg; cc++)
      for (int64_t i = 0; i < g->kh; i++) {
        memset(part, 0, sizeof(T) * (size_t)(kw * Wo));
        for (int64_t oh = 0; oh < g->Ho; oh++) {
          int64_t r = oh * g->sh + i * g->dh;
          if (r < g->ph || r >= g->ph + g->H) continue;
          const T *restrict grow = gp + oh * Wo;
          const T *base = phases + cc * PS + r * g->Wq;
          for (int64_t j = 0; j < kw; j++) {
            const T *restrict pj = base + g->tap_off[j];
            T *restrict dst = part + j * Wo;
            for (int64_t ow = 0; ow < Wo; ow++) dst[ow] += grow[ow] * pj[ow];
          }
        }
        for (int64_t j = 0; j < kw; j++) {
          const T *src = part + j * Wo;
          double s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t ow = 0; ow < Wo; ow++) s += src[ow];
          ao[(cc * g->kh + i) * kw + j] += s;
        }
      }
  }
}

/* ---- im2col / col2im: col ((Cg*kh*kw), (Ho*Wo)) of the Cg-channel block x (Cg,H,W) ---- */
static void FN(im2col)(const T *x, T *col, const conv_geom *g) {
  int64_t H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, sw = g->sw, P = Ho * Wo;
  for (int64_t cc = 0; cc < g->Cg; cc++)
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        T *row = col + ((cc * g->kh + i) * g->kw + j) * P;
        int64_t iw0 = j * g->dw - g->pw;
        int64_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
        int64_t hi = W - 1 - iw0 >= 0 ? (W - 1 - iw0) / sw + 1 : 0;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int64_t oh = 0; oh < Ho; oh++) {
          T *dst = row + oh * Wo;
          int64_t ih = oh * g->sh + i * g->dh - g->ph;
          if (ih < 0 || ih >= H) {
            memset(dst, 0, sizeof(T) * (size_t)Wo);
            continue;
          }
          const T *src = x + (cc * H + ih) * W + iw0;
          for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
          if (sw == 1)
            memcpy(dst + lo, src + lo, sizeof(T) * (size_t)(hi - lo));
          else
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw];
          for (int64_t ow = hi; ow < Wo; ow++) dst[ow] = 0;
        }
      }
}

/* dx block (Cg,H,W) += col2im(col) */
static void FN(col2im)(const T *col, T *dx, const conv_geom *g) {
  int64_t H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, sw = g->sw, P = Ho * Wo;
  for (int64_t cc = 0; cc < g->Cg; cc++)
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        const T *row = col + ((cc * g->kh + i) * g->kw + j) * P;
        int64_t iw0 = j * g->dw - g->pw;
        int64_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
        int64_t hi = W - 1 - iw0 >= 0 ? (W - 1 - iw0) / sw + 1 : 0;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int64_t oh = 0; oh < Ho; oh++) {
          int64_t ih = oh * g->sh + i * g->dh - g->ph;
          if (ih < 0 || ih >= H) continue;
          const T *src = row + oh * Wo;
          T *dst = dx + (cc * H + ih) * W + iw0;
          for (int64_t ow = lo; ow < hi; ow++) dst[ow * sw] += src[ow];
        }
      }
}

/* ---- GEMM-based per-sample work ---- */
static void FN(gemm_fwd_sample)(const conv_geom *g, int64_t n, const T *x, const T *w, const T *b, T *out, T *col) {
  int64_t P = g->Ho * g->Wo, K = g->Cg * g->kh * g->kw, Og = g->Og;
  for (int64_t gi = 0; gi < g->groups; gi++) {
    const T *xb = x + (n * g->C + gi * g->Cg) * g->H * g->W;
    const T *src = xb;
    if (!g->pointwise) {
      FN(im2col)(xb, col, g);
      src = col;
    }
    T *op = out + (n * g->O + gi * Og) * P;
    CC_CONV_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Og, (int)P, (int)K, 1, w + gi * Og * K, (int)K, src,
                 (int)P, 0, op, (int)P);
    if (b)
      for (int64_t og = 0; og < Og; og++) {
        T bv = b[gi * Og + og];
        T *row = op + og * P;
        for (int64_t k = 0; k < P; k++) row[k] += bv;
      }
  }
}

static void FN(gemm_bwd_input_sample)(const conv_geom *g, int64_t n, const T *gy, const T *w, T *dx, T *col) {
  int64_t P = g->Ho * g->Wo, K = g->Cg * g->kh * g->kw, Og = g->Og, HW = g->H * g->W;
  for (int64_t gi = 0; gi < g->groups; gi++) {
    const T *gp = gy + (n * g->O + gi * Og) * P;
    T *dxb = dx + (n * g->C + gi * g->Cg) * HW;
    T *dst = g->pointwise ? dxb : col;
    CC_CONV_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)Og, 1, w + gi * Og * K, (int)K, gp,
                 (int)P, 0, dst, (int)P);
    if (!g->pointwise) {
      memset(dxb, 0, sizeof(T) * (size_t)(g->Cg * HW));
      FN(col2im)(col, dxb, g);
    }
  }
}

/* dw (O, K) += per-sample contribution */
static void FN(gemm_bwd_weight_sample)(const conv_geom *g, int64_t n, const T *gy, const T *x, T *dw, T *col) {
  int64_t P = g->Ho * g->Wo, K = g->Cg * g->kh * g->kw, Og = g->Og;
  for (int64_t gi = 0; gi < g->groups; gi++) {
    const T *gp = gy + (n * g->O + gi * Og) * P;
    const T *xb = x + (n * g->C + gi * g->Cg) * g->H * g->W;
    const T *src = xb;
    if (!g->pointwise) {
      FN(im2col)(xb, col, g);
      src = col;
    }
    CC_CONV_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Og, (int)K, (int)P, 1, gp, (int)P, src, (int)P, 1,
                 dw + gi * Og * K, (int)K);
  }
}

/* ---- kernel entry points ---- */
static int FN(conv2d_fwd)(const conv_geom *g, const T *x, const T *w, const T *b, T *out) {
  if (g->strategy == CONV_DIRECT) {
    int64_t units = g->N * g->groups, PS = g->Cg * g->sw * g->Hp * g->Wq;
    int fail = 0;
#pragma omp parallel if (units > 1 && g->work > CONV_PAR_WORK)
    {
      T *ph = malloc(sizeof(T) * (size_t)PS);
      if (!ph) {
#pragma omp atomic write
        fail = 1;
      }
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++)
        if (ph) FN(direct_fwd_unit)(g, u / g->groups, u % g->groups, x, w, b, out, ph);
      free(ph);
    }
    return fail ? conv_oom() : 0;
  }
  if (g->strategy == CONV_BATCH_GEMM) { /* (N,C) x (O,C)^T */
    CC_CONV_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->N, (int)g->O, (int)g->C, 1, x, (int)g->C, w,
                 (int)g->C, 0, out, (int)g->O);
    if (b)
      for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++) out[n * g->O + o] += b[o];
    return 0;
  }
  int64_t colsz = g->pointwise ? 1 : g->Cg * g->kh * g->kw * g->Ho * g->Wo;
  if (conv_outer(g)) {
    int fail = 0, saved = blas_single_begin();
#pragma omp parallel
    {
      T *col = malloc(sizeof(T) * (size_t)colsz);
      if (!col) {
#pragma omp atomic write
        fail = 1;
      }
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g->N; n++)
        if (col) FN(gemm_fwd_sample)(g, n, x, w, b, out, col);
      free(col);
    }
    blas_single_end(saved);
    return fail ? conv_oom() : 0;
  }
  T *col = malloc(sizeof(T) * (size_t)colsz);
  if (!col) return conv_oom();
  for (int64_t n = 0; n < g->N; n++) FN(gemm_fwd_sample)(g, n, x, w, b, out, col);
  free(col);
  return 0;
}

static int FN(conv2d_bwd_input)(const conv_geom *g, const T *gy, const T *w, T *dx) {
  if (g->strategy == CONV_DIRECT) {
    int64_t units = g->N * g->groups, PS = g->Cg * g->sw * g->Hp * g->Wq;
    int fail = 0;
    PS = g->Og * g->Ho * g->Wg + g->sw * g->Wq;
#pragma omp parallel if (units > 1 && g->work > CONV_PAR_WORK)
    {
      T *ph = malloc(sizeof(T) * (size_t)PS);
      if (!ph) {
#pragma omp atomic write
        fail = 1;
      }
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++)
        if (ph) FN(direct_bwd_input_unit)(g, u / g->groups, u % g->groups, gy, w, dx, ph);
      free(ph);
    }
    return fail ? conv_oom() : 0;
  }
  if (g->strategy == CONV_BATCH_GEMM) { /* dx (N,C) = gy (N,O) w (O,C) */
    CC_CONV_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->N, (int)g->C, (int)g->O, 1, gy, (int)g->O, w,
                 (int)g->C, 0, dx, (int)g->C);
    return 0;
  }
  int64_t colsz = g->pointwise ? 1 : g->Cg * g->kh * g->kw * g->Ho * g->Wo;
  if (conv_outer(g)) {
    int fail = 0, saved = blas_single_begin();
#pragma omp parallel
    {
      T *col = malloc(sizeof(T) * (size_t)colsz);
      if (!col) {
#pragma omp atomic write
        fail = 1;
      }
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g->N; n++)
        if (col) FN(gemm_bwd_input_sample)(g, n, gy, w, dx, col);
      free(col);
    }
    blas_single_end(saved);
    return fail ? conv_oom() : 0;
  }
  T *col = malloc(sizeof(T) * (size_t)colsz);
  if (!col) return conv_oom();
  for (int64_t n = 0; n < g->N; n++) FN(gemm_bwd_input_sample)(g, n, gy, w, dx, col);
  free(col);
  return 0;
}

static int FN(conv2d_bwd_weight)(const conv_geom *g, const T *gy, const T *x, T *dw) {
  int64_t wsize = g->O * g->Cg * g->kh * g->kw;
  if (g->strategy == CONV_DIRECT) {
    int64_t units = g->N * g->groups, PS = g->Cg * g->sw * g->Hp * g->Wq + g->kw * g->Wo;
    bool par = units > 1 && g->work > CONV_PAR_WORK;
    int nt = par ? conv_max_threads() : 1;
    double *acc = calloc((size_t)(nt * wsize), sizeof(double));
    if (!acc) return conv_oom();
    int fail = 0;
#pragma omp parallel num_threads(nt) if (par)
    {
      T *ph = malloc(sizeof(T) * (size_t)PS);
      if (!ph) {
#pragma omp atomic write
        fail = 1;
      }
      double *mine = acc + conv_thread_num() * wsize;
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++)
        if (ph) FN(direct_bwd_weight_unit)(g, u / g->groups, u % g->groups, gy, x, mine, ph);
      free(ph);
    }
    for (int64_t k = 0; k < wsize; k++) {
      double s = 0;
      for (int t = 0; t < nt; t++) s += acc[t * wsize + k];
      dw[k] = (T)s;
    }
    free(acc);
    return fail ? conv_oom() : 0;
  }
  if (g->strategy == CONV_BATCH_GEMM) { /* dw (O,C) = gy^T (O,N) x (N,C) */
    CC_CONV_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->O, (int)g->C, (int)g->N, 1, gy, (int)g->O, x,
                 (int)g->C, 0, dw, (int)g->C);
    return 0;
  }
  int64_t colsz = g->pointwise ? 1 : g->Cg * g->kh * g->kw * g->Ho * g->Wo;
  memset(dw, 0, sizeof(T) * (size_t)wsize);
  if (conv_outer(g)) {
    int nt = conv_max_threads();
    T *acc = calloc((size_t)(nt * wsize), sizeof(T));
    if (!acc) return conv_oom();
    int fail = 0, saved = blas_single_begin();
#pragma omp parallel num_threads(nt)
    {
      T *col = malloc(sizeof(T) * (size_t)colsz);
      if (!col) {
#pragma omp atomic write
        fail = 1;
      }
      T *mine = acc + conv_thread_num() * wsize;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g->N; n++)
        if (col) FN(gemm_bwd_weight_sample)(g, n, gy, x, mine, col);
      free(col);
    }
    blas_single_end(saved);
    for (int t = 0; t < nt; t++) {
      const T *src = acc + t * wsize;
      for (int64_t k = 0; k < wsize; k++) dw[k] += src[k];
    }
    free(acc);
    return fail ? conv_oom() : 0;
  }
  T *col = malloc(sizeof(T) * (size_t)colsz);
  if (!col) return conv_oom();
  for (int64_t n = 0; n < g->N; n++) FN(gemm_bwd_weight_sample)(g, n, gy, x, dw, col);
  free(col);
  return 0;
}

/* ---- adaptive average pool over the last two dims: planes of (H,W) -> (oh,ow) ---- */
static void FN(avg_pool_fwd)(const T *x, T *out, int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow) {
#pragma omp parallel for schedule(static) if (planes * H * W > 32768 && planes > 1)
  for (int64_t p = 0; p < planes; p++) {
    const T *xp = x + p * H * W;
    T *op = out + p * oh * ow;
    if (oh == 1 && ow == 1) {
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < H * W; k++) s += xp[k];
      op[0] = (T)(s / (double)(H * W));
      continue;
    }
    for (int64_t i = 0; i < oh; i++) {
      int64_t h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh;
      for (int64_t j = 0; j < ow; j++) {
        int64_t w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
        double s = 0;
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
        op[i * ow + j] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

static void FN(avg_pool_bwd)(const T *gy, T *dx, int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow) {
#pragma omp parallel for schedule(static) if (planes * H * W > 32768 && planes > 1)
  for (int64_t p = 0; p < planes; p++) {
    T *dp = dx + p * H * W;
    const T *gp = gy + p * oh * ow;
    if (oh == 1 && ow == 1) {
      T v = (T)((double)gp[0] / (double)(H * W));
      for (int64_t k = 0; k < H * W; k++) dp[k] = v;
      continue;
    }
    memset(dp, 0, sizeof(T) * (size_t)(H * W));
    for (int64_t i = 0; i < oh; i++) {
      int64_t h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh;
      for (int64_t j = 0; j < ow; j++) {
        int64_t w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
        T v = (T)((double)gp[i * ow + j] / (double)((h1 - h0) * (w1 - w0)));
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) dp[h * W + w] += v;
      }
    }
  }
}

#undef T
#undef FN

#else
typedef int cc_conv_tmpl_empty_unit; /* compiled on its own: nothing (conv.c includes this file) */
#endif
