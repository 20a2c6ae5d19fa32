/* temporary until the simulator lands */
#include <stdio.h>
#include "cli/commands.h"
int sim_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "drover sim: not built yet\n");
    return 1;
}
