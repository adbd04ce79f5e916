/* Windows: the POSIX header <netinet/in.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
