#!/usr/bin/env bash
# The C implementation of every built-in version against its Rust model (issue 24): complete
# search (`pokesim exhaust`) of each version × each mutant it has × each workload, at the given
# vCPUs, with the model and with the built-in C file. Prints one row per cell: the verdict of
# each (pass, or the kind of the violation found) and whether the verdicts agree.
#
# usage: bench/c-agreement.sh [CPUS] [ROUNDS]   (POKESIM=path/to/pokesim, default target/release)
set -u
cpus=${1:-2}
rounds=${2:-1}
pokesim=${POKESIM:-target/release/pokesim}
protocols="linux-5.4 seed linux-5.5 linux-5.6 linux-6.0 linux-6.16"
workloads="ftrace jump_label static_call batch"
mutants="none no-sync-after-int3 no-sync-after-tail no-sync-after-first no-int3 tail-before-int3 publish-after-int3 detour-handler clear-vec-before-nr no-sync-before-vec-clear skip-refs-wait emulate-old no-wmb no-rmb jcc-no-invert"
verdict() {
    local out
    out=$("$pokesim" exhaust --cpus "$cpus" --rounds "$rounds" --artifact-dir "${TMPDIR:-/tmp}/pokesim-agreement" "$@" 2>&1)
    case "$out" in
        *"no violation: every reachable state visited"*) echo pass ;;
        *"violation  "*) echo "$out" | sed -n 's/^violation  *\([a-z0-9-]*\) .*/\1/p' | head -1 ;;
        *) echo "n/a" ;;
    esac
}
printf '%-11s %-12s %-25s %-20s %-20s %s\n' protocol workload mutant model c agree
for p in $protocols; do
    for w in $workloads; do
        for m in $mutants; do
            args=(--protocol "$p" --workload "$w")
            [ "$m" = none ] || args+=(--mutant "$m")
            model=$(verdict "${args[@]}")
            [ "$model" = "n/a" ] && continue
            c=$(verdict "${args[@]}" --protocol-c)
            agree=yes
            if [ "${model%%-*}" = pass ] || [ "${c%%-*}" = pass ]; then [ "$model" = "$c" ] || agree=NO
            elif [ "$model" != "$c" ]; then agree="both violate"; fi
            printf '%-11s %-12s %-25s %-20s %-20s %s\n' "$p" "$w" "$m" "$model" "$c" "$agree"
        done
    done
done
