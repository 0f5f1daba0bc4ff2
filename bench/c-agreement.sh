#!/usr/bin/env bash
# The C implementation of every built-in version against its Rust model (issue 24): complete
# search (`pokesim exhaust`) of each version × each mutant it has × each workload (ftrace,
# jump_label, static_call, jcc), at the given
# vCPUs, with the model and with the built-in C file, every violation kind reachable
# (`--all-kinds`). Prints one row per cell: the kinds each reaches (pass: none) and whether
# they are the same.
#
# usage: bench/c-agreement.sh [CPUS] [ROUNDS]   (POKESIM=path/to/pokesim, default target/release;
#        EXTRA="--preset snapshot --kernel CONFIG_KPROBES=n" adds flags to every search;
#        WORKLOADS="ftrace jcc" picks the workloads)
set -u
cpus=${1:-2}
rounds=${2:-1}
pokesim=${POKESIM:-target/release/pokesim}
protocols="linux-5.4 seed linux-5.5 linux-5.6 linux-6.0 linux-6.16"
workloads=${WORKLOADS:-"ftrace jump_label static_call jcc"}
mutants="none no-sync-after-int3 no-sync-after-tail no-sync-after-first no-int3 tail-before-int3 publish-after-int3 detour-handler clear-vec-before-nr no-sync-before-vec-clear skip-refs-wait emulate-old no-wmb no-rmb jcc-no-invert"
verdict() {
    local out
    # shellcheck disable=SC2086 # EXTRA is a list of flags
    out=$("$pokesim" exhaust --all-kinds --cpus "$cpus" --rounds "$rounds" --artifact-dir "${TMPDIR:-/tmp}/pokesim-agreement" ${EXTRA:-} "$@" 2>&1)
    case "$out" in
        *"kinds      "*) echo "$out" | sed -n 's/^kinds  *\(.*\)$/\1/p' | tr -d ' ' | sed 's/^none$/pass/' ;;
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
            [ "$model" = "$c" ] || agree=NO
            printf '%-11s %-12s %-25s %-20s %-20s %s\n' "$p" "$w" "$m" "$model" "$c" "$agree"
        done
    done
done
