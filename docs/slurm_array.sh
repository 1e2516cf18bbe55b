#!/usr/bin/env bash
# Stylize a whole data set on a Slurm cluster: one array task per shard, all writing into one
# shared output folder. Each (photo, style) pair belongs to exactly one shard (a stable hash of
# the two relative paths), so tasks share nothing but the folder; a rerun of the array skips the
# outputs that exist and removes the temporary files of killed tasks.
#
#   sbatch docs/slurm_array.sh /data/imagenet/train /data/styles /scratch/stylized-imagenet
#
#SBATCH --job-name=normstyle
#SBATCH --array=0-63%16          # 64 shards, at most 16 running at once
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --output=logs/normstyle-%A_%a.log
set -euo pipefail

photos=${1:?photo folder}
styles=${2:?style folder}
out=${3:?output folder}
mkdir -p "$out/manifests"

export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# --shard auto reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_STEP and
# SLURM_ARRAY_TASK_COUNT; the log's first line says which shard it took.
normstyle stylize \
  --content-dir "$photos" --recursive \
  --style-dir "$styles" \
  --model adain --hf-repo "${NORMSTYLE_ADAIN_REPO:?set the hub repository with the AdaIN weights}" \
  --content-size 512 --format jpg --quality 90 \
  --shard auto \
  --manifest "$out/manifests/shard-${SLURM_ARRAY_TASK_ID}.jsonl" \
  -o "$out"

# After the array: cat "$out"/manifests/*.jsonl > manifest.jsonl; normstyle manifest check manifest.jsonl
