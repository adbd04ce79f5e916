/* Windows: the POSIX header <sys/ioctl.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
