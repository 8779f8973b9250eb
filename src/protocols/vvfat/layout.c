/* SPDX-License-Identifier: MIT */
/*
 * The fixed part of a vvfat disk: geometry, MBR, boot sector and FAT entry
 * encoding, with the values QEMU 9.1 writes (checked byte for byte against
 * its images in tests/cli/test_vvfat.py).
 */
#include <errno.h>
#include <string.h>

#include "protocols/vvfat/vvfat.h"
#include "util/bytes.h"
#include "util/mem.h"

#define VVFAT_DISK_ID 0xfabe1afdu   /* volume serial number */
#define VVFAT_MBR_SIGNATURE 0xbe1afdfau /* the MBR's disk signature */

int vvfat_geometry_init(struct vvfat_geometry *g, int fat_type, bool floppy,
                        struct qimg_error *err)
{
    memset(g, 0, sizeof(*g));
    if (fat_type != 0 && fat_type != 12 && fat_type != 16 && fat_type != 32)
        return qimg_error_set(err, -EINVAL, "Valid FAT types are only 12, 16 and 32");
    g->floppy = floppy;
    if (floppy) {
        /* 2.88 MB unless FAT12 is asked for (1.44 MB); no partition table. */
        g->fat_type = fat_type ? fat_type : 12;
        g->secs = fat_type == 12 ? 18 : 36;
        g->cyls = 80;
        g->heads = 2;
        g->boot = 0;
    } else {
        /* 32 MB for FAT12, else 504 MB; the partition starts at sector 63. */
        g->fat_type = fat_type ? fat_type : 16;
        g->cyls = g->fat_type == 12 ? 64 : 1024;
        g->heads = 16;
        g->secs = 63;
        g->boot = 63;
    }
    g->total_sectors = g->cyls * g->heads * g->secs;
    g->sector_count = g->total_sectors - g->boot;
    /* Enough FAT sectors for every cluster: one sector of FAT maps
     * spc * 512 * 8 / fat_type sectors, plus itself. */
    uint32_t per_fat_sector = 1 + VVFAT_SPC * VVFAT_SECTOR * 8 / (uint32_t)g->fat_type;
    g->spf = (g->sector_count + per_fat_sector) / per_fat_sector;
    g->root = g->boot + 1 + 2 * g->spf;
    g->cluster_count = (g->sector_count - g->root) / VVFAT_SPC;
    g->max_fat = g->fat_type == 12 ? 0xfff : g->fat_type == 16 ? 0xffff : 0x0fffffff;
    return 0;
}

/* CHS bytes of an MBR partition entry for sector lba. */
static void put_chs(uint8_t *p, const struct vvfat_geometry *g, uint32_t lba)
{
    uint32_t cyl = lba / (g->heads * g->secs);
    uint32_t head = (lba / g->secs) % g->heads;
    uint32_t sec = lba % g->secs + 1;
    p[0] = (uint8_t)head;
    p[1] = (uint8_t)(sec | ((cyl >> 2) & 0xc0));
    p[2] = (uint8_t)cyl;
}

/* One active partition covering the disk from the boot sector on. */
static void build_mbr(uint8_t *mbr, const struct vvfat_geometry *g)
{
    qimg_put_le32(mbr + 0x1b8, VVFAT_MBR_SIGNATURE);
    uint8_t *part = mbr + 0x1be;
    part[0] = 0x80;
    put_chs(part + 1, g, g->boot);
    /* CHS partition types: the geometry never passes cylinder 1023. */
    part[4] = g->fat_type == 12 ? 0x01 : g->fat_type == 16 ? 0x06 : 0x0b;
    put_chs(part + 5, g, g->total_sectors - 1);
    qimg_put_le32(part + 8, g->boot);
    qimg_put_le32(part + 12, g->sector_count);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
}

/* The FAT12/16 BIOS parameter block; QEMU writes the same one for FAT32. */
static void build_boot_sector(uint8_t *b, const struct vvfat_geometry *g, const uint8_t *label)
{
    b[0] = 0xeb;
    b[1] = 0x3e;
    b[2] = 0x90;
    memcpy(b + 3, "MSWIN4.1", 8);
    qimg_put_le16(b + 11, VVFAT_SECTOR);
    b[13] = VVFAT_SPC;
    qimg_put_le16(b + 14, 1); /* reserved sectors: the boot sector */
    b[16] = 2;                /* FATs */
    qimg_put_le16(b + 17, VVFAT_ROOT_ENTRIES);
    qimg_put_le16(b + 19, g->sector_count > 0xffff ? 0 : (uint16_t)g->sector_count);
    b[21] = g->floppy ? 0xf0 : 0xf8; /* media descriptor */
    qimg_put_le16(b + 22, (uint16_t)g->spf);
    qimg_put_le16(b + 24, (uint16_t)g->secs);
    qimg_put_le16(b + 26, (uint16_t)g->heads);
    qimg_put_le32(b + 28, g->boot); /* hidden sectors */
    qimg_put_le32(b + 32, g->sector_count > 0xffff ? g->sector_count : 0);
    b[36] = g->floppy ? 0x00 : 0x80; /* BIOS drive number */
    b[38] = 0x29;                    /* extended boot signature */
    qimg_put_le32(b + 39, VVFAT_DISK_ID);
    memcpy(b + 43, label, VVFAT_LABEL_LEN);
    memcpy(b + 54, g->fat_type == 12 ? "FAT12   " : "FAT16   ", 8);
    b[510] = 0x55;
    b[511] = 0xaa;
}

void vvfat_build_head(struct vvfat_image *img)
{
    const struct vvfat_geometry *g = &img->geo;
    img->head = xcalloc((size_t)g->boot + 1, VVFAT_SECTOR);
    if (!g->floppy)
        build_mbr(img->head, g);
    build_boot_sector(img->head + (size_t)g->boot * VVFAT_SECTOR, g, img->label);
}

void vvfat_fat_set(struct vvfat_image *img, uint32_t cluster, uint32_t value)
{
    size_t fat_bytes = (size_t)img->geo.spf * VVFAT_SECTOR;
    uint8_t *fat = img->fat;
    switch (img->geo.fat_type) {
    case 32:
        if ((size_t)cluster * 4 + 4 <= fat_bytes)
            qimg_put_le32(fat + (size_t)cluster * 4, value);
        break;
    case 16:
        if ((size_t)cluster * 2 + 2 <= fat_bytes)
            qimg_put_le16(fat + (size_t)cluster * 2, (uint16_t)value);
        break;
    default: { /* FAT12: two entries share three bytes */
        size_t off = (size_t)cluster * 3 / 2;
        if (off + 2 > fat_bytes)
            break;
        uint16_t pair = qimg_le16(fat + off);
        if (cluster & 1)
            pair = (uint16_t)((pair & 0x000f) | (value << 4));
        else
            pair = (uint16_t)((pair & 0xf000) | (value & 0x0fff));
        qimg_put_le16(fat + off, pair);
    }
    }
}
