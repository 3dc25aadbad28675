/* Path joining (see path.h). */
#include "path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mq_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir), k = strlen(name);
    char *p = malloc(n + k + 2);
    if (p) snprintf(p, n + k + 2, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
    return p;
}
