#!/usr/bin/env bash
# The GPU check: everything irra does on a CUDA machine, in one command and under 10 minutes on one
# H100-class GPU, without the network. Each step's log and figures go to OUT; a summary table ends
# the output (also written to OUT/summary.md).
#
#   bench/gpu_check.sh [--out DIR] [--dry-run]
#
# Steps (the GPU run / --dry-run):
#   tests          the test suite with CUDA visible (the CUDA-marked tests run there)
#                  / only the CUDA-marked tests, which are skipped on CPU
#   train-bf16     irra bench train-step --size base --device cuda --precision bf16 / tiny, cpu
#   train-fp32     the same in fp32
#   encode         irra bench encode --size base --device cuda (bf16) / tiny, cpu (fp32)
#   data           irra synth: 1000 identities in CUHK-PEDES format / 20 identities
#   epoch          one epoch of a ViT-B/16 IRRA (cuhk_pedes config, random init) on that data,
#                  bf16, with the peak GPU memory
#                  / a tiny IRRA on 20 identities, fp32, with the peak resident memory
#   torchrun-2     the same epoch in 2 processes with torchrun (NCCL), when 2 GPUs are present
#                  / 2 Gloo processes on CPU
#
# --dry-run runs the same steps on CPU at tiny sizes in about a minute; the test suite runs it, so
# the script cannot rot. Environment: PYTHON (default: python) is the interpreter with irra.
set -u -o pipefail

DRY_RUN=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/irra-gpu-check.XXXXXX")}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
: > "$OUT/steps.tsv"
# Never reach for the network (weights come from nowhere: every model here is randomly initialised).
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NO_PROXY='*'

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu SIZE=tiny ENCODE_PRECISION=fp32 REPEAT=(--warmup 0 --repeat 1 --threads 1)
    CONFIG=synth
    DATA=(--ids 20 --images-per-id 2 --captions-per-image 2 --height 64 --width 32
        --splits 0.6 0.2 0.2 --workers 1)
    EPOCH=(model.arch=custom "model.image_size=[32,16]" model.patch_size=8 model.stride_size=8
        "model.stem_channels=[]" model.embed_dim=32 model.vision_width=64 model.vision_layers=1
        model.text_width=64 model.text_layers=1 model.context_length=48 model.cmt_depth=1
        model.vocab=train data.text_length=48 data.batch_size=8 data.eval_batch_size=32
        data.num_workers=0 train.device=cpu train.precision=fp32 train.threads=1)
    TESTS=(-m cuda)
    GPUS=0
else
    DEVICE=cuda SIZE=base ENCODE_PRECISION=bf16 REPEAT=(--warmup 2 --repeat 5)
    CONFIG=cuhk_pedes
    DATA=(--ids 1000 --images-per-id 4)
    EPOCH=(model.pretrained=null data.num_workers=8 train.device=cuda train.precision=bf16)
    TESTS=(--deselect tests/test_gpu_check.py)
    GPUS="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"
    if [ "$GPUS" -lt 1 ]; then
        echo "gpu_check.sh: no CUDA device is visible (run with --dry-run to check on CPU)" >&2
        exit 2
    fi
fi
EPOCH+=(train.epochs=1 train.report=false train.tensorboard=false "data.root=$OUT/data")

# step NAME COMMAND...: runs COMMAND with its output in OUT/NAME.log; records status and seconds.
step() {
    local name="$1"
    shift
    echo "== $name: $*"
    local start status ms
    start="$(date +%s%N)"
    if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="FAILED($?)"; fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%s\t%s\t%d.%03d\n' "$name" "$status" $((ms / 1000)) $((ms % 1000)) >> "$OUT/steps.tsv"
    tail -n 3 "$OUT/$name.log"
}

# The epoch step's script: trains one epoch of the config and overrides given on its command line,
# then (rank 0) writes RUN_DIR.json with the epoch's figures.
cat > "$OUT/epoch.py" <<'PYTHON'
import json, os, resource, sys, time

import torch

from irra.config import load_config
from irra.engine import run_files
from irra.engine.run import train

run, config_name, *overrides = sys.argv[1:]
config = load_config(config_name, overrides)
start = time.perf_counter()
result = train(config, run)
seconds = time.perf_counter() - start
if os.environ.get("RANK", "0") == "0":
    log = (result.run_dir / run_files.EPOCH_LOG).read_text().splitlines()
    last = json.loads(log[-1])
    figures = {
        "seconds": round(seconds, 1),
        "epoch s": round(last["epoch_time"], 1),
        "samples/s": round(last["samples"] / last["epoch_time"], 1),
        "test R1": result.metrics["R1"],
    }
    if config.train.device.startswith("cuda"):
        figures["GPU"] = torch.cuda.get_device_name()
        figures["peak GPU GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures["peak RSS GiB"] = round(peak / 2**20, 2)
    with open(f"{run}.json", "w") as handle:
        json.dump(figures, handle)
PYTHON

cd "$HERE"
step tests "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
for precision in bf16 fp32; do
    step "train-$precision" "$PY" -m irra bench train-step --size "$SIZE" --device "$DEVICE" \
        --precision "$precision" "${REPEAT[@]}" --json "$OUT/train-$precision.json"
done
step encode "$PY" -m irra bench encode --size "$SIZE" --device "$DEVICE" \
    --precision "$ENCODE_PRECISION" "${REPEAT[@]}" --json "$OUT/encode.json"
step data "$PY" -m irra synth --out "$OUT/data/CUHK-PEDES" --no-progress "${DATA[@]}"
step epoch "$PY" "$OUT/epoch.py" "$OUT/epoch" "$CONFIG" "${EPOCH[@]}"
if [ "$DRY_RUN" = 1 ] || [ "$GPUS" -ge 2 ]; then
    step torchrun-2 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
        "$OUT/epoch.py" "$OUT/torchrun-2" "$CONFIG" "${EPOCH[@]}"
else
    printf 'torchrun-2\tskipped (1 GPU)\t0\n' >> "$OUT/steps.tsv"
fi

"$PY" - "$OUT" <<'PYTHON'
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])


def bench_figures(name: str) -> str:
    path = out / f"{name}.json"
    if not path.is_file():
        return ""
    section = next(iter(json.loads(path.read_text()).values()))
    rows = section["rows"]
    keys = ("s/step", "samples/s", "MFU") if "s/step" in rows[0] else ("items/s", "MFU")
    label = "variant" if "variant" in rows[0] else "tower"
    return "; ".join(
        f"{row[label]}: " + ", ".join(f"{k} {row[k]:.4g}" for k in keys if row.get(k) is not None)
        for row in rows
    )


def figures(name: str) -> str:
    if name.startswith(("train-", "encode")):
        return bench_figures(name)
    if name in ("epoch", "torchrun-2") and (out / f"{name}.json").is_file():
        data = json.loads((out / f"{name}.json").read_text())
        return ", ".join(f"{k} {v}" for k, v in data.items())
    log = out / f"{name}.log"
    if name == "tests" and log.is_file():  # pytest's last line: "3 passed, 1 skipped in 9.1s"
        counts = re.compile(r"\d+ (passed|failed|skipped|deselected|errors?)\b.* in ")
        lines = [line for line in log.read_text().splitlines() if counts.search(line)]
        return lines[-1].strip("= ") if lines else ""
    return ""


rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
table = ["| step | status | seconds | figures |", "|---|---|---:|---|"]
table += [f"| {n} | {s} | {float(t):.1f} | {figures(n)} |" for n, s, t in rows]
text = "\n".join(table)
(out / "summary.md").write_text(text + "\n")
print()
print(text)
print(f"\nlogs and figures: {out}")
PYTHON

! grep -q FAILED "$OUT/steps.tsv"
