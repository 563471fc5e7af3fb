/* dispatch.c — the op table: for each op of CC_OP_LIST, the kernel each device registered.
 * The name table is generated from the same list, so the two cannot drift apart. */
#include "internal.h"

const char *const cc_op_names[CC_OP_COUNT] = {
#define CC_OP_NAME(name, doc) #name,
    CC_OP_LIST(CC_OP_NAME)
#undef CC_OP_NAME
};
_Static_assert(sizeof cc_op_names / sizeof cc_op_names[0] == CC_OP_COUNT, "op name table incomplete");

static cc_kernel kernels[CC_OP_COUNT][CC_NUM_DEVICES];

void cc_register_kernel(cc_op op, int device, cc_kernel kernel) {
  if ((int)op >= 0 && op < CC_OP_COUNT && device >= 0 && device < CC_NUM_DEVICES) kernels[op][device] = kernel;
}

bool cc_kernel_supported(cc_op op, int device) {
  return (int)op >= 0 && op < CC_OP_COUNT && device >= 0 && device < CC_NUM_DEVICES && kernels[op][device];
}

int cc_dispatch(cc_call *call) {
  cc_tensor *first = call->n_out ? call->out[0] : call->in[0];
  int device = first->storage->device;
  for (int k = 0; k < call->n_in; k++)
    if (call->in[k] && call->in[k]->storage->device != device) {
      cc_set_error("%s: operands on different devices (%s and %s)", cc_op_names[call->op],
                   cc_device_name(device), cc_device_name(call->in[k]->storage->device));
      return -1;
    }
  cc_kernel k = kernels[call->op][device];
  if (!k) {
    cc_set_error("op %s is not supported on device %s", cc_op_names[call->op], cc_device_name(device));
    return -1;
  }
  return k(call);
}

int cc_run(cc_op op, cc_tensor *out, int n_in, cc_tensor *const *in, const int64_t *ints, int n_ints,
           const double *reals, int n_reals) {
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = op;
  call.n_out = out ? 1 : 0;
  call.out[0] = out;
  call.n_in = n_in;
  for (int k = 0; k < n_in; k++) call.in[k] = in[k];
  for (int k = 0; k < n_ints; k++) call.i[k] = ints[k];
  for (int k = 0; k < n_reals; k++) call.f[k] = reals[k];
  return cc_dispatch(&call);
}
