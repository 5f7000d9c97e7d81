#!/usr/bin/env python3
"""Convert Fashion-MNIST (IDX files, raw or .gz) into the CIFAR-10 binary format.

Each 28x28 grey image is padded with 2 black pixels on every side to 32x32 and repeated in the
red, green and blue planes; records are 1 label byte + 3072 pixel bytes, exactly as the
published data_batch_1..5.bin (training images split evenly in order) and test_batch.bin.
This lets every CIFAR network train on real images where CIFAR itself cannot be downloaded.

Usage: scripts/fashion_to_cifar.py [--src DIR] [--dst DIR] [--train-limit N] [--test-limit N]
"""
import argparse
import gzip
import os
import struct
import sys

SIDE, PAD = 28, 2


def read_idx(src, name, expected_dims):
    for candidate in (os.path.join(src, name + ".gz"), os.path.join(src, name)):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                data = f.read()
            break
    else:
        sys.exit(f"fashion_to_cifar: {name}[.gz] not found in {src} "
                 "(apt-get install dataset-fashion-mnist, or pass --src)")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        sys.exit(f"fashion_to_cifar: {candidate} is not an IDX file of unsigned bytes")
    dims = data[3]
    if dims != expected_dims:
        sys.exit(f"fashion_to_cifar: {candidate} has {dims} dimensions, expected {expected_dims}")
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    body = data[4 + 4 * dims:]
    count = 1
    for s in shape:
        count *= s
    if len(body) != count:
        sys.exit(f"fashion_to_cifar: {candidate} is truncated ({len(body)} of {count} bytes)")
    return shape, body


def cifar_record(label, pixels):
    blank = bytes(32 * PAD)
    plane = bytearray(blank)
    for y in range(SIDE):
        plane += bytes(PAD) + pixels[y * SIDE:(y + 1) * SIDE] + bytes(PAD)
    plane += blank
    return bytes([label]) + bytes(plane) * 3


def convert(src, prefix, limit):
    (n, h, w), images = read_idx(src, prefix + "-images-idx3-ubyte", 3)
    (m,), labels = read_idx(src, prefix + "-labels-idx1-ubyte", 1)
    if (h, w) != (SIDE, SIDE) or n != m:
        sys.exit(f"fashion_to_cifar: {prefix}: {n} images of {h}x{w} but {m} labels")
    n = min(n, limit) if limit else n
    return [cifar_record(labels[i], images[i * SIDE * SIDE:(i + 1) * SIDE * SIDE]) for i in range(n)]


def write(path, records):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"".join(records))
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--dst", default="data/fashion-cifar10")
    p.add_argument("--train-limit", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--test-limit", type=int, default=0, help="first N test images (0: all)")
    a = p.parse_args()
    train = convert(a.src, "train", a.train_limit)
    test = convert(a.src, "t10k", a.test_limit)
    os.makedirs(a.dst, exist_ok=True)
    per_batch = (len(train) + 4) // 5
    for b in range(5):
        write(os.path.join(a.dst, f"data_batch_{b + 1}.bin"), train[b * per_batch:(b + 1) * per_batch])
    write(os.path.join(a.dst, "test_batch.bin"), test)
    print(f"fashion_to_cifar: {len(train)} train and {len(test)} test images in {a.dst} "
          "(nd-train --dataset cifar10 --data-dir " + a.dst + ")")


if __name__ == "__main__":
    main()
