/*
 * callbacks - the mlfi_* callbacks libmilter calls
 *
 * DESCRIPTION  um_callbacks_desc() is the filter description main.c hands to
 *              smfi_register(); the callbacks find the daemon with um_daemon_get().
 */
#ifndef UM_CALLBACKS_H
#define UM_CALLBACKS_H

struct smfiDesc;
const struct smfiDesc *um_callbacks_desc(void);

#endif
