#!/usr/bin/env bash
# The first GPU run, in one script: under 8 minutes on one GPU, installs nothing, prints one JSON line per
# figure with the same figure on CPU beside it.
#
#   experiments/bench/gpu_check.sh                 # --device cuda: each figure on cuda (fp32, bf16) and on cpu
#   experiments/bench/gpu_check.sh --device cpu    # the same steps on CPU only (fp32 and bf16 autocast): the dry run
#
# Steps: MF and SASRec benchmarks (bench_mf.py, bench_sasrec.py: epoch time, full-ranking pass, peak memory),
# a full-ranking pass at 1M items (bench_scaling.py --item-sizes 1000000), a 1-device DDP run of
# translearn-train (trainer=ddp_gpu, or trainer=ddp on CPU), and translearn-eval --device on that run.
# Environment: PYTHON (default .venv/bin/python, else python), BIN (folder of the console scripts),
# TRANSLEARN_DATA_ROOT (the Amazon data; without it the benchmarks use synthetic data), OUT (work folder).
set -u -o pipefail
DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --device=*) DEVICE="${1#*=}"; shift ;;
    *) echo "usage: $0 [--device cuda|cpu]" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python)}"
BIN="${BIN:-$(dirname "$PYTHON")}"
OUT="${OUT:-$(mktemp -d /tmp/gpu-check-XXXXXX)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline
START=$(date +%s)

emit() {  # emit <figure> <json of the run> : one line {"figure", "elapsed_s", "result"}
  if [ -z "$2" ]; then  # the run ended without its JSON line (e.g. stopped by a signal Lightning caught)
    echo "{\"figure\": \"$1\", \"error\": \"no result line\"}"; return
  fi
  echo "{\"figure\": \"$1\", \"elapsed_s\": $(( $(date +%s) - START )), \"result\": $2}"
}
last_json() { grep '^{' | tail -n 1; }
fail() { echo "{\"figure\": \"$1\", \"error\": \"$(echo "$2" | tail -n 3 | tr '"\n' "' " )\"}"; }

if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo '{"error": "no CUDA device visible to torch; run with --device cpu"}'; exit 1; }
  "$PYTHON" -c "import torch, json; p = torch.cuda.get_device_properties(0); print(json.dumps({'figure': 'device', \
'name': p.name, 'memory_gib': round(p.total_memory / 2**30, 1), 'torch': torch.__version__, \
'cuda': torch.version.cuda, 'bf16': torch.cuda.is_bf16_supported()}))"
  RUNS="cuda:32-true cuda:bf16-mixed cpu:32-true"
else
  RUNS="cpu:32-true cpu:bf16-mixed"
fi
DATA=()
if ! "$PYTHON" -c "from translearn.cli.config import compose; from translearn.build import build_data; \
c = compose(['data=arts_office']); build_data(c.data, c.paths.cache_dir)" >/dev/null 2>&1; then
  DATA=(data=synthetic data.dataset.num_users=20000 "data.dataset.num_items=[5000,5000]")  # no Amazon data here
  echo '{"note": "Amazon Arts/Office not found (TRANSLEARN_DATA_ROOT): the benchmarks use synthetic data"}'
fi

# 1-2. MF (10 epochs, 3 passes; on CPU 3 and 1) and SASRec (2 epochs, 1 pass; the CPU reference beside a GPU: 1)
for run in $RUNS; do
  dev="${run%%:*}"; prec="${run#*:}"
  short=(); [ "$dev" = cpu ] && short=(--epochs 3 --eval-runs 1)  # CPU references: 3 epochs (median of 2), 1 pass
  if out=$("$PYTHON" experiments/bench/bench_mf.py --device "$dev" --precision "$prec" "${short[@]}" "${DATA[@]}" \
      2>&1); then
    emit mf "$(echo "$out" | last_json)"; else fail "mf $run" "$out"; fi
  epochs=2; [ "$dev" = cpu ] && [ "$DEVICE" = cuda ] && epochs=1
  if out=$("$PYTHON" experiments/bench/bench_sasrec.py --epochs "$epochs" --eval-runs 1 --device "$dev" \
      --precision "$prec" "${DATA[@]}" 2>&1); then emit sasrec "$(echo "$out" | last_json)"
  else fail "sasrec $run" "$out"; fi
done

# 3. full ranking at 1M items: 20k users, a bounded score matrix, 2e9 (user, item) pairs measured
for dev in $( [ "$DEVICE" = cuda ] && echo "cuda cpu" || echo cpu ); do
  pairs=2000000000; [ "$dev" = cpu ] && pairs=500000000
  if out=$("$PYTHON" experiments/bench/bench_scaling.py --users 20000 --item-sizes 1000000 --epochs 1 \
      --eval-pairs "$pairs" --device "$dev" --out "$OUT/scaling-$dev" 2>&1); then
    emit "full_ranking_1M_items" "$(echo "$out" | last_json)"; else fail "full_ranking_1M_items $dev" "$out"; fi
done

# 4. a 1-device DDP run through the real entry point, then 5. translearn-eval --device on its folder
TRAINER=trainer=ddp; [ "$DEVICE" = cuda ] && TRAINER=trainer=ddp_gpu
SMALL=(data.dataset.num_users=5000 "data.dataset.num_items=[2000,2000]" trainer.max_epochs=3 logger=csv
       paths.log_dir="$OUT/logs" paths.cache_dir="$OUT/cache" trainer.enable_progress_bar=false)
t0=$(date +%s.%N)
if out=$("$BIN/translearn-train" "${SMALL[@]}" "$TRAINER" trainer.devices=1 hydra.run.dir="$OUT/ddp" 2>&1); then
  emit "ddp_1_device" "{\"device\": \"$DEVICE\", \"wall_s\": $(awk "BEGIN {print $(date +%s.%N) - $t0}"), \
\"test_ndcg@10\": $("$PYTHON" -c "import json; print(json.load(open('$OUT/ddp/metrics.json'))['test/target/ndcg@10'])")}"
else fail "ddp_1_device" "$out"; fi
for dev in $( [ "$DEVICE" = cuda ] && echo "cuda cpu" || echo cpu ); do
  t0=$(date +%s.%N)
  # translearn-eval --device arrives with the evaluator's change; without it this line reports the error
  if out=$("$BIN/translearn-eval" "$OUT/ddp" --device "$dev" --out "$OUT/eval-$dev.json" 2>&1); then
    emit "translearn_eval" "{\"device\": \"$dev\", \"wall_s\": $(awk "BEGIN {print $(date +%s.%N) - $t0}"), \
\"test_ndcg@10\": $("$PYTHON" -c "import json; print(json.load(open('$OUT/eval-$dev.json'))['test/target/ndcg@10'])")}"
  else fail "translearn_eval $dev" "$out"; fi
done
echo "{\"figure\": \"total\", \"device\": \"$DEVICE\", \"wall_s\": $(( $(date +%s) - START )), \"out\": \"$OUT\"}"
