/* Windows: the POSIX header <sys/un.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
