/* sim — `drover sim`, a simulated inference engine (sim_main.c; the nodes in sim_node.h). */
#ifndef DROVER_SIM_SIM_H
#define DROVER_SIM_SIM_H

/* The command's entry point: argv[0] is "sim"; returns the process exit code. Main thread. */
int sim_main(int argc, char **argv);

#endif
