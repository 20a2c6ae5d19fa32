/* keys_cmd — entry points of `drover keys` (keys_cmd.c) and `drover usage` (usage_cmd.c), for
 * the command table. */
#ifndef DROVER_CLI_KEYS_CMD_H
#define DROVER_CLI_KEYS_CMD_H

int keys_main(int argc, char **argv);
int usage_main(int argc, char **argv);

#endif
