/* Windows: the POSIX header <sys/uio.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
