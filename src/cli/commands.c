/* commands — the table of subcommands. */
#include "cli/commands.h"

#include <stddef.h>

const struct drover_command drover_commands[] = {
    {"serve", serve_main}, {"sim", sim_main}, {"nodes", nodes_main},
    {"ops", ops_main},     {NULL, NULL},
};
