/* Windows: the POSIX header <netdb.h> is Winsock with the wrappers of platform.h. */
#include "../platform.h"
