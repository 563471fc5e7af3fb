/* autograd.c — define-by-run reverse mode: grad mode, graph nodes attached by ops, and the
 * backward pass (iterative topological order over tensors, gradients accumulated per tensor,
 * leaves receive .grad, the graph is freed unless retained). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local bool grad_disabled;

/* ---- optional backward profile: seconds and calls per node name (names are static strings) ---- */
#include <time.h>
#define PROFILE_SLOTS 128
static bool profiling;
static struct {
  const char *name;
  double seconds;
  int64_t calls;
} profile[PROFILE_SLOTS];

void cc_backward_profile_enable(bool on) { profiling = on; }

int cc_backward_profile_read(int i, const char **name, double *seconds, int64_t *calls) {
  if (i < 0 || i >= PROFILE_SLOTS || !profile[i].name) return 0;
  *name = profile[i].name;
  *seconds = profile[i].seconds;
  *calls = profile[i].calls;
  return 1;
}

void cc_backward_profile_reset(void) { memset(profile, 0, sizeof profile); }

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void profile_add(const char *name, double seconds) {
  for (int i = 0; i < PROFILE_SLOTS; i++) {
    if (!profile[i].name || profile[i].name == name || !strcmp(profile[i].name, name)) {
      profile[i].name = name;
      profile[i].seconds += seconds;
      profile[i].calls++;
      return;
    }
  }
}

bool cc_grad_enabled(void) { return !grad_disabled; }

bool cc_set_grad_enabled(bool enabled) {
  bool was = !grad_disabled;
  grad_disabled = !enabled;
  return was;
}

bool cc_any_requires_grad(int n, cc_tensor *const *ts) {
  for (int i = 0; i < n; i++)
    if (ts[i] && ts[i]->requires_grad) return true;
  return false;
}

/* the graph of a result whose node could not be allocated: backward through it is an error (the
 * result itself is right; its gradients would silently be missing). Shared, never freed. */
static int lost_graph_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  (void)node, (void)g, (void)gi;
  cc_set_error("out of host memory when the operation ran, its autograd graph was not recorded");
  return -1;
}
cc_node cc_lost_graph_node = {.name = "LostGraph", .backward = lost_graph_backward};

/* a node that could not keep a tensor it saves for backward */
static int lost_saved_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  (void)node, (void)g, (void)gi;
  cc_set_error("out of host memory when the operation ran, a tensor saved for backward was not kept");
  return -1;
}

cc_node *cc_attach_node(cc_tensor *out, const char *name, cc_backward_fn backward, int n,
                        cc_tensor *const *inputs) {
  if (!out || grad_disabled || !backward || !cc_any_requires_grad(n, inputs)) return NULL;
  cc_node *node = calloc(1, sizeof *node);
  if (!node) { /* out of memory: backward through the result reports it */
    out->grad_fn = &cc_lost_graph_node;
    out->requires_grad = true;
    return NULL;
  }
  node->name = name;
  node->backward = backward;
  node->n_inputs = n;
  for (int i = 0; i < n; i++) node->inputs[i] = inputs[i] && inputs[i]->requires_grad ? cc_retain(inputs[i]) : NULL;
  out->grad_fn = node;
  out->requires_grad = true;
  return node;
}

void cc_node_save(cc_node *node, cc_tensor *t) {
  if (!node || node->n_saved >= CC_NODE_MAX_SAVED) return;
  cc_tensor *kept = t ? cc_detach(t) : NULL;
  if (t && !kept) node->backward = lost_saved_backward; /* out of memory: backward reports it */
  node->saved[node->n_saved++] = kept;
}

int cc_set_requires_grad(cc_tensor *t, bool requires) {
  if (requires && !cc_is_floating(t->dtype)) {
    cc_set_error("requires_grad: only floating tensors can require gradients (this one is %s)",
                 cc_dtype_name(t->dtype));
    return -1;
  }
  if (!requires && t->grad_fn) {
    cc_set_error("requires_grad(false) is only allowed on leaf tensors; use detach() for a non-leaf");
    return -1;
  }
  t->requires_grad = requires;
  return 0;
}

void cc_zero_grad(cc_tensor *t) {
  cc_release(t->grad);
  t->grad = NULL;
}

const char *cc_grad_fn_name(const cc_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }

static void free_node_graph(cc_node *n) {
  if (n == &cc_lost_graph_node) return;
  for (int i = 0; i < n->n_inputs; i++) {
    cc_release(n->inputs[i]);
    n->inputs[i] = NULL;
  }
  for (int i = 0; i < n->n_saved; i++) {
    cc_release(n->saved[i]);
    n->saved[i] = NULL;
  }
  if (n->user_free) n->user_free(n->user);
  n->user_free = NULL;
  n->user = NULL;
  n->freed = true;
}

static int function_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  return node->user_backward(node->user, g, node->n_inputs, gi);
}

int cc_function_attach(cc_tensor *out, const char *name, int n, cc_tensor *const *inputs, cc_function_backward fn,
                       void *user, void (*user_free)(void *user)) {
  if (n < 0 || n > CC_NODE_MAX_INPUTS) {
    if (user_free) user_free(user);
    cc_set_error("function: at most %d tensor inputs, got %d", CC_NODE_MAX_INPUTS, n);
    return -1;
  }
  if (out->grad_fn) {
    if (user_free) user_free(user);
    cc_set_error("function: the output already has a graph (compute it without gradients)");
    return -1;
  }
  cc_node *node = cc_attach_node(out, name, function_backward, n, inputs);
  if (!node) {
    if (user_free) user_free(user);
    return 0;
  }
  node->user_backward = fn;
  node->user = user;
  node->user_free = user_free;
  return 0;
}

/* accumulate g into *slot (a new reference is taken) */
static int accumulate(cc_tensor **slot, cc_tensor *g) {
  if (!*slot) {
    *slot = cc_retain(g);
    return 0;
  }
  cc_tensor *sum = cc_add(*slot, g);
  if (!sum) return -1;
  cc_release(*slot);
  *slot = sum;
  return 0;
}

typedef struct {
  cc_tensor **items;
  int n, cap;
} tensor_list;

static int list_push(tensor_list *l, cc_tensor *t) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 256;
    cc_tensor **grown = realloc(l->items, (size_t)cap * sizeof *grown);
    if (!grown) {
      cc_set_error("backward: out of host memory");
      return -1;
    }
    l->items = grown;
    l->cap = cap;
  }
  l->items[l->n++] = t;
  return 0;
}

/* post-order of the graph below root; every tensor in order is retained. The marks (bw_state) of the
 * tensors on the stack are cleared here, those in order by cc_backward: on failure none is left set
 * (a mark left on a parameter would make every later backward skip it). */
static int topo_sort(cc_tensor *root, tensor_list *order) {
  tensor_list stack = {0};
  int rc = 0;
  if (list_push(&stack, root)) return -1;
  root->bw_state = 1;
  /* iterative DFS: a tensor stays on the stack until all its inputs are done */
  while (stack.n > 0 && !rc) {
    cc_tensor *t = stack.items[stack.n - 1];
    cc_node *node = t->grad_fn;
    if (node && node->freed) {
      cc_set_error("backward: trying to backward through the graph a second time (or to read saved "
                   "tensors after they were freed); pass retain_graph=true the first time");
      rc = -1;
      break;
    }
    bool pushed = false;
    if (node)
      for (int i = 0; i < node->n_inputs; i++) {
        cc_tensor *in = node->inputs[i];
        if (in && in->requires_grad && in->bw_state == 0) {
          if (list_push(&stack, in)) {
            rc = -1;
            break;
          }
          in->bw_state = 1;
          pushed = true;
          break;
        }
      }
    if (rc) break;
    if (!pushed) {
      if (list_push(order, cc_retain(t))) { /* t stays on the stack: its mark is cleared below */
        cc_release(t);
        rc = -1;
        break;
      }
      stack.n--;
      t->bw_state = 2;
    }
  }
  for (int i = 0; i < stack.n; i++) stack.items[i]->bw_state = 0;
  free(stack.items);
  return rc;
}

int cc_backward(cc_tensor *root, cc_tensor *grad, bool retain_graph) {
  if (!root->requires_grad) {
    cc_set_error("backward: the tensor does not require grad and has no grad_fn");
    return -1;
  }
  cc_tensor *seed = NULL;
  if (grad) {
    if (!cc_same_shape(grad, root)) {
      char s1[128], s2[128];
      cc_shape_str(grad->ndim, grad->shape, s1, sizeof s1);
      cc_shape_str(root->ndim, root->shape, s2, sizeof s2);
      cc_set_error("backward: gradient of shape %s given for a tensor of shape %s", s1, s2);
      return -1;
    }
    if (cc_check_same("backward", grad, root)) return -1;
    seed = cc_retain(grad);
  } else {
    if (cc_numel(root) != 1) {
      char s[128];
      cc_shape_str(root->ndim, root->shape, s, sizeof s);
      cc_set_error("backward: grad can be implicitly created only for scalar outputs (this tensor has "
                   "shape %s); pass a gradient tensor",
                   s);
      return -1;
    }
    seed = cc_full(root->ndim, root->shape, 1.0, root->dtype, root->storage->device);
    if (!seed) return -1;
  }

  tensor_list order = {0};
  bool was = cc_set_grad_enabled(false);
  int rc = topo_sort(root, &order);
  if (!rc) {
    root->bw_grad = seed;
    seed = NULL;
  }
  for (int k = order.n - 1; k >= 0 && !rc; k--) {
    cc_tensor *t = order.items[k];
    cc_tensor *g = t->bw_grad;
    if (!g) continue;
    cc_node *node = t->grad_fn;
    if (!node) { /* a leaf */
      cc_tensor *gc = cc_contiguous(g);
      if (!gc) {
        rc = -1;
        break;
      }
      rc = accumulate(&t->grad, gc);
      cc_release(gc);
      cc_release(t->bw_grad);
      t->bw_grad = NULL;
      continue;
    }
    cc_tensor *gi[CC_NODE_MAX_INPUTS] = {0};
    double t0 = profiling ? now_seconds() : 0;
    int bw_rc = node->backward(node, g, gi);
    if (profiling) profile_add(node->name, now_seconds() - t0);
    if (bw_rc) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", cc_last_error());
      cc_set_error("backward of %s: %s", node->name, msg);
      rc = -1;
    }
    for (int i = 0; i < node->n_inputs && !rc; i++) {
      cc_tensor *in = node->inputs[i];
      if (!in || !in->requires_grad || !gi[i]) continue;
      if (!cc_same_shape(gi[i], in)) {
        char s1[128], s2[128];
        cc_shape_str(gi[i]->ndim, gi[i]->shape, s1, sizeof s1);
        cc_shape_str(in->ndim, in->shape, s2, sizeof s2);
        cc_set_error("backward of %s produced a gradient of shape %s for an input of shape %s", node->name,
                     s1, s2);
        rc = -1;
        break;
      }
      rc = accumulate(&in->bw_grad, gi[i]);
    }
    cc_release_n(CC_NODE_MAX_INPUTS, gi);
    cc_release(t->bw_grad);
    t->bw_grad = NULL;
    if (!retain_graph) free_node_graph(node);
  }
  for (int k = 0; k < order.n; k++) {
    cc_tensor *t = order.items[k];
    t->bw_state = 0;
    cc_release(t->bw_grad);
    t->bw_grad = NULL;
    cc_release(t);
  }
  free(order.items);
  cc_release(seed);
  cc_set_grad_enabled(was);
  return rc;
}
