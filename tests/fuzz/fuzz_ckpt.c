/* fuzz_ckpt.c — libFuzzer harness of the whole torch checkpoint loader, ck_load (csrc/io): the zip
 * layer, the byteorder record, data.pkl through the pickle machine and the storages it names,
 * exactly as the Lua binding's _torch_load calls it. The document is freed after each input. */
#include "fuzz_common.h"

#include "io/torch_ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  int fd = fuzz_memfile(data, size, path);
  ck_doc *doc = ck_load(path);
  if (doc && !doc->root) abort(); /* a loaded document always has a root value */
  ck_doc_free(doc);
  close(fd);
  return 0;
}
