/* ui — the dashboard on the admin listener (docs/dashboard.md): its assets under /ui/,
 * compiled into the binary from web/ (no CDN, works offline), and the browser's way into the
 * admin API. POST /ui/login trades an admin token (Bearer header, checked by admin.c as any
 * admin request's) for a session: a random 256-bit id in an HttpOnly, SameSite=Strict cookie
 * with an expiry, plus a per-session CSRF token the page sends in the X-Drover-CSRF header.
 * The admin API accepts the cookie only together with that header, as the token's id and
 * role ("operator" or "viewer"; the login may ask for less, never more). With no admin token
 * configured (loopback dev mode) no login is needed. The loop thread only. */
#ifndef DROVER_GW_UI_H
#define DROVER_GW_UI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_server.h"

enum {
    UI_MAX_SESSIONS = 64,                /* beyond: the session nearest its expiry goes */
    UI_SESSION_TTL_MS = 8 * 3600 * 1000, /* a session's life, from login */
    UI_LOGIN_FAILURES_PER_MIN = 10,      /* then 429 until the minute is over */
};

/* One compiled-in file of web/ (generated at build time by web/embed.cmake). */
struct ui_asset {
    const char *path; /* "index.html", "app.js", … */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct ui_asset ui_assets[];
extern const size_t ui_n_assets;

struct gw;

void ui_start(struct gw *g); /* allocates g->ui (the session table) */
void ui_stop(struct gw *g);  /* forgets every session; safe when never started */

/* Handles /ui, /ui/… (assets, GET /ui/session, POST /ui/logout). Returns false, answering
 * nothing, for /ui/login and any other path. */
bool ui_route(struct gw *g, struct http_request *req);

/* POST /ui/login, after the caller checked the request's Bearer token: who and role are that
 * token's id and role (borrowed), or NULL when it matched none (401, counted: after
 * UI_LOGIN_FAILURES_PER_MIN in a minute, 429). A JSON body {"role":"viewer"} asks for less. */
void ui_login(struct gw *g, struct http_request *req, const char *who, const char *role);

enum ui_auth {
    UI_AUTH_NONE = 0, /* no session cookie: the caller applies its bearer check */
    UI_AUTH_OK,       /* a live session and its CSRF header: allowed, *role set */
    UI_AUTH_REFUSED,  /* answered already (401: no or expired session, no CSRF header) */
};

/* The admin API's check of a request that did not pass the bearer check: a session cookie
 * counts only with the matching X-Drover-CSRF header. *who (the token's id) and *role are
 * borrowed until the session ends; the caller applies the role. */
enum ui_auth ui_admin_auth(struct gw *g, struct http_request *req, const char **who,
                           const char **role);

/* True (and answered 403) for a write that a browser sent from another site (Origin or
 * Sec-Fetch-Site says so): in dev mode, with no token, this is what stops a web page the
 * operator visits from draining their fleet. */
bool ui_refuse_cross_site(struct http_request *req);

#endif
