/* frechet.c — Gaussian statistics of embeddings and the Fréchet distance between two Gaussians
 * (FAD, FID), all in float64 on the CPU.
 *
 * Statistics: count n, mean (D) and M2 (D,D), the sum of outer products of the frames' deviations
 * from the mean; the covariance is M2 / (n - 1) (np.cov(x, rowvar=False)). cc_gauss_stats_add folds
 * a block of frames x (frames, D) in (two passes over the block, then Chan's merge), and
 * cc_gauss_stats_merge folds in another set's (n, mean, M2), so files can be added one at a time
 * and partial statistics merged in any order.
 *
 * Distance: d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2)), with
 * Tr(sqrtm(S1 S2)) = sum sqrt(eig(A S2 A)) where A = sqrt(S1) (S1 = V diag(l) V^T by a symmetric
 * eigendecomposition, A = V diag(sqrt(max(l, 0))) V^T); A S2 A is symmetric PSD, so its eigenvalues
 * are real (negative round-off clamped to 0). When that trace is not finite (or LAPACK fails), eps
 * is added to both covariances' diagonals for the square root term and it is computed again, as
 * the FAD reference implementations do; the traces Tr(S1), Tr(S2) stay those of the inputs.
 * Eigendecompositions: LAPACK dsyevd (the OpenBLAS build the core already links provides it). */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

/* LAPACK's Fortran symbol (column-major; the trailing lengths of the character arguments) */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);

/* a contiguous float64 CPU copy of t's elements (row-major), or NULL with the error set */
static double *host_f64(cc_tensor *t, const char *op, const char *what) {
  if (cc_check_floating(op, t)) return NULL;
  bool was = cc_set_grad_enabled(false);
  double *out = NULL;
  cc_tensor *a = cc_to_device(t, CC_CPU), *b = NULL, *c = NULL;
  if (!a) goto done;
  if (!(b = cc_to_dtype(a, CC_FLOAT64))) goto done;
  if (!(c = cc_contiguous(b))) goto done;
  int64_t n = cc_numel(c);
  out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
  if (!out) {
    cc_set_error("%s: out of host memory for %s", op, what);
    goto done;
  }
  if (n > 0) memcpy(out, cc_data_ptr(c), (size_t)n * sizeof *out);
done:
  cc_release(c);
  cc_release(b);
  cc_release(a);
  cc_set_grad_enabled(was);
  return out;
}

static bool all_finite(int64_t n, const double *x) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

/* a float64 contiguous CPU tensor of the given shape, the one the statistics are kept in */
static int check_stats(const char *op, cc_tensor *mean, cc_tensor *m2, int64_t *d) {
  if (mean->dtype != CC_FLOAT64 || m2->dtype != CC_FLOAT64 || mean->storage->device != CC_CPU ||
      m2->storage->device != CC_CPU || !cc_is_contiguous(mean) || !cc_is_contiguous(m2)) {
    cc_set_error("%s: the statistics must be contiguous float64 CPU tensors", op);
    return -1;
  }
  if (mean->ndim != 1 || m2->ndim != 2 || m2->shape[0] != mean->shape[0] || m2->shape[1] != mean->shape[0]) {
    char s1[128], s2[128];
    cc_shape_str(mean->ndim, mean->shape, s1, sizeof s1);
    cc_shape_str(m2->ndim, m2->shape, s2, sizeof s2);
    cc_set_error("%s: expected a mean (D) and an M2 matrix (D, D), got %s and %s", op, s1, s2);
    return -1;
  }
  *d = mean->shape[0];
  return 0;
}

/* (n, mean, m2) <- merged with (nb, mean_b, m2_b) (Chan et al.); d x d row-major */
static void chan_merge(int64_t d, int64_t *n, double *mean, double *m2, int64_t nb, const double *mean_b,
                       const double *m2_b) {
  if (nb == 0) return;
  if (*n == 0) {
    memcpy(mean, mean_b, (size_t)d * sizeof *mean);
    memcpy(m2, m2_b, (size_t)(d * d) * sizeof *m2);
    *n = nb;
    return;
  }
  double na = (double)*n, nbd = (double)nb, nt = na + nbd;
  double *delta = malloc((size_t)d * sizeof *delta);
  if (delta) {
    for (int64_t i = 0; i < d; i++) delta[i] = mean_b[i] - mean[i];
    double w = na * nbd / nt;
    for (int64_t i = 0; i < d; i++) {
      double wi = w * delta[i];
      for (int64_t j = 0; j < d; j++) m2[i * d + j] += m2_b[i * d + j] + wi * delta[j];
    }
    for (int64_t i = 0; i < d; i++) mean[i] += delta[i] * (nbd / nt);
    free(delta);
  } else { /* no scratch: the same update, reading the old mean before it changes */
    double w = na * nbd / nt;
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = 0; j < d; j++)
        m2[i * d + j] += m2_b[i * d + j] + w * (mean_b[i] - mean[i]) * (mean_b[j] - mean[j]);
    for (int64_t i = 0; i < d; i++) mean[i] += (mean_b[i] - mean[i]) * (nbd / nt);
  }
  *n += nb;
}

int cc_gauss_stats_add(cc_tensor *mean, cc_tensor *m2, int64_t *n, cc_tensor *x) {
  const char *op = "gauss_stats_add";
  int64_t d;
  if (check_stats(op, mean, m2, &d)) return -1;
  if (x->ndim != 2) {
    char s[128];
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("%s: expected embeddings of shape (frames, D), got a %d-d tensor %s", op, x->ndim, s);
    return -1;
  }
  if (x->shape[1] != d) {
    cc_set_error("%s: the embeddings have D = %lld, the statistics D = %lld", op, (long long)x->shape[1],
                 (long long)d);
    return -1;
  }
  if (cc_check_floating(op, x)) return -1;
  int64_t nb = x->shape[0];
  if (nb == 0) return 0;
  if (nb > INT_MAX || d > INT_MAX) {
    cc_set_error("%s: %lld frames of D = %lld exceed the BLAS index range", op, (long long)nb, (long long)d);
    return -1;
  }
  double *xc = host_f64(x, op, "the embeddings");
  if (!xc) return -1;
  if (!all_finite(nb * d, xc)) {
    free(xc);
    cc_set_error("%s: the embeddings hold NaN or infinite values", op);
    return -1;
  }
  double *mb = calloc((size_t)d, sizeof *mb), *m2b = malloc((size_t)(d * d) * sizeof *m2b);
  if (!mb || !m2b) {
    free(xc);
    free(mb);
    free(m2b);
    cc_set_error("%s: out of host memory", op);
    return -1;
  }
  for (int64_t r = 0; r < nb; r++)
    for (int64_t j = 0; j < d; j++) mb[j] += xc[r * d + j];
  for (int64_t j = 0; j < d; j++) mb[j] /= (double)nb;
  for (int64_t r = 0; r < nb; r++)
    for (int64_t j = 0; j < d; j++) xc[r * d + j] -= mb[j];
  /* m2b = xc^T xc (upper triangle), then mirrored */
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)nb, 1.0, xc, (int)d, 0.0, m2b, (int)d);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < i; j++) m2b[i * d + j] = m2b[j * d + i];
  chan_merge(d, n, cc_data_ptr(mean), cc_data_ptr(m2), nb, mb, m2b);
  free(xc);
  free(mb);
  free(m2b);
  return 0;
}

int cc_gauss_stats_merge(cc_tensor *mean, cc_tensor *m2, int64_t *n, cc_tensor *mean_b, cc_tensor *m2_b,
                         int64_t n_b) {
  const char *op = "gauss_stats_merge";
  int64_t d, db;
  if (check_stats(op, mean, m2, &d) || check_stats(op, mean_b, m2_b, &db)) return -1;
  if (d != db) {
    cc_set_error("%s: the statistics have D = %lld and D = %lld", op, (long long)d, (long long)db);
    return -1;
  }
  if (*n < 0 || n_b < 0) {
    cc_set_error("%s: negative frame count", op);
    return -1;
  }
  if (mean->storage == mean_b->storage || m2->storage == m2_b->storage) {
    cc_set_error("%s: cannot merge statistics into themselves", op);
    return -1;
  }
  chan_merge(d, n, cc_data_ptr(mean), cc_data_ptr(m2), n_b, cc_data_ptr(mean_b), cc_data_ptr(m2_b));
  return 0;
}

/* eigenvalues (ascending) of the symmetric d x d matrix a, and its eigenvectors in a's columns
   (column-major) when vectors; a is overwritten. 0, or -1 (no error set) when LAPACK fails */
static int sym_eig(int d, double *a, double *w, bool vectors) {
  int lwork = -1, liwork = -1, info = 0, iwq = 0;
  double wq = 0;
  const char jobz = vectors ? 'V' : 'N', uplo = 'L';
  dsyevd_(&jobz, &uplo, &d, a, &d, w, &wq, &lwork, &iwq, &liwork, &info, 1, 1);
  if (info != 0) return -1;
  lwork = (int)wq + 1;
  liwork = iwq > 0 ? iwq : 1;
  double *work = malloc((size_t)lwork * sizeof *work);
  int *iwork = malloc((size_t)liwork * sizeof *iwork);
  if (!work || !iwork) {
    free(work);
    free(iwork);
    return -1;
  }
  dsyevd_(&jobz, &uplo, &d, a, &d, w, work, &lwork, iwork, &liwork, &info, 1, 1);
  free(work);
  free(iwork);
  return info == 0 ? 0 : -1;
}

/* Tr(sqrtm((s1 + eps I)(s2 + eps I))) of symmetric d x d matrices; *tr is NaN when a step fails.
   -1 only when out of memory (error set) */
static int trace_sqrt_product(int d, const double *s1, const double *s2, double eps, double *tr) {
  size_t dd = (size_t)d * (size_t)d;
  double *v = malloc(dd * sizeof *v), *b = malloc(dd * sizeof *b), *a = malloc(dd * sizeof *a),
         *t = malloc(dd * sizeof *t), *w = malloc((size_t)d * sizeof *w);
  if (!v || !b || !a || !t || !w) {
    free(v), free(b), free(a), free(t), free(w);
    cc_set_error("frechet_distance: out of host memory");
    return -1;
  }
  *tr = NAN;
  /* the symmetric parts (exact for symmetric inputs), plus eps on the diagonals */
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      size_t ij = (size_t)i * d + j, ji = (size_t)j * d + i;
      v[ij] = 0.5 * (s1[ij] + s1[ji]);
      b[ij] = 0.5 * (s2[ij] + s2[ji]);
    }
  for (int i = 0; i < d; i++) {
    v[(size_t)i * d + i] += eps;
    b[(size_t)i * d + i] += eps;
  }
  if (sym_eig(d, v, w, true) == 0) {
    /* v's columns (column-major) are the eigenvectors: scale column j by max(l_j, 0)^(1/4) into t,
       then a = t t^T = V diag(max(l, 0)^(1/2)) V^T */
    for (int j = 0; j < d; j++) {
      double s = w[j] > 0 ? sqrt(sqrt(w[j])) : 0.0;
      for (int i = 0; i < d; i++) t[(size_t)j * d + i] = v[(size_t)j * d + i] * s;
    }
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, d, d, 1.0, t, d, 0.0, a, d);
    for (int j = 0; j < d; j++)
      for (int i = 0; i < j; i++) a[(size_t)j * d + i] = a[(size_t)i * d + j];
    /* t = a s2, v = t a = a s2 a (s2 symmetric: the layout does not matter) */
    cblas_dsymm(CblasColMajor, CblasLeft, CblasLower, d, d, 1.0, a, d, b, d, 0.0, t, d);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, t, d, a, d, 0.0, v, d);
    for (int j = 0; j < d; j++)
      for (int i = 0; i < j; i++) {
        double m = 0.5 * (v[(size_t)j * d + i] + v[(size_t)i * d + j]);
        v[(size_t)j * d + i] = v[(size_t)i * d + j] = m;
      }
    if (all_finite((int64_t)dd, v) && sym_eig(d, v, w, false) == 0) {
      double sum = 0;
      for (int i = 0; i < d; i++) sum += w[i] > 0 ? sqrt(w[i]) : 0.0;
      *tr = sum;
    }
  }
  free(v), free(b), free(a), free(t), free(w);
  return 0;
}

int cc_frechet_distance(cc_tensor *mu1, cc_tensor *cov1, cc_tensor *mu2, cc_tensor *cov2, double eps,
                        double *out, bool *used_eps) {
  const char *op = "frechet_distance";
  cc_tensor *ts[4] = {mu1, cov1, mu2, cov2};
  const char *names[4] = {"mu1", "cov1", "mu2", "cov2"};
  for (int k = 0; k < 4; k++) {
    int want = (k % 2) ? 2 : 1;
    if (ts[k]->ndim != want) {
      char s[128];
      cc_shape_str(ts[k]->ndim, ts[k]->shape, s, sizeof s);
      cc_set_error("%s: %s must be %s, got a %d-d tensor %s", op, names[k], want == 1 ? "a vector (D)" : "a matrix (D, D)",
                   ts[k]->ndim, s);
      return -1;
    }
    if (!cc_is_floating(ts[k]->dtype)) {
      cc_set_error("%s: %s must be a floating tensor (float32 or float64), got %s", op, names[k],
                   cc_dtype_name(ts[k]->dtype));
      return -1;
    }
  }
  int64_t d = mu1->shape[0];
  for (int k = 0; k < 4; k++) {
    bool ok = ts[k]->shape[0] == d && (k % 2 == 0 || ts[k]->shape[1] == d);
    if (!ok) {
      char s[128];
      cc_shape_str(ts[k]->ndim, ts[k]->shape, s, sizeof s);
      cc_set_error("%s: mu1 has D = %lld but %s has shape %s", op, (long long)d, names[k], s);
      return -1;
    }
  }
  if (d < 1 || d > 46340) {
    cc_set_error("%s: D = %lld is out of range (1 .. 46340)", op, (long long)d);
    return -1;
  }
  if (!(eps >= 0) || !isfinite(eps)) {
    cc_set_error("%s: eps must be a finite number >= 0, got %g", op, eps);
    return -1;
  }
  double *h[4] = {NULL, NULL, NULL, NULL};
  int rc = -1;
  for (int k = 0; k < 4; k++) {
    if (!(h[k] = host_f64(ts[k], op, names[k]))) goto done;
    if (!all_finite(cc_numel(ts[k]), h[k])) {
      cc_set_error("%s: %s holds NaN or infinite values", op, names[k]);
      goto done;
    }
  }
  double diff2 = 0, tr1 = 0, tr2 = 0;
  for (int64_t i = 0; i < d; i++) {
    double dm = h[0][i] - h[2][i];
    diff2 += dm * dm;
    tr1 += h[1][i * d + i];
    tr2 += h[3][i * d + i];
  }
  double trc;
  bool fell_back = false;
  if (trace_sqrt_product((int)d, h[1], h[3], 0.0, &trc)) goto done;
  if (!isfinite(trc)) {
    fell_back = true;
    if (trace_sqrt_product((int)d, h[1], h[3], eps, &trc)) goto done;
    if (!isfinite(trc)) {
      cc_set_error("%s: the square root of the covariance product is not finite, even with eps = %g added to "
                   "the diagonals",
                   op, eps);
      goto done;
    }
  }
  *out = diff2 + tr1 + tr2 - 2.0 * trc;
  if (used_eps) *used_eps = fell_back;
  rc = 0;
done:
  for (int k = 0; k < 4; k++) free(h[k]);
  return rc;
}
