/* pickle.c — a data-only pickle machine (protocols 0-5 as torch and Python emit them) and ck_load,
 * which ties it to the zip reader. Nothing is ever called: GLOBAL only records a name; REDUCE /
 * NEWOBJ of a handful of known globals (tensor rebuilders, OrderedDict, set, torch.Size,
 * _codecs.encode, ...) are interpreted by this file; any other global yields an inert placeholder
 * value; globals that could run code (os.*, posix.*, subprocess.*, builtins.eval/exec/getattr/
 * __import__, ...) are refused with an error naming them. Storages (BINPERSID 'storage' records)
 * are read from <prefix>/data/<key>; half/bfloat16 storages widen to float32 and integer/bool ones
 * to int64, element for element, so views keep their offsets and strides. Sizes, counts and the
 * stack are bounded; values live in an arena freed at once (cycles are harmless). */
#include "../internal.h"
#include "torch_ckpt.h"
#include "scalar.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *ck_kind_name(ck_kind k) {
  static const char *const names[] = {"None",  "bool",   "int",    "float",       "str",     "bytes", "list",
                                      "tuple", "dict",   "tensor", "placeholder", "storage", "mark"};
  return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

void ck_doc_free(ck_doc *doc) {
  if (!doc) return;
  for (size_t k = 0; k < doc->n_all; k++) {
    ck_value *v = doc->all[k];
    switch (v->kind) {
    case CK_STRING:
    case CK_BYTES: free(v->u.str.data); break;
    case CK_LIST:
    case CK_TUPLE: free(v->u.seq.items); break;
    case CK_DICT:
      free(v->u.dict.keys.items);
      free(v->u.dict.vals.items);
      break;
    case CK_TENSOR:
    case CK_STORAGE: cc_release(v->u.tensor); break;
    case CK_PLACEHOLDER: free(v->u.ph.name); break;
    default: break;
    }
    free(v);
  }
  free(doc->all);
  free(doc);
}

/* ---- the machine ---- */
typedef struct {
  ck_doc *doc;
  const char *where;
  const unsigned char *start, *p, *end;
  ck_value **stack;
  size_t sp, stack_cap;
  size_t *marks;
  size_t n_marks, marks_cap;
  ck_value **memo;
  size_t memo_cap, memo_count, memo_limit;
  size_t links; /* total sequence/dict slots, bounded */
  ck_storage_loader loader;
  void *ctx;
} vm_t;

static int verr(vm_t *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verr(vm_t *vm, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  cc_set_error("%s: %s", vm->where, buf);
  return -1;
}

static ck_value *nv(vm_t *vm, ck_kind kind) {
  ck_doc *d = vm->doc;
  if (d->n_all >= CK_MAX_VALUES) {
    verr(vm, "the pickle builds more than %u values", CK_MAX_VALUES);
    return NULL;
  }
  if (d->n_all == d->cap_all) {
    size_t cap = d->cap_all ? d->cap_all * 2 : 256;
    ck_value **a = realloc(d->all, cap * sizeof *a);
    if (!a) {
      verr(vm, "out of memory");
      return NULL;
    }
    d->all = a;
    d->cap_all = cap;
  }
  ck_value *v = calloc(1, sizeof *v);
  if (!v) {
    verr(vm, "out of memory");
    return NULL;
  }
  v->kind = kind;
  d->all[d->n_all++] = v;
  return v;
}

static int seq_push(vm_t *vm, ck_seq *s, ck_value *v) {
  if (++vm->links > (size_t)CK_MAX_VALUES * 4) return verr(vm, "the pickle holds too many items");
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4;
    ck_value **a = realloc(s->items, cap * sizeof *a);
    if (!a) return verr(vm, "out of memory");
    s->items = a;
    s->cap = cap;
  }
  s->items[s->n++] = v;
  return 0;
}

static ck_value *new_str(vm_t *vm, ck_kind kind, const void *data, size_t len) {
  ck_value *v = nv(vm, kind);
  if (!v) return NULL;
  v->u.str.data = malloc(len + 1);
  if (!v->u.str.data) {
    verr(vm, "out of memory");
    return NULL;
  }
  if (len) memcpy(v->u.str.data, data, len);
  v->u.str.data[len] = 0;
  v->u.str.len = len;
  return v;
}

static int push(vm_t *vm, ck_value *v) {
  if (!v) return -1;
  if (vm->sp == vm->stack_cap) {
    if (vm->stack_cap >= CK_MAX_STACK) return verr(vm, "the pickle stack exceeds %u entries", CK_MAX_STACK);
    size_t cap = vm->stack_cap ? vm->stack_cap * 2 : 64;
    ck_value **a = realloc(vm->stack, cap * sizeof *a);
    if (!a) return verr(vm, "out of memory");
    vm->stack = a;
    vm->stack_cap = cap;
  }
  vm->stack[vm->sp++] = v;
  return 0;
}

static size_t stack_floor(vm_t *vm) { return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0; }

static ck_value *pop(vm_t *vm) {
  if (vm->sp <= stack_floor(vm)) {
    verr(vm, "stack underflow (a corrupt pickle)");
    return NULL;
  }
  return vm->stack[--vm->sp];
}
static ck_value *top(vm_t *vm) {
  if (vm->sp <= stack_floor(vm)) {
    verr(vm, "stack underflow (a corrupt pickle)");
    return NULL;
  }
  return vm->stack[vm->sp - 1];
}

/* pops to the last mark; returns the index of the first item above it (items stay in place until
   the caller resets sp) */
static int pop_mark(vm_t *vm, size_t *first) {
  if (!vm->n_marks) return verr(vm, "no MARK on the stack (a corrupt pickle)");
  *first = vm->marks[--vm->n_marks];
  return 0;
}

static int need(vm_t *vm, size_t n) {
  if ((size_t)(vm->end - vm->p) < n) return verr(vm, "truncated pickle (an opcode runs past the end)");
  return 0;
}

static const unsigned char *read_line(vm_t *vm, size_t *len) {
  const unsigned char *nl = memchr(vm->p, '\n', (size_t)(vm->end - vm->p));
  if (!nl) {
    verr(vm, "truncated pickle (an unterminated text argument)");
    return NULL;
  }
  const unsigned char *s = vm->p;
  *len = (size_t)(nl - s);
  vm->p = nl + 1;
  return s;
}

static int memo_put(vm_t *vm, size_t idx, ck_value *v) {
  if (idx >= vm->memo_limit) return verr(vm, "memo index %zu is out of range", idx);
  if (idx >= vm->memo_cap) {
    size_t cap = vm->memo_cap ? vm->memo_cap : 64;
    while (cap <= idx) cap *= 2;
    ck_value **a = realloc(vm->memo, cap * sizeof *a);
    if (!a) return verr(vm, "out of memory");
    memset(a + vm->memo_cap, 0, (cap - vm->memo_cap) * sizeof *a);
    vm->memo = a;
    vm->memo_cap = cap;
  }
  if (!vm->memo[idx]) vm->memo_count++;
  vm->memo[idx] = v;
  return 0;
}
static int memo_get(vm_t *vm, size_t idx) {
  if (idx >= vm->memo_cap || !vm->memo[idx]) return verr(vm, "memo key %zu is not defined", idx);
  return push(vm, vm->memo[idx]);
}

/* ---- globals ---- */
static bool in_list(const char *s, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(s, *list)) return true;
  return false;
}
static bool module_in(const char *module, const char *const *list) {
  for (; *list; list++) {
    size_t n = strlen(*list);
    if (!strncmp(module, *list, n) && (module[n] == 0 || module[n] == '.')) return true;
  }
  return false;
}

/* NULL when the global may be recorded; otherwise the reason it is refused */
static const char *refused_global(const char *module, const char *name) {
  static const char *const bad_modules[] = {
      "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy", "pty", "socket", "ctypes",
      "commands", "webbrowser", "code", "codeop", "marshal", "pickle", "_pickle", "cPickle", "dill",
      "multiprocessing", "signal", "_thread", "thread", "threading", "asyncio", "pdb", "bdb", "timeit",
      "tempfile", "io", "_io", "pathlib", "glob", "platform", "imp", "zipimport", "pkgutil", "site", "types",
      "_posixsubprocess", "popen2", "torch.hub", "torch.jit", "torch._C", "numpy.testing", "numpy.distutils",
      NULL};
  static const char *const ok_builtins[] = {"set", "frozenset", "dict", "list", "tuple", "bytearray", "bytes",
                                            "complex", "int", "float", "str", "bool", "slice", "range", "object",
                                            "unicode", "long", "getattr" /* checked at REDUCE */, NULL};
  static const char *const bad_pairs[] = {"operator.attrgetter", "operator.methodcaller", "operator.getitem",
                                          "torch.load", "torch.save", "numpy.load", "numpy.save", "torch.storage._load_from_bytes",
                                          NULL};
  if (module_in(module, bad_modules)) return "its module can run code or touch the system";
  if (!strcmp(module, "builtins") || !strcmp(module, "__builtin__") || !strcmp(module, "__builtins__")) {
    if (!in_list(name, ok_builtins)) return "a builtin that can run code";
    return NULL;
  }
  char full[600];
  snprintf(full, sizeof full, "%s.%s", module, name);
  if (in_list(full, bad_pairs)) return "it can run code";
  return NULL;
}

static int push_global(vm_t *vm, const char *module, size_t mlen, const char *name, size_t nlen) {
  if (mlen == 0 || nlen == 0 || mlen > 200 || nlen > 200 || memchr(module, 0, mlen) || memchr(name, 0, nlen))
    return verr(vm, "a malformed global name");
  char m[256], n[256];
  memcpy(m, module, mlen);
  m[mlen] = 0;
  memcpy(n, name, nlen);
  n[nlen] = 0;
  const char *why = refused_global(m, n);
  if (why) return verr(vm, "refusing the pickle global '%s.%s' (%s); nothing was executed", m, n, why);
  ck_value *v = nv(vm, CK_PLACEHOLDER);
  if (!v) return -1;
  v->u.ph.name = malloc(mlen + nlen + 2);
  if (!v->u.ph.name) return verr(vm, "out of memory");
  memcpy(v->u.ph.name, m, mlen);
  v->u.ph.name[mlen] = '.';
  memcpy(v->u.ph.name + mlen + 1, n, nlen + 1);
  return push(vm, v);
}

static bool is_global(const ck_value *v, const char *name) {
  return v->kind == CK_PLACEHOLDER && !v->u.ph.args && !v->u.ph.state && !v->u.ph.items &&
         !strcmp(v->u.ph.name, name);
}

static ck_value *tuple_arg(const ck_value *args, size_t i) {
  return args && args->kind == CK_TUPLE && i < args->u.seq.n ? args->u.seq.items[i] : NULL;
}

static int int_tuple(vm_t *vm, const ck_value *v, int64_t *out, int *n, const char *what) {
  if (!v || (v->kind != CK_TUPLE && v->kind != CK_LIST)) return verr(vm, "_rebuild_tensor: %s is not a tuple", what);
  if (v->u.seq.n > CC_MAX_DIMS)
    return verr(vm, "_rebuild_tensor: a tensor with %zu dims (at most %d)", v->u.seq.n, CC_MAX_DIMS);
  for (size_t k = 0; k < v->u.seq.n; k++) {
    if (v->u.seq.items[k]->kind != CK_INT) return verr(vm, "_rebuild_tensor: %s holds a non-integer", what);
    out[k] = v->u.seq.items[k]->u.i;
  }
  *n = (int)v->u.seq.n;
  return 0;
}

static ck_value *rebuild_tensor(vm_t *vm, const ck_value *args) {
  const ck_value *st = tuple_arg(args, 0), *off = tuple_arg(args, 1);
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  int nd = 0, ns = 0;
  if (!st || st->kind != CK_STORAGE) {
    verr(vm, "_rebuild_tensor: the first argument is a %s, not a storage", st ? ck_kind_name(st->kind) : "nothing");
    return NULL;
  }
  if (!off || off->kind != CK_INT || off->u.i < 0) {
    verr(vm, "_rebuild_tensor: a bad storage offset");
    return NULL;
  }
  if (int_tuple(vm, tuple_arg(args, 2), shape, &nd, "the size") ||
      int_tuple(vm, tuple_arg(args, 3), stride, &ns, "the stride"))
    return NULL;
  if (nd != ns) {
    verr(vm, "_rebuild_tensor: %d sizes but %d strides", nd, ns);
    return NULL;
  }
  const cc_tensor *s = st->u.tensor;
  int64_t avail = s->shape[0], last = off->u.i, numel = 1;
  for (int d = 0; d < nd; d++) {
    if (shape[d] < 0 || stride[d] < 0 || shape[d] > ((int64_t)1 << 48) || stride[d] > ((int64_t)1 << 48)) {
      verr(vm, "_rebuild_tensor: a negative or huge size/stride at dim %d", d);
      return NULL;
    }
    if (shape[d] == 0) numel = 0;
  }
  if (numel) {
    for (int d = 0; d < nd; d++) {
      if ((shape[d] - 1) > 0 && stride[d] > (((int64_t)1 << 62) - last) / (shape[d] - 1)) {
        verr(vm, "_rebuild_tensor: the view's extent overflows");
        return NULL;
      }
      last += (shape[d] - 1) * stride[d];
    }
    if (last >= avail) {
      verr(vm, "_rebuild_tensor: a view (offset %lld, last element %lld) outside its storage of %lld elements",
           (long long)off->u.i, (long long)last, (long long)avail);
      return NULL;
    }
  } else if (off->u.i > avail) {
    verr(vm, "_rebuild_tensor: storage offset %lld past its storage of %lld elements", (long long)off->u.i,
         (long long)avail);
    return NULL;
  }
  ck_value *v = nv(vm, CK_TENSOR);
  if (!v) return NULL;
  v->u.tensor = cc_tensor_wrap(s->storage, off->u.i, nd, shape, stride, s->dtype);
  if (!v->u.tensor) {
    v->kind = CK_NONE;
    verr(vm, "out of memory");
    return NULL;
  }
  return v;
}

static int add_items_from(vm_t *vm, ck_value *dst, const ck_value *src) {
  /* dst a list (set/tuple) gets src's items; dst a dict gets src's pairs or dict entries */
  if (!src || src->kind == CK_NONE) return 0;
  if (dst->kind == CK_DICT) {
    if (src->kind == CK_DICT) {
      for (size_t k = 0; k < src->u.dict.keys.n; k++)
        if (seq_push(vm, &dst->u.dict.keys, src->u.dict.keys.items[k]) ||
            seq_push(vm, &dst->u.dict.vals, src->u.dict.vals.items[k]))
          return -1;
      return 0;
    }
    if (src->kind != CK_LIST && src->kind != CK_TUPLE) return verr(vm, "a dict built from a %s", ck_kind_name(src->kind));
    for (size_t k = 0; k < src->u.seq.n; k++) {
      const ck_value *pr = src->u.seq.items[k];
      if ((pr->kind != CK_TUPLE && pr->kind != CK_LIST) || pr->u.seq.n != 2) return verr(vm, "a dict built from non-pairs");
      if (seq_push(vm, &dst->u.dict.keys, pr->u.seq.items[0]) || seq_push(vm, &dst->u.dict.vals, pr->u.seq.items[1]))
        return -1;
    }
    return 0;
  }
  if (src->kind == CK_DICT) {
    for (size_t k = 0; k < src->u.dict.keys.n; k++)
      if (seq_push(vm, &dst->u.seq, src->u.dict.keys.items[k])) return -1;
    return 0;
  }
  if (src->kind != CK_LIST && src->kind != CK_TUPLE) return verr(vm, "a sequence built from a %s", ck_kind_name(src->kind));
  for (size_t k = 0; k < src->u.seq.n; k++)
    if (seq_push(vm, &dst->u.seq, src->u.seq.items[k])) return -1;
  return 0;
}

/* the result of calling (REDUCE / NEWOBJ) `fn` with `args`: interpreted for known globals,
   otherwise an inert placeholder recording the call */
static ck_value *call_global(vm_t *vm, ck_value *fn, ck_value *args, int depth) {
  if (depth > 8) {
    verr(vm, "nested rebuild calls are too deep");
    return NULL;
  }
  if (fn->kind != CK_PLACEHOLDER) {
    verr(vm, "REDUCE calls a %s, not a global (a corrupt pickle)", ck_kind_name(fn->kind));
    return NULL;
  }
  if (!args || args->kind != CK_TUPLE) {
    verr(vm, "REDUCE of '%s' with arguments that are not a tuple", fn->u.ph.name);
    return NULL;
  }
  const char *name = fn->u.ph.name;
  bool raw = is_global(fn, name);
  bool is_getattr = !strcmp(name, "builtins.getattr") || !strcmp(name, "__builtin__.getattr");
  if (is_getattr) {
    /* only the inert form Python 3.11+ uses for enum members: getattr(<a global class>, "MEMBER"),
       recorded as the placeholder "module.Class.MEMBER"; any other use is refused */
    ck_value *cls = tuple_arg(args, 0), *attr = tuple_arg(args, 1);
    bool ok = raw && args->u.seq.n == 2 && cls && attr && cls->kind == CK_PLACEHOLDER && !cls->u.ph.args &&
              !cls->u.ph.state && !cls->u.ph.items && attr->kind == CK_STRING && attr->u.str.len > 0 &&
              attr->u.str.len < 200 && attr->u.str.data[0] != '_' && strlen(attr->u.str.data) == attr->u.str.len;
    for (size_t k = 0; ok && k < attr->u.str.len; k++) {
      char ch = attr->u.str.data[k];
      ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    }
    if (!ok) {
      verr(vm, "refusing the pickle global '%s' (a builtin that can run code; only getattr(<class>, \"MEMBER\") of "
           "an enum is read); nothing was executed", name);
      return NULL;
    }
    ck_value *v = nv(vm, CK_PLACEHOLDER);
    if (!v) return NULL;
    size_t n = strlen(cls->u.ph.name) + attr->u.str.len + 2;
    v->u.ph.name = malloc(n);
    if (!v->u.ph.name) {
      verr(vm, "out of memory");
      return NULL;
    }
    snprintf(v->u.ph.name, n, "%s.%s", cls->u.ph.name, attr->u.str.data);
    return v;
  }
  if (raw) {
    if (!strcmp(name, "torch._utils._rebuild_tensor_v2") || !strcmp(name, "torch._utils._rebuild_tensor"))
      return rebuild_tensor(vm, args);
    if (!strcmp(name, "torch._utils._rebuild_parameter") ||
        !strcmp(name, "torch._utils._rebuild_parameter_with_state")) {
      ck_value *t = tuple_arg(args, 0);
      if (!t || t->kind != CK_TENSOR) {
        verr(vm, "_rebuild_parameter of a %s", t ? ck_kind_name(t->kind) : "nothing");
        return NULL;
      }
      return t;
    }
    if (!strcmp(name, "torch._tensor._rebuild_from_type_v2") || !strcmp(name, "torch._tensor._rebuild_from_type")) {
      ck_value *f = tuple_arg(args, 0), *a = tuple_arg(args, 2);
      if (!f || !a) {
        verr(vm, "%s with too few arguments", name);
        return NULL;
      }
      return call_global(vm, f, a, depth + 1);
    }
    if (!strcmp(name, "collections.OrderedDict") || !strcmp(name, "builtins.dict") ||
        !strcmp(name, "__builtin__.dict")) {
      ck_value *d = nv(vm, CK_DICT);
      if (!d || add_items_from(vm, d, tuple_arg(args, 0))) return NULL;
      return d;
    }
    if (!strcmp(name, "builtins.set") || !strcmp(name, "builtins.frozenset") || !strcmp(name, "__builtin__.set") ||
        !strcmp(name, "__builtin__.frozenset") || !strcmp(name, "builtins.list") || !strcmp(name, "__builtin__.list") ||
        !strcmp(name, "torch.Size") || !strcmp(name, "builtins.tuple") || !strcmp(name, "__builtin__.tuple")) {
      bool tuple = !strcmp(name, "torch.Size") || strstr(name, ".tuple");
      ck_value *l = nv(vm, tuple ? CK_TUPLE : CK_LIST);
      if (!l || add_items_from(vm, l, tuple_arg(args, 0))) return NULL;
      return l;
    }
    if (!strcmp(name, "_codecs.encode") || !strcmp(name, "builtins.bytes") || !strcmp(name, "builtins.bytearray") ||
        !strcmp(name, "__builtin__.bytearray")) {
      ck_value *s = tuple_arg(args, 0), *enc = tuple_arg(args, 1);
      if (!s) return new_str(vm, CK_BYTES, "", 0);
      if (s->kind == CK_BYTES) return s;
      if (s->kind == CK_STRING && enc && enc->kind == CK_STRING &&
          (!strcmp(enc->u.str.data, "latin1") || !strcmp(enc->u.str.data, "latin-1"))) {
        /* Python 2-compatible bytes: each code point < 256 of a UTF-8 string is one byte */
        ck_value *b = new_str(vm, CK_BYTES, "", 0);
        if (!b) return NULL;
        unsigned char *o = (unsigned char *)b->u.str.data;
        const unsigned char *q = (const unsigned char *)s->u.str.data, *qe = q + s->u.str.len;
        unsigned char *buf = malloc(s->u.str.len + 1);
        if (!buf) {
          verr(vm, "out of memory");
          return NULL;
        }
        size_t n = 0;
        while (q < qe) {
          if (q[0] < 0x80) buf[n++] = *q++;
          else if ((q[0] & 0xE0) == 0xC0 && qe - q >= 2 && q[0] <= 0xC3) {
            buf[n++] = (unsigned char)(((q[0] & 0x1F) << 6) | (q[1] & 0x3F));
            q += 2;
          } else {
            free(buf);
            verr(vm, "_codecs.encode: a code point beyond latin-1");
            return NULL;
          }
        }
        free(o);
        b->u.str.data = (char *)buf;
        buf[n] = 0;
        b->u.str.len = n;
        return b;
      }
    }
  }
  ck_value *v = nv(vm, CK_PLACEHOLDER);
  if (!v) return NULL;
  v->u.ph.name = strdup(name);
  if (!v->u.ph.name) {
    verr(vm, "out of memory");
    return NULL;
  }
  v->u.ph.args = args;
  return v;
}

static int persistent_load(vm_t *vm, ck_value *pid) {
  ck_value *tag = tuple_arg(pid, 0), *type = tuple_arg(pid, 1), *key = tuple_arg(pid, 2), *numel = tuple_arg(pid, 4);
  if (!tag || tag->kind != CK_STRING || strcmp(tag->u.str.data, "storage"))
    return verr(vm, "a persistent id that is not a ('storage', ...) record");
  if (!type || type->kind != CK_PLACEHOLDER || !key || (key->kind != CK_STRING && key->kind != CK_INT) || !numel ||
      numel->kind != CK_INT || numel->u.i < 0)
    return verr(vm, "a malformed storage record");
  char keybuf[64];
  const char *k = key->kind == CK_STRING ? key->u.str.data : keybuf;
  if (key->kind == CK_INT) snprintf(keybuf, sizeof keybuf, "%lld", (long long)key->u.i);
  if (key->kind == CK_STRING && (key->u.str.len == 0 || key->u.str.len > 200 || strchr(k, '/')))
    return verr(vm, "a malformed storage key");
  if (!vm->loader) return verr(vm, "a storage record but no archive to read it from");
  cc_tensor *t = vm->loader(vm->ctx, k, type->u.ph.name, numel->u.i);
  if (!t) return -1; /* the loader set the error */
  ck_value *v = nv(vm, CK_STORAGE);
  if (!v) {
    cc_release(t);
    return -1;
  }
  v->u.tensor = t;
  return push(vm, v);
}

static int64_t le_int(const unsigned char *b, size_t n) { /* n <= 8, two's complement */
  uint64_t u = 0;
  for (size_t k = 0; k < n; k++) u |= (uint64_t)b[k] << (8 * k);
  if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
  return (int64_t)u;
}
static double le_big(const unsigned char *b, size_t n) {
  double x = 0;
  for (size_t k = n; k-- > 0;) x = x * 256.0 + b[k];
  if (b[n - 1] & 0x80) x -= ldexp(1.0, (int)(8 * n));
  return x;
}

static int push_long(vm_t *vm, const unsigned char *b, size_t n) {
  ck_value *v;
  if (n <= 8) {
    v = nv(vm, CK_INT);
    if (v) v->u.i = le_int(b, n);
  } else { /* beyond int64: kept as the nearest double */
    v = nv(vm, CK_FLOAT);
    if (v) v->u.f = le_big(b, n);
  }
  return push(vm, v);
}

static int add_to(vm_t *vm, ck_value *obj, size_t first, bool pairs) {
  size_t n = vm->sp - first;
  if (pairs && n % 2) return verr(vm, "SETITEMS with an odd number of items");
  if (obj->kind == CK_PLACEHOLDER) { /* e.g. a dict or list subclass: the items are kept */
    if (!obj->u.ph.items) {
      obj->u.ph.items = nv(vm, pairs ? CK_DICT : CK_LIST);
      if (!obj->u.ph.items) return -1;
    }
    obj = obj->u.ph.items;
  }
  if (pairs) {
    if (obj->kind != CK_DICT) return verr(vm, "SETITEM on a %s", ck_kind_name(obj->kind));
    for (size_t k = first; k < vm->sp; k += 2)
      if (seq_push(vm, &obj->u.dict.keys, vm->stack[k]) || seq_push(vm, &obj->u.dict.vals, vm->stack[k + 1])) return -1;
  } else {
    if (obj->kind != CK_LIST) return verr(vm, "APPEND on a %s", ck_kind_name(obj->kind));
    for (size_t k = first; k < vm->sp; k++)
      if (seq_push(vm, &obj->u.seq, vm->stack[k])) return -1;
  }
  vm->sp = first;
  return 0;
}

static int make_seq(vm_t *vm, ck_kind kind, size_t first) {
  ck_value *v = nv(vm, kind);
  if (!v) return -1;
  if (kind == CK_DICT) {
    if ((vm->sp - first) % 2) return verr(vm, "DICT with an odd number of items");
    for (size_t k = first; k < vm->sp; k += 2)
      if (seq_push(vm, &v->u.dict.keys, vm->stack[k]) || seq_push(vm, &v->u.dict.vals, vm->stack[k + 1])) return -1;
  } else {
    for (size_t k = first; k < vm->sp; k++)
      if (seq_push(vm, &v->u.seq, vm->stack[k])) return -1;
  }
  vm->sp = first;
  return push(vm, v);
}

static int run(vm_t *vm) {
  for (;;) {
    if (vm->p >= vm->end) return verr(vm, "truncated pickle (no STOP opcode)");
    unsigned op = *vm->p++;
    ck_value *a, *b;
    size_t first = 0, len = 0;
    const unsigned char *s;
    switch (op) {
    case 0x80: /* PROTO */
      if (need(vm, 1)) return -1;
      if (*vm->p > 5) return verr(vm, "unsupported pickle protocol %u", *vm->p);
      vm->p++;
      break;
    case 0x95: /* FRAME: an 8-byte length, no meaning for a whole-buffer reader */
      if (need(vm, 8)) return -1;
      vm->p += 8;
      break;
    case '.': /* STOP */
      vm->doc->root = pop(vm);
      return vm->doc->root ? 0 : -1;
    case '(':
      if (vm->n_marks == vm->marks_cap) {
        if (vm->marks_cap >= CK_MAX_STACK) return verr(vm, "too many MARKs");
        size_t cap = vm->marks_cap ? vm->marks_cap * 2 : 32;
        size_t *m = realloc(vm->marks, cap * sizeof *m);
        if (!m) return verr(vm, "out of memory");
        vm->marks = m;
        vm->marks_cap = cap;
      }
      vm->marks[vm->n_marks++] = vm->sp;
      break;
    case '0': /* POP */
      if (!pop(vm)) return -1;
      break;
    case '1': /* POP_MARK */
      if (pop_mark(vm, &first)) return -1;
      vm->sp = first;
      break;
    case '2': /* DUP */
      if (!(a = top(vm)) || push(vm, a)) return -1;
      break;
    case 'N':
      if (push(vm, nv(vm, CK_NONE))) return -1;
      break;
    case 0x88:
    case 0x89:
      if (!(a = nv(vm, CK_BOOL))) return -1;
      a->u.b = op == 0x88;
      if (push(vm, a)) return -1;
      break;
    case 'J':
      if (need(vm, 4) || !(a = nv(vm, CK_INT))) return -1;
      a->u.i = (int32_t)le_int(vm->p, 4);
      vm->p += 4;
      if (push(vm, a)) return -1;
      break;
    case 'K':
      if (need(vm, 1) || !(a = nv(vm, CK_INT))) return -1;
      a->u.i = *vm->p++;
      if (push(vm, a)) return -1;
      break;
    case 'M':
      if (need(vm, 2) || !(a = nv(vm, CK_INT))) return -1;
      a->u.i = vm->p[0] | (vm->p[1] << 8);
      vm->p += 2;
      if (push(vm, a)) return -1;
      break;
    case 0x8a: /* LONG1 */
      if (need(vm, 1)) return -1;
      len = *vm->p++;
      if (need(vm, len)) return -1;
      if (push_long(vm, vm->p, len)) return -1;
      vm->p += len;
      break;
    case 0x8b: /* LONG4 */
      if (need(vm, 4)) return -1;
      len = (size_t)(uint32_t)le_int(vm->p, 4);
      vm->p += 4;
      if (len > 4096) return verr(vm, "an integer of %zu bytes", len);
      if (need(vm, len) || push_long(vm, vm->p, len)) return -1;
      vm->p += len;
      break;
    case 'I':
    case 'L': { /* text INT / LONG (protocol 0) */
      if (!(s = read_line(vm, &len))) return -1;
      char tmp[64];
      if (len == 0 || len >= sizeof tmp) return verr(vm, "a malformed text integer");
      memcpy(tmp, s, len);
      tmp[len] = 0;
      if (op == 'L' && tmp[len - 1] == 'L') tmp[len - 1] = 0;
      if (op == 'I' && (!strcmp(tmp, "00") || !strcmp(tmp, "01"))) {
        if (!(a = nv(vm, CK_BOOL))) return -1;
        a->u.b = tmp[1] == '1';
      } else {
        char *endp;
        long long x = strtoll(tmp, &endp, 10);
        if (*endp) return verr(vm, "a malformed text integer");
        if (!(a = nv(vm, CK_INT))) return -1;
        a->u.i = x;
      }
      if (push(vm, a)) return -1;
      break;
    }
    case 'F': {
      if (!(s = read_line(vm, &len))) return -1;
      char tmp[64];
      if (len == 0 || len >= sizeof tmp) return verr(vm, "a malformed text float");
      memcpy(tmp, s, len);
      tmp[len] = 0;
      char *endp;
      double x = strtod(tmp, &endp);
      if (*endp) return verr(vm, "a malformed text float");
      if (!(a = nv(vm, CK_FLOAT))) return -1;
      a->u.f = x;
      if (push(vm, a)) return -1;
      break;
    }
    case 'G': { /* BINFLOAT, big-endian */
      if (need(vm, 8) || !(a = nv(vm, CK_FLOAT))) return -1;
      uint64_t u = 0;
      for (int k = 0; k < 8; k++) u = (u << 8) | vm->p[k];
      memcpy(&a->u.f, &u, 8);
      vm->p += 8;
      if (push(vm, a)) return -1;
      break;
    }
    case 'X':    /* BINUNICODE */
    case 'T':    /* BINSTRING */
    case 'B':    /* BINBYTES */
    case 0x8c:   /* SHORT_BINUNICODE */
    case 'U':    /* SHORT_BINSTRING */
    case 'C':    /* SHORT_BINBYTES */
    case 0x8d:   /* BINUNICODE8 */
    case 0x8e:   /* BINBYTES8 */
    case 0x96: { /* BYTEARRAY8 */
      size_t w = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
      if (need(vm, w)) return -1;
      uint64_t n = 0;
      for (size_t k = 0; k < w; k++) n |= (uint64_t)vm->p[k] << (8 * k);
      vm->p += w;
      if (n > (uint64_t)(vm->end - vm->p)) return verr(vm, "truncated pickle (a string runs past the end)");
      ck_kind kind = (op == 'B' || op == 'C' || op == 0x8e || op == 0x96) ? CK_BYTES : CK_STRING;
      if (push(vm, new_str(vm, kind, vm->p, (size_t)n))) return -1;
      vm->p += n;
      break;
    }
    case ')':
      if (push(vm, nv(vm, CK_TUPLE))) return -1;
      break;
    case ']':
    case 0x8f: /* EMPTY_SET: a list */
      if (push(vm, nv(vm, CK_LIST))) return -1;
      break;
    case '}':
      if (push(vm, nv(vm, CK_DICT))) return -1;
      break;
    case 't':
      if (pop_mark(vm, &first) || make_seq(vm, CK_TUPLE, first)) return -1;
      break;
    case 'l':
    case 0x91: /* FROZENSET */
      if (pop_mark(vm, &first) || make_seq(vm, CK_LIST, first)) return -1;
      break;
    case 'd':
      if (pop_mark(vm, &first) || make_seq(vm, CK_DICT, first)) return -1;
      break;
    case 0x85:
    case 0x86:
    case 0x87: {
      size_t n = op - 0x84;
      if (vm->sp < stack_floor(vm) + n) return verr(vm, "stack underflow (a corrupt pickle)");
      if (make_seq(vm, CK_TUPLE, vm->sp - n)) return -1;
      break;
    }
    case 'a': /* APPEND */
      if (vm->sp < stack_floor(vm) + 2) return verr(vm, "stack underflow (a corrupt pickle)");
      if (add_to(vm, vm->stack[vm->sp - 2], vm->sp - 1, false)) return -1;
      break;
    case 'e':    /* APPENDS */
    case 0x90: { /* ADDITEMS */
      if (pop_mark(vm, &first)) return -1;
      if (first == 0 || first <= stack_floor(vm)) return verr(vm, "stack underflow (a corrupt pickle)");
      if (add_to(vm, vm->stack[first - 1], first, false)) return -1;
      break;
    }
    case 's': /* SETITEM */
      if (vm->sp < stack_floor(vm) + 3) return verr(vm, "stack underflow (a corrupt pickle)");
      if (add_to(vm, vm->stack[vm->sp - 3], vm->sp - 2, true)) return -1;
      break;
    case 'u': /* SETITEMS */
      if (pop_mark(vm, &first)) return -1;
      if (first == 0 || first <= stack_floor(vm)) return verr(vm, "stack underflow (a corrupt pickle)");
      if (add_to(vm, vm->stack[first - 1], first, true)) return -1;
      break;
    case 'q':
      if (need(vm, 1) || !(a = top(vm)) || memo_put(vm, *vm->p, a)) return -1;
      vm->p++;
      break;
    case 'r':
      if (need(vm, 4) || !(a = top(vm)) || memo_put(vm, (uint32_t)le_int(vm->p, 4), a)) return -1;
      vm->p += 4;
      break;
    case 0x94: /* MEMOIZE */
      if (!(a = top(vm)) || memo_put(vm, vm->memo_count, a)) return -1;
      break;
    case 'p': /* PUT text */
    case 'g': { /* GET text */
      if (!(s = read_line(vm, &len))) return -1;
      char tmp[32];
      if (len == 0 || len >= sizeof tmp) return verr(vm, "a malformed memo key");
      memcpy(tmp, s, len);
      tmp[len] = 0;
      char *endp;
      unsigned long long idx = strtoull(tmp, &endp, 10);
      if (*endp) return verr(vm, "a malformed memo key");
      if (op == 'p') {
        if (!(a = top(vm)) || memo_put(vm, (size_t)idx, a)) return -1;
      } else if (memo_get(vm, (size_t)idx)) return -1;
      break;
    }
    case 'h':
      if (need(vm, 1) || memo_get(vm, *vm->p)) return -1;
      vm->p++;
      break;
    case 'j':
      if (need(vm, 4) || memo_get(vm, (uint32_t)le_int(vm->p, 4))) return -1;
      vm->p += 4;
      break;
    case 'c': { /* GLOBAL module\nname\n */
      size_t mlen, nlen;
      const unsigned char *m = read_line(vm, &mlen), *n;
      if (!m || !(n = read_line(vm, &nlen))) return -1;
      if (push_global(vm, (const char *)m, mlen, (const char *)n, nlen)) return -1;
      break;
    }
    case 0x93: /* STACK_GLOBAL */
      if (!(b = pop(vm)) || !(a = pop(vm))) return -1;
      if (a->kind != CK_STRING || b->kind != CK_STRING) return verr(vm, "STACK_GLOBAL with non-string names");
      if (push_global(vm, a->u.str.data, a->u.str.len, b->u.str.data, b->u.str.len)) return -1;
      break;
    case 'i': { /* INST module\nname\n: a call with the marked items */
      size_t mlen, nlen;
      const unsigned char *m = read_line(vm, &mlen), *n;
      if (!m || !(n = read_line(vm, &nlen))) return -1;
      if (pop_mark(vm, &first) || make_seq(vm, CK_TUPLE, first)) return -1;
      if (push_global(vm, (const char *)m, mlen, (const char *)n, nlen)) return -1;
      b = pop(vm);
      a = pop(vm);
      if (!a || !b || push(vm, call_global(vm, b, a, 0))) return -1;
      break;
    }
    case 'o': /* OBJ: class and args after the mark */
      if (pop_mark(vm, &first)) return -1;
      if (vm->sp == first) return verr(vm, "OBJ without a class");
      a = vm->stack[first];
      if (make_seq(vm, CK_TUPLE, first + 1)) return -1;
      b = pop(vm);
      vm->sp = first;
      if (push(vm, call_global(vm, a, b, 0))) return -1;
      break;
    case 'R': /* REDUCE */
      if (!(b = pop(vm)) || !(a = pop(vm))) return -1;
      if (push(vm, call_global(vm, a, b, 0))) return -1;
      break;
    case 0x81: /* NEWOBJ cls args */
      if (!(b = pop(vm)) || !(a = pop(vm))) return -1;
      if (push(vm, call_global(vm, a, b, 0))) return -1;
      break;
    case 0x92: /* NEWOBJ_EX cls args kwargs (kwargs dropped) */
      if (!pop(vm) || !(b = pop(vm)) || !(a = pop(vm))) return -1;
      if (push(vm, call_global(vm, a, b, 0))) return -1;
      break;
    case 'b': /* BUILD: the state is kept on placeholders, ignored elsewhere */
      if (!(b = pop(vm)) || !(a = top(vm))) return -1;
      if (a->kind == CK_PLACEHOLDER) a->u.ph.state = b;
      break;
    case 'Q': /* BINPERSID */
      if (!(a = pop(vm)) || persistent_load(vm, a)) return -1;
      break;
    case 'P':
      return verr(vm, "text PERSID records are not supported");
    case 0x82:
    case 0x83:
    case 0x84:
      return verr(vm, "extension-registry opcodes (EXT1/2/4) are not supported");
    case 'S':
    case 'V':
      return verr(vm, "protocol-0 text strings are not supported");
    case 0x97:
    case 0x98:
      return verr(vm, "out-of-band buffers are not supported");
    default:
      return verr(vm, "unknown pickle opcode 0x%02x at byte %zu", op, (size_t)(vm->p - 1 - vm->start));
    }
  }
}

int ck_unpickle(ck_doc *doc, const unsigned char *buf, size_t len, ck_storage_loader loader, void *ctx) {
  vm_t vm;
  memset(&vm, 0, sizeof vm);
  vm.doc = doc;
  vm.where = ctx ? "data.pkl" : "pickle";
  vm.start = vm.p = buf;
  vm.end = buf + len;
  vm.loader = loader;
  vm.ctx = ctx;
  vm.memo_limit = len + 1 < (1u << 24) ? len + 1 : (1u << 24);
  int rc = run(&vm);
  if (!rc && vm.sp != 0) rc = verr(&vm, "the stack is not empty at STOP (a corrupt pickle)");
  free(vm.stack);
  free(vm.marks);
  free(vm.memo);
  return rc;
}

/* ---- ck_load: the archive ---- */
typedef struct {
  char *name;
  cc_tensor *t; /* 1-D view of the whole storage */
} loaded_storage;

typedef struct {
  ck_zip *zip;
  const char *prefix;
  loaded_storage *st;
  size_t n, cap;
} load_ctx;

static cc_tensor *load_storage(void *vctx, const char *key, const char *type, int64_t numel) {
  load_ctx *c = vctx;
  const char *t = type;
  if (!strncmp(t, "torch.cuda.", 11)) t += 11;
  else if (!strncmp(t, "torch.", 6)) t += 6;
  static const struct { const char *name; int size; int kind; } types[] = {
      {"FloatStorage", 4, 0},   {"DoubleStorage", 8, 1}, {"LongStorage", 8, 2},  {"HalfStorage", 2, 3},
      {"BFloat16Storage", 2, 4}, {"IntStorage", 4, 5},    {"ShortStorage", 2, 6}, {"CharStorage", 1, 7},
      {"ByteStorage", 1, 8},    {"BoolStorage", 1, 8},   {"UntypedStorage", 1, 8}};
  int ti = -1;
  for (size_t k = 0; k < sizeof types / sizeof *types; k++)
    if (!strcmp(t, types[k].name)) ti = (int)k;
  if (ti < 0) {
    cc_set_error("torch checkpoint '%s': unsupported storage type '%s'", c->zip->path, type);
    return NULL;
  }
  for (size_t k = 0; k < c->n; k++)
    if (!strcmp(c->st[k].name, key)) {
      if (c->st[k].t->shape[0] != numel) {
        cc_set_error("torch checkpoint '%s': storage '%s' is referenced with two different sizes", c->zip->path, key);
        return NULL;
      }
      return cc_retain(c->st[k].t);
    }
  char name[512];
  snprintf(name, sizeof name, "%s/data/%s", c->prefix, key);
  const ck_zip_entry *e = ck_zip_find(c->zip, name);
  if (!e) {
    cc_set_error("torch checkpoint '%s': missing storage entry '%s'", c->zip->path, name);
    return NULL;
  }
  int sz = types[ti].size, kind = types[ti].kind;
  if ((uint64_t)numel > e->size / (uint64_t)sz || (uint64_t)numel * (uint64_t)sz != e->size) {
    cc_set_error("torch checkpoint '%s': storage '%s' holds %llu bytes but %lld elements of %s need %llu", c->zip->path,
                 key, (unsigned long long)e->size, (long long)numel, t, (unsigned long long)numel * (unsigned long long)sz);
    return NULL;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    loaded_storage *a = realloc(c->st, cap * sizeof *a);
    if (!a) {
      cc_set_error("torch checkpoint: out of memory");
      return NULL;
    }
    c->st = a;
    c->cap = cap;
  }
  unsigned char *raw = ck_zip_read(c->zip, e, e->size);
  if (!raw) return NULL;
  cc_dtype dt = kind == 1 ? CC_FLOAT64 : (kind == 0 || kind == 3 || kind == 4) ? CC_FLOAT32 : CC_INT64;
  int64_t shape[1] = {numel};
  cc_tensor *out = cc_empty(1, shape, dt, CC_CPU);
  char *kname = strdup(key);
  if (!out || !kname) {
    free(raw);
    free(kname);
    cc_release(out);
    cc_set_error("torch checkpoint '%s': out of memory for storage '%s'", c->zip->path, key);
    return NULL;
  }
  void *d = out->storage->data;
  float *f = d;
  int64_t *l = d;
  for (int64_t k = 0; k < numel; k++) {
    const unsigned char *q = raw + k * sz;
    switch (kind) {
    case 0: memcpy(&f[k], q, 4); break;
    case 1: memcpy((double *)d + k, q, 8); break;
    case 2: memcpy(&l[k], q, 8); break;
    case 3: f[k] = cc_half_to_float((uint16_t)(q[0] | (q[1] << 8))); break;
    case 4: f[k] = cc_bf16_to_float((uint16_t)(q[0] | (q[1] << 8))); break;
    case 5: l[k] = (int32_t)le_int(q, 4); break;
    case 6: l[k] = (int16_t)le_int(q, 2); break;
    case 7: l[k] = (int8_t)q[0]; break;
    default: l[k] = q[0]; break;
    }
  }
  free(raw);
  c->st[c->n].name = kname;
  c->st[c->n].t = out;
  c->n++;
  return cc_retain(out);
}

ck_doc *ck_load(const char *path) {
  ck_doc *doc = NULL;
  unsigned char *pkl = NULL;
  char *prefix = NULL;
  load_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ck_zip *z = ck_zip_open(path);
  if (!z) return NULL;
  const ck_zip_entry *pe = NULL;
  for (size_t k = 0; k < z->n_entries; k++) {
    const char *n = z->entries[k].name, *slash = strchr(n, '/');
    if (slash && !strcmp(slash, "/data.pkl")) {
      pe = &z->entries[k];
      break;
    }
  }
  if (!pe) {
    cc_set_error("torch checkpoint '%s': no <prefix>/data.pkl entry: not a torch checkpoint", path);
    goto fail;
  }
  prefix = strdup(pe->name);
  if (!prefix) {
    cc_set_error("torch checkpoint: out of memory");
    goto fail;
  }
  *strchr(prefix, '/') = 0;
  char bo_name[512];
  snprintf(bo_name, sizeof bo_name, "%s/byteorder", prefix);
  const ck_zip_entry *bo = ck_zip_find(z, bo_name);
  if (bo) {
    unsigned char *b = ck_zip_read(z, bo, 64);
    if (!b) goto fail;
    bool little = !strcmp((char *)b, "little");
    free(b);
    if (!little) {
      cc_set_error("torch checkpoint '%s': big-endian storages are not supported", path);
      goto fail;
    }
  }
  pkl = ck_zip_read(z, pe, CK_MAX_PICKLE_BYTES);
  if (!pkl) goto fail;
  doc = calloc(1, sizeof *doc);
  if (!doc) {
    cc_set_error("torch checkpoint: out of memory");
    goto fail;
  }
  ctx.zip = z;
  ctx.prefix = prefix;
  if (ck_unpickle(doc, pkl, (size_t)pe->size, load_storage, &ctx)) {
    const char *msg = cc_last_error();
    if (strncmp(msg, "torch checkpoint", 16) != 0) {
      char buf[1024];
      snprintf(buf, sizeof buf, "%s", msg);
      cc_set_error("torch checkpoint '%s': %s", path, buf);
    }
    goto fail;
  }
  for (size_t k = 0; k < ctx.n; k++) {
    free(ctx.st[k].name);
    cc_release(ctx.st[k].t);
  }
  free(ctx.st);
  free(pkl);
  free(prefix);
  ck_zip_close(z);
  return doc;
fail:
  for (size_t k = 0; k < ctx.n; k++) {
    free(ctx.st[k].name);
    cc_release(ctx.st[k].t);
  }
  free(ctx.st);
  ck_doc_free(doc);
  free(pkl);
  free(prefix);
  ck_zip_close(z);
  return NULL;
}
