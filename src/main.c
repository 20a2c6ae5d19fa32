/* drover — one binary, several subcommands (DESIGN §1). main only dispatches. */
#include <stdio.h>
#include <string.h>

#include "base/version.h"
#include "cli/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: drover <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve    the gateway (client API, admin API, metrics)\n"
               "  agent    the node agent, beside one inference engine\n"
               "  sim      a simulated inference engine (OpenAI + Ollama wire formats)\n"
               "  nodes    list and manage nodes through the admin API\n"
               "  ops      durable fleet operations (install, upgrade, delete, load, unload)\n"
               "  models   the model catalogue: list, show, put, rm (with placement)\n"
               "  store    copy a store between engines (migrate)\n"
               "  keys     client API keys: create, list, rotate, revoke (entitlements, limits)\n"
               "  usage    token and request usage per key, model and node\n"
               "  version  print the version\n"
               "\n"
               "Run 'drover <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("drover %s\n", drover_version());
        return 0;
    }
    for (const struct drover_command *c = drover_commands; c->name; c++) {
        if (strcmp(cmd, c->name) == 0) return c->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "drover: unknown command '%s' (try 'drover --help')\n", cmd);
    return 2;
}
