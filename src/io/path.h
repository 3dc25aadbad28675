/* Joining a directory and a name into a path, the one way every module does. */
#ifndef MQ_PATH_H
#define MQ_PATH_H

/* dir + "/" + name (no second '/' when dir ends in one), malloc'd; NULL when
 * out of memory. */
char *mq_path_join(const char *dir, const char *name);

#endif
