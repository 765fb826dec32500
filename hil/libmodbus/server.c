/* An independent Modbus server for interop tests: libmodbus (Debian libmodbus-dev), not pymodbus.
 *
 *   server tcp IMAGE [UNIT]     listen on 127.0.0.1, a free port; prints "ready PORT".  With UNIT it
 *                               answers like a Modbus TCP-to-RTU gateway with that one unit behind
 *                               it: a request for another unit id gets exception 11 (gateway target
 *                               device failed to respond); without, any unit id is served (libmodbus)
 *   server rtu IMAGE TTY UNIT   Modbus RTU at 19200 8N1 on TTY as unit id UNIT; prints "ready 0"
 *
 * IMAGE is a text file of four lines, "coils", "discrete", "holding", "input", each the count
 * followed by that many decimal values (0-based PDU addresses from 0).  Serves until killed; a TCP
 * client that disconnects is replaced by the next one.
 */
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_table(FILE *f, int *n, int **values) {
    char name[32];
    if (fscanf(f, "%31s %d", name, n) != 2) return -1;
    *values = calloc((size_t)(*n > 0 ? *n : 1), sizeof(int));
    for (int i = 0; i < *n; i++)
        if (fscanf(f, "%d", &(*values)[i]) != 1) return -1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: server tcp|rtu IMAGE [TTY UNIT]\n"); return 2; }
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror("image"); return 2; }
    int n[4]; int *v[4];
    for (int t = 0; t < 4; t++)
        if (read_table(f, &n[t], &v[t]) != 0) { fprintf(stderr, "bad image\n"); return 2; }
    fclose(f);
    modbus_mapping_t *map = modbus_mapping_new(n[0], n[1], n[2], n[3]);
    for (int i = 0; i < n[0]; i++) map->tab_bits[i] = (uint8_t)v[0][i];
    for (int i = 0; i < n[1]; i++) map->tab_input_bits[i] = (uint8_t)v[1][i];
    for (int i = 0; i < n[2]; i++) map->tab_registers[i] = (uint16_t)v[2][i];
    for (int i = 0; i < n[3]; i++) map->tab_input_registers[i] = (uint16_t)v[3][i];
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];

    if (strcmp(argv[1], "rtu") == 0) {
        if (argc < 5) { fprintf(stderr, "rtu needs TTY UNIT\n"); return 2; }
        modbus_t *ctx = modbus_new_rtu(argv[3], 19200, 'N', 8, 1);
        modbus_set_slave(ctx, atoi(argv[4]));
        if (modbus_connect(ctx) == -1) { fprintf(stderr, "connect: %s\n", modbus_strerror(errno)); return 1; }
        printf("ready 0\n"); fflush(stdout);
        for (;;) {
            int rc = modbus_receive(ctx, query);
            if (rc > 0) modbus_reply(ctx, query, rc, map);
        }
    }
    int unit = argc >= 4 ? atoi(argv[3]) : -1;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", 0);
    int listener = modbus_tcp_listen(ctx, 1);
    if (listener == -1) { fprintf(stderr, "listen: %s\n", modbus_strerror(errno)); return 1; }
    struct sockaddr_in addr; socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("ready %d\n", ntohs(addr.sin_port)); fflush(stdout);
    for (;;) {
        int s = listener;
        if (modbus_tcp_accept(ctx, &s) == -1) continue;
        for (;;) {
            int rc = modbus_receive(ctx, query);
            if (rc > 0 && unit >= 0 && query[modbus_get_header_length(ctx) - 1] != unit)
                modbus_reply_exception(ctx, query, MODBUS_EXCEPTION_GATEWAY_TARGET);
            else if (rc > 0) modbus_reply(ctx, query, rc, map);
            else if (rc == -1) break;
        }
        close(modbus_get_socket(ctx));
    }
}
