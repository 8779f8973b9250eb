/* SPDX-License-Identifier: MIT */
/*
 * What an iSCSI LUN is (iscsi.h): the SCSI questions QEMU's iscsi driver
 * asks when it opens one, in the same order and with the same messages, and
 * the mapping of SCSI sense data to errno values it uses for failed requests.
 */
#include <errno.h>
#include <string.h>

#include "protocols/iscsi.h"

#define RC_RETRIES 8 /* READ CAPACITY again after a UNIT ATTENTION (a fresh session's) */

int iscsi_task_errno(struct scsi_task *task)
{
    if (!task)
        return -EIO;
    if (task->status == SCSI_STATUS_GOOD)
        return 0;
    if (task->status != SCSI_STATUS_CHECK_CONDITION)
        return task->status == SCSI_STATUS_BUSY ? -EBUSY : -EIO;
    switch (task->sense.key) {
    case SCSI_SENSE_NOT_READY: return -EBUSY;
    case SCSI_SENSE_DATA_PROTECTION: return -EACCES;
    case SCSI_SENSE_COMMAND_ABORTED: return -ECANCELED;
    case SCSI_SENSE_ILLEGAL_REQUEST: break;
    default: return -EIO;
    }
    switch (task->sense.ascq) {
    case SCSI_SENSE_ASCQ_PARAMETER_LIST_LENGTH_ERROR:
    case SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE:
    case SCSI_SENSE_ASCQ_INVALID_FIELD_IN_CDB:
    case SCSI_SENSE_ASCQ_INVALID_FIELD_IN_PARAMETER_LIST: return -EINVAL;
    case SCSI_SENSE_ASCQ_LBA_OUT_OF_RANGE: return -ENOSPC;
    case SCSI_SENSE_ASCQ_LOGICAL_UNIT_NOT_SUPPORTED: return -ENOTSUP;
    case SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT:
    case SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT_TRAY_OPEN:
    case SCSI_SENSE_ASCQ_MEDIUM_NOT_PRESENT_TRAY_CLOSED: return -ENOMEDIUM;
    case SCSI_SENSE_ASCQ_WRITE_PROTECTED: return -EACCES;
    default: return -EIO;
    }
}

bool iscsi_task_unsupported(const struct scsi_task *task)
{
    return task && task->status == SCSI_STATUS_CHECK_CONDITION &&
           task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST &&
           (task->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE ||
            task->sense.ascq == SCSI_SENSE_ASCQ_INVALID_FIELD_IN_CDB);
}

/* INQUIRY (standard or a VPD page) unmarshalled into *out; the task owns it. */
static struct scsi_task *inquiry(struct iscsi_context *ctx, int lun, int evpd, int page,
                                 void **out, struct qimg_error *err)
{
    struct scsi_task *task = iscsi_inquiry_sync(ctx, lun, evpd, page, 64);
    if (task && task->status == SCSI_STATUS_GOOD) {
        /* The page may be longer than asked: ask again for all of it (SPC-4 6.6). */
        int full = scsi_datain_getfullsize(task);
        if (full > task->datain.size) {
            scsi_free_scsi_task(task);
            task = iscsi_inquiry_sync(ctx, lun, evpd, page, full);
        }
    }
    if (task && task->status == SCSI_STATUS_GOOD && (*out = scsi_datain_unmarshall(task)))
        return task;
    if (task)
        scsi_free_scsi_task(task);
    qimg_error_set(err, -EINVAL, "iSCSI: Inquiry command failed : %s", iscsi_get_error(ctx));
    return NULL;
}

/* MODE SENSE(6), all pages: the WP and DPOFUA bits (SBC-3 6.4.1). */
static void mode_sense(struct iscsi_context *ctx, int lun, struct iscsi_lun_info *info)
{
    struct scsi_task *task = iscsi_modesense6_sync(ctx, lun, 1, SCSI_MODESENSE_PC_CURRENT,
                                                   SCSI_MODEPAGE_RETURN_ALL_PAGES, 0, 255);
    struct scsi_mode_sense *ms = NULL;
    if (task && task->status == SCSI_STATUS_GOOD)
        ms = scsi_datain_unmarshall(task);
    if (ms) {
        info->write_protected = ms->device_specific_parameter & 0x80;
        info->dpofua = ms->device_specific_parameter & 0x10;
    } else {
        qimg_report("iSCSI: Failed MODE_SENSE(6), LUN assumed writable");
    }
    if (task)
        scsi_free_scsi_task(task);
}

/* READ CAPACITY(16) for a disk (retried past UNIT ATTENTIONs), (10) for a CD-ROM or when
 * (16) fails otherwise; other device types have no capacity (size 0), as in QEMU. */
static int read_capacity(struct iscsi_context *ctx, int lun, struct iscsi_lun_info *info,
                         struct qimg_error *err)
{
    struct scsi_task *task = NULL;
    bool good = false;
    if (info->type != ISCSI_TYPE_DISK && info->type != ISCSI_TYPE_ROM)
        return 0;
    for (int tries = 0; info->type == ISCSI_TYPE_DISK && tries < RC_RETRIES; tries++) {
        task = iscsi_readcapacity16_sync(ctx, lun);
        struct scsi_readcapacity16 *rc16 = NULL;
        if (task && task->status == SCSI_STATUS_GOOD && (rc16 = scsi_datain_unmarshall(task))) {
            info->block_size = rc16->block_length;
            info->num_blocks = rc16->returned_lba + 1;
            info->lbpme = rc16->lbpme;
            info->lbprz = rc16->lbprz;
            good = true;
        }
        bool again = task && task->status == SCSI_STATUS_CHECK_CONDITION &&
                     task->sense.key == SCSI_SENSE_UNIT_ATTENTION;
        if (task)
            scsi_free_scsi_task(task);
        if (!again)
            break;
    }
    if (!good) {
        task = iscsi_readcapacity10_sync(ctx, lun, 0, 0);
        struct scsi_readcapacity10 *rc10 = NULL;
        if (task && task->status == SCSI_STATUS_GOOD && (rc10 = scsi_datain_unmarshall(task))) {
            info->block_size = rc10->block_size;
            info->num_blocks = rc10->lba ? (uint64_t)rc10->lba + 1 : 0; /* 0: blank medium */
            good = true;
        }
        if (task)
            scsi_free_scsi_task(task);
    }
    if (!good)
        return qimg_error_set(err, -EINVAL, "iSCSI: failed to send readcapacity10/16 command");
    if (!info->block_size || info->block_size % 512)
        return qimg_error_set(err, -EINVAL,
                              "iSCSI: the target returned an invalid block size of %u.",
                              info->block_size);
    return 0;
}

/* The VPD pages QEMU reads when the LUN lists them: block limits and provisioning. */
static int read_vpd(struct iscsi_context *ctx, int lun, struct iscsi_lun_info *info,
                    struct qimg_error *err)
{
    struct scsi_inquiry_supported_pages *pages = NULL;
    struct scsi_task *list = inquiry(ctx, lun, 1, SCSI_INQUIRY_PAGECODE_SUPPORTED_VPD_PAGES,
                                     (void **)&pages, err);
    if (!list)
        return err->code;
    int ret = 0;
    for (int i = 0; i < pages->num_pages && ret == 0; i++) {
        void *data = NULL;
        struct scsi_task *task = NULL;
        if (pages->pages[i] == SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING) {
            task = inquiry(ctx, lun, 1, pages->pages[i], &data, err);
            if (task) {
                const struct scsi_inquiry_logical_block_provisioning *lbp = data;
                info->lbpu = lbp->lbpu;
                info->lbpws = lbp->lbpws;
            }
        } else if (pages->pages[i] == SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS) {
            task = inquiry(ctx, lun, 1, pages->pages[i], &data, err);
            if (task) {
                const struct scsi_inquiry_block_limits *bl = data;
                info->max_xfer_len = bl->max_xfer_len;
                info->max_ws_len = bl->max_ws_len;
                info->max_unmap = bl->max_unmap;
                info->max_unmap_bdc = bl->max_unmap_bdc;
            }
        } else {
            continue;
        }
        if (!task)
            ret = err->code;
        else
            scsi_free_scsi_task(task);
    }
    scsi_free_scsi_task(list);
    return ret;
}

int iscsi_lun_probe(struct iscsi_context *ctx, int lun, struct iscsi_lun_info *info,
                    struct qimg_error *err)
{
    memset(info, 0, sizeof(*info));
    struct scsi_inquiry_standard *inq = NULL;
    struct scsi_task *task = inquiry(ctx, lun, 0, 0, (void **)&inq, err);
    if (!task)
        return err->code;
    info->type = inq->device_type;
    scsi_free_scsi_task(task);
    mode_sense(ctx, lun, info);
    int ret = read_capacity(ctx, lun, info, err);
    if (ret == 0)
        ret = read_vpd(ctx, lun, info, err);
    return ret;
}
