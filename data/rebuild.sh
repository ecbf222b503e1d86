#!/bin/sh
# Rebuild data/fashion-mnist/ from the Debian package and check it against data/README.md.
# Run from the repository root:  sh data/rebuild.sh   (root needed only for apt-get)
set -eu
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    apt-get install -y dataset-fashion-mnist
fi
mkdir -p data/fashion-mnist
cp /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
   /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \
   /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
   /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
   data/fashion-mnist/
cd data/fashion-mnist
sha256sum -c <<'SUMS'
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
SUMS
