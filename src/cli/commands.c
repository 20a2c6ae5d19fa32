/* commands — the table of subcommands. */
#include "cli/commands.h"
#include "cli/keys_cmd.h"

#include <stddef.h>

#include "agent/agent.h"
#include "gw/serve.h"
#include "sim/sim.h"

int top_main(int argc, char **argv); /* cli/top_cmd.c */

const struct drover_command drover_commands[] = {
    {"agent", agent_main}, /* one per line */
    {"keys", keys_main},       {"models", models_main},
    {"nodes", nodes_main},     {"ops", ops_main},
    {"serve", serve_main},     {"sim", sim_main},
    {"store", store_cmd_main}, {"top", top_main},
    {"usage", usage_main},     {NULL, NULL},
};
