/* commands — the subcommand table main() dispatches on. Each run function gets argv with
 * argv[0] = the command name and returns the process exit code. The commands that live in
 * other modules declare their entry points in their own headers (gw/serve.h, agent/agent.h,
 * sim/sim.h); this header declares only the table and cli/'s own commands, so nothing outside
 * cli/ and main.c includes it. The version is base/version.h. */
#ifndef DROVER_CLI_COMMANDS_H
#define DROVER_CLI_COMMANDS_H

typedef int command_run_fn(int argc, char **argv);

struct drover_command {
    const char *name;
    command_run_fn *run;
};

extern const struct drover_command drover_commands[]; /* ends with {NULL, NULL} */

int nodes_main(int argc, char **argv);     /* nodes_cmd.c */
int models_main(int argc, char **argv);    /* models_cmd.c */
int ops_main(int argc, char **argv);       /* ops_cmd.c */
int store_cmd_main(int argc, char **argv); /* store_cmd.c */

#endif
