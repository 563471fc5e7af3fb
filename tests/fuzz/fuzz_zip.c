/* fuzz_zip.c — libFuzzer harness of the ZIP/ZIP64 reader of torch checkpoints (csrc/io/zip.c): the
 * end of central directory and ZIP64 records, every central entry, and each entry read back through
 * its local header with the CRC check. Every result is freed (ASan's leak check stays meaningful). */
#include "fuzz_common.h"

#include "io/torch_ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  int fd = fuzz_memfile(data, size, path);
  ck_zip *z = ck_zip_open(path);
  if (z) {
    for (size_t k = 0; k < z->n_entries; k++) {
      const ck_zip_entry *e = ck_zip_find(z, z->entries[k].name);
      if (!e) abort(); /* every listed entry is found by its name */
      unsigned char *buf = ck_zip_read(z, e, 1u << 20);
      free(buf);
    }
    ck_zip_close(z);
  }
  close(fd);
  return 0;
}
