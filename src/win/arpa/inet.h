/* Windows: the POSIX header <arpa/inet.h> is Winsock with the wrappers of platform.h. */
#include "../../platform.h"
