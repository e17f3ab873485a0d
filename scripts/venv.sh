# Sourced by scripts/test and scripts/lint: ensure_venv EXTRA makes .venv (Python 3.11+) with unitarium
# (editable) and the optional-dependency group EXTRA ("test" or "dev") installed; for "test", PyTorch's CPU build.
#
# Bytecode: pip compiles every installed module; uv is not asked to (--compile-bytecode took 62 of the 72 s of a
# fresh set-up on 2 cores: every module of torch, Ray, Qiskit, SymPy...). Instead compile_src compiles the package's
# own modules and, by importing it, the dependencies every unitarium process loads (numpy, click...); scripts/test
# writes the bytecode of whatever else the tests import, once, as they import it.
#
# With uv when it can be had (it installs the extras in seconds where pip takes minutes), else with pip;
# UNITARIUM_NO_UV=1 uses pip only. PyTorch is pinned: pip's "torch==2.13.0" takes the CPU build this machine kind
# keeps on disk (pip's find-links), and so does uv when asked for that file's exact version, "torch==2.13.0+cpu",
# with the same find-links; a plain "torch" resolves to a CUDA build of several GB (see README, "PyTorch"). No
# extra asks for torch, so the extras leave it as it is.
#
# UNITARIUM_VENV_READY=1: .venv is set up already, ensure_venv does nothing (.ci/run sets it up once, then runs
# scripts/test and scripts/lint side by side).

ensure_venv() {
    local extra="$1" py="${PYTHON:-python3}" uv="" links="" torch=()
    local pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
    [ "${UNITARIUM_VENV_READY:-}" != 1 ] || return 0
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "unitarium needs Python 3.11+ ($py is older)" >&2; exit 2; }
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    if [ "${UNITARIUM_NO_UV:-}" != 1 ] && { [ -x .venv/bin/uv ] || "${pip[@]}" uv >/dev/null 2>&1; }; then
        uv=.venv/bin/uv
    fi
    if [ "$extra" = test ] && ! .venv/bin/python -c \
        'import importlib.metadata as m, sys; sys.exit(m.version("torch").split("+")[0] != "2.13.0")' 2>/dev/null; then
        links="${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}"
        if [ -n "$uv" ] && [ -d "$links" ] && compgen -G "$links/torch-2.13.0+cpu-*.whl" >/dev/null; then
            torch=(--find-links "$links" "torch==2.13.0+cpu")
        else
            "${pip[@]}" torch==2.13.0
        fi
    fi
    if [ -n "$uv" ] && "$uv" pip install --quiet --python .venv/bin/python "${torch[@]}" -e ".[$extra]"; then
        compile_src
        return
    fi
    [ "${UNITARIUM_NO_UV:-}" = 1 ] || echo "scripts: uv unavailable or failed; installing with pip" >&2
    [ ${#torch[@]} -eq 0 ] || "${pip[@]}" torch==2.13.0
    "${pip[@]}" -e ".[$extra]"
    compile_src
}

# Bytecode for the package's own modules, and for the dependencies a unitarium process imports (the import writes
# theirs; pip's installs have it already). Where PYTHONDONTWRITEBYTECODE is set, nothing else writes it, and every
# process (a CLI call, each spawned worker, each Ray worker) would compile every module it imports from source: 0.6 s
# instead of 0.2 s to import unitarium.cli.main on this machine. A stale .pyc is only ignored (Python checks the
# source's mtime), so editing the code stays safe.
compile_src() {
    .venv/bin/python -m compileall -q -j 0 src >/dev/null || true
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -c 'import unitarium.cli.main' >/dev/null 2>&1 || true
}
