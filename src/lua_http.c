/* lua_http.c - libevent's HTTP/1.1 server (evhttp) on a core.loop, for
 * quarry serve. evhttp parses requests, keeps connections alive, times out
 * slow clients and bounds header and body sizes; this file only hands the
 * requests to Lua and their answers back.
 *
 *   srv = core.http_listen(loop, host, port, opts)
 *       opts: max_header_bytes, max_body_bytes, timeout_s (reading a request,
 *       writing an answer, an idle keep-alive connection); SO_REUSEPORT, so
 *       several workers share the port
 *   core.http_reserve_port(host [, port]) -> port: host:port (port 0: one
 *       the system chooses) held, bound with SO_REUSEPORT and not listening,
 *       for the life of the process, so the workers it then starts all
 *       listen on it; an error at once if another program holds it, or
 *       another quarry serve (whose SO_REUSEPORT would otherwise let the
 *       two split the requests: an old version answering half of them)
 *   srv:port()        the port bound (for port 0)
 *   srv:take()        -> {req, ...} the requests that arrived since the last take
 *   srv:close()       stop accepting; answers to taken requests still go out
 *   srv:sending()     answers given to evhttp and not yet written out
 * The server must go before its loop: declare it `local srv <close>` after
 * the loop's (to-be-closed values close in reverse order).
 *   req:method()  req:uri()  req:path()  req:query()  req:header(name)
 *   req:reply(status, body, {name = value, ...}) -> false if the client left
 *   req:gone()    the client closed its connection before its answer
 * A request taken and never answered is answered 500 when collected, so no
 * client waits forever on a lost request.
 */
/* SO_REUSEPORT is a Linux (BSD) option, outside POSIX */
#define _DEFAULT_SOURCE
#include "lua_quarry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SERVER_MT "quarry.http_server"
#define REQUEST_MT "quarry.http_request"

/* One request between evhttp and Lua; freed when neither holds it. */
typedef struct lreq {
    struct evhttp_request *req; /* NULL once answered or its client left */
    void *server;               /* the lserver, for counting replies being written */
    int lua_holds, c_holds;     /* c_holds: the connection's close callback points here */
    int answered;
    struct lreq *next;          /* the queue of requests not yet taken */
} lreq;

typedef struct {
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    qr_lua_loop *loop;
    lreq *head, *tail;
    int port;
    int sending; /* replies evhttp still writes */
} lserver;

static void lreq_unref(lreq *r)
{
    if (!r->lua_holds && !r->c_holds) free(r);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    lreq *r = arg;
    r->req = NULL; /* the client left before its answer: Lua stops its work */
    r->c_holds = 0;
    qr_lua_loop_wake(((lserver *)r->server)->loop);
    lreq_unref(r);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    lserver *s = arg;
    lreq *r = calloc(1, sizeof *r);
    if (!r) {
        evhttp_send_error(req, 503, "out of memory");
        return;
    }
    r->req = req;
    r->server = s;
    r->c_holds = 1;
    r->lua_holds = 1; /* the queue's, then the userdata's that take() makes */
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_close, r);
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    qr_lua_loop_wake(s->loop);
}

/* The answer goes out: the request is libevent's again, the close callback
 * no longer ours. */
static void done_with(lreq *r)
{
    evhttp_connection_set_closecb(evhttp_request_get_connection(r->req), NULL, NULL);
    r->req = NULL;
    r->c_holds = 0;
}

/* An address that cannot be listened on is the user's to fix (a port
 * another program holds, an address not this host's): a usage error, one
 * line with no Lua position, so `quarry serve` exits 2 with it. */
static int cannot_listen(lua_State *L, const char *host, lua_Integer port, const char *why)
{
    qr_error e;
    if (port < 0) qr_error_set(&e, "usage", "cannot listen on '%s': %s", host, why);
    else qr_error_set(&e, "usage", "cannot listen on %s:%d: %s", host, (int)port, why);
    return qr_lua_raise(L, &e);
}

/* host:port as an IPv4 socket address, or a usage error naming host. */
static void ipv4(lua_State *L, const char *host, lua_Integer port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) cannot_listen(L, host, -1, "not an IPv4 address");
}

static int l_http_listen(lua_State *L)
{
    qr_lua_loop *loop = qr_lua_checkloop(L, 1);
    const char *host = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "max_header_bytes");
    lua_getfield(L, 4, "max_body_bytes");
    lua_getfield(L, 4, "timeout_s");
    lua_Integer max_header = luaL_optinteger(L, -3, 8192), max_body = luaL_optinteger(L, -2, 65536);
    lua_Integer timeout = luaL_optinteger(L, -1, 30);
    lua_pop(L, 3);

    struct sockaddr_in sa;
    ipv4(L, host, port, &sa);

    lserver *s = lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, SERVER_MT);
    lua_pushvalue(L, 1); /* the loop outlives its server */
    lua_setiuservalue(L, -2, 1);
    s->loop = loop;
    s->http = evhttp_new(qr_lua_loop_base(loop));
    if (!s->http) return luaL_error(L, "cannot start the HTTP server");
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)max_header);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)max_body);
    evhttp_set_timeout(s->http, (int)timeout);
    /* Every method reaches Lua, which answers those it does not serve
     * with a JSON 405 and Allow: libevent's own refusal is a 501 in HTML. */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, on_request, s);
    struct evconnlistener *lst = evconnlistener_new_bind(
        qr_lua_loop_base(loop), NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (struct sockaddr *)&sa, sizeof sa);
    if (!lst) return cannot_listen(L, host, port, strerror(errno));
    s->bound = evhttp_bind_listener(s->http, lst);
    if (!s->bound) {
        evconnlistener_free(lst);
        return cannot_listen(L, host, port, "the HTTP server would not take the socket");
    }
    struct sockaddr_in got;
    socklen_t len = sizeof got;
    if (getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&got, &len) == 0) s->port = ntohs(got.sin_port);
    qr_lua_loop_sources(loop, 1);
    return 1;
}

/* Every quarry serve on a port binds the abstract socket name
 * "quarry-serve:PORT" for its life: the kernel lets one socket have a
 * name, so a second server is refused atomically, and the name goes with
 * the last process that holds it (a crash leaves nothing to clean up).
 * Abstract names, like ports, belong to the network namespace. */
static int claim_port(int port)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "quarry-serve:%d", port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&un, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return 0; /* fd stays open: the claim lasts as long as the process */
}

static int l_http_reserve_port(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "not a port");
    struct sockaddr_in sa;
    ipv4(L, host, port, &sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    socklen_t len = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return cannot_listen(L, host, port, strerror(e));
    }
    /* fd stays open on purpose: it holds the port until the process ends */
    int bound = ntohs(sa.sin_port);
    if (claim_port(bound) != 0) {
        int e = errno;
        close(fd);
        return cannot_listen(L, host, port, e == EADDRINUSE ? "another quarry serve listens on that port"
                                                            : strerror(e));
    }
    lua_pushinteger(L, bound);
    return 1;
}

static lserver *check_server(lua_State *L)
{
    lserver *s = luaL_checkudata(L, 1, SERVER_MT);
    if (!s->http) luaL_error(L, "the server is closed");
    return s;
}

static void on_sent(struct evhttp_request *req, void *arg)
{
    (void)req;
    lserver *s = arg;
    s->sending--;
    qr_lua_loop_wake(s->loop);
}

static int l_server_sending(lua_State *L)
{
    lua_pushinteger(L, check_server(L)->sending);
    return 1;
}

static int l_server_port(lua_State *L)
{
    lua_pushinteger(L, check_server(L)->port);
    return 1;
}

static int l_server_take(lua_State *L)
{
    lserver *s = check_server(L);
    lua_newtable(L);
    int i = 0;
    while (s->head) {
        lreq *r = s->head;
        s->head = r->next;
        if (!s->head) s->tail = NULL;
        r->next = NULL;
        lreq **box = lua_newuserdatauv(L, sizeof *box, 0);
        *box = r;
        luaL_setmetatable(L, REQUEST_MT);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

static int l_server_close(lua_State *L)
{
    lserver *s = luaL_checkudata(L, 1, SERVER_MT);
    if (s->http && s->bound) {
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
        qr_lua_loop_sources(s->loop, -1);
    }
    return 0;
}

static int l_server_gc(lua_State *L)
{
    lserver *s = luaL_checkudata(L, 1, SERVER_MT);
    l_server_close(L);
    while (s->head) { /* arrived, never taken */
        lreq *r = s->head;
        s->head = r->next;
        if (r->req) {
            struct evhttp_request *req = r->req;
            done_with(r);
            evhttp_send_error(req, 503, "shutting down");
        }
        r->lua_holds = 0;
        lreq_unref(r);
    }
    if (s->http) evhttp_free(s->http);
    s->http = NULL;
    return 0;
}

static lreq *check_req(lua_State *L)
{
    return *(lreq **)luaL_checkudata(L, 1, REQUEST_MT);
}

static struct evhttp_request *live_req(lua_State *L)
{
    lreq *r = check_req(L);
    if (!r->req) luaL_error(L, "the request was answered or its client left");
    return r->req;
}

static int l_req_method(lua_State *L)
{
    const char *name = "OTHER";
    switch (evhttp_request_get_command(live_req(L))) {
    case EVHTTP_REQ_GET: name = "GET"; break;
    case EVHTTP_REQ_HEAD: name = "HEAD"; break;
    case EVHTTP_REQ_POST: name = "POST"; break;
    case EVHTTP_REQ_PUT: name = "PUT"; break;
    case EVHTTP_REQ_DELETE: name = "DELETE"; break;
    case EVHTTP_REQ_OPTIONS: name = "OPTIONS"; break;
    case EVHTTP_REQ_TRACE: name = "TRACE"; break;
    case EVHTTP_REQ_CONNECT: name = "CONNECT"; break;
    case EVHTTP_REQ_PATCH: name = "PATCH"; break;
    default: break;
    }
    lua_pushstring(L, name);
    return 1;
}

static int l_req_uri(lua_State *L)
{
    lua_pushstring(L, evhttp_request_get_uri(live_req(L)));
    return 1;
}

static int l_req_path(lua_State *L)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(live_req(L));
    const char *p = u ? evhttp_uri_get_path(u) : NULL;
    lua_pushstring(L, p && *p ? p : "/");
    return 1;
}

static int l_req_query(lua_State *L)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(live_req(L));
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    lua_pushstring(L, q ? q : "");
    return 1;
}

static int l_req_header(lua_State *L)
{
    struct evhttp_request *req = live_req(L);
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), luaL_checkstring(L, 2));
    if (v) lua_pushstring(L, v);
    else lua_pushnil(L);
    return 1;
}

static int l_req_reply(lua_State *L)
{
    lreq *r = check_req(L);
    int status = (int)luaL_checkinteger(L, 2);
    size_t len;
    const char *body = luaL_optlstring(L, 3, "", &len);
    if (!r->req) {
        lua_pushboolean(L, 0);
        return 1;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    if (lua_istable(L, 4)) {
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
                evhttp_add_header(out, lua_tostring(L, -2), lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    /* HEAD: the headers GET would send, no body. libevent 2.1 writes a
     * reply's body even to HEAD, which a keep-alive client then reads as
     * the start of its next answer, and leaves out its length. */
    if (evhttp_request_get_command(r->req) == EVHTTP_REQ_HEAD) {
        char n[32];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_remove_header(out, "Content-Length");
        evhttp_add_header(out, "Content-Length", n);
        len = 0;
    }
    struct evbuffer *buf = evbuffer_new();
    if (!buf || evbuffer_add(buf, body, len) != 0) {
        if (buf) evbuffer_free(buf);
        return luaL_error(L, "out of memory");
    }
    struct evhttp_request *req = r->req;
    done_with(r);
    r->answered = 1;
    lserver *s = r->server;
    s->sending++;
    evhttp_request_set_on_complete_cb(req, on_sent, s);
    evhttp_send_reply(req, status, NULL, buf);
    evbuffer_free(buf);
    lua_pushboolean(L, 1);
    return 1;
}

/* evhttp stops reading a connection while its request is answered, so it
 * would notice a client that left only when writing the answer: look at
 * the socket (end of stream or an error, as nginx does for a request in
 * progress). Bytes waiting (a pipelined request) mean the client is there. */
static int l_req_gone(lua_State *L)
{
    lreq *r = check_req(L);
    int gone = r->req == NULL && !r->answered;
    if (r->req) {
        struct evhttp_connection *conn = evhttp_request_get_connection(r->req);
        struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0) {
            char b;
            ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        }
    }
    lua_pushboolean(L, gone);
    return 1;
}

static int l_req_gc(lua_State *L)
{
    lreq *r = check_req(L);
    if (r->req) { /* taken and never answered */
        struct evhttp_request *req = r->req;
        done_with(r);
        evhttp_send_error(req, 500, "no answer");
    }
    r->lua_holds = 0;
    lreq_unref(r);
    return 0;
}

void qr_lua_open_http(lua_State *L)
{
    static const luaL_Reg server_methods[] = {
        {"port", l_server_port}, {"take", l_server_take}, {"close", l_server_close},
        {"sending", l_server_sending}, {NULL, NULL}};
    static const luaL_Reg req_methods[] = {
        {"method", l_req_method}, {"uri", l_req_uri},     {"path", l_req_path},
        {"query", l_req_query},   {"header", l_req_header}, {"reply", l_req_reply}, {"gone", l_req_gone},
        {NULL, NULL}};
    luaL_newmetatable(L, SERVER_MT);
    luaL_newlib(L, server_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_server_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_server_gc); /* `local srv <close>`: freed before its loop */
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_newmetatable(L, REQUEST_MT);
    luaL_newlib(L, req_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_req_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_http_listen);
    lua_setfield(L, -2, "http_listen");
    lua_pushcfunction(L, l_http_reserve_port);
    lua_setfield(L, -2, "http_reserve_port");
}
