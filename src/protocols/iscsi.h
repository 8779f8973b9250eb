/* SPDX-License-Identifier: MIT */
/* The iscsi protocol's pieces shared between its files (iscsi.c, iscsi-lun.c). */
#ifndef QIMG_PROTOCOLS_ISCSI_H
#define QIMG_PROTOCOLS_ISCSI_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/lazy-iscsi.h"
#include "qimg/error.h"

/* What the LUN told us when it was opened (SPC-4 INQUIRY, MODE SENSE; SBC-3 READ CAPACITY). */
struct iscsi_lun_info {
    int type;              /* peripheral device type (0: disk, 5: CD-ROM) */
    bool write_protected;  /* MODE SENSE device-specific parameter, WP bit */
    bool dpofua;           /* ... DPOFUA bit: WRITE(16) takes FUA */
    uint32_t block_size;   /* bytes per logical block */
    uint64_t num_blocks;
    bool lbpme, lbprz;     /* thin provisioned; unmapped blocks read as zeroes */
    bool lbpu, lbpws;      /* UNMAP; WRITE SAME(16) with UNMAP (VPD 0xb2) */
    uint32_t max_xfer_len; /* blocks per READ/WRITE, 0: no limit (VPD 0xb0) */
    uint64_t max_ws_len;   /* blocks per WRITE SAME, 0: no limit */
    uint32_t max_unmap, max_unmap_bdc;
};

#define ISCSI_TYPE_DISK 0x00
#define ISCSI_TYPE_ROM 0x05

/*
 * Ask a freshly connected LUN what it is, as QEMU's open does: INQUIRY (type),
 * MODE SENSE(6) (write protection; a failure is reported and the LUN assumed
 * writable), READ CAPACITY(16) for disks or (10) for CD-ROMs, and the block
 * limits and provisioning VPD pages. 0 or -errno with QEMU's message.
 */
int iscsi_lun_probe(struct iscsi_context *ctx, int lun, struct iscsi_lun_info *info,
                    struct qimg_error *err);

/* -errno for a command that ended with task (NULL: transport failure), as QEMU maps sense. */
int iscsi_task_errno(struct scsi_task *task);

/* Is task an ILLEGAL REQUEST saying the command (or its UNMAP bit) is not supported? */
bool iscsi_task_unsupported(const struct scsi_task *task);

#endif
