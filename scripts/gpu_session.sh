#!/bin/bash
# One GPU session, as one command (lent GPU machines come in short leases): train the paper's
# resnet50 U-Net++ at 512² from scratch and, beside it on the same GPU, a mobilenet_v2 model (the
# shipped one continued, or from scratch with MN_INIT=none; alone on the GPU with R50=0); export the
# resnet50 and score it (held-out synthetic m2, real labelled frames when given); time the runtime
# pipeline with both networks on the GPU. Every stage has a time guard so that the outputs come back
# even when a stage runs long. Both runs keep best.pt by the runtime's lines (`train --val-lines`), the
# figures the card reports (session 18: the raw channels picked an epoch 0.04 worse by them).
#
#   OUT=dir [MINUTES=5] [REAL=path/to/labelled] scripts/gpu_session.sh
#
# Needs torch with CUDA, segmentation-models-pytorch and dislotrack importable (`pip install '.[train]'`
# or PYTHONPATH). Writes under $OUT: log.txt, r50.tgz (card, evaluations, history, benchmarks) and the
# continued mobilenet_v2 run without optimiser state, as mnv2.tgz.part-* (15 MB pieces; join with cat).
# The other settings are environment variables below (the CPU rehearsal in the README shrinks them).
set -u
OUT=${OUT:?set OUT to the output folder}
MINUTES=${MINUTES:-5}
REAL=${REAL:-}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
R50_CROP=${R50_CROP:-512}
R50_BATCH=${R50_BATCH:-16}
R50_WORKERS=${R50_WORKERS:-7}
R50_STEPS=${R50_STEPS:-150}
R50_VAL=${R50_VAL:-512}
R50=${R50:-1}  # 0: train the mobilenet_v2 alone (session 13: a shared GPU halves each run's images)
MN_CROP=${MN_CROP:-256}
MN_BATCH=${MN_BATCH:-32}
MN_WORKERS=${MN_WORKERS:-6}
MN_STEPS=${MN_STEPS:-600}
MN_INIT=${MN_INIT:-shipped}  # shipped: continue the shipped model; none: from scratch; else a weights path
MN_LR=${MN_LR:-3e-4}
MN_CROPS=${MN_CROPS:-4}  # crops per generated 512² image
MN_VAL=${MN_VAL:-256}
MN_UNION=${MN_UNION:-0}  # --union-weight of the mobilenet_v2 run (2.0 stops it marking slip traces but loses plain lines, session 24)
MN_TRACE=${MN_TRACE:-0}  # --trace-weight of the mobilenet_v2 run (a channel that marks the drawn traces, cut at export)
R50_TRACE=${R50_TRACE:-0}  # the same for the resnet50 run
MN_DISTRACTOR=${MN_DISTRACTOR:-0}  # --distractor-weight of the mobilenet_v2 run (0.1 with MN_TRACE=1 kept the lines at one of two seeds, session 27)
R50_DISTRACTOR=${R50_DISTRACTOR:-0}  # the same for the resnet50 run
BENCH=${BENCH:-1}  # 0: skip the pipeline benchmarks
PRESETS=${PRESETS:-m2,m2-tem}
SYN=${SYN:-200}
SYN_SIZE=${SYN_SIZE:-512}
BENCH_FRAMES=${BENCH_FRAMES:-400}
DEADLINE=${DEADLINE:-520}  # seconds after start by which the optional stages must be done
WORK=${WORK:-$(mktemp -d)}
DT="$PY -m dislotrack.cli.main"
SHIPPED=$($PY -c "from dislotrack.runtime.model import default_model_path; print(default_model_path())")
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
stamp() { echo "[$(date +%T) +${SECONDS}s] $*"; }
guard() {  # run "$@" under a timeout that ends it by DEADLINE + 50 s; skip it when that is too close
    local left=$((DEADLINE + 50 - SECONDS))
    [ "$left" -gt 10 ] || { stamp "skipped, past the deadline: ${*:1:3}"; return 124; }
    timeout "$left" "$@"
}
pack_r50() {  # after every stage, so that a command stopped at its limit still returns what was done
    [ -d "$WORK/r50" ] && tar -C "$WORK" -czf "$OUT/r50.tgz" --exclude='*.onnx' --exclude='*.safetensors' \
        --exclude='*.pt' r50 r50-train.log 2>/dev/null
}

stamp "start: work in $WORK, shipped model $SHIPPED"
nvidia-smi -L 2>/dev/null || true
$PY -c "import torch, segmentation_models_pytorch as smp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'smp', smp.__version__)"

kill_after=$(awk "BEGIN {print int($MINUTES * 60 + 75)}")
stamp "training for $MINUTES min (hard stop after ${kill_after}s), resnet50: $R50"
r50=
[ "$R50" = 0 ] || timeout -k 15 "$kill_after" $DT train --device "$DEVICE" --encoder resnet50 --decoder-channels 256,128,64,32,16 \
    --local-contrast 24 --preset "$PRESETS" --crop "$R50_CROP" --gen-size 512 --batch-size "$R50_BATCH" \
    --lr 1e-3 --warmup-steps 100 --epochs 1000 --steps-per-epoch "$R50_STEPS" --bf16 --threads 2 \
    --workers "$R50_WORKERS" --max-minutes "$MINUTES" --val-size "$R50_VAL" --val-lines --seed 50 \
    --trace-weight "$R50_TRACE" --distractor-weight "$R50_DISTRACTOR" \
    --out "$WORK/r50" > "$WORK/r50-train.log" 2>&1 &
[ "$R50" = 0 ] || r50=$!
case "$MN_INIT" in
    shipped) mn_init=(--init "$SHIPPED") ;;
    none) mn_init=() ;;
    *) mn_init=(--init "$MN_INIT") ;;
esac
timeout -k 15 "$kill_after" $DT train --device "$DEVICE" "${mn_init[@]}" --decoder-channels 128,64,32,16,16 \
    --local-contrast 24 --preset "$PRESETS" --crop "$MN_CROP" --gen-size 512 --crops-per-image "$MN_CROPS" \
    --batch-size "$MN_BATCH" --lr "$MN_LR" --warmup-steps 50 --epochs 1000 --steps-per-epoch "$MN_STEPS" --bf16 \
    --union-weight "$MN_UNION" --trace-weight "$MN_TRACE" \
    --distractor-weight "$MN_DISTRACTOR" --threads 2 --workers "$MN_WORKERS" --max-minutes "$MINUTES" --val-size "$MN_VAL" \
    --val-lines --seed 51 \
    --out "$WORK/mnv2" > "$WORK/mnv2-train.log" 2>&1 &
mn=$!
[ -n "$r50" ] && { wait $r50; stamp "resnet50 training exit $?"; tail -n 3 "$WORK/r50-train.log"; }
wait $mn; stamp "mobilenet_v2 training exit $?"; tail -n 3 "$WORK/mnv2-train.log"
for run in r50 mnv2; do
    [ -f "$WORK/$run/history.csv" ] && { echo "== $run history"; cat "$WORK/$run/history.csv"; }
done
pack_r50

# The continued mobilenet_v2 run comes back whole (its weights fit), minus optimiser state.
if [ -f "$WORK/mnv2/best.pt" ]; then
    $PY - "$WORK/mnv2" <<'EOF'
import sys
from pathlib import Path

import torch

run = Path(sys.argv[1])
for name in ("best.pt", "last.pt"):
    ckpt = torch.load(run / name, map_location="cpu", weights_only=False)
    ckpt.pop("optimizer", None)
    torch.save(ckpt, run / name.replace(".pt", "-weights.pt"))
EOF
    tar -C "$WORK" -czf "$WORK/mnv2.tgz" mnv2/best-weights.pt mnv2/last-weights.pt mnv2/history.csv \
        mnv2/history.png mnv2/config.json mnv2-train.log
    split -b 15M -d "$WORK/mnv2.tgz" "$OUT/mnv2.tgz.part-"
    stamp "mobilenet_v2 run packed: $(ls "$OUT" | tr '\n' ' ')"
fi

M=$WORK/r50/model/unetpp-r50-m2mix-lc24.onnx
[ "$R50" = 0 ] || mkdir -p "$WORK/r50/eval"
if [ -f "$WORK/r50/best.pt" ]; then
    stamp "exporting resnet50"
    guard $DT export "$WORK/r50" --out "$WORK/r50/model" --name unetpp-r50-m2mix-lc24 --not-default \
        > "$WORK/r50/eval/export.log" 2>&1
    stamp "export exit $?"; tail -n 2 "$WORK/r50/eval/export.log"
fi
if [ -f "$M" ]; then
    stamp "scoring resnet50 (torch on $DEVICE)"
    ev() { guard $DT evaluate --model "$M" --torch "$DEVICE" "$@"; }
    pids=()
    ev --synthetic "$SYN" --size "$SYN_SIZE" > "$WORK/r50/eval/syn.json" 2>"$WORK/r50/eval/syn.err" &
    pids+=($!)
    ev --synthetic "$SYN" --size "$SYN_SIZE" --raw-masks > "$WORK/r50/eval/synraw.json" 2>"$WORK/r50/eval/synraw.err" &
    pids+=($!)
    if [ -n "$REAL" ]; then
        ev --images "$REAL/images" --masks "$REAL/masks" > "$WORK/r50/eval/real59.json" 2>"$WORK/r50/eval/real59.err" &
        pids+=($!)
        ev --images "$REAL/images" --masks "$REAL/masks" --skip-first 10 \
            > "$WORK/r50/eval/last49.json" 2>"$WORK/r50/eval/last49.err" &
        pids+=($!)
    fi
    wait "${pids[@]}"  # by PID: a bare wait would also wait for the log's tee
    stamp "scored"
    # into the card one after the other (the evaluations ran at once and would race on the file)
    $PY - "$WORK/r50/eval" "$M" <<'EOF'
import json
import sys
from pathlib import Path

from dislotrack.training.evaluate import update_card

CARD_KEYS = {
    "syn": "synthetic_m2",
    "synraw": "synthetic_m2_raw_masks",
    "real59": "real_tanaka_8um",
    "last49": "real_tanaka_8um_last49",
}
for stem, key in CARD_KEYS.items():
    f = Path(sys.argv[1]) / f"{stem}.json"
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError):
        print(stem, "no result; see", f.with_suffix(".err").name)
        continue
    keys = ("length_metric", "lar", "instance_recall", "centreline_recall", "centreline_precision")
    print(stem, {k: round(d[k], 3) for k in keys}, "provider", d.get("provider"))
    update_card(sys.argv[2], key, {k: v for k, v in d.items() if k != "model"})
EOF
    for f in "$WORK"/r50/eval/*.err; do [ -s "$f" ] && { echo "== $f"; tail -n 3 "$f"; }; done
    pack_r50
fi

bench() {  # name, model, precision
    if [ "$BENCH" = 0 ]; then
        stamp "skipped benchmark $1 ($3): BENCH=0"
    elif [ "$SECONDS" -lt "$DEADLINE" ]; then
        stamp "pipeline benchmark: $1 ($3)"
        timeout $((DEADLINE + 40 - SECONDS)) $PY scripts/bench_pipeline_torch.py --model "$2" --device "$DEVICE" \
            --precision "$3" --frames "$BENCH_FRAMES" --json "$WORK/r50/eval/bench-$1-$3.json" \
            | tr -d '\n ' ; echo
        pack_r50
    else
        stamp "skipped benchmark $1 ($3): past the deadline"
    fi
}
[ -f "$M" ] && bench r50 "$M" "${BENCH_PRECISION:-float16}"
bench shipped "$SHIPPED" "${BENCH_PRECISION:-float16}"
[ -f "$M" ] && bench r50 "$M" float32

pack_r50
stamp "done: $(ls -la "$OUT" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
sleep 1  # let tee write the last lines
