/* Windows: the POSIX header <poll.h> is Winsock with the wrappers of platform.h. */
#include "../platform.h"
