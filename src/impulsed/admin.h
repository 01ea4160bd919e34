/* SPDX-License-Identifier: MIT */
/*
 * The broker's admin control socket (admin-proto.h is the protocol): read-only views of the
 * bus for ringctl, served from the sd-event loop without ever blocking it.
 */
#pragma once

#include <sys/types.h>

#include <systemd/sd-event.h>

#include "broker.h"
#include "macro.h"

/* admin_gid value for "no admin group": only root and the broker's own uid may connect. */
#define ADMIN_GID_NONE ((gid_t) -1)

typedef struct Admin Admin;

/* Serves the admin socket of broker b on e. A socket passed by systemd (sd_listen_fds(3):
 * one listening AF_UNIX SOCK_SEQPACKET socket; $LISTEN_* are unset) wins; otherwise the
 * socket is created at path_or_null, or where admin_socket_path() puts this bus's socket:
 * a stale socket there is replaced, missing parent directories are made (0755), the socket
 * gets mode 0660 and, if admin_gid is set, that group; it is removed again by admin_free().
 * Peers are let in if their uid is 0 or the broker's, or if admin_gid is their primary or a
 * supplementary group; others are told "permission denied" and disconnected.
 * Logs why it failed: -EADDRINUSE (another broker answers on the path), -EEXIST (the path is
 * not a socket), -ENOTSOCK (systemd passed something else), -ENAMETOOLONG, -EINVAL (a relative
 * path), or the errno of a failed system call. */
int admin_new(Admin **ret, sd_event *e, Broker *b, const char *path_or_null, gid_t admin_gid);
/* Closes every connection and the socket; removes the socket file if admin_new() made it and
 * it is still ours. */
Admin *admin_free(Admin *a);
DEFINE_FREEP(Admin, admin_free)

/* The socket's path (as bound by us or by systemd), or NULL if systemd's socket has none. */
const char *admin_path(const Admin *a);
