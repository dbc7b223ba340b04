#!/bin/bash
# Gather what memtool needs on a machine that has PyTorch but no internet (a lent GPU machine, a cluster
# node) into one folder: wheels of the packages it may lack, the pure-Python COCO scorers (BLEU, ROUGE-L,
# CIDEr-D: pycocoevalcap's wheel is 100 MB of Java tools memtool never runs) and the bAbI data.
#
#   bash bench/offline_bundle.sh [BUNDLE] [BABI_EN]      # defaults: .gpu and ../shared/data/babi/en
#
# Then, there: bash bench/gpu_check.sh BUNDLE (keep BUNDLE out of git: echo /.gpu/ >> .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-.gpu}
babi=${2:-../shared/data/babi/en}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$bundle/wheels" "$bundle/site" "$bundle/babi"
# what a PyTorch image usually lacks; typer, rich, pyyaml and numpy come with most
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$bundle/wheels" \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection
scorers=$("$python" -c "import pycocoevalcap.bleu.bleu as b, os; print(os.path.dirname(os.path.dirname(b.__file__)))")
mkdir -p "$bundle/site/pycocoevalcap"
for part in bleu rouge cider; do
    rm -rf "$bundle/site/pycocoevalcap/$part"
    cp -r "$scorers/$part" "$bundle/site/pycocoevalcap/"
done
find "$bundle/site" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$bundle/babi/en"
cp -r "$babi" "$bundle/babi/en"
du -sh "$bundle"
