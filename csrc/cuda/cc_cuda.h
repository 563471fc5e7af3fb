/* cc_cuda.h — what the rest of cocola may ask of the CUDA backend (csrc/cuda), in plain C: no CUDA
 * header here. The backend is optional: a file that calls these without depending on it declares
 * them weak (`#define CC_CUDA_API __attribute__((weak))` before the include) and checks each symbol
 * for NULL, so the same code links with COCOLA_CUDA=OFF. The device registry (csrc/device.c) is how
 * tensors and ops reach the backend; this header is only for queries and settings.
 */
#ifndef COCOLA_CC_CUDA_H
#define COCOLA_CC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifndef CC_CUDA_API
#define CC_CUDA_API
/* NCCL (cuda_nccl.c, where NCCL was found at build time): one communicator per process over the
   GPU of this process; 0 or -1 and cc_last_error(). The unique id (rank 0's) travels over MPI. */
struct cc_tensor;
CC_CUDA_API int cc_nccl_unique_id(char *out, size_t cap); /* bytes written */
CC_CUDA_API int cc_nccl_init(const char *id, size_t len, int rank, int size, double timeout);
CC_CUDA_API int cc_nccl_all_reduce(struct cc_tensor *t, int op); /* in place; op 0 sum, 1 max, 2 min */
CC_CUDA_API int cc_nccl_all_gather(struct cc_tensor *in, struct cc_tensor *out);
CC_CUDA_API int cc_nccl_broadcast(struct cc_tensor *t, int root);

#endif

/* registers the CUDA device and kernels when a device is usable; otherwise records why not
   (called once by cc_init; 0 when registered) */
CC_CUDA_API int cc_cuda_backend_init(void);
/* why the backend did not register, e.g. "cudaErrorInsufficientDriver: CUDA driver version is
   insufficient for CUDA runtime version"; NULL when it did */
CC_CUDA_API const char *cc_cuda_init_error(void);
CC_CUDA_API int cc_cuda_device_count(void);
/* the name of device 0 ("" before first use) */
CC_CUDA_API const char *cc_cuda_device_name(void);
/* waits for all queued work; -1 and cc_last_error() when the device reports an error */
CC_CUDA_API int cc_cuda_synchronize(void);
/* starts / stops the capture of an external profiler started with capture off (ncu
   --profile-from-start off, nsys --capture-range=cudaProfilerApi); -1 and cc_last_error() on error */
CC_CUDA_API int cc_cuda_profiler(int start);

/* caching allocator statistics: fills up to max (name, value) pairs, returns how many */
CC_CUDA_API int cc_cuda_memory_stats(const char **names, int64_t *values, int max);
CC_CUDA_API void cc_cuda_reset_peak_memory_stats(void);
/* returns the cached (free) device blocks to the driver */
CC_CUDA_API void cc_cuda_empty_cache(void);

/* TF32 tensor-core math for float32 GEMM and convolutions (off by default, for parity with the CPU) */
CC_CUDA_API void cc_cuda_set_tf32(int enabled);
CC_CUDA_API int cc_cuda_get_tf32(void);
/* bf16 autocast: float32 GEMMs and convolutions take bfloat16 copies of their operands (tensor
   cores, FP32 accumulation) and return float32 results; everything else stays float32 (off by default) */
CC_CUDA_API void cc_cuda_set_autocast_bf16(int enabled);
CC_CUDA_API int cc_cuda_get_autocast_bf16(void);
/* conv algorithms cached so far (one per op and shape) */
CC_CUDA_API int cc_cuda_conv_cache_size(void);

/* timing events on the backend's stream: handles >= 0, -1 and cc_last_error() on failure */
CC_CUDA_API int cc_cuda_event_new(void);
CC_CUDA_API int cc_cuda_event_record(int event);
CC_CUDA_API int cc_cuda_event_synchronize(int event);
/* milliseconds from start to end (both recorded and complete); negative on failure */
CC_CUDA_API double cc_cuda_event_elapsed_ms(int start, int end);
CC_CUDA_API void cc_cuda_event_free(int event);

/* NCCL (cuda_nccl.c, where NCCL was found at build time): one communicator per process over the
   GPU of this process; 0 or -1 and cc_last_error(). The unique id (rank 0's) travels over MPI. */
struct cc_tensor;
CC_CUDA_API int cc_nccl_unique_id(char *out, size_t cap); /* bytes written */
CC_CUDA_API int cc_nccl_init(const char *id, size_t len, int rank, int size, double timeout);
CC_CUDA_API int cc_nccl_all_reduce(struct cc_tensor *t, int op); /* in place; op 0 sum, 1 max, 2 min */
CC_CUDA_API int cc_nccl_all_gather(struct cc_tensor *in, struct cc_tensor *out);
CC_CUDA_API int cc_nccl_broadcast(struct cc_tensor *t, int root);

#endif
