#!/bin/bash
# Figure 1 of the paper at the paper scale (full CIFAR-10) on Slurm: three job
# arrays, one point of the grid per task, with resources per model, then one job
# that draws the figure once they all succeeded.  From the repository root:
#
#   CIFAR=/path/to/cifar-10-batches-py bash cluster/slurm/figure1.sh
#
# Optional: OUT (the shared suite directory, default runs/figure1_paper),
# SBATCH_ARGS (added to every sbatch, e.g. "--partition=cpu --account=me").
# Each task is a 2-core CPU task sized from the throughput measured in
# docs/runplan.md (bf16 on a quiet 2-core AVX-512 machine); docs/cluster.md has
# the costs.  Rerunning this script after a failure retrains nothing finished.
set -euo pipefail
: "${CIFAR:?set CIFAR to the CIFAR-10 directory (pickle or binary batches)}"
OUT=${OUT:-runs/figure1_paper}
read -r -a extra <<< "${SBATCH_ARGS:-}"
mkdir -p "$OUT"
grid=(--scale=paper --precision=bf16 --data_dir="$CIFAR" --output_dir="$OUT")
array() {  # array <tasks> <time> <mem> <suite flags...>
  local n=$1 time=$2 mem=$3
  shift 3
  sbatch --parsable "${extra[@]}" --array=0-$((n - 1)) --time="$time" --cpus-per-task=2 \
    --mem="$mem" --output="$OUT/slurm-%x-%A_%a.out" \
    cluster/slurm/suite_array.sbatch experiments.figure1 "${grid[@]}" "$@"
}
# (a) small Inception, five randomizations, and (b, c) Inception at six p: 11 points,
# at most 100 epochs of about 350 s each
inception=$(array 11 12:00:00 8G --models=inception --loss_model=inception --parts=abc)
# (b, c) AlexNet at six p: at most 100 epochs of about 56 s each
alexnet=$(array 6 4:00:00 6G --models=alexnet --parts=bc)
# (b, c) MLP 1x512 and the linear control at six p: at most 200 epochs of about 8 s each
small=$(array 12 1:00:00 4G --models=mlp_1x512,linear --parts=bc)
plot=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$inception:$alexnet:$small" \
  --output="$OUT/slurm-%x-%j.out" cluster/slurm/plot.sbatch experiments.figure1 "${grid[@]}")
echo "submitted: arrays $inception (Inception), $alexnet (AlexNet), $small (MLP, linear);" \
     "figure job $plot -> $OUT/figure1.png"
