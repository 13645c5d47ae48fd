#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in build-fuzz/ and runs each one
# for a bounded time on a seed corpus: the text seeds in fuzz/corpus/ (specs, checkpoint records)
# and binary ones (.npy, .npz, IDX, parameter and label files, solver states) generated here.
#   scripts/fuzz.sh [seconds per target, default 30] [targets, default: all eight:
#                    npy npz idx spec params labels checkpoint state]
# Crash reproducers land in build-fuzz/artifacts/<target>/; rerun one with
#   build-fuzz/fuzz/fuzz_<target> <file>
set -euo pipefail

secs="${1:-30}"
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
(( ${#targets[@]} )) || targets=(npy npz idx spec params labels checkpoint state)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"

# -O1 -g without NDEBUG: asserts stay on and sanitizer reports have usable stacks.
CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -S "$root" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DNTK_BUILD_FUZZ=ON -DNTK_SANITIZE=ON -DNTK_BUILD_TESTS=OFF -DNTK_BUILD_BENCH=OFF >/dev/null
status=0
built=()
for name in "${targets[@]}"; do
  if cmake --build "$build" -j"$(nproc)" --target "fuzz_$name"; then
    built+=("$name")
  else
    echo "fuzz_$name did not build" >&2
    status=1
  fi
done

# Seeds: a few valid files of each format, written with the Python standard library only.
python3 - "$build/corpus" <<'PY'
import gzip, io, os, struct, sys, zipfile

root = sys.argv[1]
for d in ("npy", "npz", "idx", "params", "labels"):
    os.makedirs(os.path.join(root, d), exist_ok=True)

def npy(descr, shape, payload, major=1):
    dims = ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "")
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pre = 10 if major == 1 else 12
    h += " " * (63 - (pre + len(h)) % 64) + "\n"
    size = struct.pack("<H" if major == 1 else "<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + size + h.encode("latin1") + payload

npys = {
    "f8_2x3": npy("<f8", (2, 3), struct.pack("<6d", *range(6))),
    "f4_4": npy("<f4", (4,), struct.pack("<4f", 0.5, -1, 2, 3)),
    "u1_scalar": npy("|u1", (), b"\x07"),
    "i2_empty": npy("<i2", (0, 3), b""),
    "i8_v2": npy("<i8", (2,), struct.pack("<2q", -1, 1), major=2),
    "i4_v3": npy("<i4", (1, 1, 2), struct.pack("<2i", 5, 6), major=3),
}
for name, data in npys.items():
    open(os.path.join(root, "npy", name), "wb").write(data)

def npz(members, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name + ".npy", (1980, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()

params = {"0.W": npys["f8_2x3"], "0.b": npys["f4_4"]}
open(os.path.join(root, "npz", "stored"), "wb").write(npz(params, zipfile.ZIP_STORED))
open(os.path.join(root, "npz", "deflated"), "wb").write(npz(params, zipfile.ZIP_DEFLATED))
open(os.path.join(root, "npz", "one"), "wb").write(npz({"x": npys["u1_scalar"]}, zipfile.ZIP_DEFLATED))
open(os.path.join(root, "npz", "empty"), "wb").write(npz({}, zipfile.ZIP_STORED))

def idx(code, fmt, dims, values):
    return bytes([0, 0, code, len(dims)]) + struct.pack(">%dI" % len(dims), *dims) + \
        struct.pack(">%d%s" % (len(values), fmt), *values)

idxs = {
    "ubyte": idx(0x08, "B", (2, 3, 3), list(range(18))),
    "byte": idx(0x09, "b", (4,), [-2, -1, 0, 1]),
    "short": idx(0x0B, "h", (2, 2), [-300, 0, 1, 300]),
    "int": idx(0x0C, "i", (3,), [-70000, 0, 70000]),
    "float": idx(0x0D, "f", (1, 2), [0.5, -2.0]),
    "double": idx(0x0E, "d", (2,), [1e300, -0.25]),
}
for name, data in idxs.items():
    open(os.path.join(root, "idx", name), "wb").write(data)
    open(os.path.join(root, "idx", name + ".gz"), "wb").write(gzip.compress(data, mtime=0))

# Parameters of fuzz_params' two networks (fuzz/fuzz_params.cpp), valid, as `ntk init` writes them.
def f4(*shape):
    n = 1
    for s in shape:
        n *= s
    return npy("<f4", shape, struct.pack("<%df" % n, *[0.1 * (i % 7) for i in range(n)]))

mlp = {"0.W": f4(3, 4), "0.b": f4(4), "2.W": f4(4, 2)}
cnn = {"0.W": f4(3, 3, 1, 2), "1.beta": f4(2), "1.gamma": f4(2), "1.mean": f4(2), "1.var": f4(2), "4.W": f4(2, 2)}
open(os.path.join(root, "params", "mlp"), "wb").write(npz(mlp, zipfile.ZIP_STORED))
open(os.path.join(root, "params", "cnn"), "wb").write(npz(cnn, zipfile.ZIP_DEFLATED))

# Targets and labels as `ntk regress --y-train` reads them.
labels = {
    "float_targets": npy("<f8", (3, 2), struct.pack("<6d", 0.5, 1, -1, 2, 0, 3)),
    "int_labels": npy("<i8", (4,), struct.pack("<4q", 0, 1, 2, 1)),
    "idx_labels": idx(0x08, "B", (5,), [0, 1, 9, 3, 3]),
    "idx_labels_gz": gzip.compress(idx(0x08, "B", (5,), [0, 1, 9, 3, 3]), mtime=0),
}
for name, data in labels.items():
    open(os.path.join(root, "labels", name), "wb").write(data)


def content_hash(b):
    """src/checkpoint.cpp's content_hash, for seeds whose arrays match their hashes."""
    mask = 2**64 - 1
    h = 0xcbf29ce484222325 ^ len(b)
    i = 0
    while i + 8 <= len(b):
        h = ((h ^ int.from_bytes(b[i:i + 8], "little")) * 0x100000001b3) & mask
        h ^= h >> 29
        i += 8
    for c in b[i:]:
        h = ((h ^ c) * 0x100000001b3) & mask
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & mask
    h ^= h >> 33
    return f"{h:016x}"


def state(arrays, identity=(("solver", "Nystrom"), ("targets", "(4, 2) float64 0123456789abcdef"))):
    head = "ntkit state 1\n" + "".join(f"{k}: {v}\n" for k, v in identity)
    body = b""
    for name, shape, values in arrays:
        data = struct.pack(f"<{len(values)}d", *values)
        head += f"array: {name} {shape} {content_hash(data)}\n"
        body += data
    return (head + "data:\n").encode() + body


os.makedirs(os.path.join(root, "state"), exist_ok=True)
states = {
    "nystrom": state([("meta", "(3,)", [1, 0, 0]), ("x", "(4, 2)", [0.5] * 8), ("empty", "(0,)", [])]),
    "other_job": state([("meta", "(3,)", [2, 675, 1])], (("solver", "ridge on features"),)),
    "no_meta": state([("gram", "(2, 2)", [1, 0, 0, 1])]),
}
for name, data in states.items():
    open(os.path.join(root, "state", name), "wb").write(data)
PY
# The text seeds kept in the repository.
for d in spec checkpoint; do
  mkdir -p "$build/corpus/$d"
  cp "$root/fuzz/corpus/$d/"* "$build/corpus/$d/"
done

# Tokens of the .npy header grammar help the fuzzer get past the dict parser.
cat >"$build/npy.dict" <<'DICT'
"\x93NUMPY"
"'descr'"
"'fortran_order'"
"'shape'"
"True"
"False"
"'<f8'"
"'<f4'"
"'|u1'"
"'>f8'"
"'|O'"
"(1,)"
"()"
DICT

for name in "${built[@]}"; do
  mkdir -p "$build/artifacts/$name"
  extra=()
  [[ $name == npy || $name == npz || $name == params || $name == labels ]] && extra+=("-dict=$build/npy.dict")
  echo "== fuzz_$name for ${secs}s"
  if ! "$build/fuzz/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$name/" "${extra[@]}" "$build/corpus/$name" 2>"$build/fuzz_$name.log"; then
    tail -n 40 "$build/fuzz_$name.log" >&2
    echo "fuzz_$name failed; reproducer in $build/artifacts/$name/, log in $build/fuzz_$name.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done" "$build/fuzz_$name.log" || true
  fi
done
exit $status
