/*
 * syscalls.c - what newlib expects of an operating system, for the emulated boards.
 *
 * Plain C firmware (the native runtime) needs none of it; C++ libraries such as TFLM pull in
 * newlib pieces (abort(), the C++ runtime's terminate path) that end in these calls. There is no
 * heap: _sbrk refuses every request, so malloc returns NULL instead of growing into the stack.
 * Writes go to the semihosting console (QEMU's log), never to the UART that carries the protocol.
 * _exit ends the emulation with the status, so an abort() inside a library is a stopped QEMU with
 * a message, not a hang.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "td_board.h"

#define TD_EXIT_ABORT 134 /* what a shell reports for SIGABRT: 128 + 6 */

void *_sbrk(ptrdiff_t increment)
{
    (void)increment;
    errno = ENOMEM;
    return (void *)-1;
}

void _exit(int status)
{
    td_semihost_exit(status);
}

int _kill(int pid, int sig)
{
    (void)pid;
    td_semihost_puts("tinydeploy: the firmware aborted\n");
    td_semihost_exit(sig == 6 ? TD_EXIT_ABORT : 128 + sig);
}

int _getpid(void) { return 1; }

int _write(int fd, const char *buf, int len)
{
    (void)fd;
    char line[81];
    int done = 0;
    while (done < len) {
        int n = len - done < 80 ? len - done : 80;
        for (int i = 0; i < n; i++)
            line[i] = buf[done + i];
        line[n] = '\0';
        td_semihost_puts(line);
        done += n;
    }
    return len;
}

int _read(int fd, char *buf, int len)
{
    (void)fd;
    (void)buf;
    (void)len;
    return 0;
}

int _close(int fd)
{
    (void)fd;
    errno = EBADF;
    return -1;
}

int _lseek(int fd, int offset, int whence)
{
    (void)fd;
    (void)offset;
    (void)whence;
    return 0;
}

int _fstat(int fd, struct stat *st)
{
    (void)fd;
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd)
{
    (void)fd;
    return 1;
}
