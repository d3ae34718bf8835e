#ifndef FACTORYCTL_CGIT2_SHIM_H
#define FACTORYCTL_CGIT2_SHIM_H

#include <git2.h>

#endif
