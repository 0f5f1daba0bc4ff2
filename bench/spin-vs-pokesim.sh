#!/usr/bin/env bash
# SPIN and `pokesim exhaust` side by side on the same configurations: one ftrace site, 2 patch
# rounds, CPUs looping forever, linux-5.5, byte (pessimistic) and snapshot fetch, N vCPUs.
# Prints a Markdown table: distinct states and seconds of each; pokesim with 1 worker and with
# WORKERS workers (default: the cores), the parallel speed-up, and pokesim's best time over
# SPIN's. SPIN's figure is pan's own search time (compiling pan is not counted), pokesim's is its
# search time; both searches are complete. A search that does not finish within LIMIT seconds
# (default 600) is stopped and shown as such, with the reason.
# Then, since these searches are now small enough to fit in the breadth-first levels that one
# worker runs, a second table gives the parallel speed-up on a 4-vCPU search big enough to share:
# linux-6.0, ftrace with a foreign kprobe, 2 rounds (PARALLEL=0 skips it).
# Needs spin and gcc (apt-get install -y spin gcc); builds pokesim in release mode.
# Usage: bench/spin-vs-pokesim.sh [N...]   (default: 3 4)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
command -v spin >/dev/null || { echo "spin not found (apt-get install -y spin)" >&2; exit 2; }
(cd "$root" && cargo build --release -q -p scenarios --bin pokesim)
pokesim="$root/target/release/pokesim"
workers="${WORKERS:-$(nproc)}"
limit="${LIMIT:-600}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cpus=("$@")
[ ${#cpus[@]} -gt 0 ] || cpus=(3 4)

# pokesim exhaust on $1 with $2 workers: "states seconds", or "- stopped-after-${limit}s".
run_pokesim() {
  local json
  if ! json="$(timeout "$limit" "$pokesim" exhaust "$1" --json --quiet --no-artifact --workers "$2")"; then
    echo "- stopped-after-${limit}s"
    return
  fi
  echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["complete"], d; print(d["states"], "%.2f" % d["seconds"])'
}

# pan in $1: "states seconds", or "- <why it did not finish>".
run_spin() {
  local out
  out="$(cd "$1" && timeout "$limit" ./pan -m1000000 2>&1)" || true
  local states secs
  states=$(echo "$out" | awk '/states, stored/ {printf "%.0f", $1; exit}')
  secs=$(echo "$out" | awk '/pan: elapsed time/ {print $4; exit}')
  if [ -z "$states" ] || [ -z "$secs" ] || echo "$out" | grep -q "out of memory\|max search depth too small"; then
    local why
    why=$(echo "$out" | grep -m1 -o "out of memory\|max search depth too small" || echo "stopped-after-${limit}s")
    echo "- ${why// /-}"
    return
  fi
  echo "$states $secs"
}

echo "| configuration | SPIN states | SPIN s | pokesim states | pokesim s, 1 worker | pokesim s, $workers workers | speed-up | pokesim / SPIN |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for n in "${cpus[@]}"; do
  for fetch in BYTE SNAPSHOT; do
    preset=pessimistic; [ "$fetch" = SNAPSHOT ] && preset=snapshot
    dir="$work/$n-$fetch"; mkdir -p "$dir"; cp "$here/spin/int3poke.pml" "$dir/"
    (cd "$dir" && spin -a -DNCPU="$n" -DFETCH_"$fetch" int3poke.pml >/dev/null && gcc -O2 -w -DSAFETY -o pan pan.c)
    read -r s_states s_secs <<<"$(run_spin "$dir")"
    printf 'protocol = "linux-5.5"\ncpus = %s\n[workload]\nkind = "ftrace"\nrounds = 2\n[fetch]\npreset = "%s"\n' "$n" "$preset" >"$dir/s.toml"
    read -r p_states p1 <<<"$(run_pokesim "$dir/s.toml" 1)"
    read -r _ pw <<<"$(run_pokesim "$dir/s.toml" "$workers")"
    ratios=$(python3 - "$p1" "$pw" "$s_secs" <<'EOF'
import sys
def num(x):
    try: return float(x)
    except ValueError: return None
p1, pw, s = (num(a) for a in sys.argv[1:])
speedup = "%.2f" % (p1 / pw) if p1 and pw else "-"
best = min(x for x in (p1, pw) if x is not None) if (p1 or pw) else None
ratio = "%.3g" % (best / max(s, 0.01)) if best is not None and s is not None else "-"
print(speedup, ratio)
EOF
)
    read -r speedup ratio <<<"$ratios"
    echo "| N=$n $fetch | $s_states | $s_secs | $p_states | $p1 | $pw | $speedup | $ratio |"
  done
done

[ "${PARALLEL:-1}" = 0 ] && exit 0
echo
echo "| parallel search | pokesim states | pokesim s, 1 worker | pokesim s, $workers workers | speed-up |"
echo "|---|---:|---:|---:|---:|"
dir="$work/parallel"; mkdir -p "$dir"
printf 'protocol = "linux-6.0"\ncpus = 4\n[workload]\nkind = "ftrace"\nrounds = 2\nkprobe = "armed"\n[fetch]\npreset = "pessimistic"\n' >"$dir/p.toml"
read -r p_states p1 <<<"$(run_pokesim "$dir/p.toml" 1)"
read -r _ pw <<<"$(run_pokesim "$dir/p.toml" "$workers")"
speedup=$(python3 -c 'import sys; a, b = sys.argv[1:]; print("%.2f" % (float(a) / float(b)))' "$p1" "$pw" 2>/dev/null || echo -)
echo "| linux-6.0 ftrace+kprobe N=4 BYTE | $p_states | $p1 | $pw | $speedup |"
