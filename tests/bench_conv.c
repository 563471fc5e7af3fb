/* bench_conv.c — workbench (not a ctest): times conv2d forward and backward (dx, dw, db through
 * autograd; best of reps) on the conv layers of an EfficientNet-B0 with input (32,1,64,501), float32.
 * Build by hand:
 *   cc -O3 -march=native -fopenmp -Icsrc -Ikernels tests/bench_conv.c build-conv/libcocola_core.a -lopenblas -lm
 * Usage: bench_conv [reps] [gemm_mode 0 auto | 1 batch-parallel | 2 threaded BLAS] [name filter] ; bench_conv --list prints
 * the layer table (name N C H W O k stride pad groups bias count) for a torch script to time the same shapes. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void cc_conv_set_gemm_mode(int mode); /* conv.c */

typedef struct {
  const char *name;
  int64_t N, C, H, W, O, k, s, p, groups;
  int bias, count, input_grad;
} layer;

#define B 32
#define DW(name, C, H, W, k, s, cnt) {name, B, C, H, W, C, k, s, (k) / 2, C, 0, cnt, 1}
#define PW(name, C, H, W, O, cnt) {name, B, C, H, W, O, 1, 1, 0, 1, 0, cnt, 1}
#define SE(name, C, R, cnt) {name "_se1", B, C, 1, 1, R, 1, 1, 0, 1, 1, cnt, 1}, {name "_se2", B, R, 1, 1, C, 1, 1, 0, 1, 1, cnt, 1}

static const layer layers[] = {
    {"stem", B, 1, 64, 501, 32, 3, 2, 1, 1, 0, 1, 0},
    DW("b1_dw3", 32, 32, 251, 3, 1, 1), SE("b1", 32, 8, 1), PW("b1_proj", 32, 32, 251, 16, 1),
    PW("b2_exp", 16, 32, 251, 96, 1), DW("b2_dw3s2", 96, 32, 251, 3, 2, 1), SE("b2", 96, 4, 1),
    PW("b2_proj", 96, 16, 126, 24, 1),
    PW("b2b_exp", 24, 16, 126, 144, 2), DW("b2b_dw3", 144, 16, 126, 3, 1, 1), SE("b2b", 144, 6, 2),
    PW("b2b_proj", 144, 16, 126, 24, 1),
    DW("b3_dw5s2", 144, 16, 126, 5, 2, 1), PW("b3_proj", 144, 8, 63, 40, 1),
    PW("b3b_exp", 40, 8, 63, 240, 2), DW("b3b_dw5", 240, 8, 63, 5, 1, 1), SE("b3b", 240, 10, 2),
    PW("b3b_proj", 240, 8, 63, 40, 1),
    DW("b4_dw3s2", 240, 8, 63, 3, 2, 1), PW("b4_proj", 240, 4, 32, 80, 1),
    PW("b4b_exp", 80, 4, 32, 480, 3), DW("b4b_dw3", 480, 4, 32, 3, 1, 2), SE("b4b", 480, 20, 3),
    PW("b4b_proj", 480, 4, 32, 80, 2),
    DW("b5_dw5", 480, 4, 32, 5, 1, 1), PW("b5_proj", 480, 4, 32, 112, 1),
    PW("b5b_exp", 112, 4, 32, 672, 3), DW("b5b_dw5", 672, 4, 32, 5, 1, 2), SE("b5b", 672, 28, 3),
    PW("b5b_proj", 672, 4, 32, 112, 2),
    DW("b6_dw5s2", 672, 4, 32, 5, 2, 1), PW("b6_proj", 672, 2, 16, 192, 1),
    PW("b6b_exp", 192, 2, 16, 1152, 4), DW("b6b_dw5", 1152, 2, 16, 5, 1, 3), SE("b6b", 1152, 48, 4),
    PW("b6b_proj", 1152, 2, 16, 192, 3),
    DW("b7_dw3", 1152, 2, 16, 3, 1, 1), PW("b7_proj", 1152, 2, 16, 320, 1),
    PW("head", 320, 2, 16, 1280, 1),
};
#define NLAYERS ((int)(sizeof layers / sizeof layers[0]))

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  cc_init();
  if (argc > 1 && !strcmp(argv[1], "--list")) {
    for (int l = 0; l < NLAYERS; l++) {
      const layer *L = &layers[l];
      printf("%s %lld %lld %lld %lld %lld %lld %lld %lld %lld %d %d %d\n", L->name, (long long)L->N, (long long)L->C,
             (long long)L->H, (long long)L->W, (long long)L->O, (long long)L->k, (long long)L->s, (long long)L->p,
             (long long)L->groups, L->bias, L->count, L->input_grad);
    }
    return 0;
  }
  int reps = argc > 1 ? atoi(argv[1]) : 10;
  if (argc > 2) cc_conv_set_gemm_mode(atoi(argv[2]));
  printf("threads %d, reps %d\n%-12s %8s %8s   (ms per call, best of reps; total = x count)\n", cc_get_num_threads(), reps, "layer",
         "fwd", "bwd");
  double tot_f = 0, tot_b = 0;
  for (int l = 0; l < NLAYERS; l++) {
    const layer *L = &layers[l];
    if (argc > 3 && !strstr(L->name, argv[3])) continue;
    int64_t xs[4] = {L->N, L->C, L->H, L->W}, ws[4] = {L->O, L->C / L->groups, L->k, L->k}, bs[1] = {L->O};
    cc_tensor *x = cc_randn(4, xs, CC_FLOAT32), *w = cc_randn(4, ws, CC_FLOAT32);
    cc_tensor *b = L->bias ? cc_randn(1, bs, CC_FLOAT32) : NULL;
    cc_conv2d_opts opt = {{L->s, L->s}, {L->p, L->p}, {1, 1}, L->groups};
    /* forward, no graph */
    bool was = cc_set_grad_enabled(false);
    double tf = 0;
    for (int r = -2; r < reps; r++) {
      double t0 = now();
      cc_tensor *y = cc_conv2d(x, w, b, &opt);
      double t1 = now();
      if (!y) {
        fprintf(stderr, "%s: %s\n", L->name, cc_last_error());
        return 1;
      }
      cc_release(y);
      if (r >= 0 && (r == 0 || t1 - t0 < tf)) tf = t1 - t0;
    }
    cc_set_grad_enabled(was);
    /* backward only */
    if (L->input_grad) cc_set_requires_grad(x, true);
    cc_set_requires_grad(w, true);
    if (b) cc_set_requires_grad(b, true);
    double tb = 0;
    cc_tensor *gy = NULL;
    for (int r = -2; r < reps; r++) {
      cc_tensor *y = cc_conv2d(x, w, b, &opt);
      if (!gy) gy = cc_randn(y->ndim, y->shape, CC_FLOAT32);
      double t0 = now();
      int rc = cc_backward(y, gy, false);
      double t1 = now();
      if (rc) {
        fprintf(stderr, "%s backward: %s\n", L->name, cc_last_error());
        return 1;
      }
      cc_release(y);
      cc_zero_grad(x);
      cc_zero_grad(w);
      if (b) cc_zero_grad(b);
      if (r >= 0 && (r == 0 || t1 - t0 < tb)) tb = t1 - t0;
    }
    tf *= 1e3;
    tb *= 1e3;
    printf("%-12s %8.3f %8.3f  x%d\n", L->name, tf, tb, L->count);
    tot_f += tf * L->count;
    tot_b += tb * L->count;
    cc_release(x);
    cc_release(w);
    cc_release(b);
    cc_release(gy);
  }
  printf("%-12s %8.1f %8.1f  (whole network's convs, ms)\n", "TOTAL", tot_f, tot_b);
  return 0;
}
