#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 needs) from PyPI into .venv at the repository root.
# Idempotent: does nothing when the venv and the libraries are already there.
#
#   tools/setup-libtorch.sh          CPU-only install (default): torch without its dependencies plus the two
#                                    small CUDA wheels libtorch_cpu.so links against (libcudart, libcupti).
#   tools/setup-libtorch.sh --cuda   GPU workstation: the full torch wheel with all its CUDA dependencies
#                                    (about 4.7 GB). Needs an NVIDIA driver recent enough for CUDA 13.0.
#
# Afterwards `cargo build -p tinygpt-train` finds libtorch through .cargo/config.toml and the binary finds the
# shared libraries through the rpath set by trainer/build.rs. No environment variables are needed.
set -euo pipefail

TORCH_VERSION=2.13.0
# torch 2.13.0 pins cuda-toolkit 13.0.3, which pins these two:
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
mode=cpu
for arg in "$@"; do
    case "$arg" in
        --cuda) mode=cuda ;;
        --cpu) mode=cpu ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "setup-libtorch: unknown argument '$arg' (expected --cpu or --cuda)" >&2; exit 2 ;;
    esac
done

need_python() {
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            echo "setup-libtorch: installing python3-venv" >&2
            sudo_cmd=""
            [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
            $sudo_cmd apt-get update -q
            $sudo_cmd apt-get install -y -q python3 python3-venv
        else
            echo "setup-libtorch: python3 with the venv module is required" >&2
            exit 1
        fi
    fi
}

if [ ! -x "$venv/bin/python" ]; then
    need_python
    echo "setup-libtorch: creating $venv" >&2
    python3 -m venv "$venv"
fi

py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q)

installed() { # name version
    "$py" - "$1" "$2" <<'PY'
import sys
from importlib import metadata
try:
    v = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if v == sys.argv[2] or v.startswith(sys.argv[2] + ".") else 1)
PY
}

if [ "$mode" = cuda ]; then
    # The full wheel: pip resolves every CUDA library torch needs. cuDNN is the last big piece a
    # CPU-only install lacks, so its presence marks a complete install.
    if ! installed torch "$TORCH_VERSION" || ! installed nvidia-cudnn-cu13 9.20.0.48; then
        echo "setup-libtorch: installing torch==$TORCH_VERSION with its CUDA libraries (large download)" >&2
        "${pip[@]}" "torch==$TORCH_VERSION"
    fi
else
    if ! installed torch "$TORCH_VERSION"; then
        echo "setup-libtorch: installing torch==$TORCH_VERSION (no dependencies)" >&2
        "${pip[@]}" --no-deps "torch==$TORCH_VERSION"
    fi
    if ! installed nvidia-cuda-runtime "$CUDART_VERSION"; then
        echo "setup-libtorch: installing nvidia-cuda-runtime==$CUDART_VERSION" >&2
        "${pip[@]}" --no-deps "nvidia-cuda-runtime==$CUDART_VERSION.*"
    fi
    if ! installed nvidia-cuda-cupti "$CUPTI_VERSION"; then
        echo "setup-libtorch: installing nvidia-cuda-cupti==$CUPTI_VERSION" >&2
        "${pip[@]}" --no-deps "nvidia-cuda-cupti==$CUPTI_VERSION.*"
    fi
fi

torch_dir="$("$py" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("torch")
print(os.path.dirname(spec.origin))
PY
)"
lib="$torch_dir/lib/libtorch_cpu.so"
if [ ! -f "$lib" ]; then
    echo "setup-libtorch: $lib is missing after the install" >&2
    exit 1
fi

# Check that every shared library libtorch_cpu.so needs resolves, with the rpath the build will use.
site="$(dirname "$torch_dir")"
libpath="$torch_dir/lib"
for d in "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib; do
    [ -d "$d" ] && libpath="$libpath:$d"
done
if command -v ldd >/dev/null 2>&1; then
    missing="$(LD_LIBRARY_PATH="$libpath" ldd "$lib" | grep 'not found' || true)"
    if [ -n "$missing" ]; then
        echo "setup-libtorch: libtorch_cpu.so has unresolved libraries:" >&2
        echo "$missing" >&2
        exit 1
    fi
fi
# A fixed name for the build (.cargo/config.toml's LIBTORCH), whatever the Python version in the
# venv's path: .venv/libtorch -> lib/pythonX.Y/site-packages/torch.
case "$torch_dir" in
    "$venv"/*) ln -sfn "${torch_dir#"$venv"/}" "$venv/libtorch" ;;
    *) ln -sfn "$torch_dir" "$venv/libtorch" ;;
esac
echo "setup-libtorch: libtorch $TORCH_VERSION ($mode) ready in $torch_dir (linked as $venv/libtorch)" >&2
