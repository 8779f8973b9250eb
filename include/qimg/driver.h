/* SPDX-License-Identifier: MIT */
/*
 * The driver interface: one const vtable per format or protocol, nbdkit-style.
 * Callbacks a driver lacks stay NULL and the core falls back to a generic path
 * or reports the operation unsupported in qemu-img's words.
 *
 * Requests reaching a driver are in bounds and aligned to
 * node->request_alignment; the core does read-modify-write around them.
 * Drivers are thread-safe: metadata under node->lock, data transfer outside it.
 */
#ifndef QIMG_DRIVER_H
#define QIMG_DRIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qimg/node.h"

/* Permission bits, as QEMU's image locking numbers them (lock bytes 100+i / 200+i). */
#define QIMG_PERM_CONSISTENT_READ (1u << 0)
#define QIMG_PERM_WRITE (1u << 1)
#define QIMG_PERM_WRITE_UNCHANGED (1u << 2)
#define QIMG_PERM_RESIZE (1u << 3)
#define QIMG_PERM_ALL 0xfu

struct qimg_node {
    const struct qimg_driver *drv;
    void *opaque; /* driver state, owned by the driver */
    char *filename;
    unsigned flags; /* QIMG_O_* */
    int refcnt;

    struct qimg_node *file;      /* protocol child of a format node */
    struct qimg_node *backing;   /* backing image, if opened */
    struct qimg_node *data_file; /* external data file (qcow2) */

    /* Filled by format drivers that have a backing file. */
    char *backing_file;   /* exactly as stored in the image */
    char *backing_format; /* or NULL */
    char *full_backing_filename; /* resolved against the image's directory */

    uint32_t request_alignment; /* bytes; requests are multiples at aligned offsets */
    bool probed_raw;            /* raw guessed by probing: sector 0 writes restricted */
    /* Locking: what this node holds and what it refuses to share (protocol nodes). */
    unsigned perm, shared_perm;

    pthread_mutex_t lock;    /* driver metadata lock */
    pthread_mutex_t rmw_lock; /* core: serialises unaligned read-modify-write */
    struct qimg_opts *options; /* the options the node was opened with (for info) */

    /* Set by the caller of a long operation (amend): the driver reports done of total. */
    void (*progress)(void *opaque, double done, double total);
    void *progress_opaque;
};

/* Extra information a format adds to ImageInfo. */
struct qimg_driver_info {
    uint64_t cluster_size; /* 0: none */
    uint64_t vm_state_offset; /* where saved VM state would start (qemu-io info), 0: none */
    bool dirty;
    bool encrypted;
    bool needs_compressed_writes; /* convert compresses to it (vmdk streamOptimized) */
    struct qimg_json *format_specific; /* {"type": ..., "data": {...}} or NULL */
    struct qimg_json *snapshots;       /* array of SnapshotInfo, or NULL */
};

/* ImageCheck (qapi: ImageCheck) counters filled by a driver's check. */
struct qimg_check_result {
    int corruptions, leaks, check_errors;
    int corruptions_fixed, leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters, allocated_clusters, fragmented_clusters, compressed_clusters;
    bool has_bfi; /* allocation statistics are meaningful */
};
#define QIMG_CHECK_FIX_LEAKS 1
#define QIMG_CHECK_FIX_ERRORS 2

/* BlockMeasureInfo. */
struct qimg_measure {
    uint64_t required, fully_allocated;
    bool has_bitmaps;
    uint64_t bitmaps;
};

/*
 * Debug events (QEMU's BlkdebugEvent, same names and order): format drivers
 * announce their metadata steps on their file child so that a blkdebug filter
 * under them can inject errors there ("event = l2_load").
 */
enum qimg_debug_event {
    QIMG_DBG_L1_UPDATE,
    QIMG_DBG_L1_GROW_ALLOC_TABLE,
    QIMG_DBG_L1_GROW_WRITE_TABLE,
    QIMG_DBG_L1_GROW_ACTIVATE_TABLE,
    QIMG_DBG_L2_LOAD,
    QIMG_DBG_L2_UPDATE,
    QIMG_DBG_L2_UPDATE_COMPRESSED,
    QIMG_DBG_L2_ALLOC_COW_READ,
    QIMG_DBG_L2_ALLOC_WRITE,
    QIMG_DBG_READ_AIO,
    QIMG_DBG_READ_BACKING_AIO,
    QIMG_DBG_READ_COMPRESSED,
    QIMG_DBG_WRITE_AIO,
    QIMG_DBG_WRITE_COMPRESSED,
    QIMG_DBG_VMSTATE_LOAD,
    QIMG_DBG_VMSTATE_SAVE,
    QIMG_DBG_COW_READ,
    QIMG_DBG_COW_WRITE,
    QIMG_DBG_REFTABLE_LOAD,
    QIMG_DBG_REFTABLE_GROW,
    QIMG_DBG_REFTABLE_UPDATE,
    QIMG_DBG_REFBLOCK_LOAD,
    QIMG_DBG_REFBLOCK_UPDATE,
    QIMG_DBG_REFBLOCK_UPDATE_PART,
    QIMG_DBG_REFBLOCK_ALLOC,
    QIMG_DBG_REFBLOCK_ALLOC_HOOKUP,
    QIMG_DBG_REFBLOCK_ALLOC_WRITE,
    QIMG_DBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
    QIMG_DBG_REFBLOCK_ALLOC_WRITE_TABLE,
    QIMG_DBG_REFBLOCK_ALLOC_SWITCH_TABLE,
    QIMG_DBG_CLUSTER_ALLOC,
    QIMG_DBG_CLUSTER_ALLOC_BYTES,
    QIMG_DBG_CLUSTER_FREE,
    QIMG_DBG_FLUSH_TO_OS,
    QIMG_DBG_FLUSH_TO_DISK,
    QIMG_DBG_PWRITEV_RMW_HEAD,
    QIMG_DBG_PWRITEV_RMW_AFTER_HEAD,
    QIMG_DBG_PWRITEV_RMW_TAIL,
    QIMG_DBG_PWRITEV_RMW_AFTER_TAIL,
    QIMG_DBG_PWRITEV,
    QIMG_DBG_PWRITEV_ZERO,
    QIMG_DBG_PWRITEV_DONE,
    QIMG_DBG_EMPTY_IMAGE_PREPARE,
    QIMG_DBG_L1_SHRINK_WRITE_TABLE,
    QIMG_DBG_L1_SHRINK_FREE_L2_CLUSTERS,
    QIMG_DBG_COR_WRITE,
    QIMG_DBG_CLUSTER_ALLOC_SPACE,
    QIMG_DBG_NONE,
    QIMG_DBG__MAX, /* number of events */
};

struct qimg_driver {
    const char *name;     /* format name ("raw", "qcow2") or protocol name ("file") */
    bool is_protocol;     /* a protocol reaches storage; a format sits on a protocol */
    const char *protocol_prefix; /* "nbd" for "nbd:..." / "nbd://..."; NULL for file */
    const char *const *protocol_aliases; /* further prefixes ("nbd+unix"), NULL-terminated */
    bool is_filter;       /* blkdebug-like: passes requests to its file child */
    /* Opened from its options alone like a protocol (no "file" child: quorum), but a
     * format in messages ("Block format 'quorum' does not support the option"). */
    bool format_without_file;
    /* Open options read as a QAPI structure (rbd, nfs): one left over is "Parameter 'X'
     * is unexpected" rather than the block layer's "doesn't support the option". Such a
     * driver calls qimg_check_qapi_options() once it has taken its keys, before it
     * connects anywhere (QAPI rejects the key before any connection is tried). */
    bool qapi_options;
    /* Format shares its file's permissions with others (raw does; qcow2 refuses writers). */
    bool shares_all;
    /* Unallocated ranges read from a backing file (zeroes without one) even without
     * change_backing_file (QEMU's supports_backing: parallels, qcow, vmdk). */
    bool supports_backing;
    /* Create options, in the order "Formatting ..." prints them; -o help sorts them. */
    const struct qimg_opt_desc *create_opts;
    /* Options "amend -o" accepts (and "amend -o help" lists); NULL: no amendment. */
    const struct qimg_opt_desc *amend_opts;
    /* Extra open options this driver accepts (besides "driver" and "file"). */
    const struct qimg_opt_desc *open_opts;
    /* Protocol drivers: merge create_opts into the format's (file's extent_size_hint, nocow). */

    /* Probe the first bytes of an image: 0 (no) .. 100 (certain). raw answers 1. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
    /* Open on an existing node: n->file is set for formats; opts are this node's options. */
    int (*open)(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err);
    void (*close)(struct qimg_node *n);
    int (*create)(const char *filename, struct qimg_opts *opts, struct qimg_error *err);

    int64_t (*get_length)(struct qimg_node *n);
    int64_t (*get_allocated_size)(struct qimg_node *n);
    int (*pread)(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags);
    int (*pwrite)(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                  unsigned flags);
    int (*pwrite_zeroes)(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
    int (*pwrite_compressed)(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
    int (*pdiscard)(struct qimg_node *n, uint64_t off, uint64_t len);
    int (*flush)(struct qimg_node *n);
    int (*truncate)(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                    struct qimg_error *err);
    int (*block_status)(struct qimg_node *n, uint64_t off, uint64_t len,
                        struct qimg_block_status *st);
    bool (*has_zero_init)(struct qimg_node *n);

    int (*get_info)(struct qimg_node *n, struct qimg_driver_info *info, struct qimg_error *err);
    int (*check)(struct qimg_node *n, struct qimg_check_result *res, int fix,
                 struct qimg_error *err);
    /* Size of a new image for measure: src may be NULL (then size is given). */
    int (*measure)(struct qimg_opts *opts, struct qimg_node *src, uint64_t size,
                   struct qimg_measure *out, struct qimg_error *err);
    int (*amend)(struct qimg_node *n, struct qimg_opts *opts, bool force,
                 struct qimg_error *err);
    /* Take the permissions the node needs on its file child (protocol nodes lock). */
    int (*set_perm)(struct qimg_node *n, unsigned perm, unsigned shared, struct qimg_error *err);
    /* Filters (blkdebug): a format above reached a metadata step (see qimg_debug_event). */
    void (*debug_event)(struct qimg_node *n, enum qimg_debug_event ev);
    /*
     * Record a new backing file name and format in the image's header (data
     * untouched). file NULL removes the backing file (and its format). Also
     * updates n->backing_file/backing_format. -ENOSPC: the header has no room.
     */
    int (*change_backing_file)(struct qimg_node *n, const char *file, const char *fmt,
                               struct qimg_error *err);
    /* Drop every allocation of this layer so that it reads entirely from its backing. */
    int (*make_empty)(struct qimg_node *n, struct qimg_error *err);
    /*
     * Copy offload (convert -C): copy [src_off, src_off+len) of src to dst_off
     * of dst without passing the data through memory. Called by
     * qimg_node_copy_range on a format that passes through (raw: translate the
     * side that is this driver's node and recurse) or on a protocol whose
     * driver is the same on both sides (file: copy_file_range). Any error
     * (-ENOTSUP, -EXDEV ...) makes the caller fall back to read and write.
     */
    int (*copy_range)(struct qimg_node *src, uint64_t src_off, struct qimg_node *dst,
                      uint64_t dst_off, uint64_t len);
    /*
     * Compressed writes split for parallel callers (see qimg_node_compress):
     * compress one cluster of guest data into out (cap bytes) without taking
     * any lock: the compressed length, or -ENOSPC when it would not be
     * smaller than the cluster (the caller then writes the data plainly).
     */
    long (*compress)(struct qimg_node *n, const void *in, uint64_t len, void *out, size_t cap);
    /* Store clen bytes that compress produced as the cluster at off (len guest bytes). */
    int (*pwrite_precompressed)(struct qimg_node *n, uint64_t off, uint64_t len,
                                const void *cdata, size_t clen);
    /*
     * Internal snapshots (qimg_snapshot_* in node.h). list allocates *out
     * (free with qimg_snapshot_list_free); goto takes an ID, else a name;
     * delete and load_tmp match id and name where not NULL.
     */
    int (*snapshot_list)(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                         struct qimg_error *err);
    int (*snapshot_create)(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                           struct qimg_error *err);
    int (*snapshot_goto)(struct qimg_node *n, const char *id_or_name, struct qimg_error *err);
    int (*snapshot_delete)(struct qimg_node *n, const char *id, const char *name,
                           struct qimg_error *err);
    int (*snapshot_load_tmp)(struct qimg_node *n, const char *id, const char *name,
                             struct qimg_error *err);
    /*
     * Persistent dirty bitmaps (qimg_bitmap_* in node.h). bitmap_get copies
     * a bitmap's bits (bit i covers bytes [i*granularity, (i+1)*granularity),
     * least significant bit first) into *bits (caller frees); bitmap_merge_bits
     * ORs such bits, of any granularity, into a bitmap.
     */
    int (*bitmap_list)(struct qimg_node *n, struct qimg_bitmap_info **out, size_t *count,
                       struct qimg_error *err);
    int (*bitmap_add)(struct qimg_node *n, const char *name, uint32_t granularity,
                      bool disabled, struct qimg_error *err);
    int (*bitmap_remove)(struct qimg_node *n, const char *name, struct qimg_error *err);
    int (*bitmap_clear)(struct qimg_node *n, const char *name, struct qimg_error *err);
    int (*bitmap_set_enabled)(struct qimg_node *n, const char *name, bool enabled,
                              struct qimg_error *err);
    int (*bitmap_get)(struct qimg_node *n, const char *name, uint8_t **bits, uint64_t *nbits,
                      uint32_t *granularity, struct qimg_error *err);
    int (*bitmap_merge_bits)(struct qimg_node *n, const char *name, const uint8_t *bits,
                             uint64_t nbits, uint32_t granularity, struct qimg_error *err);
    /*
     * Saved VM state (qemu-io read -b / write -b): len bytes at pos of the
     * state area, which formats keep apart from the guest disk. NULL: the
     * format has none (-ENOTSUP).
     */
    int (*vmstate_rw)(struct qimg_node *n, uint64_t pos, void *buf, uint64_t len, bool write);

    /*
     * Naming (core/filename.c). strong_opts: options that change what the
     * node shows (a name covers its dotted members); once one is given, or
     * the child is itself named in JSON, the node is named "json:{...}".
     * child_name: the key of n->file in that JSON (NULL: "file").
     * plain_filename: the name otherwise (NULL: keep the file's name).
     */
    const char *const *strong_opts;
    /*
     * Children besides file, backing and data-file (vmdk's "extents.N",
     * blkverify's "test", quorum's "children.N", blklogwrites' "log"): the
     * i-th, named into name, or NULL past the last. qemu-img info lists them
     * last first, before the file child.
     */
    struct qimg_node *(*extra_child)(struct qimg_node *n, size_t i, char *name, size_t cap);
    /* Adds such children to the node's json: name (luks' detached "header"); NULL: none. */
    void (*name_children)(struct qimg_node *n, struct qimg_json *dict);
    const char *child_name;
    char *(*plain_filename)(struct qimg_node *n);

    /*
     * Breakpoints (blkdebug; qimg_debug_breakpoint and friends in node.h).
     * breakpoint: the next request raising the named event stops there,
     * tagged tag (-ENOENT: no such event). remove_breakpoint: resume the
     * requests stopped with tag and drop its pending breakpoints (-ENOENT when
     * none was pending). resume: let the newest request stopped with tag go on
     * (-ENOENT: none). is_suspended: is a request stopped with tag?
     */
    int (*debug_breakpoint)(struct qimg_node *n, const char *event, const char *tag);
    int (*debug_remove_breakpoint)(struct qimg_node *n, const char *tag);
    int (*debug_resume)(struct qimg_node *n, const char *tag);
    bool (*debug_is_suspended)(struct qimg_node *n, const char *tag);
};

/* Registry. */
void qimg_driver_register(const struct qimg_driver *drv);
const struct qimg_driver *qimg_driver_find(const char *name);
const struct qimg_driver *qimg_driver_find_protocol(const char *filename);
/* Length of the "proto" in "proto:rest" (colon before any '/'), or 0 for a plain path. */
size_t qimg_protocol_prefix_len(const char *filename);
/* Call fn for every driver, sorted by name. */
void qimg_driver_foreach(void (*fn)(const struct qimg_driver *drv, void *ctx), void *ctx);

/* Helpers for drivers. */
/* The format the bytes look like (highest probe score), or NULL when none but raw claims them. */
const struct qimg_driver *qimg_probe_buffer(const uint8_t *buf, size_t len, const char *filename);
struct qimg_node *qimg_node_alloc(const struct qimg_driver *drv, const char *filename,
                                  unsigned flags);
/* Open the protocol node under a format (filename, its own flags). */
int qimg_open_protocol(struct qimg_node **out, const char *filename, struct qimg_opts *opts,
                       unsigned flags, struct qimg_error *err);
/* Create the protocol file of a new image: size, preallocation and protocol -o options. */
int qimg_create_protocol(const char *filename, struct qimg_opts *opts, struct qimg_error *err);

/*
 * For a qapi_options driver, after taking its own keys: the first key left over
 * (in QEMU's order) is "Parameter 'X' is unexpected". The block layer's generic
 * keys (node-name, read-only, cache.*, ...) are not the driver's to refuse.
 */
int qimg_check_qapi_options(const struct qimg_opts *o, struct qimg_error *err);

/* Debug events (enum qimg_debug_event above). */
/*
 * Announce event ev on file (a format's n->file). A no-op unless file's
 * driver (or the first driver below a chain of filters) takes debug events.
 * Formats raise read_aio/write_aio before their guest data reads and writes
 * (raw does for every request), and their metadata events at each step, as
 * QEMU's drivers do; flush_to_os/flush_to_disk come from the filter itself.
 */
void qimg_debug_event(struct qimg_node *file, enum qimg_debug_event ev);
/* "l2_load" -> QIMG_DBG_L2_LOAD; 0, or -EINVAL for an unknown name. */
int qimg_debug_event_parse(const char *name, enum qimg_debug_event *out);
/* The event's name, or NULL when ev is out of range. */
const char *qimg_debug_event_name(enum qimg_debug_event ev);

#endif
