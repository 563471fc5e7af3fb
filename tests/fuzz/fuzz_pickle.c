/* fuzz_pickle.c — libFuzzer harness of the data-only pickle machine (ck_unpickle, csrc/io/pickle.c)
 * on raw bytes: every opcode, the memo, marks, globals (allowed, placeholder and refused) and the
 * tensor rebuild. Storages named by BINPERSID records are small zero tensors (as if the archive
 * held them); larger ones are refused, like a storage missing from the archive. */
#include "fuzz_common.h"

#include <string.h>

#include "io/torch_ckpt.h"

static cc_tensor *storage(void *ctx, const char *key, const char *type, int64_t numel) {
  (void)ctx;
  (void)type;
  if (numel < 0 || numel > 4096) {
    cc_set_error("missing storage entry '%s'", key);
    return NULL;
  }
  int64_t shape[1] = {numel};
  return cc_zeros(1, shape, CC_FLOAT32, CC_CPU);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ck_doc *doc = calloc(1, sizeof *doc);
  if (!doc) return 0;
  int dummy = 0;
  int rc = ck_unpickle(doc, data, size, storage, &dummy);
  if (!rc && !doc->root) abort(); /* a finished pickle always leaves a root value */
  ck_doc_free(doc);
  return 0;
}
