/*
 * Does a non-blocking send() fail with WSAEWOULDBLOCK while the socket has
 * room, when another thread sends on the same socket at the same moment?
 * Under Wine 8 it does, and evn's wake-ups on Windows are such sends (one
 * byte to a socket pair, from any thread): see evn__loop_signal in
 * src/wake.c.
 *
 * A loopback TCP pair; a reader drains one end; senders write one byte at a
 * time to the other, each first waiting until fewer than 64 bytes are
 * unread, so the send buffer (kilobytes) is never close to full and every
 * WSAEWOULDBLOCK is one that should not be. Three rounds: one sender; three
 * at once; three with a lock around each send.
 *
 *   x86_64-w64-mingw32-gcc -O2 -o send-race.exe tests/wine/send-race.c -lws2_32
 *   wine64 send-race.exe
 *
 * Exit status 1 when the defect shows (failures with three unlocked senders
 * only), 0 when it does not, 2 if the sockets could not be set up.
 */
#include <winsock2.h>
#include <ws2tcpip.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

enum { SENDS = 5000, MAXT = 8 };

static SOCKET rd, wr;
static volatile LONG sent, received, stop, would_block;
static volatile LONG worst; /* most bytes unread at a WSAEWOULDBLOCK */
static CRITICAL_SECTION mu;
static int locked;

static DWORD WINAPI reader(LPVOID arg)
{
    (void)arg;
    char buf[4096];
    while (!stop) {
        WSAPOLLFD p = {.fd = rd, .events = POLLRDNORM};
        if (WSAPoll(&p, 1, 50) <= 0)
            continue;
        int n;
        while ((n = recv(rd, buf, sizeof buf, 0)) > 0)
            InterlockedExchangeAdd(&received, n);
    }
    return 0;
}

static DWORD WINAPI sender(LPVOID arg)
{
    (void)arg;
    for (int i = 0; i < SENDS; i++) {
        while (sent - received >= 64)
            Sleep(0);
        if (locked)
            EnterCriticalSection(&mu);
        int rc = send(wr, "x", 1, 0);
        int err = rc < 0 ? WSAGetLastError() : 0;
        if (locked)
            LeaveCriticalSection(&mu);
        if (rc == 1) {
            InterlockedIncrement(&sent);
        } else if (err == WSAEWOULDBLOCK) {
            InterlockedIncrement(&would_block);
            LONG unread = sent - received;
            if (unread > worst)
                worst = unread;
        } else {
            fprintf(stderr, "send: error %d\n", err);
            exit(2);
        }
    }
    return 0;
}

static void pair(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SOCKET l = socket(AF_INET, SOCK_STREAM, 0);
    if (l == INVALID_SOCKET || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        exit(2);
    wr = socket(AF_INET, SOCK_STREAM, 0);
    if (wr == INVALID_SOCKET || connect(wr, (struct sockaddr *)&a, sizeof a))
        exit(2);
    rd = accept(l, NULL, NULL);
    if (rd == INVALID_SOCKET)
        exit(2);
    closesocket(l);
    u_long on = 1;
    int one = 1;
    ioctlsocket(rd, FIONBIO, &on);
    ioctlsocket(wr, FIONBIO, &on);
    setsockopt(wr, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
}

/* One round: nthreads senders, unlocked or not; the WSAEWOULDBLOCKs seen. */
static long round_of(int nthreads, int lock)
{
    HANDLE th[MAXT + 1];
    sent = received = stop = would_block = worst = 0;
    locked = lock;
    pair();
    th[0] = CreateThread(NULL, 0, reader, NULL, 0, NULL);
    for (int i = 1; i <= nthreads; i++)
        th[i] = CreateThread(NULL, 0, sender, NULL, 0, NULL);
    WaitForMultipleObjects((DWORD)nthreads, th + 1, TRUE, INFINITE);
    stop = 1;
    WaitForSingleObject(th[0], INFINITE);
    for (int i = 0; i <= nthreads; i++)
        CloseHandle(th[i]);
    int sndbuf = 0, blen = sizeof sndbuf;
    getsockopt(wr, SOL_SOCKET, SO_SNDBUF, (char *)&sndbuf, &blen);
    printf("%d sender%s, %-8s: %ld sends, %ld failed with WSAEWOULDBLOCK "
           "(at most %ld bytes unread then; SO_SNDBUF %d)\n",
           nthreads, nthreads == 1 ? " " : "s", lock ? "locked" : "unlocked",
           (long)nthreads * SENDS, (long)would_block, (long)worst, sndbuf);
    closesocket(rd);
    closesocket(wr);
    return would_block;
}

int main(void)
{
    WSADATA wd;
    if (WSAStartup(MAKEWORD(2, 2), &wd))
        return 2;
    InitializeCriticalSection(&mu);
    long one = round_of(1, 0);
    long unlocked = round_of(3, 0);
    long serial = round_of(3, 1);
    bool shows = one == 0 && serial == 0 && unlocked > 0;
    printf("%s\n", shows ? "concurrent sends fail with room to spare; one at a time they do not"
                         : "no send failed that should not have");
    return shows ? 1 : 0;
}
