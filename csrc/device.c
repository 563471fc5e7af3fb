/* device.c — the device registry: each backend registers {alloc, free, copy, sync} when it loads;
 * storage allocates through it, so the core never names a backend. */
#include "internal.h"

static const cc_device_ops *devices[CC_NUM_DEVICES];
extern const cc_device_ops cc_cpu_device_ops;

void cc_register_device(int device, const cc_device_ops *ops) {
  if (device >= 0 && device < CC_NUM_DEVICES) devices[device] = ops;
}

const cc_device_ops *cc_device_get(int device) {
  if (device < 0 || device >= CC_NUM_DEVICES) return NULL;
  return devices[device];
}

int cc_device_available(int device) { return cc_device_get(device) != NULL; }

const char *cc_device_name(int device) {
  switch (device) {
  case CC_CPU: return "cpu";
  case CC_CUDA: return "cuda";
  default: return "unknown device";
  }
}

/* a backend built into the library defines this (weakly referenced so the core links without it) */
extern int cc_cuda_backend_init(void) __attribute__((weak));

void cc_init(void) {
  static int done = 0;
  if (done) return;
  done = 1;
  cc_register_device(CC_CPU, &cc_cpu_device_ops);
  cc_cpu_backend_init();
  if (cc_cuda_backend_init) cc_cuda_backend_init();
}
