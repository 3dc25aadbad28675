/* Where the files of an input model directory may lead. A symbolic link is
 * followed only when its target lies inside the directory, or inside the
 * blobs/ folder of the Hugging Face cache repository that holds it
 * (models--ORG--NAME/snapshots/REV/x -> ../../blobs/HASH); anything else would
 * copy a file from elsewhere on the machine into an output made to be shared. */
#ifndef MQ_HFROOT_H
#define MQ_HFROOT_H

#include "monoquant.h"

typedef struct {
    const char *dir; /* as the caller named it, for messages */
    char *real;      /* its real path */
    char *blobs;     /* real path of <repo>/blobs when dir is <repo>/snapshots/<rev>, or NULL */
    bool follow;     /* follow every link (mq_config.follow_symlinks) */
} mq_hf_root;

/* Resolves `dir`; MQ_STATUS_E_IO when it cannot be. Free with mq_hf_root_free. */
mq_status mq_hf_root_init(mq_hf_root *r, const char *dir, bool follow);
void mq_hf_root_free(mq_hf_root *r);

/*
 * May `path`, a file or folder of the directory, be read? MQ_OK when it does
 * not exist (the caller says what is missing) or resolves inside the allowed
 * places (anywhere, with `follow`). A link that leads elsewhere is
 * MQ_STATUS_E_FORMAT, and a dangling one MQ_STATUS_E_IO, naming the link and
 * its target.
 */
mq_status mq_hf_root_check(const mq_hf_root *r, const char *path);

#endif
