# Sourced by scripts/test and scripts/lint: ensure_venv EXTRA makes .venv (Python 3.11+) with unitarium
# (editable) and the optional-dependency group EXTRA ("test" or "dev") installed.
#
# PyTorch first (for the tests), with pip: "torch==2.13.0" is pinned so that pip takes the CPU build this machine kind keeps on
# disk (a plain "torch" resolves to a CUDA build of several GB; see README, "PyTorch"). The rest with uv when it
# can be had (installing the extras takes it seconds where pip takes minutes; no extra asks for torch, so uv
# leaves it as it is), else with pip. UNITARIUM_NO_UV=1 uses pip only.

ensure_venv() {
    local extra="$1" py="${PYTHON:-python3}"
    local pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "unitarium needs Python 3.11+ ($py is older)" >&2; exit 2; }
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    if [ "$extra" = test ]; then
        .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("torch") != "2.13.0+cpu")' \
            2>/dev/null || "${pip[@]}" torch==2.13.0
    fi
    if [ "${UNITARIUM_NO_UV:-}" != 1 ] && { [ -x .venv/bin/uv ] || "${pip[@]}" uv >/dev/null 2>&1; } \
        && .venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[$extra]"; then
        return
    fi
    [ "${UNITARIUM_NO_UV:-}" = 1 ] || echo "scripts: uv unavailable or failed; installing with pip" >&2
    "${pip[@]}" -e ".[$extra]"
}
