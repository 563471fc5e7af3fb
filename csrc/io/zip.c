/* zip.c — the ZIP/ZIP64 reader of torch checkpoints: finds the end of central directory (and the
 * ZIP64 records when present), validates every central entry against the file's bounds, and reads
 * stored (method 0) entries whole with a CRC-32 check. Compressed entries are refused: torch writes
 * stored entries only, and refusing them makes zip bombs impossible (an entry never expands past the
 * bytes it occupies in the file). Entry names that are absolute or climb out with '..' are refused.
 * Errors go to cc_set_error; nothing aborts. */
#define _FILE_OFFSET_BITS 64
#define _POSIX_C_SOURCE 200809L
#include "torch_ckpt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

static uint32_t crc_table[256];
static int crc_ready;
static void crc_init(void) {
  if (crc_ready) return;
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
  crc_ready = 1;
}
static uint32_t crc32_of(const unsigned char *p, uint64_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t k = 0; k < n; k++) c = crc_table[(c ^ p[k]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static int read_at(ck_zip *z, uint64_t off, void *dst, size_t n) {
  if (off > z->file_size || n > z->file_size - off) {
    cc_set_error("torch checkpoint '%s': corrupt zip: a read at byte %llu of %zu bytes is past the end of the file",
                 z->path, (unsigned long long)off, n);
    return -1;
  }
  if (fseeko(z->f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, n, z->f) != n) {
    cc_set_error("torch checkpoint '%s': read error at byte %llu", z->path, (unsigned long long)off);
    return -1;
  }
  return 0;
}

void ck_zip_close(ck_zip *z) {
  if (!z) return;
  if (z->f) fclose(z->f);
  for (size_t k = 0; k < z->n_entries; k++) free(z->entries[k].name);
  free(z->entries);
  free(z->path);
  free(z);
}

/* an entry name that is absolute ("/x", "\\x", "C:x") or climbs out of the archive ("../x", "a/../../x"):
   torch never writes one, and no reader should take one at face value */
static int unsafe_name(const char *n) {
  if (n[0] == '/' || n[0] == '\\' || (n[0] && n[1] == ':')) return 1;
  for (const char *p = n; *p;) {
    size_t len = strcspn(p, "/\\");
    if (len == 2 && p[0] == '.' && p[1] == '.') return 1;
    p += len;
    if (*p) p++;
  }
  return 0;
}

#define ZFAIL(...)                                                                                 \
  do {                                                                                             \
    cc_set_error(__VA_ARGS__);                                                                     \
    goto fail;                                                                                     \
  } while (0)

ck_zip *ck_zip_open(const char *path) {
  crc_init();
  unsigned char *tail = NULL, *cd = NULL;
  ck_zip *z = calloc(1, sizeof *z);
  if (!z) {
    cc_set_error("torch checkpoint: out of memory");
    return NULL;
  }
  z->path = strdup(path);
  if (!z->path) ZFAIL("torch checkpoint: out of memory");
  z->f = fopen(path, "rb");
  if (!z->f) ZFAIL("torch checkpoint '%s': cannot open: %s", path, strerror(errno));
  if (fseeko(z->f, 0, SEEK_END) != 0) ZFAIL("torch checkpoint '%s': cannot seek", path);
  off_t fsz = ftello(z->f);
  if (fsz < 0) ZFAIL("torch checkpoint '%s': cannot tell the file size", path);
  z->file_size = (uint64_t)fsz;
  if (z->file_size < 22) ZFAIL("torch checkpoint '%s': not a zip archive (truncated: %llu bytes)", path,
                               (unsigned long long)z->file_size);
  unsigned char magic[4];
  if (read_at(z, 0, magic, 4)) goto fail;
  if (memcmp(magic, "PK\x03\x04", 4) != 0)
    ZFAIL("torch checkpoint '%s': not a zip archive (legacy pre-1.6 torch files are not supported)", path);

  /* end of central directory: the last 22..65557 bytes */
  uint64_t tail_len = z->file_size < 65557 ? z->file_size : 65557;
  uint64_t tail_off = z->file_size - tail_len;
  tail = malloc((size_t)tail_len);
  if (!tail) ZFAIL("torch checkpoint: out of memory");
  if (read_at(z, tail_off, tail, (size_t)tail_len)) goto fail;
  int64_t eocd = -1;
  for (int64_t p = (int64_t)tail_len - 22; p >= 0; p--) {
    if (rd32(tail + p) == 0x06054b50u && (uint64_t)p + 22 + rd16(tail + p + 20) == tail_len) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0)
    ZFAIL("torch checkpoint '%s': corrupt or truncated zip: no end of central directory record", path);
  const unsigned char *e = tail + eocd;
  uint64_t eocd_abs = tail_off + (uint64_t)eocd;
  uint64_t n_entries = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
    ZFAIL("torch checkpoint '%s': multi-disk zip archives are not supported", path);
  uint64_t cd_limit = eocd_abs; /* the central directory ends before this */
  /* ZIP64 locator just before the EOCD */
  if (eocd_abs >= 20) {
    unsigned char loc[20];
    if (read_at(z, eocd_abs - 20, loc, 20)) goto fail;
    if (rd32(loc) == 0x07064b50u) {
      uint64_t z64_off = rd64(loc + 8);
      unsigned char r[56];
      if (z64_off > eocd_abs - 20 || eocd_abs - 20 - z64_off < 56)
        ZFAIL("torch checkpoint '%s': corrupt zip64 locator (record offset %llu)", path, (unsigned long long)z64_off);
      if (read_at(z, z64_off, r, 56)) goto fail;
      if (rd32(r) != 0x06064b50u) ZFAIL("torch checkpoint '%s': corrupt zip64 end of central directory", path);
      n_entries = rd64(r + 32);
      cd_size = rd64(r + 40);
      cd_off = rd64(r + 48);
      if (rd64(r + 24) != n_entries) ZFAIL("torch checkpoint '%s': multi-disk zip archives are not supported", path);
      cd_limit = z64_off;
    }
  }
  if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
    ZFAIL("torch checkpoint '%s': corrupt zip: the central directory (offset %llu, %llu bytes) lies outside the "
          "file", path, (unsigned long long)cd_off, (unsigned long long)cd_size);
  if (cd_size > CK_MAX_CENTRAL_DIR || n_entries > CK_MAX_ZIP_ENTRIES || n_entries * 46 > cd_size)
    ZFAIL("torch checkpoint '%s': corrupt zip: %llu entries in a central directory of %llu bytes", path,
          (unsigned long long)n_entries, (unsigned long long)cd_size);
  cd = malloc((size_t)cd_size + 1);
  if (!cd) ZFAIL("torch checkpoint: out of memory");
  if (read_at(z, cd_off, cd, (size_t)cd_size)) goto fail;
  z->entries = calloc((size_t)n_entries + 1, sizeof *z->entries);
  if (!z->entries) ZFAIL("torch checkpoint: out of memory");
  uint64_t p = 0;
  for (uint64_t k = 0; k < n_entries; k++) {
    if (cd_size - p < 46 || rd32(cd + p) != 0x02014b50u)
      ZFAIL("torch checkpoint '%s': corrupt zip: bad central directory entry %llu", path, (unsigned long long)k);
    const unsigned char *c = cd + p;
    uint16_t flags = rd16(c + 8), method = rd16(c + 10);
    uint32_t crc = rd32(c + 16);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
    uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    uint64_t loff = rd32(c + 42);
    if (cd_size - p - 46 < (uint64_t)nlen + xlen + clen)
      ZFAIL("torch checkpoint '%s': corrupt zip: central directory entry %llu overruns the directory", path,
            (unsigned long long)k);
    const unsigned char *name = c + 46, *x = name + nlen, *xend = x + xlen;
    /* ZIP64 extended information: the fields that are 0xFFFFFFFF, in order */
    while (xend - x >= 4) {
      uint16_t id = rd16(x), sz = rd16(x + 2);
      if ((size_t)(xend - x - 4) < sz) ZFAIL("torch checkpoint '%s': corrupt zip: bad extra field", path);
      if (id == 0x0001) {
        const unsigned char *q = x + 4, *qe = q + sz;
        if (usize == 0xFFFFFFFFu) {
          if (qe - q < 8) ZFAIL("torch checkpoint '%s': corrupt zip64 extra field", path);
          usize = rd64(q);
          q += 8;
        }
        if (csize == 0xFFFFFFFFu) {
          if (qe - q < 8) ZFAIL("torch checkpoint '%s': corrupt zip64 extra field", path);
          csize = rd64(q);
          q += 8;
        }
        if (loff == 0xFFFFFFFFu) {
          if (qe - q < 8) ZFAIL("torch checkpoint '%s': corrupt zip64 extra field", path);
          loff = rd64(q);
          q += 8;
        }
      }
      x += 4 + sz;
    }
    ck_zip_entry *ze = &z->entries[z->n_entries];
    ze->name = malloc((size_t)nlen + 1);
    if (!ze->name) ZFAIL("torch checkpoint: out of memory");
    memcpy(ze->name, name, nlen);
    ze->name[nlen] = 0;
    z->n_entries++;
    if (memchr(name, 0, nlen)) ZFAIL("torch checkpoint '%s': corrupt zip: an entry name holds a NUL byte", path);
    if (unsafe_name(ze->name))
      ZFAIL("torch checkpoint '%s': corrupt zip: entry name '%s' is not a relative path inside the archive "
            "(absolute, or with a '..' component)", path, ze->name);
    if (flags & 1) ZFAIL("torch checkpoint '%s': entry '%s' is encrypted", path, ze->name);
    if (method != 0)
      ZFAIL("torch checkpoint '%s': entry '%s' is compressed (method %u, %llu -> %llu bytes); only stored entries "
            "are accepted (torch writes them; compressed entries could be a zip bomb)",
            path, ze->name, method, (unsigned long long)csize, (unsigned long long)usize);
    if (csize != usize)
      ZFAIL("torch checkpoint '%s': corrupt zip: stored entry '%s' claims %llu bytes uncompressed but %llu stored",
            path, ze->name, (unsigned long long)usize, (unsigned long long)csize);
    if (loff >= cd_off || csize > cd_off - loff)
      ZFAIL("torch checkpoint '%s': corrupt zip: entry '%s' (offset %llu, %llu bytes) lies outside the file's data",
            path, ze->name, (unsigned long long)loff, (unsigned long long)csize);
    ze->data_offset = loff; /* the local header's offset until the entry is read */
    ze->size = usize;
    ze->crc32 = crc;
    for (size_t j = 0; j + 1 < z->n_entries; j++)
      if (!strcmp(z->entries[j].name, ze->name))
        ZFAIL("torch checkpoint '%s': corrupt zip: duplicate entry '%s'", path, ze->name);
    p += 46 + (uint64_t)nlen + xlen + clen;
  }
  free(tail);
  free(cd);
  return z;
fail:
  free(tail);
  free(cd);
  ck_zip_close(z);
  return NULL;
}

const ck_zip_entry *ck_zip_find(const ck_zip *z, const char *name) {
  for (size_t k = 0; k < z->n_entries; k++)
    if (!strcmp(z->entries[k].name, name)) return &z->entries[k];
  return NULL;
}

unsigned char *ck_zip_read(ck_zip *z, const ck_zip_entry *e, uint64_t max_size) {
  if (e->size > max_size) {
    cc_set_error("torch checkpoint '%s': entry '%s' has %llu bytes (the limit is %llu)", z->path, e->name,
                 (unsigned long long)e->size, (unsigned long long)max_size);
    return NULL;
  }
  unsigned char lh[30];
  if (read_at(z, e->data_offset, lh, 30)) return NULL;
  if (rd32(lh) != 0x04034b50u) {
    cc_set_error("torch checkpoint '%s': corrupt zip: no local header for entry '%s'", z->path, e->name);
    return NULL;
  }
  if (rd16(lh + 8) != 0) {
    cc_set_error("torch checkpoint '%s': entry '%s' is compressed in its local header; only stored entries are "
                 "accepted", z->path, e->name);
    return NULL;
  }
  uint64_t start = e->data_offset + 30 + rd16(lh + 26) + rd16(lh + 28);
  if (start > z->file_size || e->size > z->file_size - start) {
    cc_set_error("torch checkpoint '%s': corrupt or truncated zip: entry '%s' runs past the end of the file", z->path,
                 e->name);
    return NULL;
  }
  unsigned char *buf = malloc((size_t)e->size + 1);
  if (!buf) {
    cc_set_error("torch checkpoint '%s': out of memory reading '%s' (%llu bytes)", z->path, e->name,
                 (unsigned long long)e->size);
    return NULL;
  }
  if (read_at(z, start, buf, (size_t)e->size)) {
    free(buf);
    return NULL;
  }
  buf[e->size] = 0;
  uint32_t crc = crc32_of(buf, e->size);
  if (crc != e->crc32) {
    cc_set_error("torch checkpoint '%s': corrupt zip: CRC-32 mismatch in entry '%s' (0x%08x, expected 0x%08x)",
                 z->path, e->name, crc, e->crc32);
    free(buf);
    return NULL;
  }
  return buf;
}
