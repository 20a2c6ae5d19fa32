/* registry — every node the gateway knows, with the three separate axes of DESIGN §3 (admin
 * intent, liveness, fault record) and the per-node model inventory. It decides nothing about
 * individual requests (that is the router) and does no I/O (that is health and proxy); it
 * only keeps state and applies the state rules: rise/fall debounce, exclusion after N
 * consecutive faults with the max_excluded_percent guard, exponential ejection time for
 * automatic recovery, cooling after a busy answer, and "a streaming node is alive".
 * Thread: the loop thread only (no locks in gw/). */
#ifndef DROVER_GW_REGISTRY_H
#define DROVER_GW_REGISTRY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"

#include "gw/registry_types.h"

void registry_config_defaults(struct registry_config *cfg);

void registry_init(struct registry *reg, const struct registry_config *cfg);
void registry_free(struct registry *reg);

/* Adds a node from its URL ("http://host:port", no path). Returns 0 and *out (borrowed), or
 * GW_E_INVALID (bad URL, duplicate name) with err filled. New nodes start approved (static
 * nodes from the config file) and with liveness unknown. */
int registry_add(struct registry *reg, const char *name, const char *url, enum node_kind kind,
                 const char *api_key, struct node **out, struct gw_error *err) WUR;
int registry_set_label(struct node *n, const char *key, const char *value);
/* Removes the label; returns false when there was none. */
bool registry_del_label(struct node *n, const char *key);
void registry_clear_labels(struct node *n);
/* Changes the node's URL (an agent that moved); GW_E_INVALID on a bad URL, node unchanged. */
int registry_set_url(struct node *n, const char *url) WUR;
/* Replaces an owned string field (NULL or "" clears it). */
void registry_set_str(char **field, const char *value);
/* A node taken out by the admin: removed, its secret, labels and inventory dropped, its fault
 * record cleared. The struct stays (a tombstone), so names stay stable for the admin API. */
void registry_tombstone(struct node *n);
struct node *registry_find(const struct registry *reg, struct strv name);

const char *node_admin_name(enum node_admin a);
const char *node_live_name(enum node_live l);

/* True when the node is approved (not pending, draining or removed), alive, and not excluded.
 * Cooling (busy) is separate: see node_is_cooled. Alive: healthy by its probes, or proved
 * alive by the data path (a stream byte within stream_alive_ms, or an attempt that completed
 * without a node fault within probe_interval × fall) once it was ever healthy. */
bool node_is_routable(const struct registry *reg, const struct node *n, uint64_t now_ms);
bool node_is_alive(const struct registry *reg, const struct node *n, uint64_t now_ms);
/* Approved, not excluded, once healthy, but not alive now: panic routing may try it. */
bool node_is_panic_candidate(const struct node *n);
bool node_is_cooled(const struct node *n, uint64_t now_ms);
/* At its adaptive concurrency limit, or cooled and not due for its trickle request: it takes
 * no new request now. */
bool node_is_saturated(const struct node *n, uint64_t now_ms);
/* A request goes to n now (the trickle of a cooled node is spent). */
void registry_node_sent(struct registry *reg, struct node *n, uint64_t now_ms);
/* A request with these CAP_* completed on m: marks for them are contradicted. */
void registry_marks_contradicted(struct registry *reg, struct node *n, struct node_model *m,
                                 unsigned caps);

/* Changes of admin intent, with the cause logged once (the admin API, joins, reloads). */
void registry_set_admin(struct registry *reg, struct node *n, enum node_admin to,
                        const char *cause);
/* Forgets liveness (a new address or identity: a new node as far as probes go). */
void registry_reset_liveness(struct registry *reg, struct node *n, const char *cause);
/* Marks the node unhealthy at once (it did not answer an operation at all). */
void registry_set_unhealthy(struct registry *reg, struct node *n, const char *cause);
/* Restores admin intent and the fault record from a stored row at start-up (no log: nothing
 * changed). An excluded node's ejection time starts again from now. */
void registry_restore(struct registry *reg, struct node *n, enum node_admin admin, bool excluded,
                      unsigned consecutive_faults, unsigned ejections, uint64_t now_ms);

/* Marks (struct mark above). The capability is the one bit the node's answer named. */
void registry_mark_capability(struct registry *reg, struct node *n, struct node_model *m,
                              unsigned cap_bit, uint64_t now_ms, const char *cause);
void registry_mark_inventory_miss(struct registry *reg, struct node *n, struct node_model *m,
                                  uint64_t now_ms, const char *cause);
/* The CAP_* bits of `caps` that an unexpired mark says m lacks, or an inventory mark (all of
 * `caps`); 0 when nothing blocks. */
unsigned model_marks_block(const struct node_model *m, unsigned caps, uint64_t now_ms);

/* Inventory. node_model_find returns borrowed or NULL. registry_set_models replaces the list
 * with ids (copied), keeping what was learned about models that stay. */
struct node_model *node_model_find(const struct node *n, struct strv model);
void registry_set_models(struct node *n, const struct strv *ids, size_t n_ids);
/* Records what the node says m's context is (tokens; 0 forgets it) and where it was read
 * (a static string: "models", "props", "api_show", "agent", "rejection"). Logs a change once. */
void registry_set_model_ctx(struct node *n, struct node_model *m, uint32_t ctx_tokens,
                            const char *source);
/* Replaces the on-disk list (copied). */
void registry_set_disk(struct node *n, const struct strv *ids, size_t n_ids);
bool node_has_on_disk(const struct node *n, struct strv model);
/* Adds one loaded model (a cold load finished) or removes it (unloaded). */
void registry_model_loaded(struct node *n, struct strv id, uint64_t size_mb, uint64_t now_ms);
void registry_model_unloaded(struct node *n, struct strv id);
/* Reads devices and VRAM from a discovery object's JSON (docs/node_api.md). */
void registry_set_facts_from_discovery(struct node *n, const char *discovery_json);
/* The nodes listing a model (in registry order), or NULL when none does. Rebuilds the index
 * first when any node's model list changed since it was built. The result is valid until the
 * next change to any inventory. */
const struct model_nodes *registry_model_nodes(struct registry *reg, struct strv model);
/* Bumped whenever any node's model array changes (the index above follows it). */
extern uint64_t registry_models_epoch;
/* Bumped on every change that can make an infeasible model feasible (join, labels, unload). */
extern uint64_t registry_generation;

/* Probe results with rise/fall debounce. Returns true when liveness changed. */
bool registry_probe_ok(struct registry *reg, struct node *n, uint64_t now_ms);
bool registry_probe_failed(struct registry *reg, struct node *n, uint64_t now_ms, const char *why);

/* A probe that timed out while the node's requests progress: busy, not a failure. */
void registry_probe_busy(struct registry *reg, struct node *n, uint64_t now_ms, const char *why);
/* True when a failed probe (timed out) should count as busy for n now. */
bool registry_probe_is_busy(const struct registry *reg, const struct node *n, uint64_t now_ms);

/* Live-traffic fault record. record_fault returns true if the node became excluded now. A
 * success is any attempt the node completed without a node fault (client errors included):
 * the data path's evidence that the node is alive. */
void registry_record_success(struct registry *reg, struct node *n, uint64_t now_ms);
/* The node answered (any class but a node fault): evidence of life, fault record unchanged. */
void registry_note_alive(struct registry *reg, struct node *n, uint64_t now_ms);
bool registry_record_fault(struct registry *reg, struct node *n, uint64_t now_ms,
                           const char *cause);
/* Ends exclusion, resets the fault record, the busy state and every mark (the admin's
 * recover); the cause is logged. */
void registry_recover(struct registry *reg, struct node *n, const char *cause);

/* Busy answers (docs/gateway.md): one busy answer lowers the node's concurrency limit
 * (multiplicative decrease, at most once per latency); busy_cool_after answers in a row (and
 * at least as many as it had in flight) with no success between cool the whole node for its
 * Retry-After (capped), after which it gets one request per trickle interval until one
 * succeeds. in_flight is the node's count when it answered. */
void registry_node_busy(struct registry *reg, struct node *n, unsigned in_flight,
                        uint64_t retry_after_s, uint64_t now_ms);
/* A completed attempt at this in-flight count: additive increase of the limit. */
void registry_node_ok(struct registry *reg, struct node *n, unsigned in_flight, uint64_t dur_ms);
/* Milliseconds until a saturated node can likely take a request (cool left, or its typical
 * latency when at its limit); at least 1. */
uint64_t registry_expected_wait_ms(const struct node *n, uint64_t now_ms);

/* Counts for metrics. */
size_t registry_count_routable(const struct registry *reg, uint64_t now_ms);

#endif
