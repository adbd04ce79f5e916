/*
 * Wine (8) leaves an overlapped WSASend pending for ever once its peer has
 * gone, where Windows ends it (with the bytes that went, or an error). No
 * evn here: plain Winsock and a completion port, as errors.iocp's
 * test_no_sigpipe_tcp (its modes 1 and 2) drives evn's iocp backend.
 *
 * Each round: a server thread posts a zero-byte WSARecv and one WSASend of
 * 8 MiB on an accepted socket and waits on the port; the client reads 4096
 * bytes, then what is there without blocking, and closes, which sends a
 * FIN or, with data left unread, a reset (what is still on its way meets a
 * closed socket: a reset too). Windows completes the send; Wine now and
 * then never does, whether the receive saw the reset or only the end of
 * the stream. Each round waits 10 s for it. With "poll", an IOCTL_AFD_POLL
 * for a reset (AFD_POLL_ABORT), the iocp backend's watch_reset, is armed
 * once the receive is over: the send is never left pending then.
 *
 * Not part of the suite (it waits, and proves a fact about Wine, not evn):
 *   x86_64-w64-mingw32-gcc -O1 -o pending-send.exe tests/wine/pending-send.c -lws2_32
 *   WINEPREFIX=... wine64 pending-send.exe [ROUNDS] [poll]
 * It prints each round's completions and, at the end, how many rounds the
 * send was still pending after 10 s; it exits 1 if any was.
 */
#include <winsock2.h>

#include <windows.h>
#include <winternl.h>
#include <ws2tcpip.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IOCTL_AFD_POLL 0x00012024
#define AFD_POLL_ABORT 0x0010
#define AFD_POLL_LOCAL_CLOSE 0x0020

typedef LONG(NTAPI *nt_ioctl_fn)(HANDLE, HANDLE, PVOID, PVOID, PIO_STATUS_BLOCK, ULONG, PVOID,
                                 ULONG, PVOID, ULONG);

typedef struct {
    HANDLE handle;
    ULONG events;
    LONG status;
} poll_handle;

typedef struct {
    LARGE_INTEGER timeout;
    ULONG n;
    ULONG exclusive;
    poll_handle h[1];
} poll_info;

static SOCKET srv;
static HANDLE port;
static OVERLAPPED orecv, osend, opoll;
static poll_info pinfo;
static char big[8 << 20];
static int use_poll;
static volatile LONG stuck;

static void arm_reset_poll(void)
{
    nt_ioctl_fn ioctl = (nt_ioctl_fn)(void (*)(void))GetProcAddress(GetModuleHandleA("ntdll.dll"),
                                                                    "NtDeviceIoControlFile");
    memset(&pinfo, 0, sizeof pinfo);
    memset(&opoll, 0, sizeof opoll);
    pinfo.timeout.QuadPart = INT64_MAX;
    pinfo.n = 1;
    pinfo.h[0].handle = (HANDLE)srv;
    pinfo.h[0].events = AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE;
    LONG st = ioctl((HANDLE)srv, NULL, NULL, &opoll, (PIO_STATUS_BLOCK)&opoll.Internal,
                    IOCTL_AFD_POLL, &pinfo, sizeof pinfo, &pinfo, sizeof pinfo);
    printf("  poll for a reset armed: 0x%lx\n", (unsigned long)st);
}

static DWORD WINAPI server(void *arg)
{
    (void)arg;
    char z;
    WSABUF rb = {0, &z}, sb = {sizeof big, big};
    DWORD n = 0, flags = 0;
    memset(&orecv, 0, sizeof orecv);
    memset(&osend, 0, sizeof osend);
    WSARecv(srv, &rb, 1, &n, &flags, &orecv, NULL);
    if (WSASend(srv, &sb, 1, &n, 0, &osend, NULL) == 0 || WSAGetLastError() != WSA_IO_PENDING) {
        printf("  the send is over at once\n");
        return 0;
    }
    for (;;) {
        OVERLAPPED_ENTRY e;
        ULONG got = 0;
        if (!GetQueuedCompletionStatusEx(port, &e, 1, &got, 10000, FALSE)) {
            printf("  nothing in 10 s: the send is still pending\n");
            stuck = 1;
            return 0;
        }
        if (e.lpOverlapped == &orecv) {
            printf("  receive: status 0x%lx\n", (unsigned long)orecv.Internal);
            if (use_poll)
                arm_reset_poll();
        } else if (e.lpOverlapped == &opoll) {
            printf("  poll: status 0x%lx, events 0x%lx: cancel the send\n",
                   (unsigned long)opoll.Internal, pinfo.h[0].events);
            CancelIoEx((HANDLE)srv, &osend);
        } else {
            printf("  send: status 0x%lx, %lu bytes\n", (unsigned long)osend.Internal,
                   e.dwNumberOfBytesTransferred);
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20, stuck_rounds = 0;
    use_poll = argc > 2 && !strcmp(argv[2], "poll");
    WSADATA wd;
    WSAStartup(MAKEWORD(2, 2), &wd);
    for (int r = 0; r < rounds; r++) {
        SOCKET l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        int alen = sizeof a;
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(l, (struct sockaddr *)&a, sizeof a);
        listen(l, 4);
        getsockname(l, (struct sockaddr *)&a, &alen);
        SOCKET c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) != 0)
            return 2;
        srv = accept(l, NULL, NULL);
        closesocket(l);
        port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
        CreateIoCompletionPort((HANDLE)srv, port, 0, 0);
        stuck = 0;
        printf("round %d\n", r);
        HANDLE t = CreateThread(NULL, 0, server, NULL, 0, NULL);
        char buf[65536];
        int first = recv(c, buf, 4096, 0), more = 0, k;
        u_long on = 1;
        ioctlsocket(c, FIONBIO, &on);
        while ((k = recv(c, buf, sizeof buf, 0)) > 0)
            more += k;
        printf("  the client read %d, then %d without blocking, and closes\n", first, more);
        closesocket(c);
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
        stuck_rounds += stuck;
        /* The close cancels what is still pending: take it. */
        closesocket(srv);
        OVERLAPPED_ENTRY e[4];
        ULONG got = 0;
        GetQueuedCompletionStatusEx(port, e, 4, &got, 1000, FALSE);
        CloseHandle(port);
    }
    printf("%d of %d rounds: the send was still pending after 10 s\n", stuck_rounds, rounds);
    return stuck_rounds != 0;
}
