/* fuzz_common.h — shared by the libFuzzer harnesses of tests/fuzz: the input bytes as an in-memory
 * file (memfd) reachable through a path, since the loaders under test take paths, as the Lua
 * binding passes them. Nothing touches the disk. */
#ifndef COCOLA_FUZZ_COMMON_H
#define COCOLA_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* writes data to a new memfd; path receives "/proc/self/fd/N". Returns the fd (close it after). */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char path[64]) {
  int fd = memfd_create("cocola-fuzz", 0);
  if (fd < 0) {
    perror("memfd_create");
    abort();
  }
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, data + off, size - off);
    if (w <= 0) {
      perror("write");
      abort();
    }
    off += (size_t)w;
  }
  snprintf(path, 64, "/proc/self/fd/%d", fd);
  return fd;
}

#endif
