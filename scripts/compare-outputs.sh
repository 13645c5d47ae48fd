#!/usr/bin/env bash
# Runs the same ntk commands with a reference build and the current one and compares every output
# byte for byte, so a refactoring of the CLI or the library can show it changed no result.
#
# Usage: scripts/compare-outputs.sh REF [NEW_NTK_BINARY]
#   REF             a git commit (anything `git rev-parse` takes); its `ntk` is built once in a
#                   temporary worktree and cached as build-ref/<commit>/ntk
#   NEW_NTK_BINARY  the binary under test (default: build/ntk)
# Environment: JOBS (build parallelism, default nproc), KEEP=1 keeps the work directory,
#   STRICT_STDOUT=1 also fails on a differing stdout line (by default it is only reported).
# Prints one line per command, "same" or "DIFFERENT"; exits 1 if any output differs.
#
# Inputs are generated deterministically here (pure Python, no NumPy needed). Commands reading IDX
# files get `--idx-scale raw` on a binary whose help lists that flag, so a build that scales IDX
# pixels by default is compared on the raw values an older build read.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 REF [NEW_NTK_BINARY]" >&2; exit 2; }
ref=$(git rev-parse --verify "$1^{commit}")
new=$(realpath "${2:-build/ntk}")
[[ -x $new ]] || { echo "error: $new is not an executable; build it first (cmake --build build --target ntk)" >&2; exit 2; }

# --- the reference binary, built once per commit -------------------------------------------------
cache=$root/build-ref/$ref
refbin=$cache/ntk
if [[ ! -x $refbin ]]; then
  echo "building ntk at ${ref:0:12} (cached in build-ref/$ref)..." >&2
  src=$(mktemp -d "${TMPDIR:-/tmp}/ntk-ref-src.XXXXXX")
  trap 'git -C "$root" worktree remove --force "$src" >/dev/null 2>&1 || true; rm -rf "$src"' EXIT
  git worktree add --detach --force "$src" "$ref" >/dev/null 2>&1
  mkdir -p "$cache"
  cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DNTK_BUILD_TESTS=OFF -DNTK_BUILD_BENCH=OFF >/dev/null
  cmake --build "$cache/build" --target ntk -j"${JOBS:-$(nproc)}" >/dev/null
  cp "$cache/build/ntk" "$refbin.tmp" && mv "$refbin.tmp" "$refbin"
  rm -rf "$cache/build"
  git -C "$root" worktree remove --force "$src" >/dev/null 2>&1 || true
  trap - EXIT
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ntk-compare.XXXXXX")
[[ ${KEEP:-0} == 1 ]] && echo "work directory: $work" >&2 || trap 'rm -rf "$work"' EXIT
data=$work/data
mkdir -p "$data" "$work/ref" "$work/new"

# --- inputs ----------------------------------------------------------------------------------------
python3 - "$data" <<'EOF'
import gzip, math, struct, sys
out = sys.argv[1]

def values(n, seed):
    # A fixed, irregular sequence in about [-1.5, 1.5]; no RNG whose stream could change.
    return [math.sin(0.7 * i + seed) + 0.5 * math.cos(1.3 * i * i + 2 * seed) for i in range(n)]

def npy(name, shape, seed, code='<f4'):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (code, tuple(shape))
    header += ' ' * ((64 - (10 + len(header) + 1) % 64) % 64) + '\n'
    n = 1
    for d in shape: n *= d
    fmt = '<%d%s' % (n, 'f' if code == '<f4' else 'd')
    with open(f'{out}/{name}', 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode())
        f.write(struct.pack(fmt, *values(n, seed)))

npy('v1.npy', (5, 6), 1)
npy('v2.npy', (4, 6), 2)
npy('v1_64.npy', (5, 6), 1, '<f8')
npy('v2_64.npy', (4, 6), 2, '<f8')
npy('i1.npy', (4, 6, 6, 2), 3)
npy('i2.npy', (3, 6, 6, 2), 4)
npy('i1_64.npy', (4, 6, 6, 2), 3, '<f8')
npy('big.npy', (40, 6), 5)  # enough examples that a small --max-memory forces out of core

# An IDX image stack (N, H, W) of unsigned bytes, plain and gzipped.
n, h, w = 4, 6, 6
pixels = bytes((i * 37 + (i * i) % 11) % 256 for i in range(n * h * w))
idx = struct.pack('>BBBB', 0, 0, 0x08, 3) + struct.pack('>III', n, h, w) + pixels
open(f'{out}/images-idx3-ubyte', 'wb').write(idx)
with open(f'{out}/images-idx3-ubyte.gz', 'wb') as f:
    f.write(gzip.compress(idx, mtime=0))
EOF

# --- commands ------------------------------------------------------------------------------------
# Each entry: a name, then the arguments; OUT/ stands for the side's output directory (the working
# directory) and D/ for the inputs. The output file is the name with .npy or .npz; `explain` entries compare stdout.
mlp='Dense(8), Relu, Dense(3)'
mlp1='Dense(8, b_std=0.1), Erf, Dense(8), Gelu, Dense(1)'
cnn='Conv(3, 3, padding=SAME), Relu, Conv(3, 3), Relu, GlobalAvgPool, Dense(3)'
cnn_flat='Conv(3, 3, stride=2), Tanh, Flatten, Dense(2, b_std=0.2)'
cnn_res='Conv(3, 3, padding=SAME), Relu, Residual(Conv(3, 3, padding=SAME), Relu, Conv(3, 3, padding=SAME)), Relu, AvgPool(2), Flatten, Dense(3)'
cnn_kern='Conv(2, 3, padding=SAME), Relu, Conv(2, 3, padding=SAME), Relu, GlobalAvgPool, Dense(1)'
idx_net='Conv(2, 3), Relu, GlobalAvgPool, Dense(2)'
T='--threads 2'

cmds=(
  "init_mlp32.npz|init --net '$mlp' --input-shape 6 --seed 3 -o OUT/init_mlp32.npz"
  "init_mlp64.npz|init --net '$mlp' --input-shape 6 --seed 3 --dtype float64 --W-std 1.5 --b-std 0.2 -o OUT/init_mlp64.npz"
  "init_cnn_std.npz|init --net '$cnn_res' --input-shape 6,6,2 --seed 4 --parameterization standard -o OUT/init_cnn_std.npz"
  "apply_mlp32.npy|apply --net '$mlp' --params DATA_REF/init_mlp32.npz -x D/v1.npy $T -o OUT/apply_mlp32.npy"
  "apply_mlp64.npy|apply --net '$mlp' --params DATA_REF/init_mlp32.npz -x D/v1_64.npy $T -o OUT/apply_mlp64.npy"
  "apply_cnn_res.npy|apply --net '$cnn_res' --parameterization standard --params DATA_REF/init_cnn_std.npz -x D/i1.npy --dtype float64 $T -o OUT/apply_cnn_res.npy"
  "apply_idx.npy|apply --net '$idx_net' --params DATA_REF/init_idx.npz -x D/images-idx3-ubyte IDX $T -o OUT/apply_idx.npy"
  "apply_idx_gz.npy|apply --net '$idx_net' --params DATA_REF/init_idx.npz -x D/images-idx3-ubyte.gz IDX $T -o OUT/apply_idx_gz.npy"
  "entk_full_jc.npy|entk --net '$mlp' --seed 1 --x1 D/v1.npy --mode full --method jc $T -o OUT/entk_full_jc.npy"
  "entk_trace_vp.npy|entk --net '$mlp' --seed 1 --x1 D/v1.npy --x2 D/v2.npy --mode trace --method vp $T -o OUT/entk_trace_vp.npy"
  "entk_tracesum_sd.npy|entk --net '$mlp' --params DATA_REF/init_mlp32.npz --x1 D/v1.npy --mode trace-sum --method sd $T -o OUT/entk_tracesum_sd.npy"
  "entk_pntk_auto.npy|entk --net '$mlp' --seed 2 --x1 D/v1.npy --x2 D/v2.npy --mode pntk --method auto $T -o OUT/entk_pntk_auto.npy"
  "entk_logit_64.npy|entk --net '$mlp' --seed 2 --x1 D/v1_64.npy --mode logit=1 --method jc $T -o OUT/entk_logit_64.npy"
  "entk_diag_acc.npy|entk --net '$mlp' --seed 2 --x1 D/v1.npy --x2 D/v2.npy --mode diagonal --accumulate float64 $T -o OUT/entk_diag_acc.npy"
  "entk_cnn_trace.npy|entk --net '$cnn' --seed 5 --x1 D/i1.npy --mode trace --method sd $T -o OUT/entk_cnn_trace.npy"
  "entk_cnn_full_vp.npy|entk --net '$cnn' --seed 5 --x1 D/i1.npy --x2 D/i2.npy --mode full --method vp $T -o OUT/entk_cnn_full_vp.npy"
  "entk_cnn_flat_jc.npy|entk --net '$cnn_flat' --seed 6 --x1 D/i1_64.npy --mode pntk --method jc $T -o OUT/entk_cnn_flat_jc.npy"
  "entk_cnn_res_tile.npy|entk --net '$cnn_res' --seed 7 --x1 D/i1.npy --x2 D/i2.npy --mode trace --tile 3 $T -o OUT/entk_cnn_res_tile.npy"
  "entk_tile_sym.npy|entk --net '$mlp1' --seed 8 --x1 D/big.npy --mode trace --tile 3 --method sd $T -o OUT/entk_tile_sym.npy"
  "entk_ooc.npy|entk --net '$mlp' --seed 1 --x1 D/v1.npy --x2 D/v2.npy --mode full --out-of-core $T -o OUT/entk_ooc.npy"
  "entk_budget_ooc.npy|entk --net '$mlp' --seed 8 --x1 D/big.npy --mode full --max-memory 67148864 $T -o OUT/entk_budget_ooc.npy"
  "entk_nngp.npy|entk --net '$mlp' --seed 1 --x1 D/v1.npy --x2 D/v2.npy --get nngp --mode full $T -o OUT/entk_nngp.npy"
  "entk_nngp_cnn.npy|entk --net '$cnn' --seed 1 --x1 D/i1.npy --get nngp --mode trace $T -o OUT/entk_nngp_cnn.npy"
  "entk_idx.npy|entk --net '$idx_net' --seed 9 --x1 D/images-idx3-ubyte.gz IDX --mode pntk $T -o OUT/entk_idx.npy"
  "explain_entk.txt|entk --net '$cnn' --seed 5 --x1 D/i1.npy --mode full --max-memory 65M --explain $T"
  "explain_entk_tile.txt|entk --net '$mlp' --seed 8 --x1 D/big.npy --mode full --max-memory 67300000 --explain $T"
  "explain_entk_ooc.txt|entk --net '$mlp' --seed 8 --x1 D/big.npy --mode full --max-memory 68M --out-of-core --explain $T"
  "kernel_mlp_ntk.npy|kernel --net '$mlp1' --x1 D/v1_64.npy $T -o OUT/kernel_mlp_ntk.npy"
  "kernel_mlp_nngp32.npy|kernel --net '$mlp' --x1 D/v1.npy --x2 D/v2.npy --get nngp --dtype float32 $T -o OUT/kernel_mlp_nngp32.npy"
  "kernel_cnn_ntk.npy|kernel --net '$cnn_kern' --x1 D/i1.npy --x2 D/i2.npy --get ntk $T -o OUT/kernel_cnn_ntk.npy"
  "kernel_cnn_f32.npy|kernel --net '$cnn_kern' --x1 D/i1.npy --dtype float32 --get nngp $T -o OUT/kernel_cnn_f32.npy"
  "kernel_flat.npy|kernel --net 'Conv(2, 3), Relu, Flatten, Dense(1)' --x1 D/i1.npy --x2 D/i2.npy $T -o OUT/kernel_flat.npy"
  "kernel_res.npy|kernel --net 'Conv(2, 3, padding=SAME), Relu, Residual(Conv(2, 3, padding=SAME), Relu, Conv(2, 3, padding=SAME)), AvgPool(2), Flatten, Dense(1)' --x1 D/i1.npy $T -o OUT/kernel_res.npy"
  "kernel_ooc.npy|kernel --net '$mlp1' --x1 D/v1_64.npy --x2 D/v2_64.npy --out-of-core $T -o OUT/kernel_ooc.npy"
  "kernel_budget_ooc.npy|kernel --net '$mlp1' --x1 D/big.npy --max-memory 268450000 $T -o OUT/kernel_budget_ooc.npy"
)

# Parameters shared by several commands come from the reference binary, so both sides read the
# same file whatever `init` does on the new side (init itself is compared above).
"$refbin" init --net "$mlp" --input-shape 6 --seed 3 -q -o "$data/init_mlp32.npz"
"$refbin" init --net "$cnn_res" --input-shape 6,6,2 --seed 4 --parameterization standard -q -o "$data/init_cnn_std.npz"
"$refbin" init --net "$idx_net" --input-shape 6,6,1 --seed 2 -q -o "$data/init_idx.npz"

idx_flag() {  # `--idx-scale raw` where the binary knows the flag, nothing otherwise
  if "$1" apply --help 2>/dev/null | grep -q -- '--idx-scale'; then echo "--idx-scale raw"; fi
}
idx_ref=$(idx_flag "$refbin")
idx_new=$(idx_flag "$new")

run_side() {  # side binary idx-flag command-line -> writes $work/side/{stdout,status}
  local side=$1 bin=$2 idx=$3 line=$4
  line=${line//OUT\//}  # outputs relative to the side's directory, so stdout lines match
  line=${line//DATA_REF\//$data/}
  line=${line//D\//$data/}
  line=${line// IDX / $idx }
  set +e
  (cd "$work/$side" && eval "\"\$bin\" $line") >"$work/$side/$name.stdout" 2>"$work/$side/$name.stderr"
  echo $? >"$work/$side/$name.status"
  set -e
}

differ=0
start=$SECONDS
for entry in "${cmds[@]}"; do
  name=${entry%%|*}
  line=${entry#*|}
  run_side ref "$refbin" "$idx_ref" "$line"
  run_side new "$new" "$idx_new" "$line"
  verdict=same
  note=""
  sref=$(cat "$work/ref/$name.status") snew=$(cat "$work/new/$name.status")
  if [[ $sref != "$snew" ]]; then
    verdict=DIFFERENT note=" (exit status $sref vs $snew: $(head -c 200 "$work/new/$name.stderr" | tr '\n' ' '))"
  elif [[ $sref != 0 ]]; then
    verdict=DIFFERENT note=" (both failed, status $sref: $(head -c 200 "$work/ref/$name.stderr" | tr '\n' ' '))"
  elif [[ $name == *.txt ]]; then
    cmp -s "$work/ref/$name.stdout" "$work/new/$name.stdout" || { verdict=DIFFERENT; note=" (stdout)"; }
  elif ! cmp -s "$work/ref/$name" "$work/new/$name"; then
    # cmp exits 1 on a difference: `|| true` keeps set -e / pipefail from ending the script here.
    verdict=DIFFERENT note=" ($(cmp "$work/ref/$name" "$work/new/$name" 2>&1 | head -1 || true))"
  elif ! cmp -s "$work/ref/$name.stdout" "$work/new/$name.stdout"; then
    if [[ ${STRICT_STDOUT:-0} == 1 ]]; then verdict=DIFFERENT; fi
    note=" (stdout differs: '$(tr -d '\n' <"$work/ref/$name.stdout")' vs '$(tr -d '\n' <"$work/new/$name.stdout")')"
  fi
  [[ $verdict == same ]] || differ=1
  printf '%-9s %-24s ntk %s%s\n' "$verdict" "$name" "$(cut -c1-90 <<<"${line//\'/}")" "$note"
done
echo "${#cmds[@]} commands in $((SECONDS - start)) s; reference ${ref:0:12} ($refbin), new $new: $([[ $differ == 0 ]] && echo 'all outputs identical' || echo 'SOME OUTPUTS DIFFER')"
exit $differ
