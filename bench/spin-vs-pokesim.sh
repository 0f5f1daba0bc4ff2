#!/usr/bin/env bash
# SPIN and `pokesim exhaust` side by side on the same configurations: one ftrace site, 2 patch
# rounds, CPUs looping forever, linux-5.5, byte (pessimistic) and snapshot fetch, N = 2, 3, 4.
# Prints a Markdown table: distinct states and seconds of each, and pokesim's time over SPIN's
# (SPIN's figure is pan's search time, as pokesim's is its search time; compiling pan is not
# counted). Needs spin and gcc (apt-get install -y spin gcc); builds pokesim in release mode.
# Usage: bench/spin-vs-pokesim.sh [N...]   (default: 2 3 4)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
command -v spin >/dev/null || { echo "spin not found (apt-get install -y spin)" >&2; exit 2; }
(cd "$root" && cargo build --release -q -p scenarios --bin pokesim)
pokesim="$root/target/release/pokesim"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cpus=("$@")
[ ${#cpus[@]} -gt 0 ] || cpus=(2 3 4)
echo "| configuration | SPIN states | SPIN s | pokesim states | pokesim s | pokesim / SPIN |"
echo "|---|---:|---:|---:|---:|---:|"
for n in "${cpus[@]}"; do
  for fetch in BYTE SNAPSHOT; do
    preset=pessimistic; [ "$fetch" = SNAPSHOT ] && preset=snapshot
    dir="$work/$n-$fetch"; mkdir -p "$dir"; cp "$here/spin/int3poke.pml" "$dir/"
    (cd "$dir" && spin -a -DNCPU="$n" -DFETCH_"$fetch" int3poke.pml >/dev/null && gcc -O2 -w -DSAFETY -o pan pan.c)
    out="$(cd "$dir" && ./pan -m1000000 2>&1)"
    s_states=$(echo "$out" | awk '/states, stored/ {print $1; exit}')
    s_secs=$(echo "$out" | awk '/pan: elapsed time/ {print $4; exit}')
    printf 'protocol = "linux-5.5"\ncpus = %s\n[workload]\nkind = "ftrace"\nrounds = 2\n[fetch]\npreset = "%s"\n' "$n" "$preset" >"$dir/s.toml"
    json="$("$pokesim" exhaust "$dir/s.toml" --json --quiet --no-artifact)"
    p_states=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["states"])')
    p_secs=$(echo "$json" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["seconds"])')
    ratio=$(python3 -c "print('%.1f' % ($p_secs / max($s_secs, 0.01)))")
    echo "| N=$n $fetch | $s_states | $s_secs | $p_states | $p_secs | $ratio |"
  done
done
