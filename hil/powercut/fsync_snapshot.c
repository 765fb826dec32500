/* Power-cut simulator: an LD_PRELOAD library that keeps, for every file in one directory, the
 * content it had at its last fsync / fdatasync.
 *
 * A power cut keeps what was synced and loses what was only written (the page cache).  A kill -9
 * keeps everything written, so it cannot test a durability claim.  With this library loaded,
 * each fsync or fdatasync of a regular file under EDGEGW_POWERCUT_WATCH first copies that file to
 * EDGEGW_POWERCUT_SNAPSHOT/<name> (through a temporary file and rename), then syncs for real.
 * After the process is killed, the snapshot directory holds the files as a power cut at that
 * moment would have left them on disk (the strict model: no unsynced write survives; directory
 * entries are assumed durable).  Each snapshot appends "<name> <bytes>" to EDGEGW_POWERCUT_SNAPSHOT/log.
 *
 * Failing storage: with EDGEGW_FAULT_EIO_PERMILLE=N, each fsync / fdatasync of a watched file fails
 * with EIO with probability N/1000 (nothing synced, no snapshot), as a dying SD card or a flaky
 * disk controller does.  EDGEGW_FAULT_EIO_SEED seeds it (default: the process id).
 *
 * Slow storage: with EDGEGW_FAULT_SYNC_DELAY_US=N, every fsync / fdatasync of a regular file (in any
 * directory) takes N microseconds longer, as cheap eMMC or SD cards under load do.
 *
 * Build: gcc -O1 -Wall -shared -fPIC -o fsync_snapshot.so fsync_snapshot.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int copy_file(const char *src, const char *dst) {
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                rc = -1;
                break;
            }
            off += w;
        }
        if (rc != 0) break;
    }
    close(in);
    close(out);
    return rc;
}

/* The path of fd if it is a regular file directly in the watched directory, else 0. */
static int watched(int fd, char *path, const char **name, struct stat *st) {
    const char *watch = getenv("EDGEGW_POWERCUT_WATCH");
    if (watch == NULL) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    size_t wl = strlen(watch);
    if (strncmp(path, watch, wl) != 0 || path[wl] != '/' || strchr(path + wl + 1, '/') != NULL) return 0;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) return 0;
    *name = path + wl + 1;
    return 1;
}

/* 1 if this sync is to fail with EIO (EDGEGW_FAULT_EIO_PERMILLE). */
static int inject_eio(void) {
    static int seeded;
    static unsigned int state;
    const char *permille = getenv("EDGEGW_FAULT_EIO_PERMILLE");
    if (permille == NULL) return 0;
    if (!seeded) {
        const char *seed = getenv("EDGEGW_FAULT_EIO_SEED");
        state = seed != NULL ? (unsigned int)strtoul(seed, NULL, 10) : (unsigned int)getpid();
        seeded = 1;
    }
    return rand_r(&state) % 1000 < atoi(permille);
}

static void snapshot(const char *path, const char *name, const struct stat *st) {
    const char *snap = getenv("EDGEGW_POWERCUT_SNAPSHOT");
    if (snap == NULL) return;
    char tmp[PATH_MAX], dst[PATH_MAX], logpath[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", snap, name);
    snprintf(dst, sizeof dst, "%s/%s", snap, name);
    snprintf(logpath, sizeof logpath, "%s/log", snap);
    int saved = errno;
    if (copy_file(path, tmp) == 0 && rename(tmp, dst) == 0) {
        FILE *log = fopen(logpath, "ae");
        if (log != NULL) {
            fprintf(log, "%s %lld\n", name, (long long)st->st_size);
            fclose(log);
        }
    } else {
        fprintf(stderr, "fsync_snapshot: cannot snapshot %s: %s\n", path, strerror(errno));
        abort(); /* a snapshot that silently lags would make the test lie */
    }
    errno = saved;
}

static void slow_storage(int fd) {
    const char *delay = getenv("EDGEGW_FAULT_SYNC_DELAY_US");
    struct stat st;
    if (delay == NULL || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    long us = atol(delay);
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int sync_file(int fd, int (*real)(int)) {
    char path[PATH_MAX];
    const char *name;
    struct stat st;
    int saved = errno;
    slow_storage(fd); /* outside the lock: concurrent syncs of different files overlap, as on a disk */
    errno = saved;
    pthread_mutex_lock(&lock);
    if (watched(fd, path, &name, &st)) {
        if (inject_eio()) {
            pthread_mutex_unlock(&lock);
            errno = EIO;
            return -1;
        }
        snapshot(path, name, &st);
    }
    int rc = real(fd);
    pthread_mutex_unlock(&lock);
    return rc;
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return sync_file(fd, real);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return sync_file(fd, real);
}
