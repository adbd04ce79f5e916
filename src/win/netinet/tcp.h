/* Windows: the POSIX header <netinet/tcp.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
