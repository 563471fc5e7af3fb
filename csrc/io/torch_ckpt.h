/* torch_ckpt.h — a safe reader of PyTorch checkpoints (.pt/.ckpt, torch >= 1.6 zip format):
 * a ZIP/ZIP64 reader of stored (uncompressed) entries with bounds and CRC checks, and a data-only
 * pickle machine that never calls anything. Tensors are rebuilt from _rebuild_tensor_v2 and the
 * storages of <prefix>/data/<key>; OrderedDicts, dicts, lists, tuples, sets, ints, floats, strings
 * and bytes become values of a tree; any other global becomes an inert placeholder (its name, the
 * arguments it would have been called with, and any state/items applied to it); globals that could
 * run code (os.system, subprocess.*, builtins.eval, ...) are refused. Every failure returns NULL /
 * -1 with a message in cc_last_error(); nothing aborts. */
#ifndef COCOLA_TORCH_CKPT_H
#define COCOLA_TORCH_CKPT_H

#include "../cocola.h"

#include <stdio.h>

/* ---- limits (malformed input cannot exhaust memory or recurse without bound) ---- */
#define CK_MAX_PICKLE_BYTES (64u << 20) /* data.pkl */
#define CK_MAX_VALUES (16u << 20)        /* values built by one pickle */
#define CK_MAX_STACK (1u << 20)          /* pickle stack entries */
#define CK_MAX_DEPTH 200                 /* nesting when the tree is walked (conversion) */
#define CK_MAX_ZIP_ENTRIES (1u << 20)
#define CK_MAX_CENTRAL_DIR (256u << 20)

/* ---- the value tree ---- */
typedef enum {
  CK_NONE, CK_BOOL, CK_INT, CK_FLOAT, CK_STRING, CK_BYTES, CK_LIST, CK_TUPLE, CK_DICT, CK_TENSOR,
  CK_PLACEHOLDER,
  CK_STORAGE, /* a bare storage not wrapped by a tensor: shown as a 1-D tensor of its elements */
  CK_MARK     /* internal to the pickle machine; never in a finished tree */
} ck_kind;

typedef struct ck_value ck_value;

typedef struct {
  ck_value **items;
  size_t n, cap;
} ck_seq;

struct ck_value {
  ck_kind kind;
  unsigned visit; /* scratch for walkers (e.g. the Lua conversion's depth check) */
  union {
    bool b;
    int64_t i; /* CK_INT: values outside int64 are refused */
    double f;
    struct {
      char *data; /* NUL-terminated for convenience; may contain NULs (len is authoritative) */
      size_t len;
    } str; /* CK_STRING (UTF-8) and CK_BYTES */
    ck_seq seq; /* CK_LIST, CK_TUPLE */
    struct {
      ck_seq keys, vals; /* insertion order (OrderedDict order) */
    } dict;
    cc_tensor *tensor; /* CK_TENSOR and CK_STORAGE (owned reference) */
    struct {
      char *name;      /* "module.qualname" */
      ck_value *args;  /* tuple passed to REDUCE/NEWOBJ, or NULL when never called */
      ck_value *state; /* from BUILD, or NULL */
      ck_value *items; /* a CK_DICT / CK_LIST of items added by SETITEM(S)/APPEND(S), or NULL */
    } ph;
  } u;
};

/* A loaded checkpoint: the root value and the arena that owns every value. */
typedef struct ck_doc {
  ck_value *root;
  ck_value **all; /* arena */
  size_t n_all, cap_all;
} ck_doc;

/* Reads a torch zip checkpoint. Returns NULL with cc_last_error() set on any failure. */
ck_doc *ck_load(const char *path);
void ck_doc_free(ck_doc *doc);
const char *ck_kind_name(ck_kind k);

/* ---- the zip layer (used by the pickle machine; exposed for tests) ---- */
typedef struct ck_zip_entry {
  char *name;
  uint64_t data_offset; /* of the entry's bytes (past the local header) */
  uint64_t size;        /* stored: compressed == uncompressed */
  uint32_t crc32;
} ck_zip_entry;

typedef struct ck_zip {
  FILE *f;
  char *path;
  uint64_t file_size;
  ck_zip_entry *entries;
  size_t n_entries;
} ck_zip;

ck_zip *ck_zip_open(const char *path); /* reads and validates the central directory */
void ck_zip_close(ck_zip *z);
const ck_zip_entry *ck_zip_find(const ck_zip *z, const char *name);
/* reads a whole entry (checks its local header and CRC); max_size bounds the allocation.
   Returns a malloc'd buffer of e->size bytes (+1 NUL) or NULL. */
unsigned char *ck_zip_read(ck_zip *z, const ck_zip_entry *e, uint64_t max_size);

/* ---- the pickle machine ---- */
/* Runs a pickle over buf[0..len). storage_loader is called for each BINPERSID storage record. */
typedef cc_tensor *(*ck_storage_loader)(void *ctx, const char *key, const char *storage_type, int64_t numel);
int ck_unpickle(ck_doc *doc, const unsigned char *buf, size_t len, ck_storage_loader loader, void *ctx);

#endif
