/* optim.cu — the fused Adam / AdamW step: cc_adam_update of kernels/scalar.h per element, the
 * function the CPU loop of csrc/ops/optim.c calls, with the scalars rounded to the element type the
 * same way. Contiguous param, grad, exp_avg, exp_avg_sq, updated in place. */
#include "cuda_common.cuh"

struct AdamF32 {
  cck_adam_args a;
  __device__ void operator()(int64_t i) const {
    typedef float T;
    cc_adam_update_f((T *)a.p + i, ((const T *)a.g)[i], (T *)a.m + i, (T *)a.v + i, (T)a.beta1, (T)a.one_m_beta1,
                     (T)a.beta2, (T)a.one_m_beta2, (T)a.wd, (T)a.decay, a.decoupled, (T)a.bc2_sqrt, (T)a.eps,
                     (T)a.neg_step_size);
  }
};

struct AdamF64 {
  cck_adam_args a;
  __device__ void operator()(int64_t i) const {
    typedef double T;
    cc_adam_update_d((T *)a.p + i, ((const T *)a.g)[i], (T *)a.m + i, (T *)a.v + i, (T)a.beta1, (T)a.one_m_beta1,
                     (T)a.beta2, (T)a.one_m_beta2, (T)a.wd, (T)a.decay, a.decoupled, (T)a.bc2_sqrt, (T)a.eps,
                     (T)a.neg_step_size);
  }
};

extern "C" cudaError_t cck_adam(const cck_adam_args *a, cudaStream_t s) {
  if (a->dtype == CCK_F32) return cck_launch(a->n, AdamF32{*a}, s);
  return cck_launch(a->n, AdamF64{*a}, s);
}
