#!/usr/bin/env bash
# Measures Lutra against llama.cpp on the same GGUF files, one engine after the other per type and thread count,
# so both see the same host. The files are Lutra's random-weight models (`lutra synth`), which llama.cpp loads too.
#
#   LLAMA_BENCH=/path/to/llama-bench bench/vs-llama-cpp.sh [OUTDIR] [TYPES] [THREADS] [PROMPT] [GEN] [REPS]
#   defaults: OUTDIR=vs-llama-cpp, TYPES="F16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K Q2_K TQ2_0 TQ1_0", THREADS="1 2", 128 64 3
#
# LLAMA_BENCH may be a wrapper script (for example one that starts a llama-bench built against another glibc).
# Writes OUTDIR/llama-TYPE-tN.jsonl and OUTDIR/lutra-TYPE-tN.json, then prints a table of both engines' t/s and
# their ratio (bench/vs-llama-cpp-table.py OUTDIR prints it again). Models go to $LUTRA_SYNTH_DIR (default OUTDIR).
set -euo pipefail

out=${1:-vs-llama-cpp}
types=${2:-"F16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K Q2_K TQ2_0 TQ1_0"}
threads=${3:-"1 2"}
prompt=${4:-128}
gen=${5:-64}
reps=${6:-3}

llama=${LLAMA_BENCH:-$(command -v llama-bench || true)}
if [[ -z "$llama" || ! -x "$llama" ]]; then
  echo "vs-llama-cpp: set LLAMA_BENCH to an executable llama-bench (none on PATH)" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
dotnet build "$root/src/Lutra.Cli" -c Release -v quiet -nologo >/dev/null
lutra=(dotnet "$root/src/Lutra.Cli/bin/Release/net10.0/lutra.dll")
models=${LUTRA_SYNTH_DIR:-$out}
mkdir -p "$out" "$models"

for type in $types; do
  model="$models/llama-1b-$type.gguf"
  [[ -f "$model" ]] || "${lutra[@]}" synth --shape llama-1b --type "$type" -o "$model" >/dev/null
  for t in $threads; do
    echo "== $type, $t thread(s), $(date +%T)" >&2
    "$llama" -m "$model" -p "$prompt" -n "$gen" -t "$t" -r "$reps" -o jsonl 2>"$out/llama-$type-t$t.err" >"$out/llama-$type-t$t.jsonl"
    "${lutra[@]}" bench -m "$model" -p "$prompt" -n "$gen" -t "$t" -r "$reps" --json 2>"$out/lutra-$type-t$t.err" >"$out/lutra-$type-t$t.json"
  done
done

python3 "$root/bench/vs-llama-cpp-table.py" "$out"
