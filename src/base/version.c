/* version — the one file that reads the generated header, so a version bump recompiles only
 * this file (the header is configured by CMake into the build tree). */
#include "base/version.h"

#include "drover_version.h"

const char *drover_version(void)
{
    return DROVER_VERSION_STRING;
}
