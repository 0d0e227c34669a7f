# Shared by the sweep scripts (sourced): `run NAME FAMILY DATA PRESET [--set ...]` trains one
# configuration into $RUNS/NAME with the script's common settings ("${common[@]}"), its log in
# $RUNS.NAME.log; a finished run (RUNS/NAME/done) is skipped, an unfinished one starts again.
# After training, `after_run NAME DATA` runs when the script defines it (e.g. an evaluation).
run() {
    local name=$1 family=$2 data=$3 preset=$4
    shift 4
    [ -f "$RUNS/$name/done" ] && { echo "== $name: done"; return; }
    rm -rf "${RUNS:?}/$name"
    echo "== $name: $BIN/musgen train $family --data $data --config $preset $*"
    "$BIN/musgen" train "$family" --data "$data" --out "$RUNS/$name" --config "$preset" "${common[@]}" "$@" \
        > "$RUNS.$name.log" 2>&1
    echo "$data" > "$RUNS/$name/data"
    if declare -F after_run > /dev/null; then after_run "$name" "$data"; fi
    touch "$RUNS/$name/done"
}
