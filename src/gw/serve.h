/* serve — `drover serve`, the gateway process: config, store, listeners, signals. */
#ifndef DROVER_GW_SERVE_H
#define DROVER_GW_SERVE_H

/* The command's entry point: argv[0] is "serve"; returns the process exit code. Main thread. */
int serve_main(int argc, char **argv);

#endif
