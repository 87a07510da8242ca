#!/usr/bin/env bash
# Creates (or completes) the virtualenv of the PyTorch oracle, <repo>/.venv-oracle, with
# torch (CPU), numpy, safetensors and tokenizers. Idempotent: what is already installed in the
# venv is kept as it is, only what is missing is installed.
#
#   scripts/setup_oracle.sh            # then: .venv-oracle/bin/python scripts/torch_reference.py ...
#
# torch: PyPI's Linux x86-64 wheels of torch are the CUDA builds (they pull ~3 GB of nvidia-*
# wheels). A CPU build (`torch-<ver>+cpu-...whl`) is preferred when one lies in a pip
# find-links folder (this workplace's machines have one in /opt/wheels); otherwise the PyPI wheel is
# installed with its dependencies: it runs on CPU all the same.
# Environment: PYTHON (interpreter for the venv, default python3), ORACLE_TORCH (a pip
# requirement or wheel path for torch, overriding the search).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-oracle"
PYTHON="${PYTHON:-python3}"

say() { echo "[setup_oracle] $*"; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "venv exists: $VENV (kept)"
else
    say "creating venv $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -m pip --version >/dev/null 2>&1; then
    say "bootstrapping pip in the venv"
    "$VPY" -m ensurepip --upgrade >/dev/null
fi
PIP=("$VPY" -m pip install --disable-pip-version-check)

has() { "$VPY" -c "import $1" >/dev/null 2>&1; }
version_of() { "$VPY" -c "import $1; print($1.__version__)" 2>/dev/null || echo '?'; }

# ---- torch -------------------------------------------------------------------------------------
if has torch; then
    say "torch $(version_of torch) already installed (kept)"
else
    spec="${ORACLE_TORCH:-}"
    if [ -z "$spec" ]; then
        pytag="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
        arch="$(uname -m)"
        dirs=()
        if [ -n "${PIP_FIND_LINKS:-}" ]; then
            for d in $PIP_FIND_LINKS; do dirs+=("${d#file://}"); done
        fi
        cfg="$("$VPY" -m pip config get global.find-links 2>/dev/null || true)"
        for d in $cfg; do dirs+=("${d#file://}"); done
        dirs+=(/opt/wheels)
        for d in "${dirs[@]}"; do
            [ -d "$d" ] || continue
            # newest CPU build for this interpreter and machine
            w="$(ls -1 "$d"/torch-*+cpu-"$pytag"-"$pytag"-*"$arch".whl 2>/dev/null | sort -V | tail -n 1 || true)"
            if [ -n "$w" ]; then spec="$w"; break; fi
        done
    fi
    if [ -n "$spec" ]; then
        say "installing torch from $spec"
        "${PIP[@]}" "$spec"
    else
        say "no CPU wheel of torch found in a find-links folder; installing torch from PyPI"
        say "(the CUDA build with its nvidia-* dependencies, several GB; it runs on CPU)"
        "${PIP[@]}" torch
    fi
    say "torch $(version_of torch) installed"
fi

# ---- numpy, safetensors, tokenizers ----------------------------------------------------------
missing=()
for m in numpy safetensors tokenizers; do
    if has "$m"; then
        say "$m $(version_of "$m") already installed (kept)"
    else
        missing+=("$m")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    "${PIP[@]}" "${missing[@]}"
    for m in "${missing[@]}"; do say "$m $(version_of "$m") installed"; done
fi

"$VPY" - <<'EOF'
import torch, numpy, safetensors, tokenizers
print(f"[setup_oracle] ready: torch {torch.__version__} (cuda build: {torch.version.cuda or 'no'}), "
      f"numpy {numpy.__version__}, safetensors {safetensors.__version__}, "
      f"tokenizers {tokenizers.__version__}, threads {torch.get_num_threads()}")
EOF
say "python: $VPY"
