/* version — the program's version, from CMake's project(VERSION …) (drover_version.h.in). */
#ifndef DROVER_BASE_VERSION_H
#define DROVER_BASE_VERSION_H

/* "MAJOR.MINOR.PATCH"; a static string. Any thread. */
const char *drover_version(void);

#endif
