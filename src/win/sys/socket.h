/* Windows: the POSIX header <sys/socket.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
