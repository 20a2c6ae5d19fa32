/* commands — the subcommand table main() dispatches on. Each run function gets argv with
 * argv[0] = the command name and returns the process exit code. */
#ifndef DROVER_CLI_COMMANDS_H
#define DROVER_CLI_COMMANDS_H

#define DROVER_VERSION_STRING "0.1.0"

typedef int command_run_fn(int argc, char **argv);

struct drover_command {
    const char *name;
    command_run_fn *run;
};

extern const struct drover_command drover_commands[]; /* ends with {NULL, NULL} */

int sim_main(int argc, char **argv);
int serve_main(int argc, char **argv);
int nodes_main(int argc, char **argv);
int models_main(int argc, char **argv);
int ops_main(int argc, char **argv);
int agent_main(int argc, char **argv);
int store_cmd_main(int argc, char **argv);

#endif
